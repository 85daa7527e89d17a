"""The Beam steps (StatisticsGen, ExampleValidator, FlipEvaluator, Evaluator) take the pipeline's
beam_pipeline_args: here Beam's DirectRunner in multi_processing mode with 2 worker processes, the
local stand-in for a distributed runner (Dataflow/Flink/Spark take the same args route).
With Beam arguments TFX builds a throwaway TFX package per Beam step; none may outlive the run."""
import dataclasses
import json
import tempfile
from pathlib import Path

import pytest

from graceful import history
from tests.conftest import run_span

pytestmark = pytest.mark.slow
MULTI = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]


def test_pipeline_runs_its_beam_steps_on_two_worker_processes(tiny_config):
    config = dataclasses.replace(tiny_config, beam_pipeline_args=MULTI)
    temp_before = set(Path(tempfile.gettempdir()).iterdir())
    run_span(config, span=1)
    leftovers = set(Path(tempfile.gettempdir()).iterdir()) - temp_before
    assert [p for p in leftovers if (p / "build" / "tfx").exists()] == []
    assert not (Path(config.home) / "scratch").exists()
    [run] = history.runs(config.metadata_uri)
    assert run.pushed and run.failed_step is None
    with open(run.flip_report) as handle:
        report = json.load(handle)
    assert report["summary"]["examples"] == tiny_config.eval_size
    assert report["summary"]["new_accuracy"] == pytest.approx(run.accuracy)  # Beam pass == TFMA
