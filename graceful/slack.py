"""Slack for the human sign-off: the message (Block Kit) with its evidence, posting it with the
official slack_sdk, and the interactivity endpoint (`graceful slack-gate`) that turns a person's
Approve / Reject, with the reason they type, into a decision.

Secrets come only from the environment (SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET) and are never logged.
GRACEFUL_SLACK_API_URL points the client at another Slack Web API base URL (a proxy, or the local
stand-in the tests use).

The evidence goes where the approver is: the flip matrix and NFR per class are uploaded as PNGs into
the message's thread (`files_upload_v2`), visible only to the channel's members; the full report, with
flipped examples, stays in the pipeline's artifact store, and the message names its location
without pretending it is a link. A failed upload is said in the message and never stops the sign-off.
The Trainer's review queue (the eval examples with the highest variance of gradients,
graceful.models.review) is listed next to the top flips, and its images (image data) go in the
thread too, as one PNG (report_html.review_queue_png).

A click asks before it decides: Approve / Reject opens a modal (`views.open` with the click's
trigger_id) asking for the reason, which is the audit trail; only the modal's submission records a
decision, with that reason, exactly like `graceful approve --reason`.

The endpoint trusts nothing it cannot verify: Slack's v0 request signature (HMAC-SHA256 of
`v0:{timestamp}:{body}` with the signing secret; timestamps more than 5 minutes old are refused
as replays), checked before anything in the body is parsed, then the approver allow-list (Slack
user ids only: a username is chosen by its owner), then the first-decision-wins rule of
graceful.signoff. The signature is computed here over the raw body bytes, not with slack_sdk's
SignatureVerifier: that decodes the body as UTF-8 and int()s the timestamp header, so a hostile
request makes it raise instead of answer.

It is on the internet, so it answers every request and holds nothing for long: bodies are capped
(checked from Content-Length before reading), a client that stalls loses its connection after a read
timeout instead of holding a thread, every field of the payload is type-checked and size-capped, and
any bug still gets a 500 reply and a log line rather than a dropped connection. Slack wants a reply
within 3 seconds, so what follows a decision (updating the message, on_decision) runs after it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import os
import re
import sys
import threading
import time
import traceback
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from graceful import bootstrap, report_html, signoff

TOKEN_ENV = "SLACK_BOT_TOKEN"
SIGNING_SECRET_ENV = "SLACK_SIGNING_SECRET"
API_URL_ENV = "GRACEFUL_SLACK_API_URL"
CHANNEL_ENV = "GRACEFUL_SLACK_CHANNEL"
ACTION_PREFIX = "graceful_"
PLOTS_BLOCK_ID = "graceful_plots"       # the message's line about the plots in its thread
VIEW_CALLBACK_ID = "graceful_sign_off"  # the reason modal; other views are not ours
REASON_BLOCK_ID = "graceful_reason"     # its input block: Slack's `errors` reply is keyed by it
REASON_ACTION_ID = "reason"
MAX_REASON_CHARS = 2000       # the modal's max_length, checked again on submission
MAX_METADATA_CHARS = 3000     # Slack's limit on a view's private_metadata
MAX_BODY_BYTES = 64 * 1024    # Slack's interactivity payloads are a few KiB
READ_TIMEOUT_SECONDS = 10     # a client slower than this loses its connection, not a thread
SIGNATURE_MAX_AGE = 5 * 60    # Slack's replay window, in seconds
SETUP_HINT = (f"Slack is not configured: set {TOKEN_ENV} (a bot token with the chat:write and "
              f"files:write scopes) and {CHANNEL_ENV} (a channel id the bot is in), and run "
              "`graceful slack-gate` behind your app's interactivity Request URL. Until then, "
              "decide with `graceful approve` / `graceful reject`.")
PLOT_TITLES = {"flip_matrix.png": "Negative flips: old class -> new class (counts)",
               "class_nfr.png": "Negative flip rate per class, against max_class_nfr",
               report_html.REVIEW_PNG: "Review queue: the examples with the highest variance of "
                                       "gradients (VoG)"}
PLOTS_FOLLOW = ":bar_chart: The flip matrix and NFR per class follow in this message's thread."
REVIEW_FOLLOWS = ":mag: The review queue's images follow in this message's thread."


def client(token: str | None = None):
    """A slack_sdk WebClient with the token from the environment and retries on network errors,
    HTTP 5xx and rate limits (slack_sdk's own retry handlers)."""
    from slack_sdk import WebClient
    from slack_sdk.http_retry.builtin_handlers import (ConnectionErrorRetryHandler,
                                                       RateLimitErrorRetryHandler,
                                                       ServerErrorRetryHandler)

    kwargs = {"token": token or os.environ.get(TOKEN_ENV), "timeout": 10,
              "retry_handlers": [ConnectionErrorRetryHandler(max_retry_count=3),
                                 ServerErrorRetryHandler(max_retry_count=3),
                                 RateLimitErrorRetryHandler(max_retry_count=3)]}
    if os.environ.get(API_URL_ENV):
        kwargs["base_url"] = os.environ[API_URL_ENV]
    return WebClient(**kwargs)


def configured() -> bool:
    return bool(os.environ.get(TOKEN_ENV)) and bool(os.environ.get(CHANNEL_ENV))


def _mrkdwn(text: str) -> dict:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _plain(text: str) -> dict:
    return {"type": "plain_text", "text": text}


def message_blocks(request: signoff.Request, plots_note: str | None = None) -> list[dict]:
    """The sign-off message: the flip gate's evidence, where the full report lives, `plots_note`
    (what became of the plots in the thread; None: no plots, the first model has no baseline) and
    Approve / Reject buttons carrying the request id (the pipeline run)."""
    e = request.evidence
    bounds = e.get("intervals") or {}  # paired bootstrap intervals (graceful.bootstrap)
    fields = [f"*Candidate accuracy*\n{e['accuracy']:.4f}",
              f"*Baseline accuracy*\n{_number(e.get('baseline_accuracy'))}",
              f"*NFR*\n{_number(e.get('nfr'), '.4f', bounds.get('nfr'))}",
              f"*Relative NFR*\n{_number(e.get('relative_nfr'), '.3f', bounds.get('relative_nfr'))}",
              f"*High-confidence flips*\n{e.get('high_confidence_flips', '-')}",
              f"*Flip gate*\n{e['flip_gate']}"]
    if e.get("baseline_accuracy") is not None:
        fields.insert(2, "*Accuracy change*\n" + _number(e["accuracy"] - e["baseline_accuracy"],
                                                         "+.4f", bounds.get("accuracy_change")))
    blocks = [
        {"type": "header", "text": _plain("Model sign-off requested")},
        *([_mrkdwn(f"*Golden examples*: {e['golden']}")] if e.get("golden") else []),
        _mrkdwn(f"Pipeline *{e['pipeline']}*, run `{request.request_id}`, span {e.get('span', '-')}: "
                f"candidate model {request.model_id} vs baseline "
                f"{e.get('baseline_model_id') or '(none: first model)'}"),
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]},
    ]
    if bounds:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": (
            "Values " + bootstrap.describe(bounds, bounds.get("flip_bound", "point")))}]})
    if e.get("worst_classes"):
        blocks.append(_mrkdwn("*Worst classes*\n" + "\n".join(e["worst_classes"])))
    if e.get("top_flips"):
        blocks.append(_mrkdwn("*Top flips*\n" + "\n".join(e["top_flips"])))
    if e.get("history"):  # the candidate against the last pushed models (graceful.releases)
        blocks.append(_mrkdwn("*Against earlier releases* (newest first)\n"
                              + "\n".join(e["history"])))
    if e.get("review_queue"):  # the Trainer's top-k by VoG (graceful.models.review)
        blocks.append(_mrkdwn("*Review queue* (highest variance of gradients: worth a look)\n"
                              + "\n".join(e["review_queue"])))
    if e.get("edge"):  # the edge (TFLite) model's check: it gates the edge push only
        blocks.append(_mrkdwn(f"*Edge model*\n{e['edge']}"))
    # Not a link: the report is a file in the pipeline root, which Slack cannot open.
    blocks.append(_mrkdwn(f"*Full report* (with the flipped examples), in the pipeline's artifact "
                          f"store, not reachable from Slack: `{e['report']}`"))
    if plots_note is not None:
        blocks.append({"type": "context", "block_id": PLOTS_BLOCK_ID,
                       "elements": [{"type": "mrkdwn", "text": plots_note}]})
    blocks.append({"type": "actions", "block_id": "graceful_sign_off", "elements": [
        {"type": "button", "action_id": ACTION_PREFIX + signoff.APPROVE, "style": "primary",
         "text": _plain("Approve"), "value": request.request_id},
        {"type": "button", "action_id": ACTION_PREFIX + signoff.REJECT, "style": "danger",
         "text": _plain("Reject"), "value": request.request_id}]})
    return blocks


def decided_blocks(request: signoff.Request, decision: signoff.Decision) -> list[dict]:
    """The message after the decision: the evidence stays, the buttons become who decided and why.
    The note about the plots goes (the thread shows what it holds)."""
    kept = [b for b in message_blocks(request) if b["type"] != "actions"]
    mark = ":white_check_mark:" if decision.approved else ":no_entry:"
    return kept + [{"type": "context", "elements": [
        {"type": "mrkdwn", "text": f"{mark} {decision.describe()}"}]}]


def _number(value, spec=".4f", interval=None) -> str:
    return "-" if value is None else bootstrap.with_interval(value, interval, spec)


def error_text(error: Exception) -> str:
    """What went wrong with a Slack call, short: Slack's error code (e.g. channel_not_found,
    invalid_trigger_id) when it answered, else the exception."""
    response = getattr(error, "response", None)
    if response is not None and hasattr(response, "get"):
        return str(response.get("error") or error)
    return f"{type(error).__name__}: {error}"


def post_request(request: signoff.Request, channel: str, report: dict | None = None, web=None,
                 log=print, on_posted=None, review_png: bytes | None = None) -> str:
    """Posts the sign-off message and returns its ts; raises slack_sdk's errors after its retries
    (no message, no sign-off). If `report` (the flip report) has a baseline, the message says its
    evidence plots follow in the thread, and they are uploaded there; a failed upload is logged
    and said in the message instead, never raised: the message and the CLI still let a person
    decide. `on_posted(ts)` runs as soon as the message exists, before the upload (about a
    second): a decision made during the upload must find the message to update. `review_png`
    (report_html.review_queue_png: the review queue's images, image data only) goes in the
    thread too."""
    web = web or client()
    plots = report_html.evidence_plots(report) if report and report.get("has_baseline") else {}
    notes = [PLOTS_FOLLOW] if plots else []
    if review_png:
        plots[report_html.REVIEW_PNG] = review_png
        notes.append(REVIEW_FOLLOWS)
    text = f"Model sign-off requested for run {request.request_id}"
    response = web.chat_postMessage(channel=channel, text=text, blocks=message_blocks(
        request, " ".join(notes) if notes else None))
    ts = response["ts"]
    if on_posted is not None:
        on_posted(ts)
    if plots:
        _attach(web, request, channel, ts, plots, text, log)
    return ts


def _attach(web, request: signoff.Request, channel: str, ts: str, plots: dict, text: str,
            log) -> None:
    """Uploads `plots` into the thread of message `ts`. If that fails, the message's note about
    them is replaced by what went wrong (one chat.update, only then), so the approver does not look
    for plots that never came; if even that fails, the log says both."""
    from slack_sdk.errors import SlackClientError

    try:
        web.files_upload_v2(
            channel=channel, thread_ts=ts,
            initial_comment=f"Evidence for run {request.request_id}: "
                            + "; ".join(PLOT_TITLES[name] for name in plots),
            file_uploads=[{"file": data, "filename": name, "title": PLOT_TITLES[name],
                           "alt_txt": PLOT_TITLES[name]} for name, data in plots.items()])
        return
    except (SlackClientError, OSError) as error:
        problem = error_text(error)
    log(f"[sign-off] could not attach the plots to the Slack message: {problem}")
    note = (f":warning: The {' and '.join(_FILE_NAMES[name] for name in plots)} could not be "
            f"attached to this thread ({problem}); they are in the full report above.")
    try:
        web.chat_update(channel=channel, ts=ts, text=text, blocks=message_blocks(request, note))
    except (SlackClientError, OSError) as error:
        log(f"[sign-off] and could not say so in the message either: {error_text(error)}")


_FILE_NAMES = {"flip_matrix.png": "flip matrix", "class_nfr.png": "NFR per class",
               report_html.REVIEW_PNG: "review queue's images"}


def show_decision(store: signoff.Store, decision: signoff.Decision, web=None, log=print) -> None:
    """Updates the request's Slack message (if one was posted) to show who decided."""
    request = store.request(decision.request_id)
    if not (request.slack_channel and request.slack_ts and os.environ.get(TOKEN_ENV)):
        return
    from slack_sdk.errors import SlackClientError

    try:
        (web or client()).chat_update(channel=request.slack_channel, ts=request.slack_ts,
                                      blocks=decided_blocks(request, decision),
                                      text=decision.describe())
    except (SlackClientError, OSError) as error:  # the decision stands; only the message is stale
        log(f"[sign-off] could not update the Slack message: {error_text(error)}")


def reason_view(request: signoff.Request, decision: str) -> dict:
    """The modal a click opens: what is being decided, and a required multi-line reason.
    private_metadata carries the request id and the decision to the submission."""
    verb = "Approve" if decision == signoff.APPROVE else "Reject"
    e = request.evidence
    return {
        "type": "modal", "callback_id": VIEW_CALLBACK_ID,
        "private_metadata": json.dumps({"request_id": request.request_id, "decision": decision}),
        "title": _plain(f"{verb} the model"), "submit": _plain(verb), "close": _plain("Cancel"),
        "blocks": [
            _mrkdwn(f"{verb} candidate model {request.model_id} of pipeline *{e['pipeline']}*, "
                    f"run `{request.request_id}`? Your reason is recorded in ML Metadata with "
                    "your Slack user id."),
            {"type": "input", "block_id": REASON_BLOCK_ID, "label": _plain("Reason"),
             "element": {"type": "plain_text_input", "action_id": REASON_ACTION_ID,
                         "multiline": True, "max_length": MAX_REASON_CHARS,
                         "placeholder": _plain("What you checked, and why this decision")}}]}


# ----------------------------------------------------------------------------------------------
# The interactivity endpoint

_DIGITS = re.compile(r"[0-9]+")
_DECISIONS = {ACTION_PREFIX + signoff.APPROVE: signoff.APPROVE,
              ACTION_PREFIX + signoff.REJECT: signoff.REJECT}
BLOCK_ACTIONS, VIEW_SUBMISSION = "block_actions", "view_submission"  # the payload types handled


def _signature(body: bytes, timestamp: str, signing_secret: str) -> str:
    """Slack's v0 signature of the raw body bytes."""
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(signing_secret.encode(), base, hashlib.sha256).hexdigest()


def _verified(body: bytes, headers, signing_secret: str) -> bool:
    """Signed by Slack within the replay window. Missing, non-numeric or absurd headers are simply
    not verified (the digit limit keeps int() cheap)."""
    timestamp = headers.get("X-Slack-Request-Timestamp") or ""
    signature = headers.get("X-Slack-Signature") or ""
    if not (_DIGITS.fullmatch(timestamp) and len(timestamp) <= 12):
        return False
    if abs(time.time() - int(timestamp)) > SIGNATURE_MAX_AGE:
        return False
    return hmac.compare_digest(_signature(body, timestamp, signing_secret).encode(),
                               signature.encode())


class _Malformed(ValueError):
    """A signed request that is not a Slack interaction payload the gate can read."""


@dataclasses.dataclass(frozen=True)
class _Person:
    user_id: str
    user_name: str


@dataclasses.dataclass(frozen=True)
class _Click:
    """Approve / Reject pressed: opens the reason modal, records nothing."""
    decision: str | None   # None: not one of graceful's buttons
    request_id: str
    person: _Person
    trigger_id: str        # lets views.open show the modal to this person, for 3 seconds
    channel_id: str | None


@dataclasses.dataclass(frozen=True)
class _Submission:
    """The reason modal submitted: the decision, with what the person typed."""
    decision: str | None   # None: not graceful's view
    request_id: str
    person: _Person
    reason: str | None     # None: the field was left empty


def _payload(body: bytes) -> dict:
    """The JSON object in a verified request's form field `payload`."""
    try:
        form = urllib.parse.parse_qs(body.decode("utf-8"), strict_parsing=True)
        payload = json.loads(form["payload"][0])
    except (UnicodeDecodeError, KeyError, ValueError, RecursionError) as error:
        raise _Malformed(f"not a form-encoded JSON payload ({type(error).__name__})") from None
    if not isinstance(payload, dict):
        raise _Malformed("the payload is not a JSON object")
    return payload


def _person(payload: dict) -> _Person:
    user = payload.get("user")
    user_id = _text(user, "id")
    return _Person(user_id, _text(user, "username", required=False)
                   or _text(user, "name", required=False) or user_id)


def _click(payload: dict) -> _Click:
    """A block_actions payload; _Malformed if any field the gate uses is not what Slack sends."""
    actions = payload.get("actions")
    if not (isinstance(actions, list) and actions):
        raise _Malformed("'actions' is not a non-empty list")
    action = actions[0]
    return _Click(_DECISIONS.get(_text(action, "action_id")), _text(action, "value"),
                  _person(payload), _text(payload, "trigger_id"),
                  _text(payload.get("channel"), "id", required=False))


def _submission(payload: dict) -> _Submission:
    """A view_submission payload. The view's private_metadata is graceful's own (set by
    reason_view), returned by Slack; it is still checked like everything else."""
    view = _field(payload, "view", dict)
    if _text(view, "callback_id") != VIEW_CALLBACK_ID:
        return _Submission(None, "", _person(payload), None)
    raw = _text(view, "private_metadata")
    if len(raw) > MAX_METADATA_CHARS:
        raise _Malformed(f"'private_metadata' is longer than {MAX_METADATA_CHARS} characters")
    try:
        metadata = json.loads(raw)
    except (ValueError, RecursionError):
        raise _Malformed("'private_metadata' is not JSON") from None
    decision = _text(metadata, "decision")
    if decision not in (signoff.APPROVE, signoff.REJECT):
        raise _Malformed(f"'private_metadata' decision is not {signoff.APPROVE} or "
                         f"{signoff.REJECT}")
    values = _field(_field(view, "state", dict), "values", dict)
    element = _field(_field(values, REASON_BLOCK_ID, dict), REASON_ACTION_ID, dict)
    reason = element.get("value")
    if not (reason is None or isinstance(reason, str)):
        raise _Malformed("the reason's 'value' is not a string or null")
    return _Submission(decision, _text(metadata, "request_id"), _person(payload), reason)


def _field(container, key: str, kind: type):
    value = container.get(key) if isinstance(container, dict) else None
    if not isinstance(value, kind):
        raise _Malformed(f"'{key}' is not a JSON {'object' if kind is dict else kind.__name__}")
    return value


def _text(container, key: str, required: bool = True) -> str | None:
    """container[key] if it is a non-empty printable string: ids and names never hold control
    characters or lone surrogates, which the log, SQLite or the reply could not take."""
    value = container.get(key) if isinstance(container, dict) else None
    if isinstance(value, str) and value and value.isprintable():
        return value
    if required:
        raise _Malformed(f"'{key}' is not a non-empty printable string")
    return None


def _reason_problem(reason: str | None, decision: str) -> str | None:
    """What is wrong with a typed reason, said to the person in the modal; None if nothing.
    Line breaks and tabs are fine; other control characters and lone surrogates (which SQLite and
    MLMD could not store) are not."""
    verb = "approve" if decision == signoff.APPROVE else "reject"
    if reason is None or not reason.strip():
        return (f"Say why you {verb} this model: the reason is recorded in ML Metadata as the "
                "audit trail, and nothing is recorded without it.")
    if len(reason) > MAX_REASON_CHARS:
        return f"At most {MAX_REASON_CHARS} characters, please (this one has {len(reason)})."
    if not all(c.isprintable() or c in "\n\t" for c in reason):
        return "The reason holds control or invalid characters; please retype it."
    return None


def _reason_error(text: str) -> dict:
    """Slack's reply that keeps the modal open and shows `text` under the reason field."""
    return {"response_action": "errors", "errors": {REASON_BLOCK_ID: text}}


class _Handler(BaseHTTPRequestHandler):
    """Every request gets a reply. POST: as SlackGateServer.answer says, or 411 without a
    Content-Length, 400 with a malformed one, 413 (unread) above MAX_BODY_BYTES, 408 when the body
    stalls past the server's read timeout, 500 (and a log line) on a bug. Any other method: 405.
    HTTP/1.0, one request per connection, so an unread body is never taken for a next request."""

    server: "SlackGateServer"

    def setup(self):
        self.timeout = self.server.read_timeout  # StreamRequestHandler puts it on the socket
        super().setup()

    def do_POST(self):  # noqa: N802 (http.server's naming)
        try:
            status, reply = self._post()
        except TimeoutError:
            status, reply = 408, f"the body did not arrive within {self.timeout} s"
        except Exception:  # noqa: BLE001 — a bug must still answer, and be seen
            self.server.log(f"[slack-gate] internal error: {traceback.format_exc()}")
            status, reply = 500, "internal error (logged)"
        self._reply(status, reply)

    def _post(self) -> tuple[int, str | dict]:
        length = self.headers.get("Content-Length")
        if length is None:
            return 411, "Content-Length required"
        if not _DIGITS.fullmatch(length):
            return 400, "Content-Length is not a number of bytes"
        if len(length) > 12 or int(length) > MAX_BODY_BYTES:
            return 413, f"a Slack interaction is at most {MAX_BODY_BYTES} bytes"
        body = self.rfile.read(int(length))
        if len(body) < int(length):
            return 400, "the body ended before its Content-Length"
        return self.server.answer(body, self.headers)

    def __getattr__(self, name: str):
        """GET, PUT, HEAD and any other method: 405 (http.server answers 501 to unknown ones)."""
        if name.startswith("do_"):
            return lambda: self._reply(405, "only POST: this is Slack's interactivity Request URL")
        raise AttributeError(name)

    def _reply(self, status: int, reply: str | dict) -> None:
        """`reply` as text, or as JSON if it is a dict (Slack reads a view_submission's reply)."""
        if isinstance(reply, dict):
            data, kind = json.dumps(reply).encode(), "application/json"
        else:
            data, kind = reply.encode("utf-8", "replace"), "text/plain; charset=utf-8"
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        if status == 405:
            self.send_header("Allow", "POST")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def log_message(self, format, *args):  # noqa: A002 — quiet; answer logs decisions
        pass


class SlackGateServer(ThreadingHTTPServer):
    """Serves Slack's interactivity Request URL (POST, any path): opens the reason modal on a
    click and records the decision on its submission. `read_timeout` (seconds) bounds how long one
    client can hold a connection and its thread.

    `on_decision` is called with each decision this server records (e.g. to start the release of an
    approved model), in a thread of its own: Slack wants its reply within 3 seconds, so nothing it
    does may delay the reply, and its exceptions are logged, never raised into the request."""

    daemon_threads = True

    def __init__(self, address, store: signoff.Store, signing_secret: str, approvers: frozenset,
                 log=print, read_timeout: float = READ_TIMEOUT_SECONDS,
                 on_decision: Callable[[signoff.Decision], None] | None = None):
        if not signing_secret:
            raise ValueError(f"{SIGNING_SECRET_ENV} is not set: without it no request can be "
                             "verified, so the gate would refuse every click.")
        if not approvers:
            raise ValueError(f"No approvers: set {signoff.APPROVERS_ENV} to the Slack user ids "
                             "allowed to sign off.")
        super().__init__(address, _Handler)
        self.store, self.approvers, self.log = store, approvers, log
        self.signing_secret, self.read_timeout = signing_secret, read_timeout
        self.on_decision = on_decision

    def answer(self, body: bytes, headers) -> tuple[int, str | dict]:
        """(status, reply) for a POSTed body: 401 unless Slack signed it (checked before anything
        is parsed), 400 if it is not an interaction payload the gate can read, else 200: Slack
        shows the person an error for anything but 200, so refusals are said in the reply (the
        modal's field error for a submission, an ephemeral note for a click)."""
        if not _verified(body, headers, self.signing_secret):
            self.log("[slack-gate] refused a request: bad signature or stale timestamp")
            return 401, "invalid signature or stale timestamp"
        try:
            payload = _payload(body)
            kind = _text(payload, "type")
            if kind == BLOCK_ACTIONS:
                return 200, self._open_modal(_click(payload))
            if kind == VIEW_SUBMISSION:
                return 200, self._decide(_submission(payload))
        except _Malformed as error:
            return 400, f"not a Slack sign-off interaction: {error}"
        return 200, f"a {kind} interaction is not graceful's; nothing was recorded"

    def _open_modal(self, click: _Click) -> str:
        """Opens the reason modal for the person who clicked; records nothing. Whether they may
        decide is judged once, on the submission."""
        if click.decision is None:
            return "not a graceful sign-off button; nothing was recorded"
        try:
            request = self.store.request(click.request_id)
        except signoff.SignOffError as unknown:
            self._tell(click, str(unknown))
            return str(unknown)
        if not os.environ.get(TOKEN_ENV):
            problem = f"{TOKEN_ENV} is not set for graceful slack-gate"
        else:
            from slack_sdk.errors import SlackClientError

            try:
                client().views_open(trigger_id=click.trigger_id,
                                    view=reason_view(request, click.decision))
                return ""
            except (SlackClientError, OSError) as error:
                problem = error_text(error)
        text = (f"Could not open the reason dialog ({problem}); nothing was recorded. Decide from "
                f"a shell: graceful {click.decision} {click.request_id} --reason '...'")
        self.log(f"[slack-gate] {text}")
        self._tell(click, text)
        return text

    def _decide(self, submission: _Submission) -> str | dict:
        """Records the submitted decision with its reason and closes the modal (an empty reply);
        a missing reason or a refusal keeps the modal open with the problem under the field."""
        if submission.decision is None:
            return "not graceful's view; nothing was recorded"
        person = submission.person
        problem = _reason_problem(submission.reason, submission.decision)
        if problem:
            return _reason_error(problem)
        try:
            recorded = self.store.decide(submission.request_id, submission.decision,
                                         person.user_id, person.user_name, submission.reason,
                                         "slack", self.approvers)
        except signoff.SignOffError as refused:
            self.log(f"[slack-gate] refused {submission.decision} on {submission.request_id} by "
                     f"{person.user_name} ({person.user_id}): {refused}")
            return _reason_error(str(refused))
        self.log(f"[slack-gate] {submission.request_id}: {recorded.describe()}")
        self._in_background(f"updating the message of {recorded.request_id}",
                            lambda: show_decision(self.store, recorded, log=self.log))
        if self.on_decision is not None:
            self._in_background(f"on_decision for {recorded.request_id}",
                                lambda: self.on_decision(recorded))
        return ""

    def _in_background(self, name: str, work: Callable[[], None]) -> None:
        """Runs `work` after the reply, in a thread of its own; a failure is logged with its
        traceback (the decision is recorded either way, and the caller owns any retry)."""

        def run():
            try:
                work()
            except Exception:  # noqa: BLE001 — logged, never raised into the HTTP reply
                self.log(f"[slack-gate] {name} failed: {traceback.format_exc()}")

        threading.Thread(target=run, name=f"slack-gate: {name}", daemon=True).start()

    def _tell(self, click: _Click, text: str) -> None:
        """An ephemeral note to the person whose click went nowhere."""
        if not (click.channel_id and os.environ.get(TOKEN_ENV)):
            return
        from slack_sdk.errors import SlackClientError

        try:
            client().chat_postEphemeral(channel=click.channel_id, user=click.person.user_id,
                                        text=text)
        except (SlackClientError, OSError) as error:
            self.log(f"[slack-gate] could not tell {click.person.user_id}: {error_text(error)}")

    def handle_error(self, request, client_address):
        """A client gone mid-reply (or anything else escaping a handler): one log line instead of
        socketserver's traceback on stderr."""
        self.log(f"[slack-gate] connection from {client_address[0]} failed: "
                 f"{sys.exc_info()[1]!r}")


def serve_in_thread(server: SlackGateServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, name="slack-gate", daemon=True)
    thread.start()
    return thread


def signature_headers(body: bytes, signing_secret: str, timestamp: int | None = None) -> dict:
    """Slack's request headers for `body` (what Slack sends; used by tests and for local checks)."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    return {"X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": _signature(body, ts, signing_secret),
            "Content-Type": "application/x-www-form-urlencoded"}
