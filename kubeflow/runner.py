"""Compiles the graceful pipeline for Kubeflow Pipelines v2 with TFX's KubeflowV2DagRunner.

The same `graceful.pipeline.pipeline.create_pipeline` as the local runner, with three Kubeflow facts applied:
  * every step runs in one image (kubeflow/Dockerfile) where this package is installed at
    IMAGE_WORKDIR, so custom executors (graceful.components.*) import by module path — never from `__main__`;
  * paths (data, pipeline root, serving) live under a shared `--home` such as gs://bucket/graceful,
    and schemas/ is read from the image's copy;
  * the cross-run span window is off: KFP v2 compiles only Latest/LatestBlessed resolver strategies,
    so a run trains on the span it ingests (the baseline is still the last blessed model).

Writes <output>.json (TFX's PipelineJob: Vertex AI, or `aiplatform.PipelineJob(template_path=...)`) and
<output>.yaml (the bare KFP PipelineSpec: `kfp.Client().upload_pipeline`, see kubeflow/schedule.py).
"""
from __future__ import annotations

import dataclasses
import json
import re
import time
from pathlib import Path

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
    schema_dir = config.schema_dir
    if schema_dir == str(SCHEMA_DIR):
        schema_dir = f"{IMAGE_WORKDIR}/schemas"
    return dataclasses.replace(config, cross_run_window=False, schema_dir=schema_dir)


def compile_pipeline(config: PipelineConfig, output: str, image: str = DEFAULT_IMAGE) -> dict:
    """Compiles; returns {"json": path, "yaml": path, "seconds": compile time}."""
    from tfx import v1 as tfx

    from graceful.pipeline.pipeline import create_pipeline

    started = time.perf_counter()
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=image),
        output_dir=str(out.parent), output_filename=out.with_suffix(".json").name)
    runner.run(create_pipeline(kubeflow_config(config)), write_out=True)
    job = json.loads(out.with_suffix(".json").read_text())
    import yaml

    out.with_suffix(".yaml").write_text(yaml.safe_dump(job["pipelineSpec"], sort_keys=False))
    return {"json": str(out.with_suffix(".json")), "yaml": str(out.with_suffix(".yaml")),
            "seconds": time.perf_counter() - started}
