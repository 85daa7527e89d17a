"""ReportSettings, what the FlipEvaluator and the EdgeConverter read and how they report and judge,
and its one encoding as execution properties (so MLMD records them): every component that takes a
ReportSettings declares SETTINGS_PARAMETERS, fills them with settings_properties, and its executor
reads them back with settings_from. A module of its own so that neither component's executor
imports the other's for it.
"""
from __future__ import annotations

import dataclasses
import json

from tfx.types.component_spec import ExecutionParameter

from graceful import flips, gate
from graceful.contract import DataContract, ModelContract, from_dict


@dataclasses.dataclass(frozen=True)
class ReportSettings:
    """What the FlipEvaluator reads (the data and model contracts) and how it reports and judges."""

    data: DataContract = dataclasses.field(default_factory=DataContract)
    model: ModelContract = dataclasses.field(default_factory=ModelContract)
    high_confidence: float = flips.DEFAULT_HIGH_CONFIDENCE
    max_listed: int = 1000
    policy: gate.GateConfig = dataclasses.field(default_factory=gate.GateConfig)
    gallery_size: int = 24         # images of the worst flips, when data.image_feature is set
    # Examples per model call. The fastest size depends on the CPU (benchmarks/flip_eval.py times
    # 128-1024): 256 on a 2-core AMD EPYC (1024 1.3x slower), 1024 on a 2-core Intel Xeon (256 1.2x
    # slower). 512 was within 10% of the fastest on both; tune it for your workers.
    batch_size: int = 512

    def __post_init__(self):
        if self.batch_size < 1:
            raise ValueError(f"FlipEvaluator batch_size must be a positive number of examples, "
                             f"got {self.batch_size}.")


SETTINGS_PARAMETERS = {
    "high_confidence": ExecutionParameter(type=float),
    "max_flips_listed": ExecutionParameter(type=int),
    "policy": ExecutionParameter(type=str),          # GateConfig as JSON
    "data_contract": ExecutionParameter(type=str),   # graceful.contract.DataContract as JSON
    "model_contract": ExecutionParameter(type=str),  # graceful.contract.ModelContract as JSON
    "gallery_size": ExecutionParameter(type=int),
    "batch_size": ExecutionParameter(type=int),      # examples per model call
}


def settings_properties(settings: ReportSettings) -> dict:
    """The execution properties of SETTINGS_PARAMETERS that settings_from reads back."""
    return {"high_confidence": settings.high_confidence, "max_flips_listed": settings.max_listed,
            "policy": json.dumps(dataclasses.asdict(settings.policy)),
            "data_contract": json.dumps(dataclasses.asdict(settings.data)),
            "model_contract": json.dumps(dataclasses.asdict(settings.model)),
            "gallery_size": settings.gallery_size, "batch_size": settings.batch_size}


def settings_from(exec_properties: dict) -> ReportSettings:
    return ReportSettings(
        data=from_dict(DataContract, json.loads(exec_properties["data_contract"])),
        model=from_dict(ModelContract, json.loads(exec_properties["model_contract"])),
        high_confidence=exec_properties["high_confidence"],
        max_listed=exec_properties["max_flips_listed"],
        policy=gate.GateConfig(**json.loads(exec_properties["policy"])),
        gallery_size=exec_properties["gallery_size"],
        batch_size=exec_properties["batch_size"])
