"""FlipEvaluator: which examples did the candidate break that the last blessed model got right?

Inputs: the examples (its `split`, default eval), the candidate model and the baseline model resolved
from MLMD (optional: on the first run there is none and the report says so). Output: a FlipReport
artifact with `flip_report.json` — overall and per-class flip metrics (graceful.flips), the flip
matrix, and the flipped examples (id, label, both predictions, confidence) worst first — and its
headline numbers as custom properties, so MLMD queries and `graceful history` can read them. The push
decision on flips is the Evaluator's (TFMA thresholds from GateConfig); this is the evidence.
"""
from tfx import types
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from components.flip_evaluator.executor import Executor
from graceful.flips import DEFAULT_HIGH_CONFIDENCE


class FlipReport(types.Artifact):
    """Negative-flip evidence of a candidate model against its baseline."""

    TYPE_NAME = "graceful.FlipReport"


class FlipEvaluatorSpec(ComponentSpec):
    PARAMETERS = {
        "split": ExecutionParameter(type=str),
        "high_confidence": ExecutionParameter(type=float),
        "max_flips_listed": ExecutionParameter(type=int),
    }
    INPUTS = {
        "examples": ChannelParameter(type=standard_artifacts.Examples),
        "model": ChannelParameter(type=standard_artifacts.Model),
        "baseline_model": ChannelParameter(type=standard_artifacts.Model, optional=True),
    }
    OUTPUTS = {"flip_report": ChannelParameter(type=FlipReport)}


class FlipEvaluator(base_beam_component.BaseBeamComponent):
    SPEC_CLASS = FlipEvaluatorSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

    def __init__(self, examples: types.BaseChannel, model: types.BaseChannel,
                 baseline_model: types.BaseChannel, split: str = "eval",
                 high_confidence: float = DEFAULT_HIGH_CONFIDENCE, max_flips_listed: int = 1000):
        super().__init__(spec=FlipEvaluatorSpec(
            examples=examples, model=model, baseline_model=baseline_model, split=split,
            high_confidence=high_confidence, max_flips_listed=max_flips_listed,
            flip_report=types.Channel(type=FlipReport)))
