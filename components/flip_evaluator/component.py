"""FlipEvaluator: which examples did the candidate break that the last blessed model got right?

Inputs: the examples (its `split`, default eval), the candidate model and the baseline model resolved
from MLMD (optional: on the first run there is none and the report says so), both read through the
settings' model contract (their `signature` on serialized tf.Examples, the class scores under
`output_key`: multiclass probabilities or logits [N, K], binary [N, 1] by threshold) and the
examples through its data contract (label, optional id, slice and image features); optionally
the Trainer's `model_run`, whose review queue (graceful.models.review: the eval examples ranked by
variance of gradients) the report lists with the candidate's predictions. Outputs:
  flip_report  a FlipReport artifact: `flip_report.json` (flip metrics overall, per class and per
               value of each of the data contract's `slice_features`, the flip matrix, the
               flipped examples worst first) and `index.html` with PNG plots and, when the data
               has an image feature, a gallery of the worst flipped images; headline numbers as
               custom properties; `predictions/`, every example's id, label, both predictions
               and the candidate's probabilities (.npz per eval file).
  blessing     a FlipBlessing: the verdict of the settings' policy (graceful.gate.GateConfig), with `blessed`,
               `current_model_id` and readable `failures`.
Golden examples (GateConfig.golden_ids / golden_ids_file, graceful.golden) are checked first: the
report's "golden" section and the verdict's first lines. With `history_models` (the last N pushed
models, components/release_history) the report's "history" section holds the candidate's flips
against each of them (graceful.releases). With the edge branch on, `edge_model` (the EdgeConverter's EdgeModel) adds the edge model's numbers
and verdict to the report (its "edge" key and a section of the page); that verdict gates the edge
push only, never this gate.
FlipBlessing is deliberately *not* a ModelBlessing: TFX's LatestBlessedModelStrategy looks only at
ModelBlessings, and the pipeline lets the Evaluator (the one ModelBlessing producer) run only when
this gate passed, so a model the flip gate rejected can never become a baseline.
"""
from tfx import types
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from graceful.components.edge_converter.component import EdgeModel
from graceful.components.flip_evaluator.executor import (EDGE_MODEL_KEY, HISTORY_MODELS_KEY,
                                                         MODEL_RUN_KEY, Executor)
from graceful.components.report_settings import (SETTINGS_PARAMETERS, ReportSettings,
                                                 settings_properties)


class FlipReport(types.Artifact):
    """Negative-flip evidence of a candidate model against its baseline."""

    TYPE_NAME = "graceful.FlipReport"


class FlipBlessing(types.Artifact):
    """The flip gate's verdict on a candidate model (custom properties blessed, current_model_id)."""

    TYPE_NAME = "graceful.FlipBlessing"


class FlipEvaluatorSpec(ComponentSpec):
    PARAMETERS = {"split": ExecutionParameter(type=str), **SETTINGS_PARAMETERS}
    INPUTS = {
        "examples": ChannelParameter(type=standard_artifacts.Examples),
        "model": ChannelParameter(type=standard_artifacts.Model),
        "baseline_model": ChannelParameter(type=standard_artifacts.Model, optional=True),
        EDGE_MODEL_KEY: ChannelParameter(type=EdgeModel, optional=True),  # edge branch on
        # the Trainer's model_run: its review queue (graceful.models.review) joins the report
        MODEL_RUN_KEY: ChannelParameter(type=standard_artifacts.ModelRun, optional=True),
        # the last N pushed models (components/release_history): flips against earlier releases
        HISTORY_MODELS_KEY: ChannelParameter(type=standard_artifacts.Model, optional=True),
    }
    OUTPUTS = {"flip_report": ChannelParameter(type=FlipReport),
               "blessing": ChannelParameter(type=FlipBlessing)}


class FlipEvaluator(base_beam_component.BaseBeamComponent):
    SPEC_CLASS = FlipEvaluatorSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

    def __init__(self, examples: types.BaseChannel, model: types.BaseChannel,
                 baseline_model: types.BaseChannel, settings: ReportSettings,
                 edge_model: types.BaseChannel | None = None,
                 split: str = "eval", model_run: types.BaseChannel | None = None,
                 history_models: types.BaseChannel | None = None):
        super().__init__(spec=FlipEvaluatorSpec(
            examples=examples, model=model, baseline_model=baseline_model, split=split,
            edge_model=edge_model,
            model_run=model_run, history_models=history_models,
            **settings_properties(settings),
            flip_report=types.Channel(type=FlipReport),
            blessing=types.Channel(type=FlipBlessing)))
