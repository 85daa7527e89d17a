"""The curated schemas, shipped as package data of `graceful.schemas` (read with importlib.resources)."""
