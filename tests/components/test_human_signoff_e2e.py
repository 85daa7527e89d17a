"""HumanSignOff waiting for the decision (`wait=True`) in the real pipeline (LocalDagRunner, SQLite
MLMD): decisions from Slack (a click opens the reason modal; its signed submission goes over HTTP
to the slack-gate endpoint), from the CLI, by timeout, and Slack failures. The deferred default:
tests/pipeline/test_release_e2e.py.
Slack itself is a local stand-in speaking its Web API; the real slack_sdk client talks to it.
Every assertion reads ML Metadata, the decision store or the serving directory."""
import dataclasses
import json
import os
import threading
import time

import pytest

from graceful import cli, history, signoff, slack
from graceful.pipeline.configs import SignOffConfig
from tests.conftest import run_span, with_training
from tests.graceful.test_signoff import SECRET
from tests.slack_standin import SlackStandIn

pytestmark = pytest.mark.slow


@pytest.fixture
def config(tiny_config):
    return dataclasses.replace(with_training(tiny_config, epochs=2),
                               sign_off=SignOffConfig(timeout_seconds=120, max_poll_seconds=1,
                                                        wait=True))


def _pushed(config):
    return os.listdir(config.serving_dir) if os.path.isdir(config.serving_dir) else []


def _when_waiting(store_path, action, timeout=180):
    """Runs `action(request)` in a thread as soon as a sign-off request is waiting."""
    results = {}

    def wait_then_act():
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if os.path.exists(store_path):
                waiting = signoff.Store(store_path).pending()
                if waiting:
                    results["value"] = action(waiting[0])
                    return
            time.sleep(0.2)

    thread = threading.Thread(target=wait_then_act, daemon=True)
    thread.start()
    return thread, results


def _sign_off_artifacts(config):
    store = history.open_store(config.metadata_uri)
    return store.get_artifacts_by_type("graceful.SignOff")


def test_slack_approval_with_a_reason_pushes_and_records_who_and_why_after_refusing_forged_ones(
        config, monkeypatch, capsys):
    """Run 1 (auto-approved) gives run 2 a baseline, so run 2's message gets its plots; run 2 is
    approved in Slack: a click opens the reason modal, the typed reason reaches MLMD."""
    # Tiny models may lose accuracy from run to run; this test is about the sign-off, not the gate.
    # And run 2 waits for the decision (wait=True, set here whatever the default), which is
    # made in Slack while it waits.
    config = dataclasses.replace(
        config, gate=dataclasses.replace(config.gate, max_accuracy_drop=1.0),
        sign_off=dataclasses.replace(config.sign_off, wait=True))
    run_span(dataclasses.replace(config, sign_off=SignOffConfig(auto_approve=True)), span=1)
    api = SlackStandIn(token="xoxb-test", signing_secret=SECRET)
    for name, value in ((slack.TOKEN_ENV, "xoxb-test"), (slack.API_URL_ENV, api.url),
                        (slack.CHANNEL_ENV, "C_MODELS"), (signoff.APPROVERS_ENV, "U_ALICE")):
        monkeypatch.setenv(name, value)
    server = slack.SlackGateServer(("127.0.0.1", 0), signoff.Store(config.sign_off_store), SECRET,
                                   signoff.allow_list(), log=lambda _: None)
    slack.serve_in_thread(server)
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    reason = "coat flips are label noise (checked 5 in the report); shirts improve"

    def decide_in_slack(request):
        store = signoff.Store(config.sign_off_store)
        while not store.request(request.request_id).slack_ts:  # posted, plots attached
            time.sleep(0.1)
        rid = request.request_id
        assert api.click(url, rid, "approve", "U_ALICE") == (200, "")
        replies = [api.submit(url, reason, secret="forged")[0],
                   api.submit(url, reason, age=3600)[0],
                   api.submit(url, reason, user_id="U_MALLORY")[1],
                   api.submit(url, "  ")[1],
                   api.submit(url, reason)]
        api.click(url, rid, "reject", "U_ALICE")
        return replies + [api.submit(url, "changed my mind")[1]]

    thread, results = _when_waiting(config.sign_off_store, decide_in_slack)
    run_span(config, span=2)
    thread.join()
    server.shutdown()
    forged, stale, unlisted, blank, approved, late = results["value"]
    assert (forged, stale, approved) == (401, 401, (200, ""))
    field = slack.REASON_BLOCK_ID
    assert "not on the approver allow-list" in unlisted["errors"][field]
    assert "Say why you approve" in blank["errors"][field]
    assert "already approved by u_alice" in late["errors"][field]

    first, run = history.runs(config.metadata_uri)
    assert run.pushed and len(_pushed(config)) == 2
    assert run.sign_off["approver_id"] == "U_ALICE" and run.sign_off["decision"] == "approve"
    assert run.sign_off["source"] == "slack" and run.sign_off["request_id"] == run.run_id
    assert run.sign_off["reason"] == reason
    [post] = api.called("chat.postMessage")
    assert post["body"]["channel"] == "C_MODELS"
    # The evidence arrived in the message's thread: the report's two plots and the review queue's
    # images (Fashion-MNIST is image data), as PNGs.
    assert [(f["filename"], f["channel"], f["thread_ts"]) for f in api.shared] == [
        (name, "C_MODELS", run.sign_off["slack_ts"]) for name in ("flip_matrix.png",
                                                                    "class_nfr.png",
                                                                    "review_queue.png")]
    assert all(f["data"].startswith(b"\x89PNG\r\n\x1a\n") for f in api.shared)
    deadline = time.monotonic() + 10  # the message is updated after the gate's reply
    while not api.called("chat.update") and time.monotonic() < deadline:
        time.sleep(0.05)
    [update] = api.called("chat.update")
    assert update["body"]["ts"] == run.sign_off["slack_ts"] and reason in json.dumps(update["body"])
    [artifact] = [a for a in _sign_off_artifacts(config)
                  if history.property_value(a, "request_id") == run.run_id]
    assert history.property_value(artifact, "blessed") == 1
    assert history.property_value(artifact, "current_model_id") == run.model_id
    assert history.property_value(artifact, "reason") == reason
    assert history.signed_off_by(run) == "u_alice"
    api.close()

    # `graceful lineage` walks MLMD from the pushed model back to its data and forward to its
    # judgement and sign-off.
    from graceful import lineage

    info = lineage.lineage(config.metadata_uri)
    assert info["model"]["id"] == run.model_id and info["pushed"]
    assert [d["span"] for d in info["data"]] == [1, 2] and info["data"][0]["anomalies"]
    assert info["training"]["epochs"] == 2 and info["baseline_model"] == [first.model_id]
    assert info["sign_off"]["approver_id"] == "U_ALICE" and info["flips"]["gate"]["blessed"]
    assert info["sign_off"]["reason"] == reason
    assert cli.main(["lineage", "--home", config.home]) == 0
    assert "signed off: approve by u_alice (U_ALICE, slack)" in capsys.readouterr().out
    assert cli.main(["lineage", "999", "--home", config.home]) == 2


def test_cli_reject_timeout_and_slack_failures_never_push(config, monkeypatch, capsys):
    monkeypatch.setenv(signoff.APPROVERS_ENV, "bob")
    monkeypatch.setenv(signoff.APPROVER_ENV, "bob")
    for name in (slack.TOKEN_ENV, slack.CHANNEL_ENV, slack.API_URL_ENV):
        monkeypatch.delenv(name, raising=False)

    # 1. No Slack configured: the gate says how, and a CLI rejection ends the run unpushed.
    thread, _ = _when_waiting(config.sign_off_store, lambda request: cli.main(
        ["reject", "--reason", "shirts regress", "--home", config.home]))
    run_span(config, span=1)
    thread.join()
    # 2. Nobody decides: rejected by timeout.
    run_span(dataclasses.replace(config, sign_off=SignOffConfig(timeout_seconds=2, wait=True)),
            span=1)
    # 3. Slack answers with an error; 4. Slack is down. Both: rejected, reason recorded.
    api = SlackStandIn(token="xoxb-test", mode="error")
    monkeypatch.setenv(slack.TOKEN_ENV, "xoxb-test")
    monkeypatch.setenv(slack.CHANNEL_ENV, "C_GONE")
    monkeypatch.setenv(slack.API_URL_ENV, api.url)
    run_span(config, span=1)
    api.close()
    run_span(config, span=1)  # the stand-in is closed: connection refused

    rejected, timed_out, slack_error, slack_down = history.runs(config.metadata_uri)
    assert _pushed(config) == []
    assert all(not r.pushed and r.blocked_by == "sign-off" for r in history.runs(config.metadata_uri))
    assert (rejected.sign_off["decision"], rejected.sign_off["approver_name"],
            rejected.sign_off["source"], rejected.sign_off["reason"]) == (
        "reject", "bob", "cli", "shirts regress")
    assert (timed_out.sign_off["source"], timed_out.sign_off["reason"]) == ("timeout", "timeout")
    assert slack_error.sign_off["source"] == "error"
    assert "channel_not_found" in slack_error.sign_off["reason"]
    assert slack_down.sign_off["source"] == "error"
    assert "Slack API error" in slack_down.sign_off["reason"]
    assert all(history.property_value(a, "blessed") == 0 and
               "current_model_id" not in a.custom_properties for a in _sign_off_artifacts(config))
    store = history.open_store(config.metadata_uri)
    assert store.get_artifacts_by_type("ModelBlessing") == [], "no gate-passing model, no blessing"

    # A decision after the fact is refused, and `graceful history` shows who decided.
    assert cli.main(["approve", "1", "--reason", "changed my mind", "--home", config.home]) == 2
    assert "already rejected by bob" in capsys.readouterr().err
    assert cli.main(["history", "--home", config.home]) == 0
    table = capsys.readouterr().out
    assert "rejected: bob" in table and "rejected: timeout" in table
