"""SpanWindowStrategy: a Resolver strategy that picks the training window of data spans from MLMD.

Why our own: ExampleGen ingests one span per run and records `span` as a custom property, which TFX's
span resolver functions read as 0 (so they collapse every span into one), and TFX's SpanRangeStrategy
keeps every re-ingested copy of a span. This strategy reads the custom property, keeps the newest
artifact of each span, and returns the spans of the window.

Only accepted spans train: a span's newest copy that DataGate judged decides. A copy counts as accepted
when a DataGate execution of the pipeline run that produced it finished (COMPLETE or CACHED), and as
rejected when it failed (anomalies, failed data checks). A copy whose run stopped before DataGate
judged it (killed, crashed) has no verdict and is passed over, so an interrupted re-ingest neither
admits nor disqualifies the span. A rejected span stays in ML Metadata but is skipped, with a line
saying why, so it never trains in a later run. Fail closed: no accepting verdict, no training.
"""
from __future__ import annotations

import json
from typing import Dict, List, Optional

from ml_metadata.proto import metadata_store_pb2
from tfx import types
from tfx.dsl.components.common import resolver

from graceful.history import RUN_CONTEXT_TYPES

SPAN = "span"
GATE = "DataGate"  # the execution type name ends with the component's name
PASSED = (metadata_store_pb2.Execution.COMPLETE, metadata_store_pb2.Execution.CACHED)
# Where TFX's launcher records an ExecutionResult (with a result_message) when the executor reported one.
EXECUTION_RESULT = "__execution_result__"


def span_of(artifact: types.Artifact) -> int:
    """ExampleGen records the span as a custom property; other producers may use the property."""
    if artifact.has_custom_property(SPAN):
        return artifact.get_int_custom_property(SPAN)
    return int(getattr(artifact, SPAN))


def window_spans(spans: list[int], last_span: int | None, num_spans: int) -> set[int]:
    """The spans of the window: the `num_spans` newest spans <= last_span (all spans if 0).

    `last_span=None` means the newest span present.
    """
    candidates = sorted({s for s in spans if last_span is None or s <= last_span})
    return set(candidates[-num_spans:] if num_spans > 0 else candidates)


def _failure_reason(execution) -> str:
    """The first line of the failed execution's recorded result message, if TFX recorded one."""
    value = execution.custom_properties.get(EXECUTION_RESULT)
    try:
        message = json.loads(value.string_value).get("resultMessage", "") if value else ""
    except ValueError:
        message = ""
    return message.strip().splitlines()[0] if message.strip() else (
        "its DataGate failed (no reason recorded in ML Metadata; see that run's log)")


class GateVerdicts:
    """Whether DataGate accepted each Examples artifact, read from ML Metadata."""

    def __init__(self, store):
        self._store = store
        self._context_types = {t.id: t.name for t in store.get_context_types()}
        self._execution_types = {t.id: t.name for t in store.get_execution_types()}

    def _runs_producing(self, artifact_id: int) -> list:
        """The run contexts of the executions that output the artifact."""
        producers = {e.execution_id for e in self._store.get_events_by_artifact_ids([artifact_id])
                     if e.type == metadata_store_pb2.Event.OUTPUT}
        runs = {}
        for execution_id in producers:
            for context in self._store.get_contexts_by_execution(execution_id):
                if self._context_types.get(context.type_id) in RUN_CONTEXT_TYPES:
                    runs[context.id] = context
        return list(runs.values())

    def _gates(self, run) -> list:
        return [e for e in self._store.get_executions_by_context(run.id)
                if self._execution_types.get(e.type_id, "").rsplit(".", 1)[-1] == GATE]

    def verdict(self, artifact: types.Artifact) -> tuple[bool | None, str]:
        """(True, "") if a DataGate of the producing run passed; (False, why) if one failed;
        (None, why) if no DataGate judged it (its run stopped first)."""
        runs = self._runs_producing(artifact.id)
        for run in runs:
            if any(g.last_known_state in PASSED for g in self._gates(run)):
                return True, ""
        for run in runs:
            failed = [g for g in self._gates(run)
                      if g.last_known_state == metadata_store_pb2.Execution.FAILED]
            if failed:
                return False, (f"rejected by the data checks in run {run.name}: "
                               f"{_failure_reason(failed[-1])}")
        where = f"in run {runs[-1].name}" if runs else "(no pipeline run in ML Metadata produced it)"
        return None, f"never passed the data checks: DataGate did not complete {where}"


class SpanWindowStrategy(resolver.ResolverStrategy):
    """Resolves the newest artifact of each span in the window, newest span first."""

    def __init__(self, num_spans: int = 0, last_span: Optional[int] = None):
        self._num_spans = num_spans
        self._last_span = last_span

    def resolve_artifacts(self, store, input_dict: Dict[str, List[types.Artifact]]
                          ) -> Optional[Dict[str, List[types.Artifact]]]:
        verdicts = GateVerdicts(store)
        result = {}
        for key, artifacts in input_dict.items():
            copies = {}
            for artifact in sorted(artifacts, key=lambda a: a.id, reverse=True):
                copies.setdefault(span_of(artifact), []).append(artifact)  # newest first
            accepted, rejected = {}, {}
            for span, newest_first in copies.items():
                if self._last_span is None or span <= self._last_span:
                    self._judge(span, newest_first, verdicts, accepted, rejected)
            chosen = window_spans(list(accepted), self._last_span, self._num_spans)
            for span, reason in sorted(rejected.items()):
                if span >= min(chosen, default=span):  # in the window's range
                    print(f"[window] skipping span {span}: {reason}", flush=True)
            result[key] = [accepted[s] for s in sorted(chosen, reverse=True)]
        return result if all(result.values()) else None

    @staticmethod
    def _judge(span: int, newest_first: list, verdicts: GateVerdicts, accepted: dict,
               rejected: dict) -> None:
        """The newest copy with a verdict decides: into `accepted` (span -> that copy) or
        `rejected` (span -> why); copies nobody judged are passed over."""
        reason = ""
        for artifact in newest_first:
            passed, why = verdicts.verdict(artifact)
            if passed:
                accepted[span] = artifact
                return
            reason = reason or why
            if passed is False:
                rejected[span] = why
                return
        rejected[span] = reason
