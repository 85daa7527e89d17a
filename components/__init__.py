"""Custom TFX components of the graceful pipeline, one folder each."""
