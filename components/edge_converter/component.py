"""EdgeConverter: the candidate as a TensorFlow Lite model for devices, and its negative flips.

Inputs: the Trainer's candidate `model` (a Keras model without a TFX Transform graph), the eval
`examples` (its `split`), the `training_examples` (the training window: int8 calibrates on their
train split) and, optionally, `previous_edge`: the last EdgePush that pushed (resolved from ML
Metadata by components/edge_pusher/strategy.py). Output:
  edge_model  a graceful.EdgeModel artifact: `model.tflite` and `edge_report.json` (size,
              conversion time, the edge model's flips vs the cloud candidate — NFR overall and per
              class, confident flips, the worst listed — and vs the previously pushed edge model,
              and the verdict of the policy's edge limits, graceful.gate.edge_failures); custom
              properties `blessed`, `failures`, `edge_nfr`, `size_bytes`, `quantization`,
              `model_uri`.
The verdict gates the edge push only (components/edge_pusher): an edge model that flips too much
never blocks the cloud model.
"""
from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from graceful.components.edge_converter.executor import Executor
from graceful.components.report_settings import (SETTINGS_PARAMETERS, ReportSettings,
                                                 settings_properties)


class EdgeModel(types.Artifact):
    """A TensorFlow Lite model converted from a candidate, with its edge flip report and verdict."""

    TYPE_NAME = "graceful.EdgeModel"


class EdgePush(types.Artifact):
    """An edge push (custom properties pushed, pushed_destination, pushed_version, reason)."""

    TYPE_NAME = "graceful.EdgePush"


class EdgeConverterSpec(ComponentSpec):
    PARAMETERS = {
        "quantization": ExecutionParameter(type=str),            # "float" or "int8"
        "representative_examples": ExecutionParameter(type=int),
        "split": ExecutionParameter(type=str),
        **SETTINGS_PARAMETERS,
    }
    INPUTS = {
        "model": ChannelParameter(type=standard_artifacts.Model),
        "examples": ChannelParameter(type=standard_artifacts.Examples),
        "training_examples": ChannelParameter(type=standard_artifacts.Examples),
        "previous_edge": ChannelParameter(type=EdgePush, optional=True),
    }
    OUTPUTS = {"edge_model": ChannelParameter(type=EdgeModel)}


class EdgeConverter(base_component.BaseComponent):
    SPEC_CLASS = EdgeConverterSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, model: types.BaseChannel, examples: types.BaseChannel,
                 training_examples: types.BaseChannel, settings: ReportSettings,
                 quantization: str = "float", representative_examples: int = 200,
                 previous_edge: types.BaseChannel | None = None, split: str = "eval"):
        super().__init__(spec=EdgeConverterSpec(
            model=model, examples=examples, training_examples=training_examples,
            previous_edge=previous_edge, quantization=quantization,
            representative_examples=representative_examples, split=split,
            **settings_properties(settings),
            edge_model=types.Channel(type=EdgeModel)))
