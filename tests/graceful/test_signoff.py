"""The sign-off decision store and the Slack endpoint, over real SQLite, a real MariaDB server
(tests/mariadb.py; the store's tests run on both) and real HTTP: signed requests computed with the
signing secret, the real slack_sdk client against a local Slack API stand-in, a real waiting process
killed with SIGKILL, and approvers in separate processes deciding at the same moment. (Hostile input
to the endpoint: test_slack_fuzz.py.)"""
import json
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from graceful import signoff, slack
from tests.slack_standin import SlackStandIn

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
APPROVERS = frozenset({"U_ALICE", "bob"})
EVIDENCE = {"pipeline": "graceful", "accuracy": 0.9, "flip_gate": "passed", "report": "/r/index.html"}
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["sqlite", "mariadb"])
def location(request, tmp_path) -> str:
    """Where the store is: a SQLite file, or a fresh database on the session's MariaDB server."""
    if request.param == "sqlite":
        return str(tmp_path / "sign_off.sqlite")
    return request.getfixturevalue("mariadb")


class Clock:
    """The store's clock in tests: real time plus an offset the test advances, so that limits
    of many seconds pass at once (no sleeping past them, and no window a loaded machine misses);
    still real time, so it agrees with the heartbeats of a waiting process on time.time."""

    def __init__(self):
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(location):
    s = signoff.Store(location)
    s.open_request("run-1", 7, EVIDENCE)
    return s


def test_first_decision_wins_repeats_are_idempotent_later_ones_refused(store):
    first = store.decide("run-1", "approve", "U_ALICE", "alice", "looks fine", "slack", APPROVERS)
    assert first.approved and first.approver_name == "alice"
    assert store.decide("run-1", "approve", "U_ALICE", "alice", "again", "slack", APPROVERS) == first
    with pytest.raises(signoff.SignOffError, match="already approved by alice"):
        store.decide("run-1", "reject", "bob", "bob", "no", "cli", APPROVERS)
    assert store.decision("run-1") == first and store.pending() == []


def test_only_allow_listed_people_decide_and_nothing_is_recorded_otherwise(store):
    with pytest.raises(signoff.SignOffError, match="not on the approver allow-list"):
        store.decide("run-1", "approve", "U_MALLORY", "mallory", "ok", "slack", APPROVERS)
    with pytest.raises(signoff.SignOffError, match="No approvers are configured"):
        store.decide("run-1", "approve", "bob", "bob", "ok", "cli", frozenset())
    with pytest.raises(signoff.SignOffError, match="No sign-off request 'run-9'"):
        store.decide("run-9", "approve", "bob", "bob", "ok", "cli", APPROVERS)
    assert store.decision("run-1") is None and [r.request_id for r in store.pending()] == ["run-1"]


def test_the_allow_list_matches_ids_never_names(store):
    """Slack usernames and display names are chosen by their owners: a name equal to a listed id
    must grant nothing."""
    for name in ("U_ALICE", "bob"):
        with pytest.raises(signoff.SignOffError, match="not on the approver allow-list"):
            store.decide("run-1", "approve", "U_EVE", name, "ok", "slack", APPROVERS)
    assert store.decision("run-1") is None
    assert store.decide("run-1", "approve", "U_ALICE", "any name", "ok", "slack", APPROVERS).approved


@pytest.mark.parametrize("reason", ["", "   ", " \n\t"])
@pytest.mark.parametrize("decision", ["approve", "reject"])
def test_a_person_needs_a_reason(store, decision, reason):
    with pytest.raises(signoff.SignOffError, match="needs a reason"):
        store.decide("run-1", decision, "bob", "bob", reason, "cli", APPROVERS)
    assert store.decision("run-1") is None
    assert store.decide("run-1", decision, "bob", "bob", " why ", "cli", APPROVERS).reason == "why"


def test_timeout_and_errors_are_never_approvals(store):
    decision = store.decide("run-1", "approve", "graceful", "graceful", "timeout", "timeout")
    assert not decision.approved


def test_wait_returns_a_decision_made_by_another_thread_and_times_out_otherwise(store):
    started = time.monotonic()
    assert store.wait("run-1", 0.3, first_poll=0.05, log=lambda _: None) is None
    assert 0.3 <= time.monotonic() - started < 10  # a loaded machine may be late, never early

    threading.Timer(0.2, store.decide, ("run-1", "reject", "bob", "bob", "too many flips", "cli",
                                        APPROVERS)).start()
    decision = store.wait("run-1", 10, first_poll=0.05, log=lambda _: None)
    assert decision.decision == "reject" and decision.reason == "too many flips"


def test_allow_list_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv(signoff.APPROVERS_ENV, " U1, bob ,,")
    assert signoff.allow_list() == {"U1", "bob"}


# --- runs that die while waiting (heartbeat) ------------------------------------------------


def _waiting_process(path) -> subprocess.Popen:
    """A separate process waiting on run-1 the way HumanSignOff does, polling every 0.05 s."""
    return subprocess.Popen([sys.executable, "-c", (
        "import sys; from graceful import signoff; signoff.Store(sys.argv[1]).wait("
        "'run-1', 600, first_poll=0.05, max_poll=0.05, log=lambda _: None)"), str(path)], cwd=ROOT)


def _until(condition, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_killed_run_is_closed_and_nobody_can_approve_it_after(location, slack_api, clock):
    path = location
    # Opened an hour ago (a store whose clock is behind): without the waiter's heartbeats the
    # request is long past the limit, so staying pending below proves that they keep it open.
    long_ago = Clock()
    long_ago.advance(-3600)
    opened = signoff.Store(path, clock=long_ago).open_request("run-1", 7, EVIDENCE, max_poll=0.05)
    watcher = signoff.Store(path, stale_floor=1e9)  # reads heartbeats, closes nothing
    store = signoff.Store(path, stale_floor=5.0, clock=clock)  # abandoned after 5 s unheard
    waiter = _waiting_process(path)
    try:
        _until(lambda: watcher.request("run-1").heartbeat_at > opened.heartbeat_at)
        alive_until = time.monotonic() + 1.0  # a live waiter (polling every 0.05 s) is not closed
        while time.monotonic() < alive_until:
            assert [r.request_id for r in store.pending()] == ["run-1"]
            time.sleep(0.1)
    finally:
        os.kill(waiter.pid, signal.SIGKILL)
        waiter.wait()
    assert [r.request_id for r in store.pending()] == ["run-1"]  # not yet: within the limit
    clock.advance(6.0)
    assert store.pending() == []
    closed = store.decision("run-1")
    assert (closed.decision, closed.source, closed.approver_id) == ("reject", "abandoned", "graceful")
    assert not closed.approved and closed.reason.startswith(
        "the run waiting for this decision is gone (no heartbeat since ")
    with pytest.raises(signoff.SignOffError, match="(?s)closed: the run waiting for this decision "
                                                   "is gone.*nothing will be pushed"):
        store.decide("run-1", "approve", "U_ALICE", "alice", "lgtm", "cli", APPROVERS)

    server = slack.SlackGateServer(("127.0.0.1", 0), store, SECRET, APPROVERS, log=lambda _: None)
    slack.serve_in_thread(server)
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        slack_api.click(url, "run-1", "approve", "U_ALICE")
        status, reply = slack_api.submit(url, "lgtm")
    finally:
        server.shutdown()
        server.server_close()
    refusal = reply["errors"][slack.REASON_BLOCK_ID]
    assert status == 200 and "is gone" in refusal and "approved" not in refusal
    assert store.decision("run-1") == closed


def test_a_suspended_waiter_finds_its_request_closed_and_returns_that_rejection(location, clock):
    store = signoff.Store(location, stale_floor=5.0, clock=clock)
    store.open_request("run-1", 7, EVIDENCE, max_poll=0.05)
    assert [r.request_id for r in store.pending()] == ["run-1"]
    clock.advance(6.0)  # the waiter is suspended; meanwhile someone lists the pending requests
    assert store.pending() == []
    decision = store.wait("run-1", 10, first_poll=0.05, max_poll=0.05, log=lambda _: None)
    assert decision.source == "abandoned" and not decision.approved


def test_a_decision_made_before_the_run_died_stands(location, clock):
    store = signoff.Store(location, stale_floor=5.0, clock=clock)
    store.open_request("run-1", 7, EVIDENCE, max_poll=0.05)
    approved = store.decide("run-1", "approve", "bob", "bob", "fine", "cli", APPROVERS)
    clock.advance(6.0)
    assert store.pending() == [] and [r.request_id for r in store.requests()] == ["run-1"]
    assert store.decision("run-1") == approved


# --- deferred requests (no waiting run) and releasing a decision once ---------------------------


def test_a_deferred_request_is_never_abandoned_and_is_rejected_at_its_deadline(location, clock):
    store = signoff.Store(location, stale_floor=5.0, clock=clock)
    deadline = clock() + 60
    opened = store.open_request("run-1", 7, EVIDENCE, max_poll=0.01, deadline_at=deadline)
    assert opened.deadline_at == deadline and opened.heartbeat_at is None
    clock.advance(30)  # far past the abandonment limit of a waited-for request
    assert [r.request_id for r in store.pending()] == ["run-1"] and store.decision("run-1") is None
    clock.advance(31)
    assert store.pending() == []
    closed = store.decision("run-1")
    assert (closed.decision, closed.source, closed.approver_id) == ("reject", "timeout", "graceful")
    assert closed.reason == f"no decision by {signoff._iso(deadline)}; nothing will be pushed"
    assert not closed.approved
    with pytest.raises(signoff.SignOffError, match="closed: no decision by .*nothing will be pushed"):
        store.decide("run-1", "approve", "bob", "bob", "lgtm", "cli", APPROVERS)
    assert store.decision("run-1") == closed


@pytest.mark.parametrize("look", [
    lambda store: store.request("run-1"), lambda store: store.requests(),
    lambda store: store.pending(), lambda store: store.claim_release("run-1")])
def test_whoever_looks_at_a_deferred_request_after_its_deadline_closes_it(location, look):
    store = signoff.Store(location)
    store.open_request("run-1", 7, EVIDENCE, deadline_at=time.time() - 1)
    look(store)
    assert store.decision("run-1").source == "timeout"


def test_a_decision_before_the_deadline_stands(location, clock):
    store = signoff.Store(location, clock=clock)
    store.open_request("run-1", 7, EVIDENCE, deadline_at=clock() + 60)
    approved = store.decide("run-1", "approve", "bob", "bob", "fine", "cli", APPROVERS)
    clock.advance(61)
    assert store.pending() == [] and store.decision("run-1") == approved


def test_a_decision_is_released_once(store):
    with pytest.raises(signoff.SignOffError, match="run-1 is not decided yet"):
        store.claim_release("run-1")
    assert store.request("run-1").released_at is None
    store.decide("run-1", "reject", "bob", "bob", "too many flips", "cli", APPROVERS)
    assert store.claim_release("run-1") is True
    released = store.request("run-1").released_at
    assert released is not None
    assert [store.claim_release("run-1") for _ in range(3)] == [False] * 3
    assert store.request("run-1").released_at == released
    with pytest.raises(signoff.SignOffError, match="No sign-off request 'run-9'"):
        store.claim_release("run-9")



def test_a_release_run_holds_its_claim_across_retries_and_only_it_can_give_it_back(store):
    """The claim names the release run (its pipeline run id): the same run claiming again (an
    Airflow task retry) goes on; any other run, or an anonymous claim, is refused. Only the
    claimer gives it back (a failed local release), and then the next run may claim it."""
    store.decide("run-1", "approve", "bob", "bob", "fine", "cli", APPROVERS)
    assert store.claim_release("run-1", "release-a") is True
    claimed = store.request("run-1")
    assert claimed.released_by == "release-a" and claimed.released_at is not None
    assert store.claim_release("run-1", "release-a") is True, "a retry in the same run"
    assert store.request("run-1").released_at == claimed.released_at
    assert store.claim_release("run-1", "release-b") is False
    assert store.claim_release("run-1") is False
    assert store.unclaim_release("run-1", "release-b") is False, "not its claim"
    assert store.request("run-1") == claimed
    assert store.unclaim_release("run-1", "release-a") is True
    back = store.request("run-1")
    assert back.released_at is None and back.released_by is None
    assert store.unclaim_release("run-1", "release-a") is False, "nothing left to give back"
    assert store.decision("run-1").approved, "the decision stands"
    assert store.claim_release("run-1", "release-b") is True
    assert store.claim_release("run-1", "release-a") is False
    assert store.request("run-1").released_by == "release-b"
    with pytest.raises(signoff.SignOffError, match="release run id is 256 characters"):
        store.claim_release("run-1", "x" * 256)


def test_graceful_run_releases_other_decisions_with_the_project_config_not_its_flags(
        tmp_path, monkeypatch):
    """`graceful run --max-accuracy-drop ...` changes this run's gate, not the Evaluator
    thresholds of another candidate its run releases first (cli.run_once's release_decided)."""
    from graceful import cli, project

    monkeypatch.chdir(tmp_path)
    chosen = project.load(None).config
    seen = {}
    monkeypatch.setattr(cli, "run_once", lambda config, prepare=True, release_config=None:
                        seen.update(config=config, release_config=release_config) or 0)
    drop = chosen.gate.max_accuracy_drop / 2 + 0.123
    home = str(tmp_path / "home")
    assert cli.main(["run", "--home", home, "--max-accuracy-drop", str(drop), "--epochs", "7",
                     "--auto-approve"]) == 0
    assert seen["config"].gate.max_accuracy_drop == drop and seen["config"].training.epochs == 7
    released_with = seen["release_config"]
    assert released_with is not None and released_with.home == home
    assert released_with.gate == chosen.gate and released_with.training == chosen.training
    assert released_with.sign_off == chosen.sign_off


# --- approvers deciding at the same moment ----------------------------------------------------

CALLERS = 8


def _decide_at_once(location: str, barrier, index: int, results) -> None:
    """One approver in its own process (its own connections): released by the barrier together
    with the others, approves (even index) or rejects (odd) run-1, then reads the winner back."""
    store = signoff.Store(location)
    approvers = frozenset(f"U_{i}" for i in range(CALLERS))
    barrier.wait()
    started = time.monotonic()
    try:
        won = store.decide("run-1", ("approve", "reject")[index % 2], f"U_{index}",
                           f"approver {index}", "deciding at once", "slack", approvers)
        outcome = ("recorded", won.approver_id)
    except signoff.SignOffError as refused:
        outcome = ("refused", str(refused))
    results.put((index, outcome, store.decision("run-1").approver_id,
                 time.monotonic() - started))


def _decision_rows(location: str, server) -> list[tuple]:
    """The decision rows as the database holds them, read past graceful's code."""
    if location.startswith("mysql://"):
        database = location.rsplit("/", 1)[1]
        return server.query(f"SELECT request_id, approver_id FROM `{database}`."
                            "graceful_signoff_decisions")
    with sqlite3.connect(location) as db:
        return db.execute("SELECT request_id, approver_id FROM decisions").fetchall()


def test_approvers_deciding_at_the_same_moment_record_exactly_one_decision(location, request):
    """Two approvers clicking at once, times four: CALLERS processes released by one barrier
    approve or reject the same request. Exactly one decision is recorded; every other caller is
    refused with a message naming the winner, and all of them read that same winner back."""
    signoff.Store(location).open_request("run-1", 7, EVIDENCE)
    context = multiprocessing.get_context("spawn")  # no fork of a process that may hold TF threads
    barrier, results = context.Barrier(CALLERS), context.Queue()
    workers = [context.Process(target=_decide_at_once, args=(location, barrier, i, results))
               for i in range(CALLERS)]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0

    [(winner_index, (_, winner), _, _)] = [o for o in outcomes if o[1][0] == "recorded"]
    verb = ("approved", "rejected")[winner_index % 2]
    for index, (kind, text), seen, _ in outcomes:
        assert seen == winner, f"caller {index} read {seen}, not the winner {winner}"
        if index != winner_index:
            assert kind == "refused" and (
                f"already {verb} by approver {winner_index} (slack)" in text), text
    server = request.getfixturevalue("mariadb_server") if location.startswith("mysql") else None
    assert _decision_rows(location, server) == [("run-1", winner)]
    print(f"\n[concurrency] {'mariadb' if server else 'sqlite'}: {CALLERS} callers at one "
          f"barrier, 1 recorded ({winner}), {CALLERS - 1} refused naming it; slowest caller "
          f"{max(o[3] for o in outcomes) * 1000:.0f} ms")


def test_a_store_made_before_the_heartbeat_is_migrated(tmp_path):
    """The schema of the previous version: no heartbeat_at or max_poll column. Its requests are
    judged by created_at."""
    path = tmp_path / "sign_off.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript("""
            CREATE TABLE requests (request_id TEXT PRIMARY KEY, model_id INTEGER,
              evidence TEXT NOT NULL, created_at REAL NOT NULL, slack_channel TEXT, slack_ts TEXT);
            CREATE TABLE decisions (request_id TEXT PRIMARY KEY REFERENCES requests(request_id),
              decision TEXT NOT NULL, approver_id TEXT NOT NULL, approver_name TEXT NOT NULL,
              reason TEXT NOT NULL, decided_at REAL NOT NULL, source TEXT NOT NULL);""")
        db.executemany("INSERT INTO requests VALUES (?, 7, '{}', ?, NULL, NULL)",
                       [("old-run", time.time() - 3600), ("new-run", time.time())])
    store = signoff.Store(path)
    assert signoff.Store(path).request("new-run").heartbeat_at is None  # opening again is fine
    assert [r.request_id for r in store.pending()] == ["new-run"]
    assert store.decision("old-run").source == "abandoned"
    assert store.wait("new-run", 0.1, first_poll=0.05, log=lambda _: None) is None
    assert store.request("new-run").heartbeat_at is not None
    assert store.request("new-run").deadline_at is None
    store.decide("new-run", "approve", "bob", "bob", "fine", "cli", APPROVERS)
    assert store.claim_release("new-run") and not store.claim_release("new-run")


# --- the Slack endpoint ---------------------------------------------------------------------


@pytest.fixture
def slack_api(monkeypatch):
    standin = SlackStandIn(token="xoxb-test", signing_secret=SECRET)
    monkeypatch.setenv(slack.TOKEN_ENV, "xoxb-test")
    monkeypatch.setenv(slack.API_URL_ENV, standin.url)
    yield standin
    standin.close()


@pytest.fixture
def gate(store):
    server = slack.SlackGateServer(("127.0.0.1", 0), store, SECRET, APPROVERS, log=lambda _: None)
    slack.serve_in_thread(server)
    yield f"http://127.0.0.1:{server.server_address[1]}/slack/actions"
    server.shutdown()
    server.server_close()


def test_a_signed_click_by_an_unlisted_user_named_like_a_listed_id_is_refused(store, gate,
                                                                               slack_api):
    """The attack: Slack signs the click and the modal's submission (they are real), the person
    chose the username "U_ALICE" (or "bob"), but their user id is not on the allow-list. (Valid,
    forged and replayed submissions, the modal, the evidence: test_slack_gate.py.)"""
    for username in ("U_ALICE", "bob"):
        slack_api.click(gate, "run-1", "approve", "U_EVE", username=username)
        status, reply = slack_api.submit(gate, "lgtm", username=username)
        assert status == 200
        assert "not on the approver allow-list" in reply["errors"][slack.REASON_BLOCK_ID]
    assert store.decision("run-1") is None and [r.request_id for r in store.pending()] == ["run-1"]


def test_signatures_are_the_ones_slack_computes():
    from slack_sdk.signature import SignatureVerifier

    body = b"payload=%7B%22type%22%3A%22block_actions%22%7D"
    headers = slack.signature_headers(body, SECRET, 1790000000)
    assert headers["X-Slack-Signature"] == SignatureVerifier(SECRET).generate_signature(
        timestamp="1790000000", body=body)


def test_message_carries_the_evidence_and_buttons_with_the_run_identity(store, slack_api):
    ts = slack.post_request(store.request("run-1"), "C1")
    [post] = slack_api.called("chat.postMessage")
    assert post["body"]["channel"] == "C1" and ts.startswith("1790000000.")
    [actions] = [b for b in post["body"]["blocks"] if b["type"] == "actions"]
    assert [(e["action_id"], e["value"]) for e in actions["elements"]] == [
        ("graceful_approve", "run-1"), ("graceful_reject", "run-1")]
    assert "/r/index.html" in json.dumps(post["body"]["blocks"])


def test_gate_will_not_start_without_a_secret_or_approvers(store):
    with pytest.raises(ValueError, match="SLACK_SIGNING_SECRET"):
        slack.SlackGateServer(("127.0.0.1", 0), store, "", APPROVERS)
    with pytest.raises(ValueError, match="GRACEFUL_APPROVERS"):
        slack.SlackGateServer(("127.0.0.1", 0), store, SECRET, frozenset())


def test_slack_server_errors_are_retried_then_raised(store, monkeypatch):
    from slack_sdk.errors import SlackApiError

    failing = SlackStandIn(token="xoxb-test", mode="http500")
    monkeypatch.setenv(slack.TOKEN_ENV, "xoxb-test")
    monkeypatch.setenv(slack.API_URL_ENV, failing.url)
    try:
        with pytest.raises(SlackApiError):
            slack.post_request(store.request("run-1"), "C1")
        assert len(failing.called("chat.postMessage")) == 4  # the call and slack_sdk's 3 retries
    finally:
        failing.close()


# --- values longer than the tables hold -------------------------------------------------------


def test_an_over_long_reason_or_request_id_is_refused_never_cut(store, location):
    """On both backends alike: refused with a SignOffError before anything is written (MySQL's
    TEXT holds 65,535 bytes; INSERT IGNORE used to cut a longer reason to fit, with a warning)."""
    long_reason = "shirts regress;" * 5000 + "!" * 5000  # 80,000 characters
    with pytest.raises(signoff.SignOffError, match="reason is 80000 characters long; at most"):
        store.decide("run-1", "reject", "bob", "bob", long_reason, "cli", APPROVERS)
    assert store.decision("run-1") is None
    with pytest.raises(signoff.SignOffError, match="request id is 300 characters long"):
        store.open_request("r" * 300, 7, EVIDENCE)
    assert [r.request_id for r in store.requests()] == ["run-1"]
    kept = "\U0001F642" * signoff.MAX_TEXT_CHARS  # 4 bytes each in UTF-8: 64,000 bytes fit
    assert store.decide("run-1", "reject", "bob", "bob", kept, "cli", APPROVERS).reason == kept
    assert store.decision("run-1").reason == kept
