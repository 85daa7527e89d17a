"""The release pipeline: what a sign-off decision starts after a run ended "awaiting sign-off".

By default the pipeline does not wait for a person (SignOffConfig.wait=False): HumanSignOff opens a
request with a deadline, stores in its evidence what a release needs, records a "pending" SignOff
and the run ends; its Evaluator and Pusher are skipped, and no process, worker slot or pod is held
while the person decides. The decision (`graceful approve|reject`, a Slack click through
`graceful slack-gate`, or the deadline passing) then releases the candidate with this small TFX
pipeline:

  candidate_model   Importer(reimport=False) of the candidate's URI: ML Metadata hands back the
                    Trainer's very Model artifact, so the evaluation and the push are recorded
                    against it, with lineage back to the run that trained it
  eval_examples     Importer(reimport=False) of the eval examples the flip gate judged on
  baseline_model    the last blessed model now, resolved as the main pipeline does
                    (pipeline.baseline_resolver)
  SignOffRelease    reads the decision from the sign-off store, claims the release once, checks that
                    the baseline is still the one the candidate was judged against, and records a
                    SignOff: blessed=1 only for an approval (components/sign_off_release)
  edge_model        with EdgeConfig.enabled and a request that carries one: Importer(reimport=False)
                    of the EdgeConverter's EdgeModel (ReleaseEvidence.edge_model_uri); compiled
                    for Airflow/Kubeflow, always, importing "" for a request without one (its
                    EdgePusher then records pushed=0, "no edge model", and nothing fails)
  -- only if blessed: --
  Evaluator, Pusher the main pipeline's own nodes (pipeline.evaluate_and_push): TFMA against that
                    baseline, then the staged push
  EdgePusher        (with the edge model) the .tflite to the edge destination, only if the cloud
                    model was pushed and its edge check passed

A rejection and a timeout end the same way: a SignOff with blessed=0 and the reason, nothing pushed.

It runs under the same pipeline name, pipeline root and ML Metadata store as the runs: TFX resolves
the baseline within the pipeline's context, so the release must see the runs' blessings, and the
next run must see the release's. The request's values (id, candidate URI, examples URI, and the
edge model's URI when it has one) are plain strings on the local runner and TFX RuntimeParameters
on Airflow (`dag_run.conf`, see pipeline/airflow_dag.py) and Kubeflow (pipeline parameters, see
kubeflow/release.py).

Where it runs is SignOffConfig.release_on: "local", `run` here, in the deciding process; "airflow",
one run of the Airflow release DAG queued per request (`trigger_on_airflow`), with `values(request)`
as its conf, the same values `graceful approve --no-release` prints for `airflow dags trigger`.
"""
from __future__ import annotations

import hashlib
import re
from typing import Mapping, Union

from tfx import v1 as tfx
from tfx.dsl.components.common import importer

from graceful import signoff
from graceful.components.edge_converter.component import EdgeModel
from graceful.components.human_signoff.executor import ReleaseEvidence
from graceful.components.sign_off_release.component import SignOffRelease
from graceful.pipeline.configs import PipelineConfig
from graceful.pipeline.pipeline import baseline_resolver, evaluate_and_push

REQUEST_ID, CANDIDATE_MODEL_URI, EVAL_EXAMPLES_URI = (
    "request_id", "candidate_model_uri", "eval_examples_uri")
PARAMETERS = (REQUEST_ID, CANDIDATE_MODEL_URI, EVAL_EXAMPLES_URI)
# Optional: present when the request's run had the edge branch on (EdgeConfig.enabled).
EDGE_MODEL_URI = "edge_model_uri"
SIGN_OFF_NODE = "SignOffRelease"
Value = Union[str, tfx.dsl.experimental.RuntimeParameter]


def name(pipeline_name: str) -> str:
    """What orchestrators list the release as (the Airflow DAG id, the Kubeflow upload's name).
    Its ML Metadata pipeline context stays `pipeline_name` (see above)."""
    return f"{pipeline_name}_release"


def unreleased(store: signoff.Store, pipeline_name: str) -> list[signoff.Request]:
    """Deferred requests of `pipeline_name` that are decided — by a person, or by their deadline
    passing (looking closes those) — but not released yet, oldest first: a decision made while
    the home was busy, or whose release did not start."""
    return [request for request in store.requests()
            if request.deadline_at is not None and request.released_at is None
            and request.evidence.get("pipeline") == pipeline_name
            and store.decision(request.request_id) is not None]


def values(request: signoff.Request, config: PipelineConfig | None = None) -> dict[str, str]:
    """The release's parameters for `request`, from the evidence HumanSignOff stored in it
    (SignOffError if it was not opened for a release), for the release pipeline of `config`.

    EDGE_MODEL_URI is sent exactly when that pipeline declares it (`config`'s edge branch on, as in
    runtime_parameters): then as the request's edge model, or "" when the request has none (its run
    had the edge branch off), which the release's EdgePusher takes as "no edge model" (pushed=0,
    nothing fails); never otherwise, even when the request has one: a release compiled without the
    edge branch has no such parameter, and Kubeflow refuses an unknown one."""
    evidence = ReleaseEvidence.of(request)
    found = {REQUEST_ID: request.request_id,
             CANDIDATE_MODEL_URI: evidence.candidate_model_uri,
             EVAL_EXAMPLES_URI: evidence.eval_examples_uri}
    if declares_edge(config):
        found[EDGE_MODEL_URI] = evidence.edge_model_uri or ""
    return found


def declares_edge(config: PipelineConfig | None) -> bool:
    """Whether `config`'s release pipeline has the EDGE_MODEL_URI parameter (its edge branch on)."""
    return config is not None and config.edge.enabled


class ReleaseNotQueued(RuntimeError):
    """The release DAG run could not be queued on Airflow (the decision stays recorded)."""


def airflow_run_id(request_id: str) -> str:
    """The release DAG run's id for `request_id`: one per request, so Airflow refuses a second
    (a double click, an `approve` after Slack, a retried `graceful release`). Request ids are run
    ids (Airflow's, e.g. scheduled__2026-01-02T00:00:00+00:00, or the local runner's timestamps),
    which Airflow's allowed run ids ([scheduler] allowed_run_id_pattern, default
    ^[A-Za-z0-9_.~:+-]+$) take as they are; any other character becomes "_", and a digest of the
    request id then keeps two requests apart."""
    safe = re.sub(r"[^A-Za-z0-9_.~:+-]", "_", request_id)
    if safe != request_id:
        safe += "-" + hashlib.sha256(request_id.encode()).hexdigest()[:12]
    return f"release__{safe}"


def trigger_on_airflow(pipeline_name: str, request: signoff.Request,
                       config: PipelineConfig | None = None) -> tuple[str, bool]:
    """Queues the Airflow release DAG's run for `request` (SignOffConfig.release_on="airflow")
    through Airflow's own Python API, as `airflow dags trigger` would: dag id `name(pipeline)`,
    conf `values(request, config)` (`config`: the DAG's, for its edge parameter), run id `airflow_run_id(request)`. Returns (run id, True) when this
    call queued it, (run id, False) when that run already exists (nothing is queued twice).
    Needs Airflow configured as the deployment's, whose scheduler has parsed
    pipeline/airflow_dag.py; ReleaseNotQueued otherwise."""
    try:
        from airflow.api.common.trigger_dag import trigger_dag
        from airflow.exceptions import DagNotFound, DagRunAlreadyExists
        from airflow.models import DagRun
        from sqlalchemy.exc import IntegrityError
    except ImportError as error:
        raise ReleaseNotQueued(
            f"SignOffConfig.release_on is 'airflow' but Airflow is not installed here ({error}): "
            "install graceful-tfx[airflow] where decisions are made, configured like the "
            "deployment's Airflow.") from None
    dag_id, run_id = name(pipeline_name), airflow_run_id(request.request_id)
    try:
        # Microseconds kept: Airflow also refuses a second run at the same logical date, and two
        # requests may be decided within one second.
        trigger_dag(dag_id, run_id=run_id, conf=values(request, config), replace_microseconds=False)
    except DagRunAlreadyExists as exists:
        if exists.dag_run.run_id != run_id:
            raise
        return run_id, False
    except IntegrityError:  # queued by another process between Airflow's check and its insert
        if not DagRun.find(dag_id=dag_id, run_id=run_id):
            raise
        return run_id, False
    except DagNotFound as error:
        raise ReleaseNotQueued(
            f"Airflow does not know the DAG {dag_id} ({error}): put pipeline/airflow_dag.py in the "
            "dags folder of the Airflow configured here (with the same GRACEFUL_PROJECT) and let "
            "its scheduler parse it (`airflow dags list` shows it).") from None
    return run_id, True


def runtime_parameters(config: PipelineConfig | None = None
                       ) -> dict[str, tfx.dsl.experimental.RuntimeParameter]:
    """The parameters as TFX RuntimeParameters, for runners that compile the pipeline once and take
    the values when a run starts. Strings (the only type TFX's Airflow runner takes), default ""
    (it needs one): a release started without them finds no request and releases nothing. With
    `config`'s edge branch on, also EDGE_MODEL_URI: a request without an edge model (opened before
    the edge branch was turned on) leaves it "", its importer imports "" (TFX's Importer takes it)
    and the EdgePusher records pushed=0, "no edge model", after the cloud push."""
    names = PARAMETERS + ((EDGE_MODEL_URI,) if declares_edge(config) else ())
    return {name: tfx.dsl.experimental.RuntimeParameter(
        name=name, ptype=str, default="",
        description=f"the sign-off request's {name.replace('_', ' ')}") for name in names}


class _Importer(importer.Importer):
    """TFX's Importer, keeping its execution properties in one dict.

    Why: TFX's Airflow runner fills a RuntimeParameter in by writing the `dag_run.conf` template
    into `component.exec_properties` (AirflowDagRunner._replace_runtime_params) and the rendered
    value into it again at run time (airflow_component). The stock Importer builds that dict afresh
    on every access, so both writes are lost and the import would get the RuntimeParameter object
    as its URI. Everything else is the stock Importer: the same node type (IR runners dispatch on
    it), driver and Kubeflow importer spec."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._kept_exec_properties = dict(super().exec_properties)

    @classmethod
    def get_class_type(cls) -> str:
        return importer.Importer.get_class_type()

    @property
    def exec_properties(self):
        return self._kept_exec_properties


def create_release_pipeline(config: PipelineConfig, parameters: Mapping[str, Value],
                            metadata_connection_config=None) -> tfx.dsl.Pipeline:
    """The release pipeline of `config`'s pipeline for one request: `parameters` maps each name
    in PARAMETERS to its value (`values(request)`) or to a RuntimeParameter
    (`runtime_parameters()`)."""
    missing = [name for name in PARAMETERS if not parameters.get(name)]
    if missing:
        raise ValueError(f"The release pipeline needs {', '.join(missing)} (the request's values: "
                         "pipeline.release.values(request), or runtime_parameters()).")
    candidate = _Importer(source_uri=parameters[CANDIDATE_MODEL_URI],
                          artifact_type=tfx.types.standard_artifacts.Model,
                          reimport=False).with_id("candidate_model")
    examples = _Importer(source_uri=parameters[EVAL_EXAMPLES_URI],
                         artifact_type=tfx.types.standard_artifacts.Examples,
                         reimport=False).with_id("eval_examples")
    edge = []
    if config.edge.enabled and parameters.get(EDGE_MODEL_URI):
        edge = [_Importer(source_uri=parameters[EDGE_MODEL_URI], artifact_type=EdgeModel,
                          reimport=False).with_id("edge_model")]
    baseline_model = baseline_resolver()
    sign_off = SignOffRelease(model=candidate.outputs["result"],
                              baseline_model=baseline_model.outputs["model"],
                              store_path=config.sign_off_store,
                              request_id=parameters[REQUEST_ID]).with_id(SIGN_OFF_NODE)
    release_nodes = evaluate_and_push(
        config, sign_off.outputs["sign_off"], examples=examples.outputs["result"],
        model=candidate.outputs["result"], baseline_model=baseline_model.outputs["model"],
        edge_model=edge[0].outputs["result"] if edge else None)
    return tfx.dsl.Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=config.pipeline_root,
        components=[candidate, examples, *edge, baseline_model, sign_off, *release_nodes],
        enable_cache=False,  # a release is one decision acted on once, never a cached result
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=config.beam_pipeline_args)


def run(config: PipelineConfig, parameters: Mapping[str, str], log=print) -> None:
    """Runs the release of one request (`values(request)`) with TFX's LocalDagRunner into the runs'
    ML Metadata store (raises on failure), the way a run is run (local_runner.run_under_home: the
    home's run lock, unfinished pushes repaired first, a lost store refused).

    A release run that fails after its SignOffRelease claimed the request (its Evaluator or Pusher
    failed) gives the claim back unless its Pusher completed, so that `graceful release` can run it
    again: the decision is not lost, and a push still happens once (a push that died half-way is
    set aside by the next run's repair, graceful.recovery, before anything resolves a baseline)."""
    from graceful.home_lock import home_lock
    from graceful.pipeline import local_runner

    request_id = parameters[REQUEST_ID]
    with home_lock(config.home):  # held here too: no other local release claims meanwhile
        store = signoff.Store(config.sign_off_store)
        try:
            claimed_before = store.request(request_id).released_at is not None
        except signoff.SignOffError:  # no such request: SignOffRelease refuses it, after the
            claimed_before = True     # run's own checks (a lost store first); nothing to give back
        try:
            local_runner.run_under_home(
                config, lambda connection: create_release_pipeline(config, parameters, connection),
                log=log)
        except Exception:
            if not claimed_before:
                _give_back_claim(config, store, request_id, log)
            raise


def _give_back_claim(config: PipelineConfig, store: signoff.Store, request_id: str,
                     log=print) -> None:
    """After a failed local release run: its claim on `request_id` (if it got that far) is taken
    back, unless ML Metadata shows a completed Pusher in that run (or cannot be read: then the
    claim stays, and nothing can be pushed twice)."""
    claimer = store.request(request_id).released_by
    if claimer is None:
        return  # it failed before claiming (or the claim is anonymous)
    try:
        pushed = pusher_completed(config, claimer)
    except Exception as error:  # noqa: BLE001 - unknown: keep the claim rather than risk a 2nd push
        log(f"[graceful] {request_id} stays claimed by release run {claimer}: could not read ML "
            f"Metadata to check that it pushed nothing ({error})")
        return
    if not pushed and store.unclaim_release(request_id, claimer):
        log(f"[graceful] the release run {claimer} of {request_id} failed before its push "
            f"completed; nothing was pushed, and the decision stands: run it again with "
            f"`graceful release {request_id}`")


def pusher_completed(config: PipelineConfig, run_id: str) -> bool:
    """Whether the pipeline run `run_id` (a run context in `config`'s ML Metadata) has a Pusher
    execution that completed."""
    from ml_metadata.proto import metadata_store_pb2

    from graceful import history

    done = (metadata_store_pb2.Execution.COMPLETE, metadata_store_pb2.Execution.CACHED)
    store = history.open_store(config.metadata_uri)
    nodes = history.node_ids(store)
    runs = [c for t in history.RUN_CONTEXT_TYPES for c in store.get_contexts_by_type(t)
            if c.name == run_id]
    return any(nodes.get(x.id) == "Pusher" and x.last_known_state in done
               for c in runs for x in store.get_executions_by_context(c.id))
