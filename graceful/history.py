"""Reads pipeline runs back from ML Metadata: what each run ingested, trained, compared and pushed.

Everything here comes from the MLMD store (executions, artifacts, events, contexts) plus the artifacts'
own files (TFMA metrics), never from logs, so `graceful history` tells the truth after the fact.
"""
from __future__ import annotations

import dataclasses
import json
import os
from collections import defaultdict

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

from graceful import bootstrap, flips, golden, mlmd_store, releases, signoff
from graceful.report_html import REPORT_FILE
from graceful.models.params import TrainingParams

# A run's context type: "pipeline_run" (IR runners: local, Kubeflow), "run" (TFX's Airflow runner).
RUN_CONTEXT_TYPES = ("pipeline_run", "run")
TRAINING_PARAMETERS = [f.name for f in dataclasses.fields(TrainingParams)]
# A step is known by the artifact types it produces, never by its node id or component class, so
# history reads any pipeline: CsvExampleGen or ImportExampleGen, TFX's Trainer or GracefulTrainer.
EXAMPLES, SCHEMA, STATISTICS, ANOMALIES = "Examples", "Schema", "ExampleStatistics", "ExampleAnomalies"
MODEL, EVALUATION, MODEL_BLESSING, PUSHED_MODEL = ("Model", "ModelEvaluation", "ModelBlessing",
                                                   "PushedModel")
RESOLVER = "Resolver"  # class name of TFX's resolver nodes (tfx.dsl.components.common.resolver)
FLIP_REPORT, FLIP_BLESSING, SIGN_OFF = "graceful.FlipReport", "graceful.FlipBlessing", "graceful.SignOff"
FLIP_METRICS = {"negative_flip_rate": "nfr", "relative_negative_flip_rate": "relative_nfr",
                "high_confidence_flips": "high_confidence_flips"}
ABANDONED_REASON = "graceful_abandoned_reason"  # set by graceful.recovery on unfinished pushes
# A SignOff's decision while its deferred request awaits a person (components/human_signoff), and
# the property marking the SignOff a release recorded (components/sign_off_release).
PENDING, RELEASE = "pending", "release"
# graceful.rollback: the execution type it records, and why it took a blessing out of resolution.
ROLLBACK, WITHDRAWN_REASON = "graceful.Rollback", "graceful_withdrawn_reason"


@dataclasses.dataclass
class RunRecord:
    run_id: str
    started: float                      # seconds since the epoch
    span: int | None = None
    training_spans: list[int] = dataclasses.field(default_factory=list)
    params: dict = dataclasses.field(default_factory=dict)
    model_name: str | None = None       # the user module trained, else the built-in architecture
    model_id: int | None = None
    loss: str | None = None             # the loss actually used (plain when there was no reference)
    reference_model_id: int | None = None
    baseline_model_id: int | None = None
    accuracy: float | None = None
    baseline_accuracy: float | None = None
    nfr: float | None = None             # negative flip rate vs the baseline (Evaluator)
    nfr_interval: list | None = None     # its paired bootstrap interval (FlipEvaluator)
    relative_nfr: float | None = None
    high_confidence_flips: float | None = None
    failures: list[str] = dataclasses.field(default_factory=list)  # failed thresholds
    blocked_by: str | None = None       # the gate that refused the model
    blessed: bool | None = None         # passed every gate that ran
    flip_report: str | None = None      # path of the FlipEvaluator's flip_report.json
    sign_off: dict | None = None        # decision, approver_id, approver_name, decided_at, reason...
    pushed: bool | None = None
    failed_step: str | None = None
    abandoned: str | None = None        # why its blessing left baseline resolution (graceful.recovery)
    awaiting_until: str | None = None   # deferred sign-off not released yet: its deadline
    decided: str | None = None          # ... and, from the sign-off store, its decision if made
    release_of: str | None = None       # a release run (pipeline/release.py): the request released
    withdrawn: str | None = None        # why a rollback took its model out (graceful.rollback)

    @property
    def status(self) -> str:
        if self.failed_step:
            return f"failed at {self.failed_step}"
        if self.awaiting_until:
            return (f"{self.decided}; not released yet (graceful release)" if self.decided else
                    f"awaiting sign-off until {self.awaiting_until}")
        if self.pushed:
            return "pushed, rolled back" if self.withdrawn else "pushed"
        if self.blessed is False:
            shown = "; ".join(self.failures[:2])
            more = f" (+{len(self.failures) - 2} more)" if len(self.failures) > 2 else ""
            by = f" by {self.blocked_by}" if self.blocked_by else ""
            return f"blocked{by}: {shown}{more}" if self.failures else f"blocked{by}"
        if self.abandoned:
            return "stopped before its push completed; not a baseline"
        return "not pushed" if self.pushed is False else "incomplete"


def open_store(metadata_path: str) -> metadata_store.MetadataStore:
    """The store, read-only (FileNotFoundError if missing, StoreDamagedError if unreadable)."""
    return mlmd_store.open_store(metadata_path)


def property_value(message, key):
    """Value of a (custom) property of an MLMD artifact/execution, or None."""
    for properties in (message.properties, message.custom_properties):
        if key in properties:
            value = properties[key]
            kind = value.WhichOneof("value")
            return getattr(value, kind) if kind != "struct_value" else value.struct_value
    return None


def read_evaluation(evaluation_uri: str) -> dict:
    """Overall-slice metrics of a TFMA ModelEvaluation artifact, and why validation failed.

    Keys: accuracy, baseline_accuracy, nfr, relative_nfr, high_confidence_flips (absent when not
    computed), and `failures`: one readable line per failed threshold, e.g.
    "negative_flip_rate = 0.0412 > 0.03 (overall)".
    """
    import tensorflow_model_analysis as tfma

    result, accuracies = {}, {}
    for metrics in tfma.load_metrics(evaluation_uri):
        if metrics.slice_key.single_slice_keys:
            continue
        for key_and_value in metrics.metric_keys_and_values:
            key, value = key_and_value.key, key_and_value.value.double_value.value
            if key.is_diff or key.HasField("sub_key") or key.HasField("aggregation_type"):
                continue
            prefix = "baseline_" if key.model_name == "baseline" else ""
            if key.name in FLIP_METRICS:
                result[prefix + FLIP_METRICS[key.name]] = value
            elif key.name.endswith("accuracy"):
                accuracies.setdefault(prefix + "accuracy", {})[key.name] = value
    for name, by_metric in accuracies.items():
        result[name] = by_metric[_accuracy_metric(by_metric)]
    result["failures"] = _failures(tfma.load_validation_result(evaluation_uri))
    return result


def _accuracy_metric(names) -> str:
    """The accuracy to show when an EvalConfig has several (sparse_categorical_accuracy,
    binary_accuracy, ...): graceful's contract accuracy, which reads every model form right, else
    the first by name, so the choice is stable."""
    return min(names, key=lambda name: (not name.startswith("graceful"), name))


def _failures(validation) -> list[str]:
    lines = []
    for per_slice in validation.metric_validations_per_slice:
        where = ", ".join(f"{k.column}={k.int64_value or k.bytes_value.decode() or k.float_value}"
                          for k in per_slice.slice_key.single_slice_keys) or "overall"
        for failure in per_slice.failures:
            threshold = failure.metric_threshold
            if threshold.HasField("change_threshold"):
                bound = (f"change vs baseline, allowed >= "
                         f"{threshold.change_threshold.absolute.value:+.4f}")
            elif threshold.value_threshold.HasField("upper_bound"):
                bound = f"> {threshold.value_threshold.upper_bound.value:.4g}"
            else:
                bound = f"< {threshold.value_threshold.lower_bound.value:.4g}"
            value = failure.metric_value.double_value.value
            lines.append(f"{failure.metric_key.name} = {value:+.4f} {bound} ({where})"
                         if threshold.HasField("change_threshold") else
                         f"{failure.metric_key.name} = {value:.4f} {bound} ({where})")
    return lines


@dataclasses.dataclass
class Step:
    """One execution of a run with the artifacts it consumed and produced, by artifact type name:
    what a step is follows from these, whatever the pipeline called it."""
    execution: metadata_store_pb2.Execution
    node: str                           # its node id in the pipeline, e.g. "Trainer" or "fit"
    inputs: dict
    outputs: dict

    def consumed(self, type_name: str) -> list:
        return self.inputs.get(type_name, [])

    def produced(self, type_name: str) -> list:
        return self.outputs.get(type_name, [])


def node_ids(store) -> dict[int, str]:
    """{execution id: node id}. IR runners (local, Kubeflow) keep the id in a "node" context named
    "<pipeline>.<node id>"; TFX's Airflow runner records it as the execution's `component_id`."""
    pipelines = [c.name for c in store.get_contexts_by_type("pipeline")]
    ids = {}
    for node in store.get_contexts_by_type("node"):
        name = max((node.name[len(p) + 1:] for p in pipelines if node.name.startswith(p + ".")),
                   key=len, default=node.name)
        ids.update({e.id: name for e in store.get_executions_by_context(node.id)})
    return ids


def _node(execution, nodes: dict, type_names: dict) -> str:
    """The step's node id; its component class when the runner recorded none."""
    if "component_id" in execution.properties:
        return execution.properties["component_id"].string_value
    return nodes.get(execution.id) or type_names[execution.type_id].rsplit(".", 1)[-1]


def steps(store, executions, nodes: dict | None = None) -> list[Step]:
    """The executions as Steps, oldest first. Only INPUT and OUTPUT events count: a Resolver's
    INTERNAL_OUTPUT of an earlier Model produces nothing. Resolvers are no steps: TFX's Airflow
    runner records what they resolved (earlier spans, the baseline) as their OUTPUTs, which would
    pass them off as an ingestion or a trainer."""
    nodes = node_ids(store) if nodes is None else nodes
    execution_types = {t.id: t.name for t in store.get_execution_types()}
    executions = [x for x in executions if not _is_resolver(execution_types[x.type_id])]
    artifact_types = {t.id: t.name for t in store.get_artifact_types()}
    events = store.get_events_by_execution_ids([e.id for e in executions])
    artifacts = {a.id: a for a in store.get_artifacts_by_id({e.artifact_id for e in events})}
    linked = defaultdict(lambda: ({}, {}))
    for event in events:
        if event.type in (metadata_store_pb2.Event.INPUT, metadata_store_pb2.Event.OUTPUT):
            artifact = artifacts[event.artifact_id]
            side = linked[event.execution_id][event.type == metadata_store_pb2.Event.OUTPUT]
            side.setdefault(artifact_types[artifact.type_id], []).append(artifact)
    return [Step(x, _node(x, nodes, execution_types), *linked[x.id])
            for x in sorted(executions, key=lambda x: (x.create_time_since_epoch, x.id))]


def _is_resolver(execution_type: str) -> bool:
    return execution_type.rsplit(".", 1)[-1] == RESOLVER


def training_parameters(execution) -> dict:
    """GracefulTrainer's parameters, each an execution property (None under another trainer)."""
    return {name: property_value(execution, name) for name in TRAINING_PARAMETERS}


def _fill_ingestion(record: RunRecord, step: Step) -> None:
    for examples in step.produced(EXAMPLES):
        record.span = property_value(examples, "span")


def _fill_training(record: RunRecord, step: Step) -> None:
    spans = (property_value(a, "span") for a in step.consumed(EXAMPLES))
    record.training_spans = sorted(s for s in spans if s is not None)
    record.params = training_parameters(step.execution)
    record.model_name = _model_name(step.execution, record.params)
    for model in step.produced(MODEL):
        record.model_id = model.id
        record.loss = property_value(model, "loss")
        record.reference_model_id = property_value(model, "reference_model_id")


def _model_name(execution, params: dict) -> str | None:
    """What was trained, for the table: the team's module (TFX records `module_file`, or the
    packaged `module_path` "module@wheel") over graceful's built-in architecture parameter."""
    module = property_value(execution, "module_file") or ""
    packaged = property_value(execution, "module_path") or ""
    if module:
        return os.path.basename(module)
    if packaged:
        return packaged.split("@", 1)[0] + ".py"
    return params.get("architecture")


def _baselines(record: RunRecord, step: Step) -> list:
    """The models a judging step compared the candidate with: every other Model it consumed."""
    return [m for m in step.consumed(MODEL) if m.id != record.model_id]


def _refused(record: RunRecord, gate: str, failures: list[str]) -> None:
    """The first gate that refused the model blocked it; its reasons are the run's."""
    if record.blessed is not False:
        record.blessed, record.blocked_by, record.failures = False, gate, failures


def _fill_flip_gate(record: RunRecord, step: Step) -> None:
    """The FlipEvaluator's numbers and verdict; the Evaluator's (TFMA), when it ran, take precedence
    (they agree), which is why this step is read first."""
    baselines = _baselines(record, step)
    for baseline in baselines:
        record.baseline_model_id = baseline.id
    for report in step.produced(FLIP_REPORT):
        record.flip_report = os.path.join(report.uri, REPORT_FILE)
        record.accuracy = property_value(report, "accuracy")
        if baselines:
            record.baseline_accuracy = property_value(report, "baseline_accuracy")
            record.nfr = property_value(report, "nfr")
            bounds = [property_value(report, key) for key in ("nfr_lower", "nfr_upper")]
            record.nfr_interval = bounds if None not in bounds else None
            record.relative_nfr = property_value(report, "relative_nfr")
            record.high_confidence_flips = property_value(report, "high_confidence_flips")
    for blessing in step.produced(FLIP_BLESSING):
        if property_value(blessing, "blessed") == 0:
            _refused(record, "flip gate", json.loads(property_value(blessing, "failures") or "[]"))


def _fill_sign_off(record: RunRecord, step: Step) -> None:
    for artifact in step.produced(SIGN_OFF):
        if property_value(artifact, "source") == signoff.FLIP_GATE_SOURCE:
            continue  # nobody was asked; the flip gate's reasons stand
        record.sign_off = {key: property_value(artifact, key) for key in (
            "decision", "approver_id", "approver_name", "decided_at", "reason", "source",
            "slack_ts", "request_id")}
        if released_request(artifact) is not None:
            record.release_of = released_request(artifact)
        if record.sign_off["decision"] == PENDING:
            record.awaiting_until = property_value(artifact, "deadline_at")
        elif property_value(artifact, "blessed") == 0:
            _refused(record, "sign-off", [f"{record.sign_off['decision']}ed by "
                                          f"{record.sign_off['approver_name']}: "
                                          f"{record.sign_off['reason']}"])


def released_request(sign_off) -> str | None:
    """The request whose release recorded this SignOff artifact (components/sign_off_release marks
    its SignOff with RELEASE = 1), or None for a run's own sign-off: how a release run is told
    from the run it released, which recorded a SignOff with the same request id (here, and in
    graceful.lineage)."""
    return property_value(sign_off, "request_id") if property_value(sign_off, RELEASE) == 1 \
        else None


def _fill_evaluation(record: RunRecord, step: Step) -> None:
    """TFMA's numbers (any accuracy metric) and the ModelBlessing a Pusher trusts."""
    baselines = _baselines(record, step)
    for baseline in baselines:
        record.baseline_model_id = baseline.id
    failures = []
    for evaluation in step.produced(EVALUATION):
        metrics = read_evaluation(evaluation.uri)
        record.accuracy = metrics.get("accuracy", record.accuracy)
        record.baseline_accuracy = metrics.get("baseline_accuracy", record.baseline_accuracy)
        if baselines:  # flips exist only against a baseline
            record.nfr = metrics.get("nfr", record.nfr)
            record.relative_nfr = metrics.get("relative_nfr", record.relative_nfr)
            record.high_confidence_flips = metrics.get("high_confidence_flips",
                                                       record.high_confidence_flips)
        failures = metrics["failures"]
    for blessing in step.produced(MODEL_BLESSING):
        if blessing.state == metadata_store_pb2.Artifact.ABANDONED:
            record.abandoned = property_value(blessing, ABANDONED_REASON)
            record.withdrawn = property_value(blessing, WITHDRAWN_REASON)
        blessed = property_value(blessing, "blessed")
        if blessed == 0:
            _refused(record, "evaluator", failures)
        elif blessed is not None and record.blessed is None:
            record.blessed = True


def _fill_push(record: RunRecord, step: Step) -> None:
    for pushed in step.produced(PUSHED_MODEL):
        record.pushed = bool(property_value(pushed, "pushed"))


# Which steps a run has, by what they produce, read in this order whatever order they ran in.
ROLES = [
    (lambda step: step.produced(EXAMPLES) and not step.consumed(EXAMPLES), _fill_ingestion),
    (lambda step: step.produced(MODEL), _fill_training),
    (lambda step: step.produced(FLIP_REPORT) or step.produced(FLIP_BLESSING), _fill_flip_gate),
    (lambda step: step.produced(SIGN_OFF), _fill_sign_off),
    (lambda step: step.produced(EVALUATION) or step.produced(MODEL_BLESSING), _fill_evaluation),
    (lambda step: step.produced(PUSHED_MODEL), _fill_push),
]


def run_record(store, context, nodes: dict) -> RunRecord:
    """One run context read back: its steps by role, and the first step that failed."""
    record = RunRecord(run_id=context.name, started=context.create_time_since_epoch / 1000)
    run_steps = steps(store, store.get_executions_by_context(context.id), nodes)
    failed = [s.node for s in run_steps
              if s.execution.last_known_state == metadata_store_pb2.Execution.FAILED]
    record.failed_step = failed[0] if failed else None
    for is_role, fill in ROLES:
        for step in run_steps:
            if is_role(step):
                fill(record, step)
    return record


def run_contexts(store) -> list:
    """Every pipeline run's context, oldest first."""
    contexts = [c for t in RUN_CONTEXT_TYPES for c in store.get_contexts_by_type(t)]
    return sorted(contexts, key=lambda c: c.create_time_since_epoch)


def runs(metadata_path: str, sign_off_store: str | None = None) -> list[RunRecord]:
    """Every pipeline run in the store, oldest first, each release run folded into the run it
    released. With `sign_off_store`, runs still awaiting their release show the decision made
    since, if any (looking closes requests past their deadline as "timeout" rejections)."""
    store = open_store(metadata_path)
    nodes = node_ids(store)
    records = _fold_releases([run_record(store, context, nodes) for context in run_contexts(store)])
    if sign_off_store:
        decisions = signoff.Store(sign_off_store)
        for record in records:
            if not record.awaiting_until:
                continue
            try:
                decisions.request(record.sign_off["request_id"])  # closes it if past its deadline
            except signoff.SignOffError:
                continue  # not in this sign-off store (another store was used then)
            decided = decisions.decision(record.sign_off["request_id"])
            if decided:
                record.decided = (f"{'approved' if decided.approved else 'rejected'} by "
                                  f"{decided.approver_name} ({decided.source})")
    return records


# What a release run knows of its candidate's run: the training side stays the original run's.
_TRAINING_FIELDS = {"run_id", "started", "span", "training_spans", "params", "model_name",
                    "model_id", "loss", "reference_model_id", "flip_report", "release_of"}


def _fold_releases(records: list[RunRecord]) -> list[RunRecord]:
    """A release run (pipeline/release.py) finishes the run that trained its candidate, which ended
    awaiting sign-off: its decision, evaluation and push become that run's, and it has no row of
    its own. A release whose run is not in this store keeps its own row."""
    awaiting = {r.sign_off["request_id"]: r for r in records
                if r.sign_off and r.awaiting_until and not r.release_of}
    # What each run showed before any release: a release that failed and was repeated must not
    # leave its failure on the row, so every release applies to this, the latest one winning
    as_trained = {request: dataclasses.replace(r) for request, r in awaiting.items()}
    kept = []
    for record in records:
        original = awaiting.get(record.release_of)
        if original is None:
            kept.append(record)
            continue
        for field in dataclasses.fields(RunRecord):
            setattr(original, field.name, getattr(as_trained[record.release_of], field.name))
        original.awaiting_until = None
        for field in dataclasses.fields(RunRecord):
            value = getattr(record, field.name)
            if field.name not in _TRAINING_FIELDS and value not in (None, [], {}):
                setattr(original, field.name, value)
    return kept


@dataclasses.dataclass
class RollbackRecord:
    """One `graceful rollback` read back from its `graceful.Rollback` execution."""
    execution_id: int
    started: float                      # seconds since the epoch
    model_id: int                       # the model served again
    withdrawn_model_ids: list[int]      # the newer models taken out of baseline resolution
    approver: str
    reason: str
    rolled_back_at: str
    state: str                          # COMPLETE; RUNNING or FAILED if it did not finish
    destination: str | None = None      # the version folder it pushed

    def describe(self) -> str:
        ids = self.withdrawn_model_ids
        withdrawn = (f"withdrawn: model{'s' if len(ids) > 1 else ''} {', '.join(map(str, ids))}"
                     if ids else "nothing withdrawn")
        unfinished = "" if self.state == "COMPLETE" else f" [{self.state}: did not complete]"
        return (f"rollback to model {self.model_id} by {self.approver}: {self.reason} "
                f"({self.rolled_back_at}; {withdrawn}){unfinished}")


def rollbacks(store) -> list[RollbackRecord]:
    """Every rollback in the store, oldest first."""
    found = []
    for execution in sorted(store.get_executions_by_type(ROLLBACK), key=lambda x: x.id):
        pushed = store.get_artifacts_by_id([
            e.artifact_id for e in store.get_events_by_execution_ids([execution.id])
            if e.type == metadata_store_pb2.Event.OUTPUT])
        found.append(RollbackRecord(
            execution_id=execution.id, started=execution.create_time_since_epoch / 1000,
            model_id=property_value(execution, "model_id"),
            withdrawn_model_ids=json.loads(property_value(execution, "withdrawn_model_ids")),
            approver=property_value(execution, "approver"),
            reason=property_value(execution, "reason"),
            rolled_back_at=property_value(execution, "rolled_back_at"),
            state=metadata_store_pb2.Execution.State.Name(execution.last_known_state),
            destination=property_value(pushed[0], "pushed_destination") if pushed else None))
    return found


def _fmt(value, spec=".4f") -> str:
    return "-" if value is None else format(value, spec)


def signed_off_by(record: RunRecord) -> str:
    """Who approved (or rejected) the run's model, e.g. "alice" or "rejected: alice"; "-" if nobody
    was asked."""
    sign_off = record.sign_off
    if not sign_off:
        return "-"
    if record.awaiting_until:
        return "awaiting"
    who = sign_off["approver_name"] if sign_off["source"] not in signoff.SYSTEM_SOURCES else (
        sign_off["source"])
    return who if sign_off["decision"] == "approve" else f"rejected: {who}"


def format_table(records: list[RunRecord], rolled_back: list[RollbackRecord] = ()) -> str:
    """Runs as a fixed-width text table (what `graceful run` and `graceful history` print), with
    a line for each rollback after the runs before it."""
    header = ("run", "span", "trained on", "model", "loss", "model id", "accuracy", "baseline id",
              "baseline acc", "NFR", "signed off by", "blessed", "status")
    rows = [header]
    for number, r in enumerate(records, 1):
        rows.append((str(number), _fmt(r.span, "d"),
                     ",".join(map(str, r.training_spans)) or "-",
                     r.model_name or "-", r.loss or "-", _fmt(r.model_id, "d"),
                     _fmt(r.accuracy),
                     _fmt(r.baseline_model_id, "d"), _fmt(r.baseline_accuracy),
                     "-" if r.nfr is None else bootstrap.with_interval(r.nfr, r.nfr_interval),
                     signed_off_by(r),
                     "-" if r.blessed is None else ("yes" if r.blessed else "no"), r.status))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for rollback in sorted(rolled_back, key=lambda r: -r.started):  # the latest inserted first
        after = sum(r.started <= rollback.started for r in records)
        lines.insert(2 + after, "-".ljust(widths[0]) + "  " + rollback.describe())
    return "\n".join(lines)


def read_flip_report(path: str) -> dict:
    """The flip_report.json at `path` (RunRecord.flip_report), read through TFX's fileio: the
    FlipEvaluator's artifact is a local folder here and a bucket URI (gs://…) on Kubeflow."""
    from tfx.dsl.io import fileio

    with fileio.open(path) as handle:
        return json.load(handle)


def _verdict(report: dict) -> str:
    verdict = report.get("gate")
    if verdict is None:
        return "flip gate: -"
    return ("flip gate: passed" if verdict["blessed"] else
            "flip gate: blocked: " + "; ".join(verdict["failures"]))


def format_flip_report(report: dict, classes=None, top: int = 5) -> str:
    """A text summary of a FlipEvaluator report: golden examples first (graceful.golden), headline
    metrics, worst classes, worst flips, flips against earlier releases (graceful.releases) and
    the flip gate's verdict."""
    name = lambda c: flips.class_label(classes, c)  # noqa: E731
    first = _golden_lines(report, name)
    if not report.get("has_baseline"):
        return "\n".join(first + [f"no flips to report: {report.get('reason', 'no baseline')}",
                                  _verdict(report)])
    s = report["summary"]
    bounds, shown = report.get("intervals") or {}, bootstrap.shown(report)
    lines = first + [f"examples {s['examples']}: old accuracy {s['old_accuracy']:.4f}, new accuracy "
             f"{s['new_accuracy']:.4f} (change {shown['accuracy_change']})",
             f"negative flips {s['negative_flips']} (NFR {shown['nfr']}, relative NFR "
             f"{shown['relative_nfr']}, NFI {s['nfi']:.3f}, "
             f"high-confidence {s['high_confidence_flips']})"
             f"; positive flips {s['positive_flips']} (PFR {s['pfr']:.4f}); BTC {s['btc']:.3f}, "
             f"BEC {s['bec']:.3f}"]
    if bounds:
        lines.append(f"(values {bootstrap.describe(bounds, report['policy']['flip_bound'])})")
    lines.append("classes with the most negative flips:")
    worst = sorted(report["per_class"].items(), key=lambda kv: -kv[1]["nfr"])[:3]
    lines += [f"  {name(c)}: NFR "
              f"{bootstrap.with_interval(m['nfr'], bounds.get('per_class', {}).get(c))} "
              f"({m['negative_flips']} of {m['examples']})" for c, m in worst]
    lines.append(f"worst flips (of {len(report['flips'])} listed):")
    lines += [f"  example {f['id']}: {name(f['label'])} was right, now {name(f['new_pred'])} "
              f"with confidence {f['confidence']:.3f}" for f in report["flips"][:top]]
    if report.get("history_note"):
        lines.append(f"against earlier releases: {report['history_note']}")
    if report.get("history"):
        lines.append("against earlier releases (newest first; re-broken: that release right, the "
                     "baseline wrong, the candidate wrong):")
        lines += releases.summary_lines(report["history"])
    lines.append(_verdict(report))
    return "\n".join(lines)


def _golden_lines(report: dict, name) -> list[str]:
    """The golden examples' line and each golden flip, first in the text report."""
    section = report.get("golden")
    if not section:
        return []
    limit = report.get("policy", {}).get("max_golden_flips", 0)
    return [golden.summary_line(section, limit)] + [
        f"  golden example {f['id']}: {name(f['label'])} was right, now {name(f['new_pred'])}"
        for f in section["flipped"]]
