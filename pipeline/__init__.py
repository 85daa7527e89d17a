"""The graceful TFX pipeline: configuration, definition and runners."""
