"""Runs the container tasks of a compiled KFP v2 pipeline on this machine, one process per task, the
way the KFP backend's driver and launcher run them in pods.

Why: no cluster or image registry is reachable here, yet the compiled spec carries facts only a run
proves — executor class paths, the entrypoint module, the arguments TFX compiled, how parameters and
artifacts reach the executor. So each task's container `command` + `args` are run exactly as compiled,
with two substitutions a pod would not need:
  * the image's `python` is this venv's interpreter (the image installs the same pinned stack and
    this package, kubeflow/Dockerfile; tests/kubeflow/test_dockerfile.py checks that statically);
  * `{{$}}` becomes an ExecutorInput built as the backend's driver builds it
    (kubeflow/pipelines backend/src/v2/driver/resolve.go, `resolveInputs`): input parameters from the
    task's `runtimeValue.constant` into `parameterValues` (the driver fills nothing else), input
    artifacts from the producer task's ExecutorOutput (its artifacts' uri, name and metadata, as the
    launcher recorded them in MLMD), output artifacts with fresh URIs under the pipeline root.
The ExecutorInput is the kfp.pipeline_spec proto; the placeholders are replaced with kfp.local's
`placeholder_utils.replace_placeholders` and output artifacts made by `executor_input_utils`, the kfp
SDK's own local-execution helpers.

What this does not do: the resolver tasks (MLMD queries the backend answers itself), caching, pod
specs, and remote file systems (URIs are local folders).
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import time

from google.protobuf import json_format
from kfp.local import executor_input_utils, placeholder_utils
from kfp.pipeline_spec import pipeline_spec_pb2

PipelineSpec = pipeline_spec_pb2.PipelineSpec
ExecutorInput = pipeline_spec_pb2.ExecutorInput
ExecutorOutput = pipeline_spec_pb2.ExecutorOutput
# The one trigger condition TFX compiles for a tfx.dsl.Cond on an input artifact's property.
_CONDITION = re.compile(r"^\(inputs\.artifacts\['(?P<input>[^']+)'\]\.artifacts\[0\]\.metadata"
                        r"\['(?P<key>[^']+)'\] == (?P<value>-?[\d.]+)\)$")


class TaskFailed(RuntimeError):
    """A task's container command exited non-zero; the message holds the tail of its output."""


@dataclasses.dataclass
class TaskRun:
    name: str
    commands: list[list[str]]  # what ran, placeholders resolved (the driver hook first, if any)
    output: ExecutorOutput
    seconds: float


class LocalLauncher:
    """Runs tasks of one compiled PipelineJob (TFX's .json) in dependency order, one at a time."""

    def __init__(self, job_file: str, python: str = sys.executable, cwd: str | None = None):
        with open(job_file) as handle:
            job = json.load(handle)
        self.spec = json_format.ParseDict(job["pipelineSpec"], PipelineSpec())
        self.deployment = json_format.ParseDict(
            json_format.MessageToDict(self.spec.deployment_spec),
            pipeline_spec_pb2.PipelineDeploymentConfig())
        self.pipeline_root = job["runtimeConfig"]["gcsOutputDirectory"]
        self.python = python
        self.cwd = cwd
        self.job_name = executor_input_utils.get_local_pipeline_resource_name(
            self.spec.pipeline_info.name)
        self.runs: dict[str, TaskRun] = {}

    def _executor(self, task: str) -> pipeline_spec_pb2.PipelineDeploymentConfig.ExecutorSpec:
        component = self.spec.components[self.spec.root.dag.tasks[task].component_ref.name]
        return self.deployment.executors[component.executor_label]

    def container_tasks(self) -> set[str]:
        """The tasks a pod runs (the others, resolvers, the backend answers itself)."""
        return {task for task in self.spec.root.dag.tasks
                if self._executor(task).HasField("container")}

    def container(self, task: str) -> pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec:
        executor = self._executor(task)
        if not executor.HasField("container"):
            raise ValueError(f"task {task} is not a container task ({executor.WhichOneof('spec')}): "
                             "the backend runs it itself")
        return executor.container

    def executor_input(self, task: str) -> ExecutorInput:
        """The ExecutorInput the driver would hand `task`'s container (see the module docstring)."""
        spec = self.spec.root.dag.tasks[task]
        component = self.spec.components[spec.component_ref.name]
        result = ExecutorInput()
        for name, parameter in spec.inputs.parameters.items():
            if parameter.runtime_value.WhichOneof("value") != "constant":
                raise ValueError(
                    f"task {task} parameter {name}: the KFP v2 driver resolves only "
                    f"runtimeValue.constant (schema 2.1), not {parameter.runtime_value.WhichOneof('value')}"
                    " — compile with use_pipeline_spec_2_1")
            result.inputs.parameter_values[name].CopyFrom(parameter.runtime_value.constant)
        for name, artifact in spec.inputs.artifacts.items():
            producer = artifact.task_output_artifact
            if producer.producer_task not in self.runs:
                continue  # a resolver that found nothing (the first run has no baseline)
            produced = self.runs[producer.producer_task].output.artifacts[producer.output_artifact_key]
            for runtime_artifact in produced.artifacts:
                given = result.inputs.artifacts[name].artifacts.add()
                given.CopyFrom(runtime_artifact)
                given.type.CopyFrom(component.input_definitions.artifacts[name].artifact_type)
        task_root = executor_input_utils.construct_local_task_root(
            self.pipeline_root, self.job_name, task)
        for name, definition in component.output_definitions.artifacts.items():
            outputs = executor_input_utils.make_artifact_list(name, definition.artifact_type,
                                                              task_root)
            outputs.artifacts[0].name = f"{self.job_name}/{task}/{name}"  # unique, like MLMD's
            result.outputs.artifacts[name].CopyFrom(outputs)
        result.outputs.output_file = os.path.join(task_root, "executor_output.json")
        return result

    def condition_holds(self, task: str) -> bool:
        """Whether the backend would run `task`: its trigger condition evaluated on the
        ExecutorInput it would get (True without one)."""
        condition = self.spec.root.dag.tasks[task].trigger_policy.condition
        if not condition:
            return True
        match = _CONDITION.match(condition)
        if match is None:
            raise ValueError(f"task {task}: condition {condition!r} is not the artifact-property "
                             "comparison this launcher evaluates; extend _CONDITION")
        artifacts = self.executor_input(task).inputs.artifacts[match["input"]].artifacts
        return bool(artifacts) and artifacts[0].metadata[match["key"]] == float(match["value"])

    def run(self, task: str, env: dict | None = None) -> TaskRun:
        """Runs `task`'s driver hook (if compiled) and container command; raises TaskFailed."""
        started = time.monotonic()
        container = self.container(task)
        component = self.spec.components[self.spec.root.dag.tasks[task].component_ref.name]
        executor_input = self.executor_input(task)
        commands = []
        if container.lifecycle.HasField("pre_cache_check"):
            # A driver hook (FileBasedExampleGen's: the span to ingest). The service merges what it
            # wrote into the task's output artifacts before the executor runs (tfx/orchestration/
            # kubeflow/v2/file_based_example_gen/driver.py); its parameters the entrypoint reads
            # back from the same output file itself.
            hook = container.lifecycle.pre_cache_check
            commands.append(self._execute(task, [*hook.command, *hook.args], executor_input,
                                          component, env))
            for key, produced in self._output(executor_input).artifacts.items():
                for given, updated in zip(executor_input.outputs.artifacts[key].artifacts,
                                          produced.artifacts):
                    given.metadata.update(updated.metadata)
        commands.append(self._execute(task, [*container.command, *container.args], executor_input,
                                      component, env))
        self.runs[task] = TaskRun(task, commands, self._output(executor_input),
                                  time.monotonic() - started)
        return self.runs[task]

    def _execute(self, task: str, step: list[str], executor_input: ExecutorInput, component,
                 env: dict | None) -> list[str]:
        as_dict = executor_input_utils.executor_input_to_dict(executor_input, component)
        command = placeholder_utils.replace_placeholders(step, as_dict, self.job_name, task,
                                                         self.pipeline_root)
        if command[0] == "python":  # the image's interpreter -> this venv's (module docstring)
            command[0] = self.python
        done = subprocess.run(command, cwd=self.cwd, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).splitlines()[-40:])
            raise TaskFailed(f"task {task}: `{' '.join(step[:3])} ...` exited {done.returncode}:"
                             f"\n{tail}")
        return command

    @staticmethod
    def _output(executor_input: ExecutorInput) -> ExecutorOutput:
        with open(executor_input.outputs.output_file) as handle:
            return json_format.Parse(handle.read(), ExecutorOutput(), ignore_unknown_fields=True)
