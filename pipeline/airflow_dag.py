"""The graceful pipeline as an Airflow DAG: scheduled retraining as new data spans land.

Airflow imports this file from its dags folder (copy or symlink it there; the graceful package must be
installed in Airflow's environment). TFX's AirflowDagRunner turns every component into an Airflow task;
each scheduled run ingests the newest span of the data contract (the demo's: under <home>/data; a
project's: its data root and patterns), trains against the last blessed model in
the same ML Metadata store the local runner uses (PipelineConfig.metadata: <home>/metadata.sqlite, or a
MySQL/MariaDB database whose password the Airflow workers have in $GRACEFUL_METADATA_PASSWORD), and
pushes only what passes the flip gate and the human sign-off.

Environment: GRACEFUL_PROJECT (a project's graceful_project.py, or its folder; without it the built-in
Fashion-MNIST demo config), GRACEFUL_HOME (the demo's pipeline home), GRACEFUL_SCHEDULE (cron or
preset, default @daily).

One Airflow-specific piece: TFX's Airflow runner predates `tfx.dsl.Cond` and runs conditional steps
unconditionally, which would evaluate and push a model a person rejected. So the DAG gets the same
condition as an Airflow ShortCircuitOperator between HumanSignOff and the Evaluator: it reads this
run's SignOff artifact from MLMD and skips the Evaluator and Pusher unless `blessed` is 1.

And one task before everything else, `reconcile` (graceful.recovery), which `graceful run` also does
before each local run: a run that died between its blessing and its push leaves no baseline behind.

Sign-off holds no worker slot: with SignOffConfig.wait=False (the default) the HumanSignOff task
opens the request and ends, and the run ends awaiting sign-off (the guard skips the Evaluator and
Pusher). The decision is acted on by a second DAG, `<pipeline name>_release` (RELEASE_DAG), built
from the release pipeline (pipeline/release.py) with the request's values as TFX RuntimeParameters,
which TFX's Airflow runner reads from the DAG run's conf. With SignOffConfig.release_on="airflow"
the decision queues that run itself: `graceful approve|reject` (and `graceful slack-gate`, through
the `graceful release` it starts) call Airflow's trigger_dag with the request's values as the conf
and a run id derived from the request id (pipeline.release.trigger_on_airflow), so a second
decision or retry queues nothing; they need this Airflow's configuration where they run. Or trigger
it by hand once the decision is recorded (for a timed-out request too: its run records the
rejection):

    graceful approve RUN --reason '...' --no-release     # records, prints the trigger and its conf
    airflow dags trigger graceful_release --conf '{"request_id": "...", "candidate_model_uri": "...",
                                                   "eval_examples_uri": "..."}' --run-id release__...

It has no schedule, the same reconcile task first and the same guard between its SignOffRelease
task and the Evaluator.
"""
from __future__ import annotations

import datetime
import os

from tfx.orchestration.airflow.airflow_dag_runner import AirflowDagRunner, AirflowPipelineConfig

from graceful.components.human_signoff.component import SignOff
from graceful import mlmd_store, project, recovery
from graceful.pipeline import release
from graceful.pipeline.configs import PipelineConfig
from graceful.pipeline.pipeline import create_pipeline

SCHEDULE_ENV, PROJECT_ENV = "GRACEFUL_SCHEDULE", "GRACEFUL_PROJECT"
SIGN_OFF_TASK, GUARD_TASK, GUARDED_TASK = "HumanSignOff", "sign_off_approved", "Evaluator"
RECONCILE_TASK = "reconcile"


def sign_off_approved(metadata_path: str, pipeline_name: str, run_id: str, **_) -> bool:
    """True if this DAG run's SignOff artifact in MLMD has blessed == 1 (the pipeline's Cond).
    `metadata_path` is the store's location, never a password (task arguments are shown in
    Airflow's UI): the task reads that from its environment when it connects."""
    store = mlmd_store.open_store(metadata_path)
    context = store.get_context_by_type_and_name("run", f"{pipeline_name}.{run_id}")
    if context is None:
        return False
    types = {t.id: t.name for t in store.get_artifact_types()}
    sign_offs = [a for a in store.get_artifacts_by_context(context.id)
                 if types[a.type_id] == SignOff.TYPE_NAME]
    return bool(sign_offs) and sign_offs[-1].custom_properties["blessed"].int_value == 1


def _guard_push_with_sign_off(dag, config: PipelineConfig,
                              sign_off_task: str = SIGN_OFF_TASK) -> None:
    """`sign_off_task` (HumanSignOff; SignOffRelease in the release DAG) >> guard >> Evaluator."""
    from airflow.operators.python import ShortCircuitOperator

    guard = ShortCircuitOperator(
        task_id=GUARD_TASK, dag=dag, python_callable=sign_off_approved,
        op_kwargs={"metadata_path": config.metadata_uri, "pipeline_name": config.pipeline_name},
        ignore_downstream_trigger_rules=True)  # skips the Evaluator and everything after it
    dag.get_task(sign_off_task) >> guard >> dag.get_task(GUARDED_TASK)


def _reconcile_first(dag, config: PipelineConfig) -> None:
    """Unfinished pushes of earlier runs leave baseline resolution before this run starts."""
    from airflow.operators.python import PythonOperator

    roots = [task for task in dag.tasks if not task.upstream_task_ids]
    reconcile = PythonOperator(task_id=RECONCILE_TASK, dag=dag, python_callable=recovery.reconcile,
                               op_kwargs={"metadata_path": config.metadata_uri,
                                          "serving_dir": config.serving_dir})
    reconcile >> roots


def build_dag(config: PipelineConfig, schedule: str = "@daily"):
    """The Airflow DAG of `config`'s pipeline (dag_id = pipeline name)."""
    dag_config = {"schedule": schedule, "start_date": datetime.datetime(2026, 1, 1),
                  "catchup": False,     # a missed day is not worth several retrainings
                  "max_active_runs": 1}  # runs compare with the last blessed model: never overlap
    pipeline = create_pipeline(config, mlmd_store.connection_config(config.metadata_uri))
    dag = AirflowDagRunner(AirflowPipelineConfig(airflow_dag_config=dag_config)).run(pipeline)
    _guard_push_with_sign_off(dag, config)
    _reconcile_first(dag, config)
    return dag


def build_release_dag(config: PipelineConfig):
    """The release DAG of `config`'s pipeline (dag_id `<pipeline name>_release`, no schedule): one
    run per sign-off decision, its conf holding the request's values (pipeline.release.values)."""
    dag_config = {"schedule": None, "start_date": datetime.datetime(2026, 1, 1), "catchup": False,
                  "max_active_runs": 1}  # a release changes the baseline: one at a time
    pipeline = release.create_release_pipeline(
        config, release.runtime_parameters(config), mlmd_store.connection_config(config.metadata_uri))
    dag = AirflowDagRunner(AirflowPipelineConfig(airflow_dag_config=dag_config)).run(pipeline)
    # TFX names a DAG after its pipeline; the release keeps the pipeline's name in ML Metadata
    # (the baseline is resolved within it), so its DAG gets its own id here.
    dag.dag_id = release.name(config.pipeline_name)
    _guard_push_with_sign_off(dag, config, release.SIGN_OFF_NODE)
    _reconcile_first(dag, config)
    return dag


def project_config() -> PipelineConfig:
    """The project $GRACEFUL_PROJECT names (Airflow's working directory is not the project's), else
    the built-in demo config."""
    named = os.environ.get(PROJECT_ENV)
    return project.load(named).config if named else PipelineConfig()


DAG = build_dag(project_config(), os.environ.get(SCHEDULE_ENV, "@daily"))
RELEASE_DAG = build_release_dag(project_config())
