"""End to end: the real TFX pipeline (LocalDagRunner, SQLite MLMD, Beam, TFMA) on tiny real spans.

Every assertion reads ML Metadata or the serving directory, never logs.
"""
import dataclasses
import os

import pytest

from components.data_gate.component import DataAnomaliesError
from graceful import data, history
from pipeline import local_runner
from tests.conftest import run_span, with_training

pytestmark = pytest.mark.slow


def _pushed_versions(config):
    return sorted(os.listdir(config.serving_dir)) if os.path.isdir(config.serving_dir) else []


def test_second_run_is_judged_against_the_first_runs_blessed_model(tiny_config):
    run_span(tiny_config, span=1)
    first, = history.runs(tiny_config.metadata_path)
    assert first.blessed and first.pushed and first.baseline_model_id is None
    assert first.training_spans == [1]
    assert len(_pushed_versions(tiny_config)) == 1

    # A deliberately worse model: one optimizer step on spans 1+2.
    run_span(with_training(tiny_config, max_steps=1), span=2)
    first, second = history.runs(tiny_config.metadata_path)
    assert second.span == 2 and second.training_spans == [1, 2]
    assert second.baseline_model_id == first.model_id
    assert second.baseline_accuracy == pytest.approx(first.accuracy)
    assert second.accuracy < first.accuracy
    assert second.blessed is False and second.pushed is False
    assert len(_pushed_versions(tiny_config)) == 1, "a rejected model must not reach serving"

    # A good model on the same span: span 2 is re-ingested, yet trained on once.
    run_span(with_training(tiny_config, architecture="mlp"), span=2)
    third = history.runs(tiny_config.metadata_path)[2]
    assert third.training_spans == [1, 2]
    assert third.baseline_model_id == first.model_id, "the rejected run-2 model is not a baseline"
    assert third.blessed and third.pushed
    assert len(_pushed_versions(tiny_config)) == 2


def test_corrupt_span_stops_before_training(tiny_config):
    run_span(tiny_config, span=1)
    test = data.load("test")
    data.write_span(tiny_config.data_root, 2, test.take(0, 200), test.take(0, 100),
                    drop_feature="pixels")
    with pytest.raises(DataAnomaliesError, match="feature 'pixels'"):
        local_runner.run(dataclasses.replace(tiny_config, span=2), log=lambda _: None)
    first, second = history.runs(tiny_config.metadata_path)
    assert second.failed_step == "DataGate"
    assert second.model_id is None and second.pushed is None
    assert len(_pushed_versions(tiny_config)) == 1
