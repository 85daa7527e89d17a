"""graceful: model updates that do not break what the old model got right."""
