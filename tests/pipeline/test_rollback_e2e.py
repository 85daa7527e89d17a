"""Rollback end to end: real LocalDagRunner runs on tiny Fashion-MNIST spans push model A, then
model B; `graceful rollback` serves A again; the next run's baseline (the model it distills from and
is judged against) is A, not B. Every assertion reads ML Metadata, the serving directory or the
CLI's output.
"""
import dataclasses

import pytest
from tfx.utils import path_utils

from graceful import cli, history, serving, signoff
from graceful.pipeline.configs import GateConfig
from tests.conftest import make_tiny_config, run_span

pytestmark = pytest.mark.slow

# Lax enough that every tiny run is blessed and pushed: the test is about what happens after.
LAX = GateConfig(min_accuracy=0.0, max_accuracy_drop=1.0, max_nfr=1.0, max_relative_nfr=1e9,
                 max_class_nfr=1.0, max_slice_nfr=1.0, max_high_confidence_flips=10**6)


def _served(config) -> str:
    return serving.fingerprint(serving.served_version_dir(config.serving_dir))


def _fingerprint(store, model_id: int) -> str:
    [model] = store.get_artifacts_by_id([model_id])
    return serving.fingerprint(path_utils.serving_model_path(model.uri))


def _cli(capsys, *args) -> str:
    capsys.readouterr()
    assert cli.main(list(args)) == 0
    return capsys.readouterr().out


def test_after_a_rollback_the_next_run_is_judged_and_distilled_against_the_restored_model(
        tmp_path, monkeypatch, capsys):
    config = dataclasses.replace(make_tiny_config(tmp_path), gate=LAX)
    run_span(config, 1)
    run_span(config, 2)
    first, second = history.runs(config.metadata_uri)
    assert first.pushed and second.pushed and second.baseline_model_id == first.model_id
    a, b = first.model_id, second.model_id
    store = history.open_store(config.metadata_uri)
    assert _served(config) == _fingerprint(store, b) != _fingerprint(store, a)

    monkeypatch.chdir(tmp_path)  # no project file: the CLI's demo layout under --home
    monkeypatch.setenv(signoff.APPROVERS_ENV, "alice")
    monkeypatch.setenv(signoff.APPROVER_ENV, "alice")
    home = ["--home", config.home]
    _cli(capsys, "rollback", "--reason", "model B misreads sandals", *home)
    assert _served(config) == _fingerprint(store, a)

    said = f"rollback to model {a} by alice: model B misreads sandals"
    table = _cli(capsys, "history", *home)
    assert said in table and "pushed, rolled back" in table
    assert f"served again by {said}" in _cli(capsys, "lineage", *home), "the served model: A"
    assert f"withdrawn by {said}" in _cli(capsys, "lineage", str(b), *home)

    run_span(config, 3)
    third = history.runs(config.metadata_uri)[2]
    assert third.failed_step is None, "BaselineGuard found the resolved baseline served"
    assert third.baseline_model_id == a, "judged against the restored model, not the withdrawn B"
    assert third.reference_model_id == a and third.loss != "plain", "distilled from A"
    assert third.pushed and _served(config) == _fingerprint(store, third.model_id)
