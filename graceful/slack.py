"""Slack for the human sign-off: the message (Block Kit), posting it with the official slack_sdk, and
the interactivity endpoint (`graceful slack-gate`) that turns button clicks into decisions.

Secrets come only from the environment (SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET) and are never logged.
GRACEFUL_SLACK_API_URL points the client at another Slack Web API base URL (a proxy, or the local
stand-in the tests use).

The endpoint trusts nothing it cannot verify: Slack's v0 request signature (HMAC-SHA256 of
`v0:{timestamp}:{body}` with the signing secret, checked by slack_sdk's SignatureVerifier, which also
rejects timestamps more than 5 minutes old), then the approver allow-list, then the first-decision-wins
rule of graceful.signoff.
"""
from __future__ import annotations

import json
import os
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from graceful import signoff

TOKEN_ENV = "SLACK_BOT_TOKEN"
SIGNING_SECRET_ENV = "SLACK_SIGNING_SECRET"
API_URL_ENV = "GRACEFUL_SLACK_API_URL"
CHANNEL_ENV = "GRACEFUL_SLACK_CHANNEL"
ACTION_PREFIX = "graceful_"
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


class _Handler(BaseHTTPRequestHandler):
    server: "SlackGateServer"

    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status, text = self.server.decide_click(body, self.headers)
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.end_headers()
        self.wfile.write(text.encode())

    def log_message(self, format, *args):  # noqa: A002 — quiet; decisions are logged by handle()
        pass


class SlackGateServer(ThreadingHTTPServer):
    """Serves Slack's interactivity Request URL (POST, any path) and records decisions."""

    daemon_threads = True

    def __init__(self, address, store: signoff.Store, signing_secret: str, approvers: frozenset,
                 log=print):
        from slack_sdk.signature import SignatureVerifier

        if not signing_secret:
            raise ValueError(f"{SIGNING_SECRET_ENV} is not set: without it no request can be "
                             "verified, so the gate would refuse every click.")
        if not approvers:
            raise ValueError(f"No approvers: set {signoff.APPROVERS_ENV} to the Slack user ids "
                             "allowed to sign off.")
        super().__init__(address, _Handler)
        self.store, self.approvers, self.log = store, approvers, log
        self.verifier = SignatureVerifier(signing_secret)

    def decide_click(self, body: bytes, headers) -> tuple[int, str]:
        if not self.verifier.is_valid_request(body, dict(headers)):
            self.log("[slack-gate] refused a request: bad signature or stale timestamp")
            return 401, "invalid signature or stale timestamp"
        try:
            payload = json.loads(urllib.parse.parse_qs(body.decode())["payload"][0])
            action = payload["actions"][0]
            decision = action["action_id"].removeprefix(ACTION_PREFIX)
            request_id, user = action["value"], payload["user"]
        except (KeyError, IndexError, ValueError) as error:
            return 400, f"not a sign-off button click: {error}"
        name = user.get("username") or user.get("name") or user["id"]
        try:
            recorded = self.store.decide(request_id, decision, user["id"], name,
                                         f"{decision}d in Slack", "slack", self.approvers)
        except signoff.SignOffError as refused:
            self.log(f"[slack-gate] refused {decision} on {request_id} by {name}: {refused}")
            self._tell(payload, user["id"], str(refused))
            return 200, str(refused)
        self.log(f"[slack-gate] {request_id}: {recorded.describe()}")
        show_decision(self.store, recorded, log=self.log)
        return 200, recorded.describe()

    def _tell(self, payload: dict, user_id: str, text: str) -> None:
        """An ephemeral note to the person whose click was refused."""
        channel = (payload.get("channel") or {}).get("id")
        if not (channel and os.environ.get(TOKEN_ENV)):
            return
        from slack_sdk.errors import SlackApiError

        try:
            client().chat_postEphemeral(channel=channel, user=user_id, text=text)
        except (SlackApiError, OSError) as error:
            self.log(f"[slack-gate] could not tell {user_id}: {error}")


def serve_in_thread(server: SlackGateServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, name="slack-gate", daemon=True)
    thread.start()
    return thread


def signature_headers(body: bytes, signing_secret: str, timestamp: int | None = None) -> dict:
    """Slack's request headers for `body` (what Slack sends; used by tests and for local checks)."""
    from slack_sdk.signature import SignatureVerifier

    ts = str(int(time.time()) if timestamp is None else timestamp)
    return {"X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": SignatureVerifier(signing_secret).generate_signature(
                timestamp=ts, body=body),
            "Content-Type": "application/x-www-form-urlencoded"}
