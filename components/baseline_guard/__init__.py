"""BaselineGuard: the baseline resolved from ML Metadata must be the model being served."""
