"""End to end: the real TFX pipeline (LocalDagRunner, SQLite MLMD, Beam, TFMA) on tiny real spans.

Every assertion reads ML Metadata or the serving directory, never logs.
"""
import dataclasses
import os

import pytest

from graceful.components.data_gate.component import DataAnomaliesError
from graceful import data, history
from graceful.pipeline import local_runner
from tests.conftest import run_span, with_training

pytestmark = pytest.mark.slow


def _pushed_versions(config):
    return sorted(os.listdir(config.serving_dir)) if os.path.isdir(config.serving_dir) else []


def test_second_run_is_judged_against_the_first_runs_blessed_model(tiny_config):
    run_span(tiny_config, span=1)
    first, = history.runs(tiny_config.metadata_uri)
    assert first.blessed and first.pushed and first.baseline_model_id is None
    assert first.training_spans == [1]
    assert len(_pushed_versions(tiny_config)) == 1

    # A deliberately worse model: one optimizer step on spans 1+2.
    run_span(with_training(tiny_config, max_steps=1), span=2)
    first, second = history.runs(tiny_config.metadata_uri)
    assert second.span == 2 and second.training_spans == [1, 2]
    assert second.baseline_model_id == first.model_id
    assert second.baseline_accuracy == pytest.approx(first.accuracy)
    assert second.accuracy < first.accuracy
    assert second.blessed is False and not second.pushed
    assert second.blocked_by == "flip gate" and second.failures[0].startswith("accuracy")
    assert len(_pushed_versions(tiny_config)) == 1, "a rejected model must not reach serving"
    _check_nfr_interval(second)

    # A good model on the same span: span 2 is re-ingested, yet trained on once.
    run_span(with_training(tiny_config, architecture="mlp"), span=2)
    third = history.runs(tiny_config.metadata_uri)[2]
    assert third.training_spans == [1, 2]
    assert third.baseline_model_id == first.model_id, "the rejected run-2 model is not a baseline"
    assert third.blessed and third.pushed
    assert len(_pushed_versions(tiny_config)) == 2


def _check_nfr_interval(record):
    """The NFR interval in MLMD (nfr_lower/nfr_upper, read by `graceful history`) is the flip
    report's, holds the point NFR, and equals the bootstrap recomputed with the report's seed from
    the run's per-example predictions in id order."""
    import json

    import numpy as np

    from graceful import bootstrap
    from graceful.components.flip_evaluator.executor import PREDICTIONS_DIR, read_predictions

    with open(record.flip_report) as handle:
        report = json.load(handle)
    bounds = report["intervals"]
    # MLMD's float properties come back to 6 significant digits on this runner
    assert record.nfr_interval == pytest.approx(bounds["nfr"], rel=1e-5)
    assert record.nfr == pytest.approx(report["summary"]["nfr"], rel=1e-5)
    assert bounds["nfr"][0] <= report["summary"]["nfr"] <= bounds["nfr"][1]
    batches = read_predictions(os.path.join(os.path.dirname(record.flip_report), PREDICTIONS_DIR))
    ids, labels, old, new = (np.concatenate([b[i] for b in batches]) for i in range(4))
    order = np.argsort(ids, kind="stable")
    assert bounds == bootstrap.intervals(labels[order], old[order], new[order], bounds["level"],
                                         bounds["resamples"], bounds["seed"]).to_dict()


def test_corrupt_span_stops_before_training(tiny_config):
    run_span(tiny_config, span=1)
    test = data.load("test")
    data.write_span(tiny_config.data_root, 2, test.take(0, 200), test.take(0, 100),
                    drop_feature="pixels")
    with pytest.raises(DataAnomaliesError, match="feature 'pixels'"):
        local_runner.run(dataclasses.replace(tiny_config, span=2), log=lambda _: None)
    first, second = history.runs(tiny_config.metadata_uri)
    assert second.failed_step == "DataGate"
    assert second.model_id is None and second.pushed is None
    assert len(_pushed_versions(tiny_config)) == 1


def test_planted_flips_are_blocked_listed_first_and_explained(tiny_config, monkeypatch, capsys):
    import json

    import tensorflow as tf

    from graceful import cli
    from tests.planted_flips import PLANTED_IDS_ENV

    run_span(tiny_config, span=1)
    first, = history.runs(tiny_config.metadata_uri)
    store = history.open_store(tiny_config.metadata_uri)
    [old_model] = [m for m in store.get_artifacts_by_type("Model") if m.id == first.model_id]
    test = data.load("test").take(0, tiny_config.eval_size)
    old = tf.saved_model.load(os.path.join(old_model.uri, "Format-Serving"))
    old_pred = old.signatures["serving_default"](examples=tf.constant(data.serialize(
        test.images, test.labels, test.ids)))["probabilities"].numpy().argmax(1)
    planted = [int(i) for i in test.ids[old_pred == test.labels][::25][:8]]
    assert len(planted) == 8
    monkeypatch.setenv(PLANTED_IDS_ENV, json.dumps(planted))

    strict = dataclasses.replace(tiny_config, run_fn="tests.planted_flips.run_fn",
                                 gate=dataclasses.replace(tiny_config.gate,
                                                          max_high_confidence_flips=5,
                                                          max_accuracy_drop=1.0))
    run_span(strict, span=2)
    _, second = history.runs(tiny_config.metadata_uri)
    assert second.blessed is False and not second.pushed and second.blocked_by == "flip gate"
    [failure] = second.failures
    assert failure.startswith("high-confidence flips") and failure.endswith("> max_high_confidence_flips 5")
    assert _pushed_versions(tiny_config) and len(_pushed_versions(tiny_config)) == 1

    with open(second.flip_report) as handle:
        report = json.load(handle)
    assert [f["id"] for f in report["flips"][:8]] == sorted(planted)
    assert all(f["new_pred"] == (f["label"] + 1) % 10 for f in report["flips"][:8])
    page = os.path.join(os.path.dirname(second.flip_report), "index.html")
    with open(page) as handle:
        html = handle.read()
    assert all(f'src="flip_{rank}.png" alt="#{i}:' in html for rank, i in enumerate(sorted(planted), 1))

    # No ModelBlessing anywhere names the blocked model, so no resolver can pick it as a baseline.
    store = history.open_store(tiny_config.metadata_uri)
    blessed_ids = [history.property_value(b, "current_model_id")
                   for b in store.get_artifacts_by_type("ModelBlessing")]
    assert second.model_id not in blessed_ids and first.model_id in blessed_ids

    assert cli.main(["history", "--home", tiny_config.home]) == 0
    table = capsys.readouterr().out.splitlines()
    assert "blocked by flip gate: high-confidence flips" in table[-1]

    assert cli.main(["report", "--home", tiny_config.home]) == 0
    summary = capsys.readouterr().out
    first_planted = next(f for f in report["flips"] if f["id"] == sorted(planted)[0])
    assert (f"example {first_planted['id']}: {report['class_names'][first_planted['label']]} was "
            f"right, now {report['class_names'][first_planted['new_pred']]}") in summary
