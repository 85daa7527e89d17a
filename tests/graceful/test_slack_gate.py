"""graceful slack-gate's hand-off to the release flow (on_decision), over real HTTP and SQLite."""
import threading
import time

from graceful import signoff, slack
from tests.graceful.test_signoff import APPROVERS, EVIDENCE, SECRET, click


def test_on_decision_runs_after_the_reply_in_its_own_thread_and_its_failure_is_logged(tmp_path):
    store = signoff.Store(tmp_path / "sign_off.sqlite")
    store.open_request("run-1", 7, EVIDENCE)
    release = threading.Event()
    seen, logs = [], []

    def on_decision(decision):
        release.wait(10)  # a slow release flow must not hold the HTTP reply
        seen.append(decision)
        raise RuntimeError("the release pipeline could not start")

    server = slack.SlackGateServer(("127.0.0.1", 0), store, SECRET, APPROVERS, log=logs.append,
                                   on_decision=on_decision)
    slack.serve_in_thread(server)
    try:
        started = time.monotonic()
        status, text = click(f"http://127.0.0.1:{server.server_address[1]}/", "approve", "U_ALICE")
        assert status == 200 and text.startswith("approved by")
        assert time.monotonic() - started < 5 and seen == []
        release.set()
        deadline = time.monotonic() + 10
        while not any("on_decision failed" in line for line in logs) and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        server.shutdown()
        server.server_close()
    assert seen == [store.decision("run-1")]
    [failure] = [line for line in logs if "on_decision failed" in line]
    assert "run-1" in failure and "the release pipeline could not start" in failure
