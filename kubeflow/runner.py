"""Compiles the graceful pipeline for Kubeflow Pipelines v2 with TFX's KubeflowV2DagRunner.

The same `graceful.pipeline.pipeline.create_pipeline` as the local runner, with three Kubeflow facts applied:
  * every step runs in one image (kubeflow/Dockerfile) where this package is installed at
    IMAGE_WORKDIR, so custom executors (graceful.components.*) import by module path — never from `__main__`;
  * paths (data, pipeline root, serving) live under a shared `--home` such as gs://bucket/graceful,
    and schemas/ is read from the image's copy; the sign-off decisions, shared by the pods, the
    Slack gate and `graceful approve`, live in a MySQL/MariaDB database (--metadata mysql://...),
    unless the home is a volume every pod mounts: a SQLite file on a bucket cannot be opened;
  * the cross-run span window is off: KFP v2 compiles only Latest/LatestBlessed resolver strategies,
    so a run trains on the span it ingests (the baseline is still the last blessed model).

Writes <output>.json (TFX's PipelineJob: Vertex AI, or `aiplatform.PipelineJob(template_path=...)`) and
<output>.yaml (the bare KFP PipelineSpec: `kfp.Client().upload_pipeline`, see kubeflow/schedule.py), at
a local path or a URI (written through TFX's fileio).

The spec is KFP pipeline schema 2.1: parameters as `runtimeValue.constant` and each container given its
inputs spec (`--json_serialized_inputs_spec_args`), so the TFX entrypoint reads the ExecutorInput's
`parameterValues`, the only parameters KFP v2's open-source driver fills. TFX's default, schema 2.0,
compiles `runtimeValue.constantValue`, which that driver refuses ("not implemented"), and without the
inputs spec the entrypoint reads the legacy `parameters` field, so every executor would get no
execution properties (tests/kubeflow/test_container_local.py runs the tasks as that driver feeds them).
"""
from __future__ import annotations

import dataclasses
import os
import re
import time
import urllib.parse
from typing import Callable

from graceful import locations, mlmd_store
from graceful.pipeline.configs import SCHEMA_DIR, PipelineConfig

IMAGE_WORKDIR = "/pipeline"
DEFAULT_IMAGE = "graceful-tfx:0.1.0"
NAME_PATTERN = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")


def kubeflow_config(config: PipelineConfig) -> PipelineConfig:
    """`config` adapted to run inside the image on a cluster (see the module docstring). The demo's
    schema is read from the image's copy; a project's schema_dir is kept as given (a location the
    pods can read)."""
    if not NAME_PATTERN.match(config.pipeline_name):
        raise ValueError(f"Kubeflow pipeline names must match [a-z0-9-] (lowercase letters, digits, "
                         f"inner dashes); '{config.pipeline_name}' does not. Pass --name.")
    store = config.sign_off_store
    if locations.is_uri(store) and urllib.parse.urlsplit(store).scheme != mlmd_store.MYSQL_SCHEME:
        raise ValueError(f"The pods would keep sign-off decisions in {store}, a SQLite file on a "
                         "bucket, which no pod (nor `graceful slack-gate`) can open. Pass --metadata "
                         "mysql://user@host:port/database (README: ML Metadata on MySQL/MariaDB), "
                         "or a --home on a volume every pod mounts.")
    schema_dir = config.schema_dir
    if schema_dir == str(SCHEMA_DIR):
        schema_dir = f"{IMAGE_WORKDIR}/schemas"
    return dataclasses.replace(config, cross_run_window=False, schema_dir=schema_dir)


def compile_pipeline(config: PipelineConfig, output: str, image: str = DEFAULT_IMAGE,
                     create: Callable | None = None) -> dict:
    """Compiles the pipeline `create` builds from `config` adapted to Kubeflow (kubeflow_config):
    the main pipeline by default (graceful.pipeline.pipeline.create_pipeline), the release pipeline
    for kubeflow/release.py. Returns {"json": path, "yaml": path, "seconds": compile time}."""
    import yaml
    from tfx import v1 as tfx
    from tfx.dsl.io import fileio

    from graceful.pipeline.pipeline import create_pipeline

    started = time.perf_counter()
    stem = os.path.splitext(output)[0]
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
            default_image=image, use_pipeline_spec_2_1=True),
        output_dir=os.path.dirname(stem) or ".", output_filename=os.path.basename(stem) + ".json")
    job = runner.run((create or create_pipeline)(kubeflow_config(config)), write_out=True)
    with fileio.open(stem + ".yaml", "w") as handle:
        handle.write(yaml.safe_dump(job["pipelineSpec"], sort_keys=False))
    return {"json": stem + ".json", "yaml": stem + ".yaml", "seconds": time.perf_counter() - started}
