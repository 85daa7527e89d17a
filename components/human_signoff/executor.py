"""HumanSignOff's executor: open the request, ask (Slack or CLI), then either record that the run
awaits the decision (deferred, the default) or wait for it and record it (`wait`).

Deferred: the request gets a deadline and the evidence the release pipeline needs
(ReleaseEvidence), and the run ends at once with a "pending" SignOff, so nothing waits.
Waiting: the step heartbeats its request (graceful.signoff.Store.wait): if this process is killed,
the request is closed as abandoned the next time anyone looks at it, so nobody can approve a run
that no longer exists."""
from __future__ import annotations

import dataclasses
import datetime
import json
import os
import time

from tfx.dsl.components.base import base_executor
from tfx.dsl.io import fileio
from tfx.types import artifact_utils

from graceful import bootstrap, flips, golden, locations, releases, signoff, slack
from graceful.history import read_flip_report
from graceful.report_html import INDEX, REPORT_FILE, REVIEW_PNG, review_caption

PENDING = "pending"              # a SignOff's decision while a deferred request awaits a person
DEFERRED_SOURCE = "deferred"     # ... and its source
RELEASE_EVIDENCE = "release"     # the evidence key holding ReleaseEvidence
MAX_REVIEW_LINES = 10            # review-queue examples named in the Slack message


@dataclasses.dataclass(frozen=True)
class ReleaseEvidence:
    """What the release of a deferred request needs, stored in its evidence by HumanSignOff:
    the candidate (imported again by URI, so ML Metadata reuses the Trainer's very artifact), the
    examples it was judged on (the Evaluator's input) and the baseline it was judged against (the
    release refuses to push when the served model changed since)."""

    candidate_model_id: int
    candidate_model_uri: str
    eval_examples_uri: str
    baseline_model_id: int | None
    # Compared by the release: on Kubeflow ids inside containers are hashes that reach the next
    # step as JSON doubles, so only the URI names the baseline reliably (None: no baseline, or a
    # request opened before this field)
    baseline_model_uri: str | None = None
    # The EdgeConverter's EdgeModel (pipeline with EdgeConfig.enabled): the release imports it and
    # pushes it after the cloud model when its edge check passed (None: no edge branch)
    edge_model_uri: str | None = None

    @classmethod
    def of(cls, request: signoff.Request) -> "ReleaseEvidence":
        found = request.evidence.get(RELEASE_EVIDENCE)
        if not found:
            raise signoff.SignOffError(
                f"Sign-off {request.request_id} was not opened for a release (its run waited for "
                "the decision itself, or predates deferred sign-off); there is nothing to release. "
                "`graceful history` shows what became of it.")
        return cls(**found)


def pipeline_name(context) -> str:
    """The running pipeline's name: IR runners (local, Kubeflow) give a PipelineInfo proto (`id`),
    TFX's Airflow runner a data_types.PipelineInfo (`pipeline_name`)."""
    info = context.pipeline_info
    return getattr(info, "id", None) or getattr(info, "pipeline_name", None) or "graceful"


def evidence(report: dict, report_dir: str, pipeline: str, span, baseline_model_id) -> dict:
    """What the approver sees: the flip gate's numbers, worst classes, top flips, the report."""
    s, names = report["summary"], report.get("class_names") or []
    name = lambda c: flips.class_label(names, c)  # noqa: E731
    result = {"pipeline": pipeline, "span": span, "accuracy": s["new_accuracy"],
              "baseline_model_id": baseline_model_id,
              "report": locations.absolute(os.path.join(report_dir, INDEX)),
              "flip_gate": "passed" if report["gate"]["blessed"] else "blocked"}
    if report.get("golden"):  # first in the message (graceful.golden)
        result["golden"] = golden.summary_line(
            report["golden"], report.get("policy", {}).get("max_golden_flips", 0))
    if report.get("history"):  # flips against earlier releases (graceful.releases)
        result["history"] = [line.strip() for line in releases.summary_lines(report["history"])]
    if report["has_baseline"]:
        worst = sorted(report["per_class"].items(), key=lambda kv: -kv[1]["nfr"])[:3]
        bounds = report.get("intervals") or {}  # paired bootstrap intervals (graceful.bootstrap)
        if bounds:
            result["intervals"] = {
                **{k: bounds[k] for k in ("level", "resamples", "nfr", "relative_nfr",
                                          "accuracy_change")},
                "flip_bound": report.get("policy", {}).get("flip_bound", "point")}
        result.update({
            "baseline_accuracy": s["old_accuracy"], "nfr": s["nfr"],
            "relative_nfr": s["relative_nfr"], "high_confidence_flips": s["high_confidence_flips"],
            "worst_classes": [
                f"{name(c)}: NFR "
                f"{bootstrap.with_interval(m['nfr'], bounds.get('per_class', {}).get(c))} "
                f"({m['negative_flips']} of {m['examples']})" for c, m in worst],
            "top_flips": [f"#{f['id']}: {name(f['label'])} → {name(f['new_pred'])} "
                          f"({f['confidence']:.2f})" for f in report["flips"][:5]]})
    if report.get("review_queue"):  # the Trainer's top-k by VoG (graceful.models.review)
        result["review_queue"] = [review_caption(row, names) for row in
                                  report["review_queue"]["examples"][:MAX_REVIEW_LINES]]
    return result


def review_png(report_dir: str) -> bytes | None:
    """The review queue's images as one PNG, when the FlipEvaluator drew it (image data)."""
    path = os.path.join(report_dir, REVIEW_PNG)
    if not fileio.exists(path):
        return None
    with fileio.open(path, "rb") as handle:
        return handle.read()


def edge_evidence(edge_model) -> str:
    """One line on the edge model for the approver: its check's verdict and edge NFR."""
    failures = json.loads(edge_model.get_string_custom_property("failures") or "[]")
    verdict = "passed" if edge_model.get_int_custom_property("blessed") == 1 else (
        "blocked (" + "; ".join(failures) + "): only the cloud model would be pushed")
    return (f"{edge_model.get_string_custom_property('quantization')} TFLite, "
            f"{edge_model.get_int_custom_property('size_bytes')} bytes, edge NFR vs the cloud "
            f"candidate {edge_model.get_float_custom_property('edge_nfr'):.4f}; edge check "
            f"{verdict}")


def utc_iso(timestamp: float) -> str:
    """A time.time() value as the store's decisions show theirs (ISO 8601, UTC, seconds)."""
    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).isoformat(
        timespec="seconds")


class Executor(base_executor.BaseExecutor):

    def Do(self, input_dict, output_dict, exec_properties):
        model = artifact_utils.get_single_instance(input_dict["model"])
        report_artifact = artifact_utils.get_single_instance(input_dict["flip_report"])
        flip_blessing = artifact_utils.get_single_instance(input_dict["flip_blessing"])
        sign_off = artifact_utils.get_single_instance(output_dict["sign_off"])
        report = read_flip_report(os.path.join(report_artifact.uri, REPORT_FILE))
        if flip_blessing.get_string_custom_property("current_model") != model.uri:
            raise ValueError("the flip verdict is not about this model; refusing to ask for sign-off")
        if flip_blessing.get_int_custom_property("blessed") != 1:
            print("[sign-off] the flip gate blocked this model: nobody is asked", flush=True)
            record(sign_off, model, "", signoff.Decision(
                "", signoff.REJECT, "graceful", "graceful",
                "not asked: " + "; ".join(report["gate"]["failures"]), time.time(),
                signoff.FLIP_GATE_SOURCE), None)
            return

        store = signoff.Store(exec_properties["store_path"])
        request_id = self._context.pipeline_run_id or f"model-{model.id}"
        baseline_model_id = report_artifact.get_int_custom_property("baseline_model_id") or None
        shown = evidence(report, report_artifact.uri, pipeline_name(self._context),
                         report_artifact.get_int_custom_property("span") or None, baseline_model_id)
        edge_models = input_dict.get("edge_model") or []
        if edge_models:
            shown["edge"] = edge_evidence(edge_models[0])
        deferred = not (exec_properties["wait"] or exec_properties["auto_approve"])
        if not deferred:
            request = store.open_request(request_id, model.id, shown,
                                         max_poll=exec_properties["max_poll_seconds"])
            decision = self._ask_and_wait(store, request, exec_properties, report,
                                          review_png(report_artifact.uri))
            record(sign_off, model, request_id, decision, store.request(request_id))
            return
        examples = artifact_utils.get_single_instance(input_dict["examples"])  # HumanSignOff checks
        shown[RELEASE_EVIDENCE] = dataclasses.asdict(ReleaseEvidence(
            model.id, model.uri, examples.uri, baseline_model_id,
            report_artifact.get_string_custom_property("baseline_model_uri") or None,
            edge_models[0].uri if edge_models else None))
        deadline = time.time() + exec_properties["timeout_seconds"]
        until = utc_iso(deadline)
        request = store.open_request(request_id, model.id, shown, deadline_at=deadline)
        failed = _ask(store, request, exec_properties, report, review_png(report_artifact.uri))
        if failed is not None:  # Slack failed: rejected now, so there is nothing left to release
            store.claim_release(request_id)
            record(sign_off, model, request_id, failed, store.request(request_id))
            return
        print(f"[sign-off] {request_id} awaits a decision until {until}; this run "
              "ends now and holds nothing. The decision releases the candidate (evaluation "
              f"against baseline {baseline_model_id or '(none)'}, then the push): graceful "
              f"approve {request_id} --reason '...' (or graceful reject ...)", flush=True)
        record(sign_off, model, request_id, signoff.Decision(
            request_id, PENDING, "", "", f"awaiting a decision until {until}", time.time(),
            DEFERRED_SOURCE), store.request(request_id))
        sign_off.set_string_custom_property("deadline_at", until)

    def _ask_and_wait(self, store, request, exec_properties, report,
                      images: bytes | None) -> signoff.Decision:
        request_id = request.request_id
        if exec_properties["auto_approve"]:
            print(f"[sign-off] auto_approve is set: approving {request_id} without asking",
                  flush=True)
            return store.decide(request_id, signoff.APPROVE, "auto_approve", "auto_approve",
                                "auto_approve is set in the pipeline config", "auto",
                                approvers=frozenset({"auto_approve"}))
        failed = _ask(store, request, exec_properties, report, images)
        if failed is not None:
            return failed
        print(f"[sign-off] decide from a shell: graceful approve {request_id} --reason '...' "
              f"(or graceful reject ...); store {store.path}", flush=True)
        decision = store.wait(request_id, exec_properties["timeout_seconds"],
                              max_poll=exec_properties["max_poll_seconds"],
                              log=lambda line: print(line, flush=True))
        if decision is None:
            try:
                decision = store.decide(request_id, signoff.REJECT, "graceful", "graceful",
                                        "timeout", signoff.TIMEOUT_SOURCE)
            except signoff.SignOffError:  # a decision landed at the last moment: it wins
                decision = store.decision(request_id)
        if decision.source in signoff.SYSTEM_SOURCES:
            # timed out, or closed as abandoned while this process was suspended: the Slack
            # message still has its buttons, and only this process will update it
            slack.show_decision(store, decision)
        print(f"[sign-off] {request_id}: {decision.describe()}", flush=True)
        return decision


def _ask(store, request, exec_properties, report: dict,
         images: bytes | None = None) -> signoff.Decision | None:
    """Posts the request to Slack when it is configured (else says how to set it up), the flip
    report's plots in its thread; a Slack failure to post rejects the request at once (fail
    closed) and that rejection is returned."""
    channel = exec_properties["slack_channel"] or os.environ.get(slack.CHANNEL_ENV, "")
    if not (os.environ.get(slack.TOKEN_ENV) and channel):
        print(f"[sign-off] {slack.SETUP_HINT}", flush=True)
        return None
    from slack_sdk.errors import SlackApiError

    try:
        ts = slack.post_request(  # report: its plots go in the thread
            request, channel, report, review_png=images,
            on_posted=lambda ts: store.set_slack_message(request.request_id, channel, ts))
    except (SlackApiError, OSError) as error:
        reason = f"Slack API error, message not sent: {slack.error_text(error)}"
        print(f"[sign-off] {reason}; not approving", flush=True)
        return store.decide(request.request_id, signoff.REJECT, "graceful", "graceful", reason,
                            "error")
    print(f"[sign-off] posted to Slack channel {channel} (ts {ts})", flush=True)
    return None


def record(sign_off, model, request_id: str, decision: signoff.Decision,
           request: signoff.Request | None) -> None:
    """The decision as MLMD custom properties (the audit trail); blessed only when approved.
    Shared with the release (components/sign_off_release), so both record it alike."""
    sign_off.set_string_custom_property("request_id", request_id)
    sign_off.set_string_custom_property("decision", decision.decision)
    sign_off.set_string_custom_property("approver_id", decision.approver_id)
    sign_off.set_string_custom_property("approver_name", decision.approver_name)
    sign_off.set_string_custom_property("decided_at", decision.when)
    sign_off.set_string_custom_property("reason", decision.reason)
    sign_off.set_string_custom_property("source", decision.source)
    sign_off.set_string_custom_property("slack_channel", (request and request.slack_channel) or "")
    sign_off.set_string_custom_property("slack_ts", (request and request.slack_ts) or "")
    sign_off.set_int_custom_property("model_id", model.id)
    sign_off.set_int_custom_property("blessed", int(decision.approved))
    if decision.approved:
        sign_off.set_int_custom_property("current_model_id", model.id)
