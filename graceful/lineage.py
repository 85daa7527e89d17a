"""A model's lineage, walked in ML Metadata through events (artifact -> execution -> artifact):
which data spans trained it, with which schema, statistics and anomalies, which parameters, against
which baseline; how it was judged (flip report, TFMA metrics), who signed it off, and where it went.

Nothing comes from logs or from the run it happened in: training data ingested by earlier runs is
found through the events that link it to the Trainer, as an auditor would.
"""
from __future__ import annotations

import json
import os

from ml_metadata.proto import metadata_store_pb2

from graceful import history
from graceful.report_html import INDEX, REPORT_FILE

INPUT, OUTPUT = metadata_store_pb2.Event.INPUT, metadata_store_pb2.Event.OUTPUT


class Graph:
    """Small helpers over one MLMD store."""

    def __init__(self, store):
        self.store = store
        self.execution_types = {t.id: t.name.rsplit(".", 1)[-1]
                                for t in store.get_execution_types()}

    def artifact(self, artifact_id: int):
        return self.store.get_artifacts_by_id([artifact_id])[0]

    def producer(self, artifact):
        events = [e for e in self.store.get_events_by_artifact_ids([artifact.id])
                  if e.type == OUTPUT]
        return self.store.get_executions_by_id([events[0].execution_id])[0] if events else None

    def consumers(self, artifact, component: str):
        ids = [e.execution_id for e in self.store.get_events_by_artifact_ids([artifact.id])
               if e.type == INPUT]
        return [x for x in self.store.get_executions_by_id(ids)
                if self.execution_types[x.type_id] == component]

    def io(self, execution, kind, key: str):
        events = [e for e in self.store.get_events_by_execution_ids([execution.id])
                  if e.type == kind and e.path.steps and e.path.steps[0].key == key]
        return self.store.get_artifacts_by_id([e.artifact_id for e in events])

    def one_output(self, artifact, component: str, key: str):
        for execution in self.consumers(artifact, component):
            for output in self.io(execution, OUTPUT, key):
                return output
        return None


def pushed_model_ids(store) -> list[int]:
    """Models the Pusher actually pushed, oldest first."""
    graph = Graph(store)
    ids = []
    for pushed in store.get_artifacts_by_type("PushedModel"):
        if history.property_value(pushed, "pushed") != 1:
            continue
        pusher = graph.producer(pushed)
        ids += [m.id for m in graph.io(pusher, INPUT, "model")]
    return ids


def lineage(metadata_path: str, model_id: int | None = None) -> dict:
    """Everything MLMD knows about one model (default: the last pushed one)."""
    store = history.open_store(metadata_path)
    graph = Graph(store)
    if model_id is None:
        pushed = pushed_model_ids(store)
        if not pushed:
            raise ValueError("No model has been pushed yet; pass a model id (`graceful history`).")
        model_id = pushed[-1]
    models = store.get_artifacts_by_id([model_id])
    if not models or store.get_artifact_types_by_id([models[0].type_id])[0].name != "Model":
        raise ValueError(f"There is no model {model_id} in {metadata_path}; `graceful history` "
                         "lists model ids.")
    model = models[0]
    trainer = graph.producer(model)
    result = {"model": {"id": model.id, "uri": model.uri,
                        "loss": history.property_value(model, "loss")},
              "training": {name: history.property_value(trainer, name)
                           for name in history.TRAINING_PARAMETERS},
              "data": [_span(graph, examples) for examples in graph.io(trainer, INPUT, "examples")],
              "schema": [a.uri for a in graph.io(trainer, INPUT, "schema")],
              "reference_model": [a.id for a in graph.io(trainer, INPUT, "base_model")]}
    flip_report = graph.one_output(model, history.FLIP_EVALUATOR, "flip_report")
    if flip_report is not None:
        with open(os.path.join(flip_report.uri, REPORT_FILE)) as handle:
            report = json.load(handle)
        flip_execution = graph.consumers(model, history.FLIP_EVALUATOR)[0]
        result["baseline_model"] = [a.id for a in graph.io(flip_execution, INPUT,
                                                            "baseline_model")]
        result["flips"] = {"report": os.path.join(flip_report.uri, INDEX),
                           "summary": report["summary"], "gate": report["gate"]}
    sign_off = graph.one_output(model, history.SIGN_OFF, "sign_off")
    if sign_off is not None:
        result["sign_off"] = {key: history.property_value(sign_off, key) for key in (
            "decision", "approver_id", "approver_name", "decided_at", "reason", "source",
            "slack_channel", "slack_ts")}
    evaluation = graph.one_output(model, history.EVALUATOR, "evaluation")
    if evaluation is not None:
        result["evaluation"] = history.read_evaluation(evaluation.uri)
        result["evaluation_uri"] = evaluation.uri
    pushed = graph.one_output(model, history.PUSHER, "pushed_model")
    result["pushed"] = None if pushed is None or history.property_value(pushed, "pushed") != 1 \
        else history.property_value(pushed, "pushed_destination") or pushed.uri
    return result


def _span(graph: Graph, examples) -> dict:
    statistics = graph.one_output(examples, "StatisticsGen", "statistics")
    anomalies = None if statistics is None else graph.one_output(statistics, "ExampleValidator",
                                                                 "anomalies")
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
    lines.append("training parameters: " + json.dumps(info["training"]))
    lines.append(f"reference model (frozen teacher): {info['reference_model'] or 'none'}")
    if "flips" in info:
        s, gate = info["flips"]["summary"], info["flips"]["gate"]
        lines.append(f"baseline model: {info['baseline_model'] or 'none (first model)'}")
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
    return "\n".join(lines)
