"""The release pipeline compiled for Kubeflow Pipelines v2 (kubeflow/release.py), loaded back with the
kfp SDK: the request's values are the spec's pipeline parameters and reach the steps that need them,
the candidate and the examples are imported (reused, not re-registered), and the Evaluator and Pusher
run only on the release's SignOff. Running it needs a cluster (not available here)."""
import json

import pytest
from google.protobuf import json_format

from graceful.pipeline import release

RELEASE_TASKS = {"candidate_model", "eval_examples", "baseline_model-model-resolver",
                 "baseline_model-model-blessing-resolver", "SignOffRelease", "Evaluator", "Pusher"}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    from graceful.kubeflow.release import main

    out = tmp_path_factory.mktemp("kfp") / "graceful_release.json"
    main(["--home", "gs://bucket/graceful", "--metadata", "mysql://graceful@db.example.com:3306/ml",
          "--image", "registry.example.com/graceful-tfx:test", "--output", str(out)])
    return out


def _spec(compiled):
    from kfp.pipeline_spec import pipeline_spec_pb2

    job = json.loads(compiled.read_text())
    return json_format.ParseDict(job["pipelineSpec"], pipeline_spec_pb2.PipelineSpec())


def test_kfp_loads_it_with_the_requests_values_as_its_parameters(compiled):
    from kfp import components

    pipeline = components.load_component_from_file(str(compiled.with_suffix(".yaml")))
    assert pipeline.name == "graceful", "the main pipeline's name: the baseline is resolved in it"
    assert set(pipeline.component_spec.inputs) == set(release.PARAMETERS)
    assert all(spec.type == "String" for spec in pipeline.component_spec.inputs.values())
    spec = _spec(compiled)
    assert set(spec.root.dag.tasks) == RELEASE_TASKS


def test_each_value_reaches_its_step_and_the_importers_reuse_artifacts(compiled):
    spec = _spec(compiled)
    tasks = spec.root.dag.tasks
    for task, parameter in (("candidate_model", release.CANDIDATE_MODEL_URI),
                            ("eval_examples", release.EVAL_EXAMPLES_URI)):
        uri = tasks[task].inputs.parameters["artifact_uri"]
        assert uri.component_input_parameter == parameter
        importer = spec.deployment_spec.fields["executors"].struct_value.fields[
            f"{task}_executor"].struct_value.fields["importer"].struct_value
        assert importer.fields["artifactUri"].struct_value.fields["runtimeParameter"].string_value \
            == "artifact_uri"
        assert not importer.fields["reimport"].bool_value, "reimport=False: the same artifact"
        assert tasks[task].inputs.parameters["reimport"].runtime_value.constant.number_value == 0
    sign_off = tasks["SignOffRelease"].inputs
    assert sign_off.parameters["request_id"].component_input_parameter == release.REQUEST_ID
    assert sign_off.artifacts["model"].task_output_artifact.producer_task == "candidate_model"
    assert sign_off.artifacts["baseline_model"].task_output_artifact.producer_task == \
        "baseline_model-model-resolver"


def test_evaluator_and_pusher_run_only_on_the_releases_blessed_sign_off(compiled):
    tasks = _spec(compiled).root.dag.tasks
    for name in ("Evaluator", "Pusher"):
        assert tasks[name].trigger_policy.condition == (
            "(inputs.artifacts['_SignOffRelease.sign_off'].artifacts[0]"
            ".metadata['blessed'] == 1.0)"), name
    evaluator = tasks["Evaluator"].inputs.artifacts
    assert evaluator["model"].task_output_artifact.producer_task == "candidate_model"
    assert evaluator["examples"].task_output_artifact.producer_task == "eval_examples"
    assert evaluator["baseline_model"].task_output_artifact.producer_task == \
        "baseline_model-model-resolver"
