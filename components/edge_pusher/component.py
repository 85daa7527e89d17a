"""EdgePusher: pushes the EdgeConverter's .tflite to the edge destination, only when the cloud model
was pushed (the AtomicPusher's `pushed_model` has pushed=1) and the edge check passed.

Inputs: `model` (the Trainer's candidate: the same artifact the cloud Pusher pushed, so ML Metadata's
lineage links the cloud push and the edge push to one model and one run), `edge_model` (the
EdgeConverter's output, whose report must be about that model) and `pushed_model` (the cloud push).
Output: a graceful.EdgePush (pushed 1/0, reason, pushed_destination, pushed_version). In the
pipeline it runs inside the sign-off condition after the cloud Pusher, both in a run that waited
for its sign-off and in the release pipeline (pipeline.evaluate_and_push).
"""
from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from graceful.components.edge_converter.component import EdgeModel, EdgePush
from graceful.components.edge_pusher.executor import Executor


class EdgePusherSpec(ComponentSpec):
    PARAMETERS = {"destination": ExecutionParameter(type=str)}
    INPUTS = {
        "model": ChannelParameter(type=standard_artifacts.Model),
        "edge_model": ChannelParameter(type=EdgeModel),
        "pushed_model": ChannelParameter(type=standard_artifacts.PushedModel),
    }
    OUTPUTS = {"edge_push": ChannelParameter(type=EdgePush)}


class EdgePusher(base_component.BaseComponent):
    SPEC_CLASS = EdgePusherSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, model: types.BaseChannel, edge_model: types.BaseChannel,
                 pushed_model: types.BaseChannel, destination: str):
        super().__init__(spec=EdgePusherSpec(
            model=model, edge_model=edge_model, pushed_model=pushed_model,
            destination=destination, edge_push=types.Channel(type=EdgePush)))
