"""Deferred sign-off on Airflow 2.10 (real Airflow, `dag.test()`): the main DAG's runs end awaiting
sign-off (no worker slot waits for the person), the decision is recorded with the CLI, and the release
DAG, triggered with the request's values as its conf, pushes an approved candidate and records a
rejected one — into the same ML Metadata store the local runner uses."""
import dataclasses
import json
import os

import pytest

from graceful import cli, history, serving, signoff
from graceful.pipeline.configs import SignOffConfig
from tests.pipeline.test_airflow_dag import airflow_home  # noqa: F401 (module-scoped Airflow DB)

pytestmark = pytest.mark.slow


def _trigger_conf(printed: str) -> dict:
    """The conf `graceful approve|reject --no-release` prints for `airflow dags trigger`."""
    return json.loads(printed.split("--conf '", 1)[1].split("'", 1)[0])


def _task_states(dag_run) -> dict:
    return {ti.task_id: ti.state for ti in dag_run.get_task_instances()}


def test_main_dag_awaits_and_the_release_dag_pushes_the_approved_and_records_the_rejected(
        tiny_config, monkeypatch, capsys):
    from graceful.pipeline.airflow_dag import build_dag, build_release_dag
    from graceful.pipeline.local_runner import own_argv

    monkeypatch.setenv(signoff.APPROVERS_ENV, "bob")
    monkeypatch.setenv(signoff.APPROVER_ENV, "bob")
    config = dataclasses.replace(tiny_config, num_spans=1,
                                 sign_off=SignOffConfig(timeout_seconds=3600))
    cli.prepare_data(config)
    with own_argv():  # the Beam executors would parse pytest's flags (-v ...) as absl flags
        for _ in range(2):
            states = _task_states(build_dag(config).test())
            assert states["HumanSignOff"] == "success" and states["Evaluator"] == "skipped"
    assert [r.status.startswith("awaiting sign-off until") for r in
            history.runs(config.metadata_uri)] == [True, True]
    first, second = signoff.Store(config.sign_off_store).requests()
    assert first.evidence["pipeline"] == config.pipeline_name

    home = ["--home", config.home]
    assert cli.main(["reject", first.request_id, "--reason", "shirts regress", "--no-release",
                     *home]) == 0
    rejected_conf = _trigger_conf(capsys.readouterr().out)
    assert cli.main(["approve", second.request_id, "--reason", "fine", "--no-release", *home]) == 0
    approved_conf = _trigger_conf(capsys.readouterr().out)
    assert approved_conf["request_id"] == second.request_id
    assert history.runs(config.metadata_uri)[1].pushed is None, "recorded only: nothing released"

    with own_argv():
        # One DAG object per run, as Airflow's workers parse the file per task: TFX's Airflow
        # runner writes a run's rendered conf into the component it shares across runs.
        states = _task_states(build_release_dag(config).test(run_conf=rejected_conf))
        assert states["SignOffRelease"] == "success" and states["Pusher"] == "skipped"
        states = _task_states(build_release_dag(config).test(run_conf=approved_conf))
        assert states["Pusher"] == "success"

    rejected, approved = history.runs(config.metadata_uri)  # releases folded into their runs
    assert rejected.blocked_by == "sign-off" and not rejected.pushed
    assert (rejected.sign_off["decision"], rejected.sign_off["reason"]) == ("reject",
                                                                            "shirts regress")
    assert approved.pushed and approved.sign_off["approver_id"] == "bob"
    assert len(serving.versions(config.serving_dir)) == 1
    store = history.open_store(config.metadata_uri)
    [pushed] = [p for p in store.get_artifacts_by_type("PushedModel")
                if history.property_value(p, "pushed") == 1]
    served = os.path.join(config.serving_dir, str(serving.versions(config.serving_dir)[0]))
    assert history.property_value(pushed, "pushed_destination") == served
    assert len(store.get_artifacts_by_type("Model")) == 2, "the release imported, not re-registered"
