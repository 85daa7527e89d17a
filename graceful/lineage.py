"""A model's lineage, walked in ML Metadata through events (artifact -> execution -> artifact):
which data spans trained it, with which schema, statistics and anomalies, which parameters, against
which baseline; how it was judged (flip report, TFMA metrics), who signed it off, and where it went.

Nothing comes from logs or from the run it happened in: training data ingested by earlier runs is
found through the events that link it to the Trainer, as an auditor would.
"""
from __future__ import annotations

import dataclasses
import json
import os

from ml_metadata.proto import metadata_store_pb2

from graceful import history
from graceful.report_html import INDEX, REPORT_FILE

INPUT, OUTPUT = metadata_store_pb2.Event.INPUT, metadata_store_pb2.Event.OUTPUT


class Graph:
    """Small helpers over one MLMD store. Steps are found by the artifact types they produce,
    never by node id or component class (see graceful.history)."""

    def __init__(self, store):
        self.store = store
        self._type_names = {}

    def type_name(self, artifact) -> str:
        if artifact.type_id not in self._type_names:  # a type registered since we last looked
            self._type_names = {t.id: t.name for t in self.store.get_artifact_types()}
        return self._type_names[artifact.type_id]

    def producer(self, artifact):
        """The execution that created the artifact: the first to output it (a release's
        Importer(reimport=False) outputs the Trainer's Model again)."""
        ids = [e.execution_id for e in self.store.get_events_by_artifact_ids([artifact.id])
               if e.type == OUTPUT]
        return self.store.get_executions_by_id([min(ids)])[0] if ids else None

    def artifacts(self, execution, kind, type_name: str) -> list:
        """The artifacts of `type_name` the execution consumed (INPUT) or produced (OUTPUT)."""
        ids = [e.artifact_id for e in self.store.get_events_by_execution_ids([execution.id])
               if e.type == kind]
        return [a for a in self.store.get_artifacts_by_id(ids) if self.type_name(a) == type_name]

    def consumers(self, artifact, producing: str) -> list:
        """The executions that consumed the artifact and produced an artifact of type `producing`."""
        ids = [e.execution_id for e in self.store.get_events_by_artifact_ids([artifact.id])
               if e.type == INPUT]
        return [x for x in self.store.get_executions_by_id(ids)
                if self.artifacts(x, OUTPUT, producing)]

    def one_output(self, artifact, type_name: str):
        """The first artifact of `type_name` produced from this one, or None."""
        for execution in self.consumers(artifact, type_name):
            return self.artifacts(execution, OUTPUT, type_name)[0]
        return None


def pushed_model_ids(store) -> list[int]:
    """Models actually pushed, in the order of their pushes: a Pusher's, or a `graceful rollback`'s
    (which pushes the model it restores), so the last one is the model being served."""
    graph = Graph(store)
    ids = []
    for pushed in sorted(store.get_artifacts_by_type(history.PUSHED_MODEL), key=lambda a: a.id):
        if history.property_value(pushed, "pushed") != 1:
            continue
        pusher = graph.producer(pushed)
        ids += [m.id for m in graph.artifacts(pusher, INPUT, history.MODEL)]
    return ids


def _run_steps(store, run_ids, model) -> list:
    """The steps of the runs `run_ids` (context ids) that consumed the model, oldest first."""
    executions = [x for run_id in run_ids for x in store.get_executions_by_context(run_id)]
    # nodes={}: lineage never shows node ids, so the store's node contexts are not walked.
    return [step for step in history.steps(store, executions, nodes={})
            if any(m.id == model.id for m in step.consumed(history.MODEL))]


def _contexts(store, execution_id: int) -> list:
    """The execution's contexts; none for one recorded outside a pipeline run (graceful.rollback's,
    which consumes the model it restores), where MLMD raises NotFoundError."""
    from ml_metadata import errors

    try:
        return store.get_contexts_by_execution(execution_id)
    except errors.NotFoundError:
        return []


def _judging_steps(store, trainer, model) -> tuple[list, list]:
    """How the model was judged: (the steps that consumed it in the run that trained it, the steps
    that consumed it in the (latest) release run that acted on that run's deferred sign-off, if
    any: pipeline/release.py). A release run is recognised as `graceful history` recognises it: its
    SignOff is marked as a release (history.released_request) of the request the training run's
    SignOff opened. Later runs consume the model too, as their baseline (and so do later
    releases); those judged their own candidates."""
    run_types = {t.id for t in store.get_context_types() if t.name in history.RUN_CONTEXT_TYPES}
    trained_in = {run.id for run in store.get_contexts_by_execution(trainer.id)
                  if run.type_id in run_types}
    trained = _run_steps(store, sorted(trained_in), model)
    requests = {history.property_value(sign_off, "request_id")
                for step in trained for sign_off in step.produced(history.SIGN_OFF)} - {None}
    consumers = {e.execution_id for e in store.get_events_by_artifact_ids([model.id])
                 if e.type == INPUT}
    other_runs = {run.id: run for execution_id in consumers
                  for run in _contexts(store, execution_id)
                  if run.type_id in run_types and run.id not in trained_in}
    # The latest release wins, as in `graceful history`: a release that failed after its claim can
    # be run again (pipeline/release.py), and the repeat's outcome is the model's.
    for run in sorted(other_runs.values(), key=lambda r: (r.create_time_since_epoch, r.id),
                      reverse=True):
        steps = _run_steps(store, [run.id], model)
        if any(history.released_request(sign_off) in requests
               for step in steps for sign_off in step.produced(history.SIGN_OFF)):
            return trained, steps
    return trained, []


def _first(steps: list, type_name: str):
    """(step, artifact) of the first step that produced an artifact of `type_name`, or (None, None)."""
    for step in steps:
        for artifact in step.produced(type_name):
            return step, artifact
    return None, None


def _model(store, model_id: int | None, metadata_path: str):
    """The model asked for (default: the last pushed one), checked to be a Model."""
    if model_id is None:
        pushed = pushed_model_ids(store)
        if not pushed:
            raise ValueError("No model has been pushed yet; pass a model id (`graceful history`).")
        model_id = pushed[-1]
    models = store.get_artifacts_by_id([model_id])
    if not models or store.get_artifact_types_by_id([models[0].type_id])[0].name != history.MODEL:
        raise ValueError(f"There is no model {model_id} in {metadata_path}; `graceful history` "
                         "lists model ids.")
    return models[0]


def lineage(metadata_path: str, model_id: int | None = None) -> dict:
    """Everything MLMD knows about one model (default: the last pushed one)."""
    store = history.open_store(metadata_path)
    graph = Graph(store)
    model = _model(store, model_id, metadata_path)
    trainer = graph.producer(model)
    parameters = history.training_parameters(trainer)
    result = {"model": {"id": model.id, "uri": model.uri,
                        "loss": history.property_value(model, "loss")},
              "training": {k: v for k, v in parameters.items() if v is not None},
              "data": [_span(graph, examples)
                       for examples in graph.artifacts(trainer, INPUT, history.EXAMPLES)],
              "schema": [a.uri for a in graph.artifacts(trainer, INPUT, history.SCHEMA)],
              "reference_model": [a.id for a in graph.artifacts(trainer, INPUT, history.MODEL)]}
    warm = {key: history.property_value(model, "warm_start_" + key)
            for key in ("model_id", "alpha", "note")}  # GracefulTrainer's, with --warm-start
    if any(value is not None for value in warm.values()):
        result["warm_start"] = {key: value for key, value in warm.items() if value is not None}
    trained, released = _judging_steps(store, trainer, model)
    # What the training run judged it against (a release evaluates against that same model, or
    # records that the served model changed and evaluates nothing).
    result["baseline_model"] = sorted({m.id for step in trained
                                       for m in step.consumed(history.MODEL) if m.id != model.id})
    judged = released + trained  # a release's SignOff, Evaluator and Pusher are the outcome
    _, flip_report = _first(judged, history.FLIP_REPORT)
    if flip_report is not None:
        with open(os.path.join(flip_report.uri, REPORT_FILE)) as handle:
            report = json.load(handle)
        result["flips"] = {"report": os.path.join(flip_report.uri, INDEX),
                           "summary": report["summary"], "gate": report["gate"]}
    _, sign_off = _first(judged, history.SIGN_OFF)
    if sign_off is not None:
        result["sign_off"] = {key: history.property_value(sign_off, key) for key in (
            "decision", "approver_id", "approver_name", "decided_at", "reason", "source",
            "slack_channel", "slack_ts")}
    _, evaluation = _first(judged, history.EVALUATION)
    if evaluation is not None:
        result["evaluation"] = history.read_evaluation(evaluation.uri)
        result["evaluation_uri"] = evaluation.uri
    _, pushed = _first(judged, history.PUSHED_MODEL)
    result["pushed"] = None if pushed is None or history.property_value(pushed, "pushed") != 1 \
        else history.property_value(pushed, "pushed_destination") or pushed.uri
    result["rollbacks"] = [dataclasses.asdict(r) for r in history.rollbacks(store)
                           if model.id == r.model_id or model.id in r.withdrawn_model_ids]
    return result


def _span(graph: Graph, examples) -> dict:
    statistics = graph.one_output(examples, history.STATISTICS)
    anomalies = None if statistics is None else graph.one_output(statistics, history.ANOMALIES)
    return {"span": history.property_value(examples, "span"), "examples": examples.uri,
            "statistics": statistics.uri if statistics else None,
            "anomalies": anomalies.uri if anomalies else None}


def format_lineage(info: dict) -> str:
    lines = [f"model {info['model']['id']} ({info['model']['loss']}): {info['model']['uri']}",
             f"pushed to: {info['pushed'] or 'not pushed'}",
             "trained on:"]
    for span in info["data"]:
        lines.append(f"  span {span['span']}: {span['examples']}")
        lines.append(f"    statistics {span['statistics'] or '-'}; anomalies {span['anomalies'] or '-'}")
    lines.append(f"schema: {', '.join(info['schema']) or '-'}")
    lines.append("training parameters: " + (json.dumps(info["training"]) if info["training"]
                                            else "- (not graceful's trainer)"))
    lines.append(f"reference model (frozen teacher): {info['reference_model'] or 'none'}")
    warm = info.get("warm_start")
    if warm:
        lines.append("warm start: " + (f"from model {warm['model_id']}, weights interpolated "
                                       f"with alpha {warm['alpha']:g}" if "model_id" in warm
                                       else warm.get("note", "-")))
    lines.append(f"baseline model: {info['baseline_model'] or 'none (first model)'}")
    if "flips" in info:
        s, gate = info["flips"]["summary"], info["flips"]["gate"]
        lines.append(f"flip gate: {'passed' if gate['blessed'] else 'blocked: ' + '; '.join(gate['failures'])}"
                     f" — accuracy {s['new_accuracy']:.4f}, NFR {s['nfr']:.4f}, "
                     f"high-confidence flips {s['high_confidence_flips']}")
        lines.append(f"flip report: {info['flips']['report']}")
    if "evaluation" in info:
        metrics = {k: v for k, v in info["evaluation"].items() if k != "failures"}
        lines.append("evaluator (TFMA): " + ", ".join(f"{k} {v:.4f}" for k, v in sorted(metrics.items())))
    if "sign_off" in info:
        s = info["sign_off"]
        where = f", Slack message {s['slack_ts']} in {s['slack_channel']}" if s["slack_ts"] else ""
        lines.append(f"signed off: {s['decision']} by {s['approver_name']} ({s['approver_id']}, "
                     f"{s['source']}) at {s['decided_at']}: {s['reason']}{where}")
    for rollback in info["rollbacks"]:
        record = history.RollbackRecord(**rollback)
        served = record.model_id == info["model"]["id"]
        lines.append(f"{'served again' if served else 'withdrawn'} by {record.describe()}"
                     + (f", pushed to {record.destination}" if served and record.destination
                        else ""))
    return "\n".join(lines)
