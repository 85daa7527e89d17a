"""Training hyperparameters, TFX-free so configuration code can import them cheaply."""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class TrainingParams:
    """Hyperparameters passed through the Trainer's `custom_config` (so MLMD records them)."""

    architecture: str = "small"
    epochs: int = 5
    batch_size: int = 128
    learning_rate: float = 1e-3
    max_steps: int = 0  # 0 = no cap; >0 stops after that many optimizer steps (tests, bad models)
    seed: int = 0

    @classmethod
    def from_custom_config(cls, custom_config: dict | None) -> "TrainingParams":
        known = {f.name for f in dataclasses.fields(cls)}
        given = dict(custom_config or {})
        unknown = sorted(set(given) - known)
        if unknown:
            raise ValueError(f"Unknown training parameters {unknown}; known: {sorted(known)}.")
        return cls(**given)
