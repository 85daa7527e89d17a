"""The Airflow DAG with real Airflow 2.10 (SQLite Airflow DB): it parses in a DagBag, and `dag.test()`
runs the TFX pipeline into the same ML Metadata store the local runner uses — including the sign-off
guard that TFX's Airflow runner would otherwise ignore."""
import dataclasses
import os
from pathlib import Path

import pytest

from graceful import history
from graceful.pipeline.configs import SignOffConfig
from tests.conftest import run_span

pytestmark = pytest.mark.slow
DAG_FILE = Path(__file__).resolve().parents[2] / "pipeline" / "airflow_dag.py"
DAGBAG_IMPORT_TIMEOUT = 300  # seconds; Airflow's default is 30 (see airflow_home)


@pytest.fixture(scope="module", autouse=True)
def airflow_home(tmp_path_factory):
    """A throwaway Airflow home with an initialised SQLite DB (env before airflow is imported)."""
    home = str(tmp_path_factory.mktemp("airflow_home"))
    os.environ.update({"AIRFLOW_HOME": home, "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                       "AIRFLOW__CORE__DAGS_FOLDER": str(DAG_FILE.parent),
                       # Parsing the DAG file imports TFX and TensorFlow and builds two DAGs: on a
                       # loaded 2-core machine that can pass Airflow's default 30 s, and the DagBag
                       # then reports a timeout as an import error. The tests check what the file
                       # defines, not how fast this machine imports TensorFlow.
                       "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": str(DAGBAG_IMPORT_TIMEOUT)})
    from airflow.utils import db

    db.initdb()
    return home


def test_parsing_the_dag_file_may_take_longer_than_airflows_default_timeout():
    from airflow import settings

    assert settings.get_dagbag_import_timeout(str(DAG_FILE)) == DAGBAG_IMPORT_TIMEOUT


def test_dag_file_parses_with_a_daily_schedule_and_no_catchup(tmp_path, monkeypatch):
    from airflow.models import DagBag

    monkeypatch.setenv("GRACEFUL_HOME", str(tmp_path / "home"))
    bag = DagBag(dag_folder=str(DAG_FILE), include_examples=False)
    assert bag.import_errors == {}
    dag = bag.get_dag("graceful")
    assert dag.schedule_interval == "@daily" and dag.catchup is False and dag.max_active_runs == 1
    assert {t.task_id for t in dag.tasks} == {
        "reconcile", "ImportExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator",
        "DataGate", "training_window", "baseline_model", "BaselineGuard", "Trainer",
        "FlipEvaluator", "HumanSignOff", "sign_off_approved", "Evaluator", "Pusher"}
    assert dag.get_task("Evaluator").upstream_task_ids >= {"sign_off_approved"}
    assert [t.task_id for t in dag.roots] == ["reconcile"], "repairs come before any resolution"
    # The release DAG: started per sign-off decision (tests/pipeline/test_airflow_release_e2e.py).
    release = bag.get_dag("graceful_release")
    assert release.schedule_interval is None and release.max_active_runs == 1
    assert {t.task_id for t in release.tasks} == {
        "reconcile", "candidate_model", "eval_examples", "baseline_model", "SignOffRelease",
        "sign_off_approved", "Evaluator", "Pusher"}
    assert release.get_task("sign_off_approved").upstream_task_ids == {"SignOffRelease"}
    assert release.get_task("Evaluator").upstream_task_ids >= {"sign_off_approved"}
    assert [t.task_id for t in release.roots] == ["reconcile"]


def test_dag_of_a_project_named_by_graceful_project(tmp_path, monkeypatch):
    """A team's project (CSV spans) becomes its own DAG: its name, its ExampleGen, its home."""
    from airflow.models import DagBag

    (tmp_path / "graceful_project.py").write_text(
        "from graceful.pipeline.configs import DataContract, PipelineConfig\n"
        "CONFIG = PipelineConfig(pipeline_name='wine', home='home', demo_data=False,\n"
        "    data=DataContract(root='data', format='csv', label_key='target'))\n")
    monkeypatch.setenv("GRACEFUL_PROJECT", str(tmp_path))
    bag = DagBag(dag_folder=str(DAG_FILE), include_examples=False)
    assert bag.import_errors == {}
    dag = bag.get_dag("wine")
    assert "CsvExampleGen" in {t.task_id for t in dag.tasks}
    assert [t.task_id for t in dag.roots] == ["reconcile"]


def test_scheduled_runs_record_into_the_local_runners_mlmd(tiny_config):
    from graceful.cli import prepare_data
    from graceful.pipeline.airflow_dag import build_dag
    from graceful.pipeline.local_runner import own_argv

    config = dataclasses.replace(tiny_config, num_spans=1)
    prepare_data(config)
    with own_argv():  # the Beam executors would parse pytest's flags (-v ...) as absl flags
        build_dag(config).test()  # span 1, auto-approved
        prepare_data(dataclasses.replace(config, num_spans=2))
        rejected = dataclasses.replace(config, sign_off=SignOffConfig(timeout_seconds=1,
                                                                      wait=True))
        build_dag(rejected).test()  # span 2 lands; nobody signs off while the task waits

    first, second = history.runs(config.metadata_uri)
    assert first.span == 1 and first.pushed and first.sign_off["source"] == "auto"
    assert second.span == 2 and second.training_spans == [1, 2]
    assert second.baseline_model_id == first.model_id
    assert second.blocked_by == "sign-off" and second.sign_off["reason"] == "timeout"
    assert second.pushed is None, "the guard skipped the Evaluator and Pusher"
    assert len(os.listdir(config.serving_dir)) == 1

    # The local runner continues from the same store: Airflow's blessed model is its baseline.
    run_span(config, span=2)
    third = history.runs(config.metadata_uri)[2]
    assert third.baseline_model_id == first.model_id and third.pushed
