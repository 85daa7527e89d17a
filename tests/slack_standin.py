"""A local stand-in for Slack: real HTTP on 127.0.0.1, speaking the Web API methods graceful calls
and the interactivity requests Slack sends, every request recorded. The real slack_sdk.WebClient
talks to it through base_url (GRACEFUL_SLACK_API_URL).

Web API (https://api.slack.com/methods), answered as Slack answers them:
- chat.postMessage / chat.update (message_not_found for a message it never posted) /
  chat.postEphemeral;
- files.getUploadURLExternal (form params filename, length) → an upload URL served here; the upload
  itself (POST of the raw bytes, checked against the announced length); then
  files.completeUploadExternal (files, channel_id, thread_ts) shares the uploaded files into the
  channel, or the thread of a message: recorded in `shared`;
- views.open (JSON trigger_id, view): only with a trigger_id this stand-in issued, unused and under
  3 seconds old (invalid_trigger_id / exchanged_trigger_id / expired_trigger_id otherwise), and a
  view within Slack's limits; recorded in `views`.

Interactivity (what Slack POSTs to the app's Request URL): `click` sends a block_actions payload for
a button of a posted message, with a fresh trigger_id; `submit` sends the view_submission of an
opened view, its input blocks filled in as the person typed them. Both are form-encoded and signed
with the signing secret (v0 HMAC-SHA256, computed with slack_sdk's own SignatureVerifier).

Modes: "ok" answers like Slack; "error" answers {"ok": false, "error": "channel_not_found"} as Slack
does for a wrong channel; "http500" fails at the HTTP level (slack_sdk retries, then raises).
`failing` makes single methods fail: {"files.completeUploadExternal": "not_in_channel"} answers that
Slack error, {"upload": 500} fails the upload URL with that HTTP status.
"""
from __future__ import annotations

import itertools
import json
import secrets
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

METHODS = ("chat.postMessage", "chat.update", "chat.postEphemeral", "files.getUploadURLExternal",
           "files.completeUploadExternal", "views.open")
UPLOAD_PATH = "/upload/v1/"
TRIGGER_LIFETIME = 3.0  # seconds; Slack's
MAX_VIEW_TITLE, MAX_PRIVATE_METADATA = 24, 3000


class _Handler(BaseHTTPRequestHandler):
    server: "SlackStandIn"

    def do_POST(self):  # noqa: N802
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.startswith(UPLOAD_PATH):
            return self._upload(self.path[len(UPLOAD_PATH):], raw)
        method = self.path.rsplit("/", 1)[-1]
        content_type = self.headers.get("Content-Type") or ""
        body = (json.loads(raw) if "json" in content_type
                else dict(urllib.parse.parse_qsl(raw.decode())))
        with self.server.lock:
            self.server.calls.append({"method": method, "body": body,
                                      "authorization": self.headers.get("Authorization"),
                                      "at": time.monotonic()})
        if self.server.mode == "http500":
            return self._reply(500, {"ok": False, "error": "internal_error"})
        if method not in METHODS:
            return self._reply(200, {"ok": False, "error": "unknown_method"})
        if self.headers.get("Authorization") != f"Bearer {self.server.token}":
            return self._reply(200, {"ok": False, "error": "invalid_auth"})
        if self.server.mode == "error":
            return self._reply(200, {"ok": False, "error": "channel_not_found"})
        if method in self.server.failing:
            return self._reply(200, {"ok": False, "error": self.server.failing[method]})
        with self.server.lock:
            answer = getattr(self.server, "_" + method.replace(".", "_"))(body)
        self._reply(200, answer)

    def _upload(self, file_id: str, data: bytes) -> None:
        if "upload" in self.server.failing:
            return self._reply(self.server.failing["upload"], {"ok": False})
        with self.server.lock:
            pending = self.server.uploads.get(file_id)
            if pending is None or pending["length"] != len(data):
                return self._reply(400, "unknown upload URL or wrong length", text=True)
            pending["data"] = data
        self._reply(200, f"OK - {len(data)}", text=True)

    def _reply(self, status: int, payload, text: bool = False) -> None:
        data = (str(payload) if text else json.dumps(payload)).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain" if text else "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args):  # noqa: A002
        pass


class SlackStandIn(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, token: str, mode: str = "ok", signing_secret: str | None = None,
                 failing: dict | None = None):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.token, self.mode, self.signing_secret = token, mode, signing_secret
        self.failing = failing or {}
        self.lock = threading.Lock()
        self.calls: list[dict] = []
        self.messages: dict[tuple[str, str], dict] = {}   # (channel, ts) -> the message
        self.uploads: dict[str, dict] = {}                # file id -> announced, then its bytes
        self.shared: list[dict] = []                      # files shared into a channel or thread
        self.views: list[dict] = []                       # opened modals, newest last
        self.triggers: dict[str, dict] = {}               # trigger_id -> who, when, used
        self.counter = itertools.count(1)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/api/"

    def called(self, method: str) -> list[dict]:
        with self.lock:
            return [c for c in self.calls if c["method"] == method]

    def close(self) -> None:
        self.shutdown()
        self.server_close()

    # --- the Web API methods (called under self.lock) ------------------------------------------

    def _chat_postMessage(self, body: dict) -> dict:
        ts = f"1790000000.{next(self.counter):06d}"
        self.messages[(body.get("channel"), ts)] = {"ts": ts, "blocks": body.get("blocks"),
                                                    "text": body.get("text")}
        return {"ok": True, "channel": body.get("channel"), "ts": ts,
                "message": self.messages[(body.get("channel"), ts)]}

    def _chat_update(self, body: dict) -> dict:
        message = self.messages.get((body.get("channel"), body.get("ts")))
        if message is None:
            return {"ok": False, "error": "message_not_found"}
        message.update(blocks=body.get("blocks"), text=body.get("text"))
        return {"ok": True, "channel": body["channel"], "ts": body["ts"], "message": message}

    def _chat_postEphemeral(self, body: dict) -> dict:
        return {"ok": True, "message_ts": f"1790000000.{next(self.counter):06d}"}

    def _files_getUploadURLExternal(self, body: dict) -> dict:
        if not (body.get("filename") and str(body.get("length", "")).isdigit()):
            return {"ok": False, "error": "invalid_arguments"}
        file_id = f"F{next(self.counter):08d}"
        self.uploads[file_id] = {"filename": body["filename"], "length": int(body["length"]),
                                 "alt_txt": body.get("alt_txt"), "data": None}
        return {"ok": True, "file_id": file_id,
                "upload_url": f"http://127.0.0.1:{self.server_address[1]}{UPLOAD_PATH}{file_id}"}

    def _files_completeUploadExternal(self, body: dict) -> dict:
        try:
            files = json.loads(body.get("files") or "")
        except ValueError:
            return {"ok": False, "error": "invalid_arguments"}
        if not all(self.uploads.get(f.get("id"), {}).get("data") is not None for f in files):
            return {"ok": False, "error": "file_not_found"}  # announced but never uploaded
        done = []
        for f in files:
            upload = self.uploads.pop(f["id"])
            self.shared.append({"id": f["id"], "title": f.get("title"), **upload,
                                "channel": body.get("channel_id"),
                                "thread_ts": body.get("thread_ts"),
                                "initial_comment": body.get("initial_comment")})
            done.append({"id": f["id"], "title": f.get("title"), "name": upload["filename"]})
        return {"ok": True, "files": done}

    def _views_open(self, body: dict) -> dict:
        trigger = self.triggers.get(body.get("trigger_id"))
        if trigger is None:
            return {"ok": False, "error": "invalid_trigger_id"}
        if trigger["used"]:
            return {"ok": False, "error": "exchanged_trigger_id"}
        if time.monotonic() - trigger["issued"] > TRIGGER_LIFETIME:
            return {"ok": False, "error": "expired_trigger_id"}
        view = body.get("view")
        if isinstance(view, str):
            view = json.loads(view)
        if not (isinstance(view, dict) and view.get("type") == "modal"
                and len(view.get("title", {}).get("text", "")) <= MAX_VIEW_TITLE
                and len(view.get("private_metadata", "")) <= MAX_PRIVATE_METADATA):
            return {"ok": False, "error": "invalid_arguments"}
        trigger["used"] = True
        opened = {**view, "id": f"V{next(self.counter):08d}", "user_id": trigger["user_id"],
                  "opened_at": time.monotonic()}
        self.views.append(opened)
        return {"ok": True, "view": opened}

    # --- what Slack sends to the app's Request URL --------------------------------------------

    def click(self, url: str, request_id: str, decision: str, user_id: str,
              username: str | None = None, channel: str = "C1", **send) -> tuple[int, object]:
        """Presses Approve or Reject (graceful_<decision>, value request_id) as `user_id`."""
        trigger_id = f"{next(self.counter)}.{secrets.randbelow(10 ** 9)}.{secrets.token_hex(8)}"
        with self.lock:
            self.triggers[trigger_id] = {"user_id": user_id, "issued": time.monotonic(),
                                         "used": False}
        payload = {"type": "block_actions", "trigger_id": trigger_id,
                   "user": {"id": user_id, "username": username or user_id.lower(),
                            "name": username or user_id.lower()},
                   "channel": {"id": channel}, "container": {"type": "message"},
                   "actions": [{"type": "button", "block_id": "graceful_sign_off",
                                "action_id": f"graceful_{decision}", "value": request_id}]}
        return self.send(url, payload, **send)

    def submit(self, url: str, reason: str | None, user_id: str | None = None,
               view: dict | None = None, username: str | None = None, **send):
        """Submits `view` (default: the newest opened) with `reason` typed into each input
        (None: left empty, which Slack sends as null), as `user_id` (default: who opened it)."""
        with self.lock:
            view = view or self.views[-1]
        user_id = user_id or view["user_id"]
        values = {block["block_id"]: {block["element"]["action_id"]: {
            "type": block["element"]["type"], "value": reason}}
            for block in view["blocks"] if block["type"] == "input"}
        payload = {"type": "view_submission",
                   "user": {"id": user_id, "username": username or user_id.lower(),
                            "name": username or user_id.lower()},
                   "view": {"id": view["id"], "type": "modal", "callback_id": view["callback_id"],
                            "private_metadata": view.get("private_metadata", ""),
                            "state": {"values": values}}}
        return self.send(url, payload, **send)

    def send(self, url: str, payload: dict, secret: str | None = None, age: int = 0,
             tamper=None, signed: bool = True) -> tuple[int, object]:
        """POSTs `payload` form-encoded, signed as Slack signs (with `secret`, default the signing
        secret; `age` seconds ago; `tamper(body)` alters the body after signing; signed=False
        sends no signature). Returns (status, reply): JSON replies decoded, text as text."""
        from slack_sdk.signature import SignatureVerifier

        body = urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()
        timestamp = str(int(time.time()) - age)
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if signed:
            headers.update({"X-Slack-Request-Timestamp": timestamp,
                            "X-Slack-Signature": SignatureVerifier(
                                secret or self.signing_secret).generate_signature(
                                timestamp=timestamp, body=body)})
        if tamper is not None:
            body = tamper(body)
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status, kind, data = response.status, response.headers["Content-Type"], response.read()
        except urllib.error.HTTPError as error:
            status, kind, data = error.code, error.headers["Content-Type"], error.read()
        return status, json.loads(data) if "json" in (kind or "") else data.decode()
