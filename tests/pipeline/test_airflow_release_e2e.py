"""Deferred sign-off on Airflow 2.10 (real Airflow, `dag.test()`): the main DAG's runs end awaiting
sign-off (no worker slot waits for the person), the decision is recorded with the CLI, and the release
DAG, triggered with the request's values as its conf, pushes an approved candidate and records a
rejected one — into the same ML Metadata store the local runner uses."""
import dataclasses
import json
import os

import pytest

from graceful import cli, history, project, serving, signoff
from graceful.components.human_signoff.executor import ReleaseEvidence
from graceful.pipeline.configs import SignOffConfig
from tests.conftest import TINY_EVAL, TINY_SPAN
from tests.pipeline.test_airflow_dag import DAG_FILE, airflow_home  # noqa: F401 (Airflow DB)

pytestmark = pytest.mark.slow

# A team's project deployed on Airflow: decisions queue the release DAG (release_on="airflow").
AIRFLOW_PROJECT = """
from graceful.pipeline.configs import GateConfig, PipelineConfig, SignOffConfig, TrainingParams

CONFIG = PipelineConfig(
    home={home!r}, span_size={span}, eval_size={eval}, num_spans=1,
    training=TrainingParams(architecture="small", epochs=2),
    gate=GateConfig(min_accuracy=0.3, max_accuracy_drop=1.0, max_nfr=1.0, max_class_nfr=1.0,
                    max_relative_nfr=100.0),
    sign_off=SignOffConfig(timeout_seconds=3600, release_on="airflow"))
"""


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


def test_an_approval_queues_the_release_dag_run_once_and_that_run_pushes_the_candidate(
        tmp_path, monkeypatch, capsys):
    """SignOffConfig.release_on="airflow": `graceful approve` starts no release in its process; it
    queues one run of the release DAG through Airflow's Python API, with the request's values as
    its conf, and a second approval queues nothing."""
    from airflow.models import DagBag, DagRun

    from graceful.pipeline import release
    from graceful.pipeline.airflow_dag import build_dag, build_release_dag
    from graceful.pipeline.local_runner import own_argv

    monkeypatch.setenv(signoff.APPROVERS_ENV, "bob")
    monkeypatch.setenv(signoff.APPROVER_ENV, "bob")
    (tmp_path / project.PROJECT_FILE).write_text(AIRFLOW_PROJECT.format(
        home=str(tmp_path / "home"), span=TINY_SPAN, eval=TINY_EVAL))
    config = project.load(str(tmp_path)).config
    cli.prepare_data(config)
    with own_argv():  # the Beam executors would parse pytest's flags (-v ...) as absl flags
        states = _task_states(build_dag(config).test())
    assert states["HumanSignOff"] == "success" and states["Evaluator"] == "skipped"
    [request] = signoff.Store(config.sign_off_store).requests()

    # The deployment's Airflow knows the DAGs: its DAG processor parsed the DAG file for this
    # project and stored them in Airflow's database, where trigger_dag looks them up.
    monkeypatch.setenv("GRACEFUL_PROJECT", str(tmp_path))
    bag = DagBag(dag_folder=str(DAG_FILE), include_examples=False)
    assert bag.import_errors == {}
    bag.sync_to_db()
    dag_id = release.name(config.pipeline_name)
    before = len(DagRun.find(dag_id=dag_id))  # other tests of this session share Airflow's DB

    monkeypatch.chdir(tmp_path)  # the CLI reads ./graceful_project.py, as a team's shell would
    assert cli.main(["approve", request.request_id, "--reason", "fine"]) == cli.EXIT_PUSHED
    printed = capsys.readouterr().out
    run_id = release.airflow_run_id(request.request_id)
    assert f"queued the release of {request.request_id} on Airflow: DAG {dag_id}, run {run_id}" \
        in printed, printed
    [queued] = DagRun.find(dag_id=dag_id, run_id=run_id)
    assert queued.state == "queued" and queued.external_trigger
    evidence = ReleaseEvidence.of(request)
    assert queued.conf == {"request_id": request.request_id,
                           "candidate_model_uri": evidence.candidate_model_uri,
                           "eval_examples_uri": evidence.eval_examples_uri}
    [awaiting] = history.runs(config.metadata_uri, config.sign_off_store)
    assert awaiting.pushed is None and awaiting.decided == "approved by bob (cli)", \
        "queued, not released here"
    assert serving.versions(config.serving_dir) == []

    # Approving again (or a Slack click's `graceful release`) queues no second run.
    assert cli.main(["approve", request.request_id, "--reason", "fine"]) == cli.EXIT_NOTHING_TO_DO
    assert "was already queued on Airflow" in capsys.readouterr().out
    assert cli.main(["release", request.request_id]) == cli.EXIT_NOTHING_TO_DO
    assert len(DagRun.find(dag_id=dag_id)) == before + 1

    # An Airflow worker runs the release DAG with that run's conf: the candidate is pushed.
    with own_argv():
        states = _task_states(build_release_dag(config).test(run_conf=queued.conf))
    assert states["SignOffRelease"] == "success" and states["Pusher"] == "success"
    [run] = history.runs(config.metadata_uri)
    assert run.pushed and (run.sign_off["approver_id"], run.sign_off["reason"]) == ("bob", "fine")
    assert len(serving.versions(config.serving_dir)) == 1
