"""The Slack endpoint under hostile input: hypothesis generates 1,050 requests per run (forged,
stale, signed-but-malformed, almost-valid clicks and reason-modal submissions with random types,
ids, metadata and reasons, other methods, broken Content-Length headers), each sent over real HTTP
to one real SlackGateServer backed by a real decision store. For every request: a complete HTTP
reply with an expected status, nothing escaping a handler, no 500, no approval recorded for a user
id that is not on the allow-list, no decision without a reason, and none from a click (only a
submission decides). Hand-written cases below pin the statuses and the limits (body size, slow
clients)."""
import http.client
import itertools
import json
import re
import socket
import sqlite3
import tempfile
import time
import traceback
import urllib.parse

import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from graceful import signoff, slack
from tests.graceful.test_signoff import APPROVERS, EVIDENCE, SECRET

# Hypothesis caches in ./.hypothesis from collection on; the tests must not write into the tree.
_HYPOTHESIS_HOME = tempfile.TemporaryDirectory(prefix="graceful-hypothesis-")
set_hypothesis_home_dir(_HYPOTHESIS_HOME.name)

FUZZ = settings(deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


class RecordingGate(slack.SlackGateServer):
    """Keeps its log lines, and whatever escapes a handler (socketserver reports it to
    handle_error)."""

    def __init__(self, *args, **kwargs):
        self.escaped, self.lines = [], []
        super().__init__(*args, log=self.lines.append, **kwargs)

    def handle_error(self, request, client_address):
        self.escaped.append(traceback.format_exc())


def _start(tmp_path, read_timeout=slack.READ_TIMEOUT_SECONDS) -> RecordingGate:
    server = RecordingGate(("127.0.0.1", 0), signoff.Store(tmp_path / "sign_off.sqlite"), SECRET,
                           APPROVERS, read_timeout=read_timeout)
    slack.serve_in_thread(server)
    return server


@pytest.fixture(scope="module")
def gate(tmp_path_factory):
    with pytest.MonkeyPatch.context() as env:  # no Slack API calls from the gate
        env.delenv(slack.TOKEN_ENV, raising=False)
        server = _start(tmp_path_factory.mktemp("fuzz"))
        yield server
        server.shutdown()
        server.server_close()


_request_ids = itertools.count(1)


def _open(gate) -> str:
    request_id = f"run-{next(_request_ids)}"
    gate.store.open_request(request_id, 7, EVIDENCE)
    return request_id


def post(gate, body: bytes, headers: dict, method="POST") -> tuple[int, bytes]:
    """One request on its own connection; a reset or a close without a reply raises."""
    connection = http.client.HTTPConnection("127.0.0.1", gate.server_address[1], timeout=10)
    try:
        connection.request(method, "/slack/actions", body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def raw(port: int, data: bytes, timeout=10.0) -> bytes:
    """Sends `data` as is and reads until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as connection:
        connection.sendall(data)
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
        return received


def _status(reply: bytes) -> int:
    match = re.match(rb"HTTP/1\.[01] (\d{3}) ", reply)
    assert match, f"no HTTP reply: {reply[:100]!r}"
    return int(match.group(1))


def check(gate, status: int, expected: set, since: float = 0.0) -> None:
    """What must hold after every request (decisions: those recorded at or after `since`)."""
    escaped, errors = list(gate.escaped), [line for line in gate.lines if "internal error" in line]
    del gate.escaped[:], gate.lines[:]  # one failure must not fail every later example
    assert status in expected
    assert escaped == [], escaped[0]
    assert errors == [], errors[0]
    with sqlite3.connect(gate.store.path) as db:
        decided = db.execute("SELECT decision, approver_id, reason FROM decisions"
                             " WHERE decided_at >= ?", (since,)).fetchall()
    approvers = {approver for decision, approver, _ in decided if decision == "approve"}
    assert approvers <= APPROVERS, f"approved by an id not on the allow-list: {approvers}"
    assert all(reason.strip() for _, _, reason in decided), f"a decision without reason: {decided}"


# --- what hypothesis generates --------------------------------------------------------------

# Header values http.client can send: printable Latin-1 (it encodes them as Latin-1).
header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF,
                                    blacklist_characters="\x7f"), max_size=40)
any_text = st.text(st.characters(exclude_categories=()), max_size=20)  # control chars, surrogates
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | any_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=12)
listed_or_not = st.sampled_from(sorted(APPROVERS) + [
    "U_EVE", "u_alice", "U_ALICE ", "BOB", "", "graceful", "auto_approve", "U_ALICE\x00"])
ids = listed_or_not | any_text
ABSENT = object()


def _form(payload) -> bytes:
    return urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()


random_bodies = st.one_of(
    st.binary(max_size=2048),
    st.text(max_size=300).map(str.encode),
    st.dictionaries(st.text(max_size=12), st.text(max_size=60), max_size=4).map(
        lambda form: urllib.parse.urlencode(form).encode()),
    st.text(max_size=200).map(lambda text: urllib.parse.urlencode({"payload": text}).encode()),
    json_values.map(_form))


def _fields(draw):
    """field(*good): one of the `good` values; in half of the payloads ("wild"), any JSON value
    or absent instead, now and then. (Without the tame half, a payload with every field in
    shape, which reaches the allow-list and the reason checks, is rare.)"""
    wild = draw(st.booleans())

    def field(*good):
        kind = draw(st.integers(0, 19)) if wild else 0
        return draw(st.sampled_from(good)) if kind < 17 else (
            draw(json_values) if kind < 19 else ABSENT)

    return field


def _user(draw, field) -> dict:
    """Slack's `user`: ids and usernames include the listed ids."""
    return _present({"id": field("U_ALICE", "bob") if draw(st.booleans()) else draw(ids),
                     "username": field(*sorted(APPROVERS)) if draw(st.booleans()) else draw(ids),
                     "name": field("Alice", "bob")})


@st.composite
def almost_valid_clicks(draw, request_id: str) -> bytes:
    """A block_actions payload whose every field may be right, plausible but wrong, any JSON
    value, or absent."""
    field = _fields(draw)
    action = {"type": "button", "block_id": "graceful_sign_off",
              "action_id": field("graceful_approve", "graceful_reject", "graceful_push", "approve"),
              "value": field(request_id) if draw(st.booleans()) else field(
                  "run-0", "", request_id + "\x00", request_id + "\ud800")}
    payload = {"type": field("block_actions"), "user": field(_user(draw, field)),
               "trigger_id": field("1.2.abc", "", "x" * 300),
               "actions": field([_present(action)], [_present(action), "x"]),
               "channel": field({"id": "C1"}, "C1")}
    return _form(_present(payload))


@st.composite
def almost_valid_submissions(draw, request_id: str) -> bytes:
    """A view_submission of the reason modal whose every field may be right, plausible but wrong,
    any JSON value, or absent: metadata naming other requests or decisions, or too long; reasons
    empty, blank, too long, with control characters or lone surrogates."""
    field = _fields(draw)
    metadata = field(*[json.dumps({"request_id": request_id, "decision": decision})
                       for decision in ("approve", "reject")]) if draw(st.booleans()) else field(
        *[json.dumps({"request_id": rid, "decision": decision}) for rid, decision in (
            (request_id, "push"), ("run-0", "approve"), (request_id + "\ud800", "approve"))],
        "not json", "[" * 5000,
        json.dumps({"request_id": request_id, "decision": "approve", "pad": "x" * 3000}))
    reason = field("lgtm", "shirts\nregress", "", "   \n", None, "ok\x00", "x" * 2001,
                   "\ud800", draw(any_text))
    element = {"type": "plain_text_input", "value": reason}
    values = {slack.REASON_BLOCK_ID: field({slack.REASON_ACTION_ID: _present(element)})}
    view = {"id": "V1", "type": "modal", "callback_id": field("graceful_sign_off"),
            "private_metadata": metadata, "state": field({"values": _present(values)})}
    payload = {"type": field("view_submission"), "user": field(_user(draw, field)),
               "view": field(_present(view))}
    return _form(_present(payload))


def _present(fields: dict) -> dict:
    return {key: value for key, value in fields.items() if value is not ABSENT}


# --- the generated requests -------------------------------------------------------------------


def _unsigned_headers(body: bytes, timestamp: str | None, signature: str | None) -> dict:
    """Slack's headers, but with `timestamp` ("now", "stale", a value or None: absent) and
    `signature` ("valid", "wrong secret", "other body", a value or None: absent)."""
    now = int(time.time())
    stale = now - slack.SIGNATURE_MAX_AGE - 1
    ts = {"now": str(now), "stale": str(stale)}.get(timestamp, timestamp)
    signed_at = int(ts) if ts and re.fullmatch(r"[0-9]{1,12}", ts) else now
    signatures = {name: slack.signature_headers(signed, secret, signed_at)["X-Slack-Signature"]
                  for name, signed, secret in (("valid", body, SECRET),
                                               ("wrong secret", body, "not-the-secret"),
                                               ("other body", body + b"x", SECRET))}
    headers = {"Content-Type": "application/x-www-form-urlencoded",
               "X-Slack-Request-Timestamp": ts,
               "X-Slack-Signature": signatures.get(signature, signature)}
    return {name: value for name, value in headers.items() if value is not None}


@settings(FUZZ, max_examples=250)
@given(body=random_bodies,
       timestamp=st.one_of(st.none(), header_text, st.sampled_from(
           ["now", "stale", "1e9", "²", "-1", "9" * 40])),
       signature=st.one_of(st.none(), header_text, st.sampled_from(
           ["valid", "wrong secret", "other body", "v0=" + "0" * 64])))
def test_requests_slack_did_not_sign_are_refused_401(gate, body, timestamp, signature):
    assume(not (timestamp == "now" and signature == "valid"))  # that one Slack did sign
    since = time.time()
    status, _ = post(gate, body, _unsigned_headers(body, timestamp, signature))
    check(gate, status, {401}, since)


@settings(FUZZ, max_examples=250)
@given(body=random_bodies)
def test_signed_bodies_that_are_not_clicks_are_answered_400(gate, body):
    since = time.time()
    status, _ = post(gate, body, slack.signature_headers(body, SECRET))
    check(gate, status, {400, 200}, since)


@settings(FUZZ, max_examples=200)
@given(data=st.data())
def test_signed_almost_valid_clicks_never_approve_an_unlisted_id(gate, data):
    """Nor anyone: a click only opens the reason modal (here it cannot: no Slack token)."""
    request_id = _open(gate)
    body, since = data.draw(almost_valid_clicks(request_id)), time.time()
    status, _ = post(gate, body, slack.signature_headers(body, SECRET))
    check(gate, status, {200, 400}, since)
    event(f"HTTP {status}")  # --hypothesis-show-statistics shows the mix
    assert gate.store.decision(request_id) is None, "a click recorded a decision"


@settings(FUZZ, max_examples=250)
@given(data=st.data())
def test_signed_almost_valid_submissions_record_only_listed_ids_with_a_reason(gate, data):
    request_id = _open(gate)
    body, since = data.draw(almost_valid_submissions(request_id)), time.time()
    status, reply = post(gate, body, slack.signature_headers(body, SECRET))
    check(gate, status, {200, 400}, since)
    recorded = gate.store.decision(request_id)
    if reply.startswith(b"{"):  # a modal kept open says why, and nothing was recorded
        assert list(json.loads(reply)["errors"]) == [slack.REASON_BLOCK_ID] and recorded is None
    event(f"HTTP {status}" + (f", {recorded.decision} by {recorded.approver_id}" if recorded
                              else (", field error" if reply.startswith(b"{") else "")))


@settings(FUZZ, max_examples=50)
@given(method=st.from_regex(r"[A-Za-z]{1,10}", fullmatch=True).filter(lambda m: m != "POST"),
       body=st.binary(max_size=256))
def test_other_methods_are_answered_405(gate, method, body):
    since = time.time()
    status, _ = post(gate, body, slack.signature_headers(body, SECRET), method=method)
    check(gate, status, {405}, since)


@settings(FUZZ, max_examples=50)
@given(length=st.one_of(
    st.none(), st.integers(slack.MAX_BODY_BYTES + 1, 10 ** 30).map(str),
    st.integers(-10 ** 6, -1).map(str),
    header_text.filter(lambda v: not re.fullmatch(r"\s*[0-9]+\s*", v))))
def test_missing_or_broken_content_lengths_are_answered_without_reading(gate, length):
    header = b"" if length is None else f"Content-Length: {length}\r\n".encode("latin-1")
    since = time.time()
    reply = raw(gate.server_address[1], b"POST / HTTP/1.1\r\nHost: x\r\n" + header + b"\r\n")
    check(gate, _status(reply), {411} if length is None else {400, 413}, since)


# --- hand-written hostile requests ------------------------------------------------------------


def _signed(gate, body: bytes) -> tuple[int, str]:
    status, text = post(gate, body, slack.signature_headers(body, SECRET))
    check(gate, status, {200, 400})
    return status, text.decode()


def _click(**fields) -> bytes:
    """A block_actions payload of graceful's Approve button, with `fields` replaced."""
    return _form({"type": "block_actions", "trigger_id": "1.2.abc", "user": {"id": "U_ALICE"},
                  "actions": [{"action_id": "graceful_approve", "value": "run-1"}], **fields})


@pytest.mark.parametrize("body", [
    b"\xff\xfe payload", b'{"payload": {}}', b"payload=not json", b"payload=" + b"%5B" * 20_000,
    _form([]), _form({"user": {"id": "U_ALICE"}}), _form({"type": 7}), _click(user=[]),
    _click(actions=3), _click(actions=[]),
    _click(actions=[{"action_id": "graceful_approve", "value": None}]),
    _click(user={"id": {"id": "U_ALICE"}}), _click(user={"id": "U_ALICE\ud800"}),
    _click(trigger_id=None), _click(trigger_id=12345),
], ids=["not utf-8", "not form-encoded", "payload not json", "nested too deep", "payload a list",
        "no type", "type a number", "user a list", "actions an int", "actions empty", "value null",
        "id an object", "lone surrogate", "trigger_id null", "trigger_id a number"])
def test_signed_malformed_clicks_are_answered_400(gate, body):
    status, text = _signed(gate, body)
    assert status == 400 and text.startswith("not a Slack sign-off interaction")


def _submission(request_id="run-1", decision="approve", reason="lgtm", **view) -> bytes:
    """A view_submission of the reason modal, with `view` fields replaced."""
    return _form({"type": "view_submission", "user": {"id": "U_ALICE"}, "view": {
        "callback_id": "graceful_sign_off",
        "private_metadata": json.dumps({"request_id": request_id, "decision": decision}),
        "state": {"values": {slack.REASON_BLOCK_ID: {slack.REASON_ACTION_ID: {"value": reason}}}},
        **view}})


@pytest.mark.parametrize("body", [
    _form({"type": "view_submission", "user": {"id": "U_ALICE"}, "view": "graceful_sign_off"}),
    _submission(private_metadata=None), _submission(private_metadata="{not json"),
    _submission(private_metadata=json.dumps({"request_id": "run-1", "pad": "x" * 3000})),
    _submission(private_metadata="[" * 1400 + "]" * 1400),
    _submission(private_metadata=json.dumps(["run-1", "approve"])),
    _submission(decision="push"), _submission(decision=["approve"]),
    _submission(request_id={"id": "run-1"}), _submission(state={"values": []}),
    _submission(state={"values": {slack.REASON_BLOCK_ID: {}}}), _submission(reason=42),
    _submission(reason={"text": "lgtm"}),
], ids=["view a string", "metadata null", "metadata not json", "metadata too long",
        "metadata nested", "metadata a list", "unknown decision", "decision a list",
        "request id an object", "values a list", "reason element missing", "reason a number",
        "reason an object"])
def test_signed_malformed_submissions_are_answered_400(gate, body):
    status, text = _signed(gate, body)
    assert status == 400 and text.startswith("not a Slack sign-off interaction")


@pytest.mark.parametrize("reason", [None, "", " \n\t", "ok\x00", "\ud800", "x" * 2001],
                         ids=["null", "empty", "blank", "NUL", "lone surrogate", "too long"])
def test_a_signed_submission_without_a_usable_reason_keeps_the_modal_open(gate, reason):
    request_id = _open(gate)
    status, reply = post(gate, body := _submission(request_id, reason=reason),
                         slack.signature_headers(body, SECRET))
    check(gate, status, {200})
    assert list(json.loads(reply)["errors"]) == [slack.REASON_BLOCK_ID]
    assert gate.store.decision(request_id) is None


def test_signed_interactions_that_are_not_graceful_s_are_acknowledged_and_ignored(gate):
    request_id = _open(gate)
    status, text = _signed(gate, _click(actions=[{"action_id": "graceful_push",
                                                  "value": request_id}]))
    assert status == 200 and "not a graceful sign-off button" in text
    status, text = _signed(gate, _submission(request_id, callback_id="someone_elses_modal"))
    assert status == 200 and "not graceful's view" in text
    status, text = _signed(gate, _form({"type": "view_closed", "user": {"id": "U_ALICE"}}))
    assert status == 200 and "view_closed interaction is not graceful's" in text
    assert gate.store.decision(request_id) is None


@pytest.mark.parametrize("headers", [
    {}, {"X-Slack-Request-Timestamp": "soon", "X-Slack-Signature": "v0=0"},
    {"X-Slack-Request-Timestamp": "²", "X-Slack-Signature": "v0=0"},
    {"X-Slack-Request-Timestamp": "9" * 5000, "X-Slack-Signature": "v0=0"},
    {"X-Slack-Request-Timestamp": str(int(time.time())), "X-Slack-Signature": "vé=0"},
], ids=["no signature headers", "word timestamp", "unicode digit", "huge timestamp",
        "non-ascii signature"])
def test_unverifiable_headers_are_answered_401(gate, headers):
    check(gate, post(gate, _form({}), headers)[0], {401})


@pytest.mark.parametrize("method", ["GET", "PUT", "HEAD", "DELETE", "BREW"])
def test_methods_other_than_post_are_answered_405(gate, method):
    connection = http.client.HTTPConnection("127.0.0.1", gate.server_address[1], timeout=10)
    connection.request(method, "/")
    response = connection.getresponse()
    assert (response.status, response.getheader("Allow")) == (405, "POST")
    connection.close()
    check(gate, response.status, {405})


def test_content_length_is_required_and_checked_before_reading(gate):
    port = gate.server_address[1]
    assert _status(raw(port, b"POST / HTTP/1.0\r\n\r\n")) == 411
    assert _status(raw(port, b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")) == 411
    for length in (b"-1", b"ten", b"1e3", b""):
        request = b"POST / HTTP/1.0\r\nContent-Length: " + length + b"\r\n\r\n"
        assert _status(raw(port, request)) == 400
    # Announced, never sent: refused at once, not after the read timeout.
    started = time.monotonic()
    too_big = f"Content-Length: {slack.MAX_BODY_BYTES + 1}\r\n".encode()
    assert _status(raw(port, b"POST / HTTP/1.0\r\n" + too_big + b"\r\n")) == 413
    assert time.monotonic() - started < 1
    padding = b"x" * slack.MAX_BODY_BYTES  # the largest body allowed is read and judged
    check(gate, post(gate, padding, slack.signature_headers(padding, SECRET))[0], {400})


def test_a_client_that_stalls_loses_its_connection_after_the_read_timeout(tmp_path):
    server = _start(tmp_path, read_timeout=0.3)
    port = server.server_address[1]
    try:
        started = time.monotonic()
        reply = raw(port, b"POST / HTTP/1.0\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
        assert _status(reply) == 408 and 0.3 <= time.monotonic() - started < 3
        started = time.monotonic()
        assert raw(port, b"POST / HTTP/1.0\r\n") == b""  # not even its headers: closed, no reply
        assert 0.3 <= time.monotonic() - started < 3
        request_id = _open(server)
        body = _submission(request_id)
        assert post(server, body, slack.signature_headers(body, SECRET)) == (200, b"")
        assert server.store.decision(request_id).approved  # still serving
        assert server.escaped == []
    finally:
        server.shutdown()
        server.server_close()
