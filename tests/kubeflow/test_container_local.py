"""A first run of the compiled Kubeflow pipeline, every container task run on this machine exactly
as compiled — the TFX Kubeflow v2 entrypoint with the spec's executor class path and arguments, fed
the ExecutorInput KFP v2's driver builds (tests/kubeflow/local_launcher.py; the venv's python stands
in for the image's, and the pipeline root is a local folder, not a bucket).

Why: compiling and loading the spec proves its shape, not that its commands work. This proves the
executor class paths, the entrypoint and driver modules, and the way parameters and artifacts reach
graceful's own executors and TFX's, from BaselineGuard to the FlipEvaluator. Then the sign-off
condition on the Evaluator and Pusher, and that the Evaluator's blessing names the model the way the
compiled baseline query looks it up. The resolver tasks are MLMD queries the backend
answers; on a first run they find nothing, as here.
"""
import dataclasses
import json
import os
import shutil
import sys

import pytest

from tests.conftest import make_tiny_config
from tests.kubeflow.local_launcher import LocalLauncher, TaskFailed

pytestmark = pytest.mark.slow

FIRST_RUN = ["BaselineGuard", "ImportExampleGen", "ImportSchemaGen", "StatisticsGen",
             "ExampleValidator", "DataGate", "Trainer", "FlipEvaluator", "HumanSignOff",
             "Evaluator", "Pusher"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The compiled tiny pipeline (one span, one epoch, auto-approved sign-off; the schema read from
    a copy, since the spec's /pipeline/schemas exists only in the image) and its tasks, run."""
    from graceful.cli import prepare_data
    from graceful.kubeflow.runner import compile_pipeline
    from graceful.pipeline.configs import SCHEMA_DIR

    tmp = tmp_path_factory.mktemp("kfp-local")
    shutil.copytree(SCHEMA_DIR, tmp / "schemas")
    config = make_tiny_config(tmp)
    config = dataclasses.replace(config, schema_dir=str(tmp / "schemas"), num_spans=1,
                                 training=dataclasses.replace(config.training, epochs=1))
    prepare_data(config)
    compile_pipeline(config, str(tmp / "graceful.json"))
    launcher = LocalLauncher(str(tmp / "graceful.json"), cwd=str(tmp))
    failure = None
    for task in FIRST_RUN:
        assert launcher.condition_holds(task), f"the backend would skip {task}"
        try:
            launcher.run(task)
        except TaskFailed as error:  # asserted by the tests that need the tasks after it
            failure = error
            break
    print("\n".join(f"{name}: {done.seconds:.1f}s" for name, done in launcher.runs.items()))
    return launcher, config, failure


def _artifact(launcher, task, key):
    return launcher.runs[task].output.artifacts[key].artifacts[0]


def test_every_container_task_runs_its_compiled_command(run):
    launcher, _, _ = run
    assert launcher.container_tasks() == set(FIRST_RUN)
    assert list(launcher.runs) == FIRST_RUN[:len(launcher.runs)]
    assert "FlipEvaluator" in launcher.runs
    for name, done in launcher.runs.items():
        container = launcher.container(name)
        compiled = [*container.command, *container.args]
        ran = done.commands[-1]
        assert ran[0] == sys.executable and compiled[0] == "python"
        assert [arg for arg, was in zip(ran, compiled) if was != "{{$}}"][1:] == \
            [was for was in compiled if was != "{{$}}"][1:]
        invocation = json.loads(ran[compiled.index("{{$}}")])
        assert set(invocation["inputs"].get("parameterValues", {})) == \
            set(launcher.spec.root.dag.tasks[name].inputs.parameters)
    assert len(launcher.runs["ImportExampleGen"].commands) == 2, "driver hook, then executor"


def test_the_data_training_and_flip_gate_executors_write_their_outputs(run):
    launcher, _, _ = run
    examples = _artifact(launcher, "ImportExampleGen", "examples")
    assert examples.metadata["custom:span"] == 1.0, "the driver's span reached the artifact"
    assert {"Split-train", "Split-eval"} <= set(os.listdir(examples.uri))
    assert "DataGate" in launcher.runs, "the data checks passed"
    model = _artifact(launcher, "Trainer", "model")
    assert os.path.exists(os.path.join(model.uri, "Format-Serving", "saved_model.pb"))
    report = _artifact(launcher, "FlipEvaluator", "flip_report")
    with open(os.path.join(report.uri, "flip_report.json")) as handle:
        assert json.load(handle)["has_baseline"] is False
    flip_blessing = _artifact(launcher, "FlipEvaluator", "blessing")
    assert flip_blessing.metadata["blessed"] == 1.0
    assert os.listdir(flip_blessing.uri) == ["BLESSED"]


def test_the_sign_off_lets_the_evaluator_bless_and_the_pusher_push(run):
    """The approved sign-off meets the Evaluator's and Pusher's condition; the Evaluator's
    blessing names the model the way the compiled baseline query looks it up
    (`name="{{...metadata['current_model_id']}}"`: the Trainer model's resource name, not the
    hash the container used as its id — TFX converts it for the Evaluator's executor only); the
    Pusher serves it."""
    launcher, config, failure = run
    assert failure is None, str(failure)
    assert _artifact(launcher, "HumanSignOff", "sign_off").metadata["blessed"] == 1.0
    blessing = _artifact(launcher, "Evaluator", "blessing")
    assert blessing.metadata["blessed"] == 1.0
    assert blessing.metadata["current_model_id"] == _artifact(launcher, "Trainer", "model").name
    query = launcher.deployment.executors["baseline_model-model-resolver_executor"]
    assert "metadata['current_model_id']" in query.resolver.output_artifact_queries["model"].filter
    assert _artifact(launcher, "Pusher", "pushed_model").metadata["pushed"] == 1.0
    versions = os.listdir(config.serving_dir)
    assert len(versions) == 1 and os.path.exists(
        os.path.join(config.serving_dir, versions[0], "saved_model.pb"))


def test_the_spec_parameters_reach_the_executor(run):
    """The same DataGate task with the spec's min_examples raised above the span's size is
    refused, naming it: parameters travel as the driver sends them (parameterValues)."""
    launcher, _, _ = run
    minimum = launcher.spec.root.dag.tasks["DataGate"].inputs.parameters["min_examples"]
    kept = minimum.runtime_value.constant.number_value
    minimum.runtime_value.constant.number_value = 1_000_000
    try:
        with pytest.raises(TaskFailed, match="fewer than the minimum 1000000"):
            launcher.run("DataGate")
    finally:
        minimum.runtime_value.constant.number_value = kept
