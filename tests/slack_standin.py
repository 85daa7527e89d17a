"""A local stand-in for the Slack Web API: real HTTP on 127.0.0.1, the methods graceful calls
(chat.postMessage, chat.update, chat.postEphemeral), every request recorded. The real
slack_sdk.WebClient talks to it through base_url (GRACEFUL_SLACK_API_URL).

Modes: "ok" answers like Slack; "error" answers {"ok": false, "error": "channel_not_found"} as Slack
does for a wrong channel; "http500" fails at the HTTP level (slack_sdk retries, then raises).
"""
from __future__ import annotations

import itertools
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

METHODS = ("chat.postMessage", "chat.update", "chat.postEphemeral")


class _Handler(BaseHTTPRequestHandler):
    server: "SlackStandIn"

    def do_POST(self):  # noqa: N802
        method = self.path.rsplit("/", 1)[-1]
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.loads(raw) if "json" in (self.headers.get("Content-Type") or "") else raw.decode()
        self.server.calls.append({"method": method, "body": body,
                                  "authorization": self.headers.get("Authorization")})
        if self.server.mode == "http500":
            return self._reply(500, {"ok": False, "error": "internal_error"})
        if method not in METHODS:
            return self._reply(200, {"ok": False, "error": "unknown_method"})
        if self.headers.get("Authorization") != f"Bearer {self.server.token}":
            return self._reply(200, {"ok": False, "error": "invalid_auth"})
        if self.server.mode == "error":
            return self._reply(200, {"ok": False, "error": "channel_not_found"})
        ts = body.get("ts") or f"1790000000.{next(self.server.counter):06d}"
        self._reply(200, {"ok": True, "channel": body.get("channel"), "ts": ts,
                          "message": {"ts": ts, "blocks": body.get("blocks")}})

    def _reply(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args):  # noqa: A002
        pass


class SlackStandIn(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, token: str, mode: str = "ok"):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.token, self.mode = token, mode
        self.calls: list[dict] = []
        self.counter = itertools.count(1)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/api/"

    def called(self, method: str) -> list[dict]:
        return [c for c in self.calls if c["method"] == method]

    def close(self) -> None:
        self.shutdown()
        self.server_close()
