"""Human sign-off decisions: one durable record that the waiting pipeline step, the CLI and the Slack
endpoint all agree on.

Why SQLite: three processes (the pipeline's HumanSignOff step, `graceful approve|reject`, the
`graceful slack-gate` server) must see the same decisions, and the first valid one must win even if
two arrive at once. A primary key on the request id and `INSERT OR IGNORE` make that atomic; nothing
else needs a server. The outcome is then recorded in ML Metadata by the pipeline step.

TFX-free: the component, the CLI and the endpoint import it.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import os
import sqlite3
import time
from pathlib import Path

APPROVE, REJECT = "approve", "reject"
APPROVERS_ENV = "GRACEFUL_APPROVERS"     # comma-separated allow-list (Slack user ids, CLI names)
APPROVER_ENV = "GRACEFUL_APPROVER"       # who runs `graceful approve|reject`
# Decisions the gate makes itself; they bypass the allow-list, and are never approvals.
FLIP_GATE_SOURCE = "flip gate"   # the flip gate blocked the model, so nobody was asked
SYSTEM_SOURCES = ("timeout", "error", FLIP_GATE_SOURCE)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
  request_id TEXT PRIMARY KEY, model_id INTEGER, evidence TEXT NOT NULL, created_at REAL NOT NULL,
  slack_channel TEXT, slack_ts TEXT);
CREATE TABLE IF NOT EXISTS decisions (
  request_id TEXT PRIMARY KEY REFERENCES requests(request_id), decision TEXT NOT NULL,
  approver_id TEXT NOT NULL, approver_name TEXT NOT NULL, reason TEXT NOT NULL,
  decided_at REAL NOT NULL, source TEXT NOT NULL);
"""


class SignOffError(ValueError):
    """A decision that cannot be recorded; the message says why and what to do."""


@dataclasses.dataclass(frozen=True)
class Request:
    request_id: str
    model_id: int | None
    evidence: dict
    created_at: float
    slack_channel: str | None = None
    slack_ts: str | None = None


@dataclasses.dataclass(frozen=True)
class Decision:
    request_id: str
    decision: str
    approver_id: str
    approver_name: str
    reason: str
    decided_at: float
    source: str

    @property
    def approved(self) -> bool:
        return self.decision == APPROVE and self.source not in SYSTEM_SOURCES

    @property
    def when(self) -> str:
        return datetime.datetime.fromtimestamp(self.decided_at, datetime.timezone.utc).isoformat(
            timespec="seconds")

    def describe(self) -> str:
        verb = "approved" if self.decision == APPROVE else "rejected"
        return f"{verb} by {self.approver_name} ({self.source}) at {self.when}: {self.reason}"


def allow_list(value: str | None = None) -> frozenset:
    """Approvers from `value` or $GRACEFUL_APPROVERS (comma-separated ids or names)."""
    raw = os.environ.get(APPROVERS_ENV, "") if value is None else value
    return frozenset(item.strip() for item in raw.split(",") if item.strip())


def _request(row: sqlite3.Row) -> Request:
    return Request(row["request_id"], row["model_id"], json.loads(row["evidence"]),
                   row["created_at"], row["slack_channel"], row["slack_ts"])


class Store:
    """The shared decision record (a SQLite file, created on first use)."""

    def __init__(self, path: str | os.PathLike):
        self.path = str(path)
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        db.row_factory = sqlite3.Row
        return db

    def open_request(self, request_id: str, model_id: int | None, evidence: dict) -> Request:
        with self._connect() as db:
            db.execute("INSERT OR IGNORE INTO requests VALUES (?, ?, ?, ?, NULL, NULL)",
                       (request_id, model_id, json.dumps(evidence), time.time()))
        return self.request(request_id)

    def set_slack_message(self, request_id: str, channel: str, ts: str) -> None:
        with self._connect() as db:
            db.execute("UPDATE requests SET slack_channel = ?, slack_ts = ? WHERE request_id = ?",
                       (channel, ts, request_id))

    def request(self, request_id: str) -> Request:
        with self._connect() as db:
            row = db.execute("SELECT * FROM requests WHERE request_id = ?", (request_id,)).fetchone()
        if row is None:
            raise SignOffError(f"No sign-off request '{request_id}'. `graceful approve` with no "
                               "argument picks the one waiting; `graceful history` lists runs.")
        return _request(row)

    def requests(self, pending_only: bool = False) -> list[Request]:
        """Requests oldest first; with `pending_only`, those nobody has decided yet."""
        where = (" WHERE request_id NOT IN (SELECT request_id FROM decisions)"
                 if pending_only else "")
        with self._connect() as db:
            return [_request(row) for row in db.execute(
                f"SELECT * FROM requests{where} ORDER BY created_at")]

    def pending(self) -> list[Request]:
        return self.requests(pending_only=True)

    def decision(self, request_id: str) -> Decision | None:
        with self._connect() as db:
            row = db.execute("SELECT * FROM decisions WHERE request_id = ?",
                             (request_id,)).fetchone()
        return None if row is None else Decision(**dict(row))

    def decide(self, request_id: str, decision: str, approver_id: str, approver_name: str,
               reason: str, source: str, approvers: frozenset | None = None) -> Decision:
        """Records a decision; the first one wins. A repeat of the winning decision by the same
        person returns it unchanged; anything else after it is refused with a SignOffError."""
        if decision not in (APPROVE, REJECT):
            raise SignOffError(f"decision must be '{APPROVE}' or '{REJECT}', not '{decision}'")
        if source not in SYSTEM_SOURCES:
            if not approvers:
                raise SignOffError(f"No approvers are configured: set {APPROVERS_ENV} to a "
                                   "comma-separated list of the people allowed to sign off.")
            if approver_id not in approvers and approver_name not in approvers:
                raise SignOffError(f"{approver_name} ({approver_id}) is not on the approver "
                                   f"allow-list ({APPROVERS_ENV}); nothing was recorded.")
        self.request(request_id)  # must exist
        with self._connect() as db:
            db.execute("INSERT OR IGNORE INTO decisions VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (request_id, decision, approver_id, approver_name, reason or "-",
                        time.time(), source))
        winner = self.decision(request_id)
        repeat = (winner.decision == decision and winner.approver_id == approver_id)
        if not repeat:
            raise SignOffError(f"Sign-off {request_id} was already {winner.describe()}; "
                               "the first decision stands.")
        return winner

    def wait(self, request_id: str, timeout_seconds: float, first_poll: float = 0.5,
             max_poll: float = 15.0, log=print) -> Decision | None:
        """Polls for a decision with exponential backoff until `timeout_seconds`; None on timeout."""
        deadline = time.monotonic() + timeout_seconds
        delay, next_note = first_poll, 0.0
        while True:
            found = self.decision(request_id)
            if found is not None:
                return found
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            if time.monotonic() >= next_note:
                log(f"[sign-off] waiting for a decision on {request_id} ({left:.0f}s left)")
                next_note = time.monotonic() + 60
            time.sleep(min(delay, left))
            delay = min(delay * 1.5, max_poll)
