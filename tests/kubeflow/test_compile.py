"""`graceful compile kubeflow`: TFX's KubeflowV2DagRunner output, loaded back with the kfp SDK, has
every component, every dependency edge, the baseline resolver and the gates' conditions, one image
for all steps, importable executors and artifact types, parameters in the form KFP v2's driver
resolves, the Beam arguments given, and every location under the home (gs:// or s3://)."""
import json
import re

import pytest
from google.protobuf import json_format

from graceful import cli
from tests.kubeflow.conftest import IMAGE, STORE, compile_for, spec_of, strings_in

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
    "HumanSignOff": ["FlipEvaluator", "ImportExampleGen", "Trainer"],  # examples: the release's
    "Evaluator": ["HumanSignOff", "ImportExampleGen", "Trainer", "baseline_model-model-resolver"],
    "Pusher": ["Evaluator", "HumanSignOff", "Trainer"],
}


def test_kfp_loads_the_spec_as_a_pipeline(compiled):
    from kfp import components

    pipeline = components.load_component_from_file(str(compiled.with_suffix(".yaml")))
    assert pipeline.name == "graceful"
    spec = spec_of(compiled)
    assert spec.pipeline_info.name == "graceful"
    assert set(spec.root.dag.tasks) == set(DEPENDENCIES)


def test_every_dependency_edge(compiled):
    tasks = spec_of(compiled).root.dag.tasks
    assert {name: sorted(task.dependent_tasks) for name, task in tasks.items()} == DEPENDENCIES


def test_baseline_is_the_last_blessed_model_and_gates_guard_the_push(compiled):
    spec = spec_of(compiled)
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

    executors = json_format.MessageToDict(spec_of(compiled).deployment_spec)["executors"]
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
    schema_file = spec_of(compiled).root.dag.tasks["ImportSchemaGen"].inputs.parameters["schema_file"]
    assert schema_file.runtime_value.constant.string_value == "/pipeline/schemas/schema.pbtxt"


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


def test_parameters_are_what_kfp_v2s_driver_resolves_and_containers_get_their_types(compiled):
    """Schema 2.1: every parameter a `runtimeValue.constant` (KFP v2's driver resolves no other
    kind), and every container told its parameters' types, so that the TFX entrypoint reads them
    from `parameterValues` (without it, it reads the legacy field that driver leaves empty)."""
    spec = spec_of(compiled)
    assert spec.schema_version == "2.1.0"
    for name, task in spec.root.dag.tasks.items():
        for parameter, value in task.inputs.parameters.items():
            assert value.runtime_value.WhichOneof("value") == "constant", (name, parameter)
    executors = json_format.MessageToDict(spec.deployment_spec)["executors"]
    for name, executor in executors.items():
        if "container" in executor:
            assert "--json_serialized_inputs_spec_args" in executor["container"]["args"], name


def test_every_artifact_type_is_rebuilt_by_the_container_entrypoint(compiled):
    """The entrypoint imports a custom type's name as a class path: graceful.FlipReport must import
    (graceful/__init__.py), or the FlipEvaluator, the sign-off, the Evaluator and the Pusher fail
    on the cluster before their executors start."""
    from kfp.pipeline_spec import pipeline_spec_pb2
    from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_entrypoint_utils

    spec = spec_of(compiled)
    titles = set()
    for component in spec.components.values():
        for definitions in (component.input_definitions, component.output_definitions):
            for artifact in definitions.artifacts.values():
                given = pipeline_spec_pb2.ArtifactList(artifacts=[pipeline_spec_pb2.RuntimeArtifact(
                    type=artifact.artifact_type, uri="gs://bucket/graceful/pipeline_root/x")])
                rebuilt = kubeflow_v2_entrypoint_utils.parse_raw_artifact_dict({"a": given})["a"][0]
                title = re.search(r"title: (\S+)", artifact.artifact_type.instance_schema).group(1)
                assert rebuilt.type_name == title.removeprefix("tfx.")  # TFX's own: tfx.<Type>
                titles.add(title)
    assert {"graceful.FlipReport", "graceful.FlipBlessing", "graceful.SignOff"} <= titles


@pytest.mark.parametrize("home", ["gs://bucket/graceful", "s3://bucket/graceful"])
def test_every_location_in_the_spec_is_a_uri_under_the_home(tmp_path, home):
    """A URI home stays a URI in every location of the compiled spec (pathlib would have made it
    gs:/bucket/...): every URI in it is under the home but the sign-off database's, and the only
    local paths are the image's own (/pipeline/schemas, which tests/kubeflow/test_dockerfile.py
    finds copied into the image)."""
    from graceful.kubeflow.runner import IMAGE_WORKDIR

    out = tmp_path / "graceful.json"
    compile_for(home, out)
    leaves = list(strings_in(json.loads(out.read_text())))
    uris = [uri for leaf in leaves for uri in re.findall(r"[a-z0-9]+:/+[^\s\"',]*", leaf)]
    assert [uri for uri in uris if not uri.startswith(home + "/") and uri != STORE] == []
    for where in ("pipeline_root", "data", "serving"):
        assert f"{home}/{where}" in uris, where
    store = spec_of(out).root.dag.tasks["HumanSignOff"].inputs.parameters["store_path"]
    assert store.runtime_value.constant.string_value == STORE
    local = [leaf for leaf in leaves if leaf.startswith("/")]
    assert local and [path for path in local if not path.startswith(IMAGE_WORKDIR + "/")] == []


def test_a_sign_off_store_no_pod_can_open_is_refused(capsys, tmp_path):
    assert cli.main(["compile", "kubeflow", "--home", "gs://bucket/graceful",
                     "--output", str(tmp_path / "x.json")]) == cli.EXIT_USAGE
    error = capsys.readouterr().err
    assert "gs://bucket/graceful/sign_off.sqlite" in error and "--metadata mysql://" in error
    assert not (tmp_path / "x.json").exists()
