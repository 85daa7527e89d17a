"""The compiled Kubeflow spec the README's command writes, shared by the Kubeflow tests."""
import json

import pytest
from google.protobuf import json_format

from graceful import cli

IMAGE = "registry.example.com/graceful-tfx:test"
# The sign-off store the pods share (no server is contacted when compiling).
STORE = "mysql://graceful@db.example.com:3306/graceful"
BEAM_ARGS = ["--beam-arg=--runner=DataflowRunner", "--beam-arg=--project=my-project"]


def compile_for(home: str, output, *flags: str) -> None:
    """`graceful compile kubeflow --home HOME` as the README writes it (image, sign-off database,
    Beam flags), plus `flags`."""
    assert cli.main(["compile", "kubeflow", "--home", home, "--image", IMAGE, "--metadata", STORE,
                     "--output", str(output), *BEAM_ARGS, *flags]) == 0


def spec_of(job_file):
    """The PipelineSpec proto of a compiled PipelineJob (.json)."""
    from kfp.pipeline_spec import pipeline_spec_pb2

    job = json.loads(job_file.read_text())
    return json_format.ParseDict(job["pipelineSpec"], pipeline_spec_pb2.PipelineSpec())


def strings_in(node):
    """Every string in a JSON document, JSON documents inside strings opened too (the Pusher's
    push_destination, the containers' inputs specs)."""
    if isinstance(node, str):
        try:
            inner = json.loads(node) if node[:1] in "{[" else None
        except ValueError:
            inner = None
        if isinstance(inner, (dict, list)):
            yield from strings_in(inner)
        else:
            yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from strings_in(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings_in(value)


@pytest.fixture(scope="session")
def compiled(tmp_path_factory):
    out = tmp_path_factory.mktemp("kfp") / "graceful.json"
    compile_for("gs://bucket/graceful", out)
    return out


def modules_named_in(spec) -> set[str]:
    """The Python modules a compiled spec makes its containers import: each container's (and
    driver hook's) `python -m` module, its executor class's module, and the modules its
    parameters name for TFX to import at run time (the Trainer's `run_fn`, the Evaluator's metric
    modules in its EvalConfig)."""
    from kfp.pipeline_spec import pipeline_spec_pb2

    deployment = json_format.ParseDict(json_format.MessageToDict(spec.deployment_spec),
                                       pipeline_spec_pb2.PipelineDeploymentConfig())
    modules = set()
    for executor in deployment.executors.values():
        container = executor.container
        for command in (list(container.command), list(container.lifecycle.pre_cache_check.command)):
            if "-m" in command:
                modules.add(command[command.index("-m") + 1])
        args = list(container.args)
        if "--executor_class_path" in args:
            modules.add(args[args.index("--executor_class_path") + 1].rsplit(".", 1)[0])
    for task in spec.root.dag.tasks.values():
        parameters = {name: value.runtime_value.constant.string_value
                      for name, value in task.inputs.parameters.items()}
        if parameters.get("run_fn"):
            modules.add(parameters["run_fn"].rsplit(".", 1)[0])
        if parameters.get("eval_config"):
            for metrics_spec in json.loads(parameters["eval_config"]).get("metrics_specs", []):
                modules.update(m["module"] for m in metrics_spec.get("metrics", []) if "module" in m)
    return modules
