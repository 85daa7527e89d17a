"""Slack for the human sign-off: the message (Block Kit), posting it with the official slack_sdk, and
the interactivity endpoint (`graceful slack-gate`) that turns button clicks into decisions.

Secrets come only from the environment (SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET) and are never logged.
GRACEFUL_SLACK_API_URL points the client at another Slack Web API base URL (a proxy, or the local
stand-in the tests use).

The endpoint trusts nothing it cannot verify: Slack's v0 request signature (HMAC-SHA256 of
`v0:{timestamp}:{body}` with the signing secret; timestamps more than 5 minutes old are refused
as replays), checked before anything in the body is parsed, then the approver allow-list (Slack
user ids only: a username is chosen by its owner), then the first-decision-wins rule of
graceful.signoff. The signature is computed here over the raw body bytes, not with slack_sdk's
SignatureVerifier: that decodes the body as UTF-8 and int()s the timestamp header, so a hostile
request makes it raise instead of answer.

It is on the internet, so it answers every request and holds nothing for long: bodies are capped
(checked from Content-Length before reading), a client that stalls loses its connection after a read
timeout instead of holding a thread, every field of the payload is type-checked, and any bug still
gets a 500 reply and a log line rather than a dropped connection.
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

from graceful import signoff

TOKEN_ENV = "SLACK_BOT_TOKEN"
SIGNING_SECRET_ENV = "SLACK_SIGNING_SECRET"
API_URL_ENV = "GRACEFUL_SLACK_API_URL"
CHANNEL_ENV = "GRACEFUL_SLACK_CHANNEL"
ACTION_PREFIX = "graceful_"
MAX_BODY_BYTES = 64 * 1024    # Slack's interactivity payloads are a few KiB
READ_TIMEOUT_SECONDS = 10     # a client slower than this loses its connection, not a thread
SIGNATURE_MAX_AGE = 5 * 60    # Slack's replay window, in seconds
SETUP_HINT = (f"Slack is not configured: set {TOKEN_ENV} (a bot token with the chat:write scope) "
              f"and {CHANNEL_ENV} (a channel id the bot is in), and run `graceful slack-gate` behind "
              "your app's Request URL. Until then, decide with `graceful approve` / "
              "`graceful reject`.")


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


def message_blocks(request: signoff.Request) -> list[dict]:
    """The sign-off message: the flip gate's evidence and Approve / Reject buttons carrying the
    request id (the pipeline run)."""
    e = request.evidence
    fields = [f"*Candidate accuracy*\n{e['accuracy']:.4f}",
              f"*Baseline accuracy*\n{_number(e.get('baseline_accuracy'))}",
              f"*NFR*\n{_number(e.get('nfr'))}",
              f"*Relative NFR*\n{_number(e.get('relative_nfr'), '.3f')}",
              f"*High-confidence flips*\n{e.get('high_confidence_flips', '-')}",
              f"*Flip gate*\n{e['flip_gate']}"]
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": "Model sign-off requested"}},
        _mrkdwn(f"Pipeline *{e['pipeline']}*, run `{request.request_id}`, span {e.get('span', '-')}: "
                f"candidate model {request.model_id} vs baseline "
                f"{e.get('baseline_model_id') or '(none: first model)'}"),
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]},
    ]
    if e.get("worst_classes"):
        blocks.append(_mrkdwn("*Worst classes*\n" + "\n".join(e["worst_classes"])))
    if e.get("top_flips"):
        blocks.append(_mrkdwn("*Top flips*\n" + "\n".join(e["top_flips"])))
    blocks.append(_mrkdwn(f"*Report*: `{e['report']}`"))
    blocks.append({"type": "actions", "block_id": "graceful_sign_off", "elements": [
        {"type": "button", "action_id": ACTION_PREFIX + signoff.APPROVE, "style": "primary",
         "text": {"type": "plain_text", "text": "Approve"}, "value": request.request_id},
        {"type": "button", "action_id": ACTION_PREFIX + signoff.REJECT, "style": "danger",
         "text": {"type": "plain_text", "text": "Reject"}, "value": request.request_id}]})
    return blocks


def decided_blocks(request: signoff.Request, decision: signoff.Decision) -> list[dict]:
    """The message after the decision: the evidence stays, the buttons become who decided."""
    kept = [b for b in message_blocks(request) if b["type"] != "actions"]
    mark = ":white_check_mark:" if decision.approved else ":no_entry:"
    return kept + [{"type": "context", "elements": [
        {"type": "mrkdwn", "text": f"{mark} {decision.describe()}"}]}]


def _number(value, spec=".4f") -> str:
    return "-" if value is None else format(value, spec)


def post_request(request: signoff.Request, channel: str, web=None) -> str:
    """Posts the sign-off message; returns its ts. Raises slack_sdk's errors after its retries."""
    web = web or client()
    response = web.chat_postMessage(channel=channel, blocks=message_blocks(request),
                                    text=f"Model sign-off requested for run {request.request_id}")
    return response["ts"]


def show_decision(store: signoff.Store, decision: signoff.Decision, web=None, log=print) -> None:
    """Updates the request's Slack message (if one was posted) to show who decided."""
    request = store.request(decision.request_id)
    if not (request.slack_channel and request.slack_ts and os.environ.get(TOKEN_ENV)):
        return
    from slack_sdk.errors import SlackApiError

    try:
        (web or client()).chat_update(channel=request.slack_channel, ts=request.slack_ts,
                                      blocks=decided_blocks(request, decision),
                                      text=decision.describe())
    except (SlackApiError, OSError) as error:  # the decision stands; only the message is stale
        log(f"[sign-off] could not update the Slack message: {error}")


# ----------------------------------------------------------------------------------------------
# The interactivity endpoint

_DIGITS = re.compile(r"[0-9]+")
_DECISIONS = {ACTION_PREFIX + signoff.APPROVE: signoff.APPROVE,
              ACTION_PREFIX + signoff.REJECT: signoff.REJECT}
_REASONS = {signoff.APPROVE: "approved in Slack", signoff.REJECT: "rejected in Slack"}


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
    """A signed request that is not a Slack block_actions payload."""


@dataclasses.dataclass(frozen=True)
class _Click:
    decision: str | None   # None: not one of graceful's buttons
    request_id: str
    user_id: str
    user_name: str
    channel_id: str | None


def _click(body: bytes) -> _Click:
    """The button click in a verified request (form field `payload`, JSON); _Malformed if the body
    or any field the gate uses is not what Slack sends."""
    try:
        form = urllib.parse.parse_qs(body.decode("utf-8"), strict_parsing=True)
        payload = json.loads(form["payload"][0])
    except (UnicodeDecodeError, KeyError, ValueError, RecursionError) as error:
        raise _Malformed(f"not a form-encoded JSON payload ({type(error).__name__})") from None
    actions = payload.get("actions") if isinstance(payload, dict) else None
    if not (isinstance(actions, list) and actions):
        raise _Malformed("'actions' is not a non-empty list")
    user, action = payload.get("user"), actions[0]
    user_id = _text(user, "id")
    return _Click(_DECISIONS.get(_text(action, "action_id")), _text(action, "value"), user_id,
                  _text(user, "username", required=False) or _text(user, "name", required=False)
                  or user_id, _text(payload.get("channel"), "id", required=False))


def _text(container, key: str, required: bool = True) -> str | None:
    """container[key] if it is a non-empty printable string: ids and names never hold control
    characters or lone surrogates, which the log, SQLite or the reply could not take."""
    value = container.get(key) if isinstance(container, dict) else None
    if isinstance(value, str) and value and value.isprintable():
        return value
    if required:
        raise _Malformed(f"'{key}' is not a non-empty printable string")
    return None


class _Handler(BaseHTTPRequestHandler):
    """Every request gets a reply. POST: as SlackGateServer.decide_click says, or 411 without a
    Content-Length, 400 with a malformed one, 413 (unread) above MAX_BODY_BYTES, 408 when the body
    stalls past the server's read timeout, 500 (and a log line) on a bug. Any other method: 405.
    HTTP/1.0, one request per connection, so an unread body is never taken for a next request."""

    server: "SlackGateServer"

    def setup(self):
        self.timeout = self.server.read_timeout  # StreamRequestHandler puts it on the socket
        super().setup()

    def do_POST(self):  # noqa: N802 (http.server's naming)
        try:
            status, text = self._post()
        except TimeoutError:
            status, text = 408, f"the body did not arrive within {self.timeout} s"
        except Exception:  # noqa: BLE001 — a bug must still answer, and be seen
            self.server.log(f"[slack-gate] internal error: {traceback.format_exc()}")
            status, text = 500, "internal error (logged)"
        self._reply(status, text)

    def _post(self) -> tuple[int, str]:
        length = self.headers.get("Content-Length")
        if length is None:
            return 411, "Content-Length required"
        if not _DIGITS.fullmatch(length):
            return 400, "Content-Length is not a number of bytes"
        if len(length) > 12 or int(length) > MAX_BODY_BYTES:
            return 413, f"a sign-off click is at most {MAX_BODY_BYTES} bytes"
        body = self.rfile.read(int(length))
        if len(body) < int(length):
            return 400, "the body ended before its Content-Length"
        return self.server.decide_click(body, self.headers)

    def __getattr__(self, name: str):
        """GET, PUT, HEAD and any other method: 405 (http.server answers 501 to unknown ones)."""
        if name.startswith("do_"):
            return lambda: self._reply(405, "only POST: this is Slack's interactivity Request URL")
        raise AttributeError(name)

    def _reply(self, status: int, text: str) -> None:
        data = text.encode("utf-8", "replace")
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        if status == 405:
            self.send_header("Allow", "POST")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def log_message(self, format, *args):  # noqa: A002 — quiet; decide_click logs decisions
        pass


class SlackGateServer(ThreadingHTTPServer):
    """Serves Slack's interactivity Request URL (POST, any path) and records decisions.
    `read_timeout` (seconds) bounds how long one client can hold a connection and its thread.

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

    def decide_click(self, body: bytes, headers) -> tuple[int, str]:
        """(status, text) for a POSTed body: 401 unless Slack signed it (checked before anything
        is parsed), 400 if it is not a button click, else 200 and what happened: Slack shows the
        clicker an error for anything but 200, so refusals are said in the text and an ephemeral
        note."""
        if not _verified(body, headers, self.signing_secret):
            self.log("[slack-gate] refused a request: bad signature or stale timestamp")
            return 401, "invalid signature or stale timestamp"
        try:
            click = _click(body)
        except _Malformed as error:
            return 400, f"not a sign-off button click: {error}"
        if click.decision is None:
            return 200, "not a graceful sign-off button; nothing was recorded"
        try:
            recorded = self.store.decide(click.request_id, click.decision, click.user_id,
                                         click.user_name, _REASONS[click.decision], "slack",
                                         self.approvers)
        except signoff.SignOffError as refused:
            self.log(f"[slack-gate] refused {click.decision} on {click.request_id} by "
                     f"{click.user_name} ({click.user_id}): {refused}")
            self._tell(click, str(refused))
            return 200, str(refused)
        self.log(f"[slack-gate] {click.request_id}: {recorded.describe()}")
        show_decision(self.store, recorded, log=self.log)
        self._hand_on(recorded)
        return 200, recorded.describe()

    def _hand_on(self, decision: signoff.Decision) -> None:
        """Runs on_decision(decision) in a background thread; a failure is logged with its
        traceback (the decision is recorded either way, and the caller owns any retry)."""
        if self.on_decision is None:
            return

        def run():
            try:
                self.on_decision(decision)
            except Exception:  # noqa: BLE001 — logged, never raised into the HTTP reply
                self.log(f"[slack-gate] on_decision failed for {decision.request_id}: "
                         f"{traceback.format_exc()}")

        threading.Thread(target=run, name=f"on-decision-{decision.request_id}",
                         daemon=True).start()

    def _tell(self, click: _Click, text: str) -> None:
        """An ephemeral note to the person whose click was refused."""
        if not (click.channel_id and os.environ.get(TOKEN_ENV)):
            return
        from slack_sdk.errors import SlackApiError

        try:
            client().chat_postEphemeral(channel=click.channel_id, user=click.user_id, text=text)
        except (SlackApiError, OSError) as error:
            self.log(f"[slack-gate] could not tell {click.user_id}: {error}")

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
