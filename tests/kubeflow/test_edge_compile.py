"""The edge branch compiled for Kubeflow Pipelines v2: the main pipeline with EdgeConverter and
EdgePusher (no previous-edge resolver: v2 compiles no custom resolver strategy), and the release
pipeline taking the edge model's URI as a pipeline parameter that reaches its importer, whose
EdgeModel feeds the EdgePusher after the cloud Pusher."""
import dataclasses
import json

from google.protobuf import json_format

from graceful.kubeflow import release as kubeflow_release
from graceful.kubeflow import runner
from graceful.pipeline import release
from graceful.pipeline.configs import EdgeConfig, PipelineConfig
from tests.kubeflow.conftest import IMAGE, STORE


def _config():
    return PipelineConfig(home="gs://bucket/graceful", metadata=STORE,
                          edge=EdgeConfig(enabled=True, quantization="int8"))


def _spec(path):
    from kfp.pipeline_spec import pipeline_spec_pb2

    job = json.loads(open(path).read())
    return json_format.ParseDict(job["pipelineSpec"], pipeline_spec_pb2.PipelineSpec())


def _producers(task):
    return {a.task_output_artifact.producer_task for a in task.inputs.artifacts.values()}


def test_the_main_pipeline_converts_checks_and_pushes_the_edge_model(tmp_path):
    out = tmp_path / "graceful.json"
    runner.compile_pipeline(_config(), str(out), IMAGE)
    tasks = _spec(out).root.dag.tasks
    assert "previous_edge_model" not in str(list(tasks)), "v2 compiles no custom resolver"
    assert _producers(tasks["EdgeConverter"]) == {"Trainer", "ImportExampleGen"}
    assert "EdgeConverter" in _producers(tasks["FlipEvaluator"])
    assert "EdgeConverter" in _producers(tasks["HumanSignOff"])
    # HumanSignOff: the SignOff its condition reads
    assert _producers(tasks["EdgePusher"]) == {"Trainer", "EdgeConverter", "Pusher", "HumanSignOff"}
    assert tasks["EdgeConverter"].inputs.parameters["quantization"].runtime_value.constant \
        .string_value == "int8"


def test_the_release_takes_the_edge_model_uri_and_pushes_it_after_the_cloud_model(tmp_path):
    out = tmp_path / "graceful_release.json"
    kubeflow_release.compile_release(_config(), str(out), IMAGE)
    spec = _spec(out)
    assert set(spec.root.input_definitions.parameters) == {*release.PARAMETERS,
                                                           release.EDGE_MODEL_URI}
    tasks = spec.root.dag.tasks
    assert tasks["edge_model"].inputs.parameters["artifact_uri"].component_input_parameter == \
        release.EDGE_MODEL_URI
    assert _producers(tasks["EdgePusher"]) == {"candidate_model", "edge_model", "Pusher",
                                               "SignOffRelease"}


def test_without_the_edge_branch_the_release_has_no_edge_parameter(tmp_path):
    out = tmp_path / "graceful_release.json"
    config = dataclasses.replace(_config(), edge=EdgeConfig())
    kubeflow_release.compile_release(config, str(out), IMAGE)
    assert set(_spec(out).root.input_definitions.parameters) == set(release.PARAMETERS)
