"""`graceful compile kubeflow`: TFX's KubeflowV2DagRunner output, loaded back with the kfp SDK, has
every component, every dependency edge, the baseline resolver and the gates' conditions, one image
for all steps, importable executors and the Beam arguments given."""
import json

import pytest
from google.protobuf import json_format

from graceful import cli

IMAGE = "registry.example.com/graceful-tfx:test"
DEPENDENCIES = {
    "ImportExampleGen": ["BaselineGuard"], "ImportSchemaGen": [],
    "StatisticsGen": ["ImportExampleGen", "ImportSchemaGen"],
    "ExampleValidator": ["ImportSchemaGen", "StatisticsGen"],
    "DataGate": ["ExampleValidator", "ImportExampleGen", "ImportSchemaGen", "StatisticsGen"],
    "baseline_model-model-blessing-resolver": [],
    "baseline_model-model-resolver": [],  # wired by its input artifact, asserted below
    "BaselineGuard": ["baseline_model-model-resolver"],
    "Trainer": ["DataGate", "ImportExampleGen", "ImportSchemaGen", "baseline_model-model-resolver"],
    "FlipEvaluator": ["ImportExampleGen", "Trainer", "baseline_model-model-resolver"],
    "HumanSignOff": ["FlipEvaluator", "Trainer"],
    "Evaluator": ["HumanSignOff", "ImportExampleGen", "Trainer", "baseline_model-model-resolver"],
    "Pusher": ["Evaluator", "HumanSignOff", "Trainer"],
}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    out = tmp_path_factory.mktemp("kfp") / "graceful.json"
    assert cli.main(["compile", "kubeflow", "--home", "gs://bucket/graceful", "--image", IMAGE,
                     "--output", str(out), "--beam-arg=--runner=DataflowRunner",
                     "--beam-arg=--project=my-project"]) == 0
    return out


def _spec(compiled):
    from kfp.pipeline_spec import pipeline_spec_pb2

    job = json.loads(compiled.read_text())
    return json_format.ParseDict(job["pipelineSpec"], pipeline_spec_pb2.PipelineSpec())


def test_kfp_loads_the_spec_as_a_pipeline(compiled):
    from kfp import components

    pipeline = components.load_component_from_file(str(compiled.with_suffix(".yaml")))
    assert pipeline.name == "graceful"
    spec = _spec(compiled)
    assert spec.pipeline_info.name == "graceful"
    assert set(spec.root.dag.tasks) == set(DEPENDENCIES)


def test_every_dependency_edge(compiled):
    tasks = _spec(compiled).root.dag.tasks
    assert {name: sorted(task.dependent_tasks) for name, task in tasks.items()} == DEPENDENCIES


def test_baseline_is_the_last_blessed_model_and_gates_guard_the_push(compiled):
    spec = _spec(compiled)
    executors = spec.deployment_spec.fields["executors"].struct_value.fields
    query = json_format.MessageToDict(executors["baseline_model-model-blessing-resolver_executor"])
    assert query["resolver"]["outputArtifactQueries"]["model_blessing"]["filter"] == (
        'schema_title="tfx.ModelBlessing" AND state=LIVE AND metadata.blessed.number_value=1')
    tasks = spec.root.dag.tasks
    blessing = tasks["baseline_model-model-resolver"].inputs.artifacts["input"].task_output_artifact
    assert (blessing.producer_task, blessing.output_artifact_key) == (
        "baseline_model-model-blessing-resolver", "model_blessing")
    trainer_base = tasks["Trainer"].inputs.artifacts["base_model"].task_output_artifact
    assert trainer_base.producer_task == "baseline_model-model-resolver"
    for gated in ("Evaluator", "Pusher"):
        assert tasks[gated].trigger_policy.condition == (
            "(inputs.artifacts['_HumanSignOff.sign_off'].artifacts[0].metadata['blessed'] == 1.0)")
    assert "HumanSignOff" not in [n for n, t in tasks.items() if t.trigger_policy.condition]
    pusher_blessing = tasks["Pusher"].inputs.artifacts["model_blessing"].task_output_artifact
    assert pusher_blessing.producer_task == "Evaluator"


def test_one_image_importable_executors_and_beam_args(compiled):
    from tfx.utils import import_utils

    executors = json_format.MessageToDict(_spec(compiled).deployment_spec)["executors"]
    containers = {name: e["container"] for name, e in executors.items() if "container" in e}
    assert {c["image"] for c in containers.values()} == {IMAGE}
    for container in containers.values():
        args = container["args"]
        if "--executor_class_path" in args:
            path = args[args.index("--executor_class_path") + 1]
            assert import_utils.import_class_by_path(path), path
            assert "__main__" not in path
    for beam_step in ("StatisticsGen", "FlipEvaluator", "Evaluator"):
        args = containers[f"{beam_step}_executor"]["args"]
        assert "--runner=DataflowRunner" in args and "--project=my-project" in args
    schema_file = _spec(compiled).root.dag.tasks["ImportSchemaGen"].inputs.parameters["schema_file"]
    assert schema_file.runtime_value.constant_value.string_value == "/pipeline/schemas/schema.pbtxt"


def test_names_kubeflow_rejects_are_refused_with_the_rule(capsys, tmp_path):
    assert cli.main(["compile", "kubeflow", "--name", "Graceful_v2",
                     "--output", str(tmp_path / "x.json")]) == 2
    assert "[a-z0-9-]" in capsys.readouterr().err


def test_a_projects_schema_is_kept_and_the_demos_is_read_from_the_image():
    from graceful.kubeflow.runner import IMAGE_WORKDIR, kubeflow_config
    from graceful.pipeline.configs import PipelineConfig

    assert kubeflow_config(PipelineConfig()).schema_dir == f"{IMAGE_WORKDIR}/schemas"
    project = PipelineConfig(schema_dir="gs://team-bucket/wine/schema", demo_data=False)
    assert kubeflow_config(project).schema_dir == "gs://team-bucket/wine/schema"


def _strings(node):
    """Every string in a JSON document."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


def test_every_location_in_the_spec_is_under_the_gs_home(compiled):
    """A gs:// home stays a URI in every path of the compiled spec (pathlib would have made it
    gs:/bucket/...), for the pipeline root, the data root and the serving directory alike."""
    text = compiled.read_text()
    locations = [s for s in _strings(json.loads(text)) if "gs:" in s]
    assert locations, "the compiled spec names no gs:// location"
    assert not [s for s in locations if "gs:/" in s.replace("gs://", "")], locations
    for where in ("gs://bucket/graceful/pipeline_root", "gs://bucket/graceful/data",
                  "gs://bucket/graceful/serving"):
        assert where in text, where
