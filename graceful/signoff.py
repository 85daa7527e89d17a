"""Human sign-off decisions: one durable record that the waiting pipeline step, the CLI and the Slack
endpoint all agree on.

Why a database: three processes (the pipeline's HumanSignOff step, `graceful approve|reject`, the
`graceful slack-gate` server) must see the same decisions, and the first valid one must win even if
two arrive at once. A primary key on the request id and an insert that ignores a duplicate make that
atomic. The store follows the metadata: a SQLite file in the home beside metadata.sqlite, or, when ML
Metadata is on a MySQL/MariaDB server, two tables in that same database, so processes on different
machines (pipeline pods, the Slack gate, a laptop's CLI) share them without a shared volume. The
outcome is then recorded in ML Metadata by the pipeline step.

Who may decide is an allow-list of immutable ids (Slack user ids; for the CLI the name it runs as),
never of display names or usernames, which their owners can change. A person's decision needs a
reason: it is the audit trail.

A run can die while it waits (kill -9, a lost node). The waiting step refreshes its request's
heartbeat on every poll; a pending request whose heartbeat is older than a few polls is abandoned,
and whoever looks at it next closes it with a system rejection ("abandoned"). Without that, a
person could "approve" a run that no longer exists and believe a model is on its way to serving.

A *deferred* request (opened with a `deadline_at`) has no waiting process: the run ended, and the
decision later releases the candidate (`claim_release`, once; a release run that failed before
its push gives its claim back, `unclaim_release`). Nothing heartbeats it, so it is never
abandoned; past its deadline whoever looks at it next closes it with a system rejection ("timeout").

TFX-free (the MySQL driver is loaded only for a MySQL store): the component, the CLI and the
endpoint import it.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime
import itertools
import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Callable

from graceful import mlmd_store

APPROVE, REJECT = "approve", "reject"
# Comma-separated allow-list of approver ids: Slack user ids (U...) and CLI names. Matched against
# the id only; a Slack username or display name equal to a listed id grants nothing.
APPROVERS_ENV = "GRACEFUL_APPROVERS"
APPROVER_ENV = "GRACEFUL_APPROVER"       # who runs `graceful approve|reject` (their id)
SYSTEM_APPROVER = "graceful"             # the approver of the decisions below
# Decisions the gate makes itself; they bypass the allow-list, and are never approvals.
FLIP_GATE_SOURCE = "flip gate"   # the flip gate blocked the model, so nobody was asked
ABANDONED_SOURCE = "abandoned"   # the waiting run stopped heartbeating (killed, lost)
TIMEOUT_SOURCE = "timeout"       # nobody decided in time (a waiting run's timeout, a deadline)
SYSTEM_SOURCES = (TIMEOUT_SOURCE, "error", FLIP_GATE_SOURCE, ABANDONED_SOURCE)
DEFAULT_MAX_POLL = 15.0          # a waiter's longest poll interval, s (SignOffConfig's default)
# A request is abandoned after STALE_POLLS of its waiter's longest poll intervals without a
# heartbeat, and never sooner than STALE_FLOOR_SECONDS (a slow disk or a busy SQLite lock is not a
# dead run).
STALE_POLLS = 4
STALE_FLOOR_SECONDS = 60.0
# The longest values the tables hold (request_id VARCHAR(255); TEXT holds 65,535 bytes, which
# 16,000 characters never exceed in UTF-8; source VARCHAR(64)). Longer ones are refused before
# anything is written, on both backends, never cut.
MAX_REQUEST_ID_CHARS, MAX_TEXT_CHARS, MAX_SOURCE_CHARS = 255, 16000, 64
# MySQL errors during a statement: retried (InnoDB rolled the statement back; each statement is its
# own transaction) a few times, or reported like a server that cannot be reached.
_MYSQL_RETRIED, _MYSQL_LOST = (1205, 1213), (2006, 2013)  # lock wait timeout, deadlock; gone, lost
_MYSQL_ATTEMPTS = 4
_MYSQL_STRICT = ("SET SESSION sql_mode = CONCAT_WS(',', NULLIF(@@SESSION.sql_mode, ''),"
                 " 'STRICT_ALL_TABLES')")

_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
  request_id TEXT PRIMARY KEY, model_id INTEGER, evidence TEXT NOT NULL, created_at REAL NOT NULL,
  slack_channel TEXT, slack_ts TEXT, heartbeat_at REAL, max_poll REAL, deadline_at REAL,
  released_at REAL, released_by TEXT);
CREATE TABLE IF NOT EXISTS decisions (
  request_id TEXT PRIMARY KEY REFERENCES requests(request_id), decision TEXT NOT NULL,
  approver_id TEXT NOT NULL, approver_name TEXT NOT NULL, reason TEXT NOT NULL,
  decided_at REAL NOT NULL, source TEXT NOT NULL);
"""
# absent in SQLite stores made before them
_ADDED_COLUMNS = {"heartbeat_at": "REAL", "max_poll": "REAL", "deadline_at": "REAL",
                  "released_at": "REAL", "released_by": "TEXT"}
# MySQL tables made before these columns get them on first use (graceful_signoff_requests).
_MYSQL_ADDED_COLUMNS = {"released_by": "VARCHAR(255)"}
# The same tables in ml-metadata's MySQL database, prefixed so that they can never collide with
# its tables (Artifact, Execution, ...). Request ids compare exactly (binary collation).
_MYSQL_SCHEMA = ("""
CREATE TABLE IF NOT EXISTS graceful_signoff_requests (
  request_id VARCHAR(255) COLLATE utf8mb4_bin NOT NULL PRIMARY KEY, model_id BIGINT,
  evidence MEDIUMTEXT NOT NULL, created_at DOUBLE NOT NULL, slack_channel TEXT, slack_ts TEXT,
  heartbeat_at DOUBLE, max_poll DOUBLE, deadline_at DOUBLE, released_at DOUBLE,
  released_by VARCHAR(255)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""", """
CREATE TABLE IF NOT EXISTS graceful_signoff_decisions (
  request_id VARCHAR(255) COLLATE utf8mb4_bin NOT NULL PRIMARY KEY, decision VARCHAR(16) NOT NULL,
  approver_id TEXT NOT NULL, approver_name TEXT NOT NULL, reason TEXT NOT NULL,
  decided_at DOUBLE NOT NULL, source VARCHAR(64) NOT NULL,
  FOREIGN KEY (request_id) REFERENCES graceful_signoff_requests (request_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""")


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
    heartbeat_at: float | None = None   # the waiting run's last poll
    max_poll: float | None = None       # its longest poll interval (sets when it is abandoned)
    deadline_at: float | None = None    # deferred: no waiting run; rejected if undecided by then
    released_at: float | None = None    # when the decision was claimed for release (once)
    released_by: str | None = None      # the release run that claimed it (its pipeline run id)


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
        return _iso(self.decided_at)

    def describe(self) -> str:
        verb = "approved" if self.decision == APPROVE else "rejected"
        return f"{verb} by {self.approver_name} ({self.source}) at {self.when}: {self.reason}"


def allow_list(value: str | None = None) -> frozenset:
    """Approver ids from `value` or $GRACEFUL_APPROVERS (comma-separated)."""
    raw = os.environ.get(APPROVERS_ENV, "") if value is None else value
    return frozenset(item.strip() for item in raw.split(",") if item.strip())


def _iso(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).isoformat(
        timespec="seconds")


def _request(row: dict) -> Request:
    return Request(row["request_id"], row["model_id"], json.loads(row["evidence"]),
                   row["created_at"], row["slack_channel"], row["slack_ts"], row["heartbeat_at"],
                   row["max_poll"], row["deadline_at"], row["released_at"],
                   row.get("released_by"))


class _SQLite:
    """The embedded store: a file beside the metadata (`<home>/sign_off.sqlite`), created on first
    use. SQL is written once, for both dialects: `{requests}`, `{decisions}`, `{insert_ignore}`,
    `{keep_first_request}`, `{keep_first_decision}` (after the VALUES or SELECT) and `?`
    placeholders are what differs."""

    requests, decisions, insert_ignore = "requests", "decisions", "INSERT OR IGNORE"
    keep_first_request = keep_first_decision = ""

    @staticmethod
    def retry(error: Exception, attempt: int) -> bool:
        return False

    def __init__(self, path: str):
        self.path = path
        Path(path).parent.mkdir(parents=True, exist_ok=True)

    def connect(self):
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        db.row_factory = lambda cursor, row: {c[0]: v for c, v in zip(cursor.description, row)}
        return db

    @staticmethod
    def placeholders(sql: str) -> str:
        return sql

    def create(self, db) -> None:
        db.executescript(_SQLITE_SCHEMA)
        self._migrate(db)

    def _migrate(self, db) -> None:
        """Adds the columns older stores lack, under a write lock so that two processes opening
        the same old store at once do not both add them."""
        if self._missing_columns(db):
            db.execute("BEGIN IMMEDIATE")
            for column in self._missing_columns(db):
                db.execute(f"ALTER TABLE requests ADD COLUMN {column} {_ADDED_COLUMNS[column]}")
            db.execute("COMMIT")

    @staticmethod
    def _missing_columns(db) -> list[str]:
        present = {row["name"] for row in db.execute("PRAGMA table_info(requests)")}
        return [column for column in _ADDED_COLUMNS if column not in present]


class _MySQL:
    """The tables in ml-metadata's own MySQL/MariaDB database (the location's mysql:// URL), so
    pipeline pods, the Slack gate and the CLI share decisions without a shared volume, and one
    backup of that database holds both. `ON DUPLICATE KEY UPDATE` with a no-op keeps the first
    row, as INSERT OR IGNORE does in SQLite, under InnoDB's row locks; unlike `INSERT IGNORE` it
    absorbs only the duplicate key, so a value too long or out of range is still an error, never a
    warning and a silently cut or clamped value."""

    requests, decisions = "graceful_signoff_requests", "graceful_signoff_decisions"
    insert_ignore = "INSERT"
    keep_first_request = (" ON DUPLICATE KEY UPDATE graceful_signoff_requests.request_id ="
                          " graceful_signoff_requests.request_id")
    keep_first_decision = (" ON DUPLICATE KEY UPDATE graceful_signoff_decisions.request_id ="
                           " graceful_signoff_decisions.request_id")

    def __init__(self, server: mlmd_store.MySQLServer):
        self.server = server

    def retry(self, error: Exception, attempt: int) -> bool:
        """Whether to run a statement again after `error`: a deadlock or lock wait timeout, a few
        times. A lost connection raises StoreUnreachableError (as connecting does), not
        PyMySQL's traceback."""
        import pymysql

        if not isinstance(error, pymysql.err.OperationalError) or not error.args:
            return False
        if error.args[0] in _MYSQL_LOST:
            raise self.server._unreachable(error) from None
        return error.args[0] in _MYSQL_RETRIED and attempt + 1 < _MYSQL_ATTEMPTS

    def connect(self):
        # Strict for this session whatever the server's sql_mode: a value that does not fit is an
        # error, never a warning and a cut or clamped value.
        return self.server.connect(init_command=_MYSQL_STRICT)

    @staticmethod
    def placeholders(sql: str) -> str:
        return sql.replace("?", "%s")  # PyMySQL's paramstyle; our SQL has no literal ? or %

    def create(self, db) -> None:
        with db.cursor() as cursor:
            for statement in _MYSQL_SCHEMA:
                cursor.execute(statement)
            for column, sql_type in _MYSQL_ADDED_COLUMNS.items():
                cursor.execute(f"SHOW COLUMNS FROM {self.requests} LIKE '{column}'")
                if cursor.fetchone():
                    continue
                try:
                    cursor.execute(f"ALTER TABLE {self.requests} ADD COLUMN {column} {sql_type}")
                except Exception as error:  # noqa: BLE001 - another process added it first
                    if not (getattr(error, "args", None) and error.args[0] == 1060):
                        raise


def check_person(approver_id: str, approver_name: str, reason: str,
                  approvers: frozenset | None) -> None:
    """A person decides only if their id (never their changeable name) is on the allow-list, and
    only with a reason."""
    if not approvers:
        raise SignOffError(f"No approvers are configured: set {APPROVERS_ENV} to a "
                           "comma-separated list of the ids allowed to sign off.")
    if approver_id not in approvers:
        raise SignOffError(f"{approver_name} ({approver_id}) is not on the approver allow-list "
                           f"({APPROVERS_ENV}, ids only); nothing was recorded.")
    if not reason.strip():
        raise SignOffError("A sign-off decision needs a reason (it is the audit trail), e.g. "
                           "--reason 'shirts regress'; nothing was recorded.")


def _check_length(what: str, value: str, limit: int) -> None:
    """Refuses a value longer than its column holds (before anything is written): a database must
    never cut an audit trail or a request id."""
    if len(value) > limit:
        raise SignOffError(f"The {what} is {len(value)} characters long; at most {limit} are "
                           "kept. Shorten it; nothing was recorded.")


class Store:
    """The shared decision record at `location`: a SQLite file path (created on first use) or the
    mysql://user@host:port/database of a metadata server (graceful.mlmd_store; the database must
    exist, as it does once ml-metadata created it; the tables are created on first use).

    `stale_floor` is the least time without a heartbeat after which a pending request counts as
    abandoned (STALE_FLOOR_SECONDS; tests pass less). `clock` gives every time the store records
    and compares (heartbeats, deadlines, decisions); time.time, or a test's clock it can advance."""

    def __init__(self, location: str | os.PathLike, stale_floor: float = STALE_FLOOR_SECONDS,
                 clock: Callable[[], float] = time.time):
        self.path, self.stale_floor, self._clock = str(location), stale_floor, clock
        server = mlmd_store.mysql_server(self.path)
        self._dialect = _SQLite(self.path) if server is None else _MySQL(server)
        with self._db() as db:
            self._dialect.create(db)

    @contextlib.contextmanager
    def _db(self):
        db = self._dialect.connect()
        try:
            yield db
        finally:
            db.close()

    def _execute(self, db, sql: str, params: tuple = ()):
        """Runs one statement written for both dialects (see _SQLite); returns its cursor. A
        MySQL deadlock or lock wait timeout is retried; a lost connection is StoreUnreachableError."""
        dialect = self._dialect
        sql = dialect.placeholders(sql.format(
            requests=dialect.requests, decisions=dialect.decisions,
            insert_ignore=dialect.insert_ignore, keep_first_request=dialect.keep_first_request,
            keep_first_decision=dialect.keep_first_decision))
        for attempt in itertools.count():
            cursor = db.cursor()
            try:
                cursor.execute(sql, params)
                return cursor
            except Exception as error:  # noqa: BLE001 - the dialect decides; re-raised otherwise
                if not dialect.retry(error, attempt):
                    raise
            time.sleep(0.05 * 2 ** attempt)

    def open_request(self, request_id: str, model_id: int | None, evidence: dict,
                     max_poll: float = DEFAULT_MAX_POLL,
                     deadline_at: float | None = None) -> Request:
        """Opens the request for the run that will `wait` for it, polling at most every
        `max_poll` seconds (which sets how soon it is abandoned if that run dies). With
        `deadline_at` (a time.time() value) it is deferred instead: nobody waits, it is never
        abandoned, and it is rejected ("timeout") if nobody decides by then."""
        _check_length("request id", request_id, MAX_REQUEST_ID_CHARS)
        now = self._clock()
        with self._db() as db:
            self._execute(db, "{insert_ignore} INTO {requests} (request_id, model_id, evidence,"
                          " created_at, heartbeat_at, max_poll, deadline_at)"
                          " VALUES (?, ?, ?, ?, ?, ?, ?){keep_first_request}",
                          (request_id, model_id, json.dumps(evidence), now,
                           None if deadline_at is not None else now, max_poll, deadline_at))
        return self.request(request_id)

    def set_slack_message(self, request_id: str, channel: str, ts: str) -> None:
        with self._db() as db:
            self._execute(db, "UPDATE {requests} SET slack_channel = ?, slack_ts = ?"
                          " WHERE request_id = ?", (channel, ts, request_id))

    def request(self, request_id: str) -> Request:
        with self._db() as db:
            self._close_expired(db, request_id)
            row = self._execute(db, "SELECT * FROM {requests} WHERE request_id = ?",
                                (request_id,)).fetchone()
        if row is None:
            raise SignOffError(f"No sign-off request '{request_id}'. `graceful approve` with no "
                               "argument picks the one waiting; `graceful history` lists runs.")
        return _request(row)

    def requests(self, pending_only: bool = False) -> list[Request]:
        """Requests oldest first; with `pending_only`, those nobody has decided yet (abandoned and
        expired ones are closed first, so they are not offered for a decision)."""
        where = (" WHERE request_id NOT IN (SELECT request_id FROM {decisions})"
                 if pending_only else "")
        with self._db() as db:
            self._close_expired(db)
            return [_request(row) for row in self._execute(
                db, "SELECT * FROM {requests}" + where + " ORDER BY created_at").fetchall()]

    def pending(self) -> list[Request]:
        return self.requests(pending_only=True)

    def _close_expired(self, db, request_id: str | None = None) -> None:
        """Rejects pending requests (all, or `request_id`) whose waiting run stopped heartbeating
        ("abandoned"), or, for deferred requests, whose deadline passed ("timeout"). Each close is
        one conditional insert that ignores an existing decision: it does nothing if a decision
        landed first or the heartbeat moved since it was read, so it never overrides a decision or
        a live run."""
        where = "" if request_id is None else " AND request_id = ?"
        rows = self._execute(
            db, "SELECT request_id, COALESCE(heartbeat_at, created_at) AS seen, max_poll,"
            " deadline_at FROM {requests}"
            " WHERE request_id NOT IN (SELECT request_id FROM {decisions})" + where,
            () if request_id is None else (request_id,)).fetchall()
        now = self._clock()
        for row in rows:
            if row["deadline_at"] is not None:
                if now <= row["deadline_at"]:
                    continue
                source, unchanged, seen = TIMEOUT_SOURCE, "deadline_at", row["deadline_at"]
                reason = f"no decision by {_iso(row['deadline_at'])}; nothing will be pushed"
            else:
                if now - row["seen"] <= self._stale_after(row["max_poll"]):
                    continue
                source, unchanged, seen = (ABANDONED_SOURCE, "COALESCE(heartbeat_at, created_at)",
                                           row["seen"])
                reason = (f"the run waiting for this decision is gone (no heartbeat since "
                          f"{_iso(row['seen'])}); nothing will be pushed")
            self._execute(
                db, "{insert_ignore} INTO {decisions} (request_id, decision, approver_id,"
                " approver_name, reason, decided_at, source) SELECT request_id, ?, ?, ?, ?, ?, ?"
                " FROM {requests} WHERE request_id = ? AND " + unchanged + " = ?{keep_first_decision}",
                (REJECT, SYSTEM_APPROVER, SYSTEM_APPROVER, reason, now, source,
                 row["request_id"], seen))

    def _stale_after(self, max_poll: float | None) -> float:
        return max(self.stale_floor, STALE_POLLS * (max_poll or DEFAULT_MAX_POLL))

    def decision(self, request_id: str) -> Decision | None:
        with self._db() as db:
            row = self._execute(db, "SELECT * FROM {decisions} WHERE request_id = ?",
                                (request_id,)).fetchone()
        return None if row is None else Decision(**row)

    def decide(self, request_id: str, decision: str, approver_id: str, approver_name: str,
               reason: str, source: str, approvers: frozenset | None = None) -> Decision:
        """Records a decision; the first one wins. A repeat of the winning decision by the same
        person returns it unchanged; anything else after it is refused with a SignOffError, and so
        is a person's decision on a request closed by the system (its run is gone, or its
        deadline passed)."""
        if decision not in (APPROVE, REJECT):
            raise SignOffError(f"decision must be '{APPROVE}' or '{REJECT}', not '{decision}'")
        for what, value, limit in (("request id", request_id, MAX_REQUEST_ID_CHARS),
                                   ("approver id", approver_id, MAX_TEXT_CHARS),
                                   ("approver name", approver_name, MAX_TEXT_CHARS),
                                   ("reason", reason.strip(), MAX_TEXT_CHARS),
                                   ("source", source, MAX_SOURCE_CHARS)):
            _check_length(what, value, limit)
        if source not in SYSTEM_SOURCES:
            check_person(approver_id, approver_name, reason, approvers)
        self.request(request_id)  # must exist; closes it first if its run is gone
        with self._db() as db:
            self._execute(db, "{insert_ignore} INTO {decisions} (request_id, decision, approver_id,"
                          " approver_name, reason, decided_at, source) VALUES (?, ?, ?, ?, ?, ?, ?)"
                          "{keep_first_decision}",
                          (request_id, decision, approver_id, approver_name, reason.strip(),
                           self._clock(), source))
        winner = self.decision(request_id)
        if winner.decision == decision and winner.approver_id == approver_id:
            return winner  # a repeat
        if winner.source in (ABANDONED_SOURCE, TIMEOUT_SOURCE):
            raise SignOffError(f"Sign-off {request_id} is closed: {winner.reason}. Your {decision} "
                               "was not recorded; a new run will ask again.")
        raise SignOffError(f"Sign-off {request_id} was already {winner.describe()}; "
                           "the first decision stands.")

    def claim_release(self, request_id: str, claimer: str | None = None) -> bool:
        """Marks a decided request as released by `claimer` (the release run's pipeline run id):
        True for the first caller, False for every later one, so the decision's consequence
        (evaluate and push, or record the rejection) happens once however many processes see the
        decision. The same claimer (not None) claiming again gets True too: a retried step of
        the same release run (an Airflow task retry) goes on with the claim it holds. Refuses an
        undecided request."""
        if claimer is not None:
            _check_length("release run id", claimer, MAX_REQUEST_ID_CHARS)
        self.request(request_id)  # must exist; closed first if its deadline passed
        if self.decision(request_id) is None:
            raise SignOffError(f"Sign-off {request_id} is not decided yet; nothing can be released "
                               "before `graceful approve|reject` (or its deadline).")
        with self._db() as db:
            if self._execute(db, "UPDATE {requests} SET released_at = ?, released_by = ?"
                             " WHERE request_id = ? AND released_at IS NULL",
                             (self._clock(), claimer, request_id)).rowcount == 1:
                return True
        # Read after the update: a claim is only ever taken back by its own claimer
        # (unclaim_release), so a claim by `claimer` seen here is still its own.
        return claimer is not None and self.request(request_id).released_by == claimer

    def unclaim_release(self, request_id: str, claimer: str) -> bool:
        """Gives back `claimer`'s claim on `request_id`, so that the decision can be released again:
        for a release run that failed before its push completed (pipeline/release.py's `run`),
        which pushed nothing. Only the claimer's own claim: True if it was taken back, False if
        the request is not claimed, or claimed by another run (left as it is)."""
        with self._db() as db:
            return self._execute(db, "UPDATE {requests} SET released_at = NULL, released_by = NULL"
                                 " WHERE request_id = ? AND released_by = ?"
                                 " AND released_at IS NOT NULL",
                                 (request_id, claimer)).rowcount == 1

    def wait(self, request_id: str, timeout_seconds: float, first_poll: float = 0.5,
             max_poll: float = DEFAULT_MAX_POLL, log=print) -> Decision | None:
        """Polls for a decision with exponential backoff until `timeout_seconds`; None on timeout.
        Every poll is a heartbeat first, so the request is not closed as abandoned while this run
        lives; if it was closed anyway (this process was suspended too long), that rejection is
        the decision."""
        deadline = time.monotonic() + timeout_seconds
        delay, next_note = first_poll, 0.0
        while True:
            self._heartbeat(request_id, max_poll)
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

    def _heartbeat(self, request_id: str, max_poll: float) -> None:
        with self._db() as db:
            self._execute(db, "UPDATE {requests} SET heartbeat_at = ?, max_poll = ?"
                          " WHERE request_id = ?", (self._clock(), max_poll, request_id))
