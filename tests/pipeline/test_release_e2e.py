"""Deferred sign-off end to end (LocalDagRunner, SQLite ML Metadata, tiny spans): a run ends awaiting
sign-off holding nothing, and a later decision releases the candidate through the release pipeline
(pipeline/release.py). Decisions come from the CLI as a person types them; every assertion reads ML
Metadata, the sign-off store, the serving directory, the exit status or what the CLI printed."""
import dataclasses
import fcntl
import glob
import os
import subprocess
import sys
import time

import pytest
from ml_metadata.proto import metadata_store_pb2
from tfx.utils import path_utils

from graceful import cli, history, project, serving, signoff, slack
from graceful.home_lock import LOCK_FILE
from graceful.pipeline.configs import SignOffConfig
from tests.conftest import TINY_EVAL, TINY_SPAN, run_span
from tests.graceful.test_signoff import SECRET
from tests.slack_standin import SlackStandIn

pytestmark = pytest.mark.slow
REASON = "flips are in classes we do not serve"


PROJECT = """
from graceful.pipeline.configs import GateConfig, PipelineConfig, SignOffConfig, TrainingParams

# tiny spans and models; tiny models vary, so the gates are judged on wiring, not on accuracy races
CONFIG = PipelineConfig(
    home={home!r}, span_size={span}, eval_size={eval},
    training=TrainingParams(architecture="small", epochs=2),
    gate=GateConfig(min_accuracy=0.3, max_accuracy_drop=1.0, max_nfr=1.0, max_class_nfr=1.0,
                    max_relative_nfr=100.0),
    sign_off=SignOffConfig(timeout_seconds=3600))
"""


@pytest.fixture
def config(tmp_path, monkeypatch):
    """A project (graceful_project.py) whose config the runs use and the CLI reads, as a team's
    would: the release judges with the project's policy."""
    monkeypatch.setenv(signoff.APPROVERS_ENV, "alice")
    monkeypatch.setenv(signoff.APPROVER_ENV, "alice")
    for name in ("SLACK_BOT_TOKEN", "GRACEFUL_SLACK_CHANNEL"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / project.PROJECT_FILE).write_text(PROJECT.format(
        home=str(tmp_path / "home"), span=TINY_SPAN, eval=TINY_EVAL))
    monkeypatch.chdir(tmp_path)  # the CLI finds ./graceful_project.py
    return project.load(str(tmp_path)).config


def _cli(*args) -> int:
    return cli.main(list(args))


def _children() -> list[int]:
    """Live processes whose parent is this one."""
    found = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as handle:
                state, parent = handle.read().rsplit(")", 1)[1].split()[:2]
        except OSError:  # it ended while we looked
            continue
        if int(parent) == os.getpid() and state != "Z":
            found.append(int(stat.split("/")[2]))
    return found


def _mlmd(config):
    return history.open_store(config.metadata_uri)


def _consumed_models(store, run_context, node_type_suffix: str) -> list[int]:
    """Model ids the executions of `run_context` whose type ends with `node_type_suffix` consumed."""
    types = {t.id: t.name for t in store.get_execution_types()}
    executions = [x for x in store.get_executions_by_context(run_context.id)
                  if types[x.type_id].endswith(node_type_suffix)]
    model_type = store.get_artifact_type("Model").id
    events = store.get_events_by_execution_ids([x.id for x in executions])
    inputs = store.get_artifacts_by_id([e.artifact_id for e in events
                                        if e.type == metadata_store_pb2.Event.INPUT])
    return sorted(a.id for a in inputs if a.type_id == model_type)


def _served(config) -> str:
    return serving.fingerprint(serving.served_version_dir(config.serving_dir))


def _fingerprint(store, model_id: int) -> str:
    [model] = store.get_artifacts_by_id([model_id])
    return serving.fingerprint(path_utils.serving_model_path(model.uri))


def test_a_run_awaits_sign_off_holding_nothing_and_a_later_cli_approval_releases_it(config,
                                                                                   capsys):
    # The run asks, and ends at once: no process, thread or lock waits for the person.
    # (Processes this test did not start, e.g. the session's MariaDB server, are not the run's.)
    already_running = set(_children())
    started = time.monotonic()
    assert cli.run_once(dataclasses.replace(config, span=1)) == cli.EXIT_AWAITING
    assert time.monotonic() - started < 600, "the run did not wait out the hour"
    printed = capsys.readouterr().out
    assert "run 1 awaits sign-off until" in printed and "graceful approve 1 --reason" in printed
    with open(os.path.join(config.home, LOCK_FILE)) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises if anything still holds the home
    assert set(_children()) - already_running == set(), "no process was left behind"
    [request] = signoff.Store(config.sign_off_store).requests()
    assert request.deadline_at is not None and request.heartbeat_at is None, "nobody polls it"
    assert signoff.Store(config.sign_off_store).decision(request.request_id) is None

    [run] = history.runs(config.metadata_uri)
    assert run.sign_off["decision"] == "pending" and not run.pushed and run.blessed is None
    assert _mlmd(config).get_artifacts_by_type("ModelBlessing") == []
    assert _cli("history") == 0
    assert "awaiting sign-off until" in capsys.readouterr().out
    assert _cli("lineage", "--run", "1") == 0
    awaiting = capsys.readouterr().out
    assert "pushed to: not pushed" in awaiting and "signed off: pending" in awaiting, awaiting

    # The decision releases the candidate: evaluated and pushed by the release pipeline.
    decided = time.monotonic()
    assert _cli("approve", "1", "--reason", REASON) == cli.EXIT_PUSHED
    seconds = time.monotonic() - decided
    printed = capsys.readouterr().out
    assert f"release of {request.request_id} finished" in printed, printed
    print(f"[timing] CLI approval to push: {seconds:.1f}s")
    [run] = history.runs(config.metadata_uri)  # the release is folded into the run it released
    assert run.pushed and run.blessed and run.status == "pushed"
    assert (run.sign_off["decision"], run.sign_off["approver_id"], run.sign_off["reason"]) == (
        "approve", "alice", REASON)
    store = _mlmd(config)
    assert _served(config) == _fingerprint(store, run.model_id), "serving holds the candidate"

    # Lineage: the release run's Evaluator and Pusher consumed the Trainer's very Model artifact.
    contexts = history.run_contexts(store)
    assert len(contexts) == 2, "the run and its release"
    trained, released = contexts
    assert _consumed_models(store, trained, "Trainer") == []  # first model: no reference
    assert _consumed_models(store, released, "Evaluator") == [run.model_id]
    assert _consumed_models(store, released, "Pusher") == [run.model_id]
    assert len(store.get_artifacts_by_type("Model")) == 1, "imported, never registered again"
    # `graceful lineage` of the pushed model reads the release too: where it went, who decided, why.
    assert _cli("lineage") == 0  # default: the last pushed model
    shown = capsys.readouterr().out
    served = serving.served_version_dir(config.serving_dir)
    assert f"model {run.model_id} (" in shown and f"pushed to: {served}\n" in shown, shown
    assert f"signed off: approve by alice (alice, cli) at {run.sign_off['decided_at']}: " \
           f"{REASON}" in shown, shown
    assert "training parameters: {" in shown and "span 1: " in shown, "the Trainer's side"
    assert "evaluator (TFMA): " in shown, "the release's Evaluator"

    # A second approval, or release, finds it released: nothing runs, nothing more is pushed.
    assert _cli("approve", "1", "--reason", REASON) == cli.EXIT_NOTHING_TO_DO
    assert _cli("release", "1") == cli.EXIT_NOTHING_TO_DO
    assert "was already released" in capsys.readouterr().out
    assert len(history.run_contexts(_mlmd(config))) == 2
    assert len(serving.versions(config.serving_dir)) == 1
    assert len(_mlmd(config).get_artifacts_by_type("PushedModel")) == 1


def test_rejections_timeouts_and_a_changed_baseline_push_nothing(config, capsys):
    run_span(dataclasses.replace(config, sign_off=SignOffConfig(auto_approve=True)), span=1)
    [first] = history.runs(config.metadata_uri)
    assert first.pushed
    # Run 2's request expires while runs 3 and 4 train; all three are judged against run 1's model.
    run_span(dataclasses.replace(config, sign_off=SignOffConfig(timeout_seconds=1)), span=2)
    run_span(config, span=2)

    # The timeout: `history` closes the expired request, `release` records it in ML Metadata.
    assert _cli("history") == 0
    assert "rejected by graceful (timeout); not released yet" in capsys.readouterr().out
    assert _cli("release", "2") == cli.EXIT_BLOCKED
    timed_out = history.runs(config.metadata_uri)[1]
    assert timed_out.sign_off["source"] == "timeout" and timed_out.blocked_by == "sign-off"
    assert timed_out.pushed is None and timed_out.baseline_model_id == first.model_id

    # A rejection recorded elsewhere (--no-release) is recorded by the next `graceful run`.
    assert _cli("reject", "3", "--reason", "shirts regress", "--no-release") == 0
    assert "airflow dags trigger graceful_release --conf" in capsys.readouterr().out
    assert cli.run_once(dataclasses.replace(config, span=2)) == cli.EXIT_AWAITING
    rejected = history.runs(config.metadata_uri)[2]
    assert (rejected.sign_off["decision"], rejected.sign_off["reason"]) == ("reject",
                                                                            "shirts regress")
    assert rejected.blocked_by == "sign-off" and rejected.pushed is None
    capsys.readouterr()
    assert _cli("lineage", "--run", "3") == 0
    shown = capsys.readouterr().out
    assert "pushed to: not pushed" in shown and "signed off: reject by alice (alice, cli) at " \
        in shown and shown.rstrip().endswith(": shirts regress"), shown
    assert f"baseline model: [{first.model_id}]" in shown, shown

    # Run 5 is approved and pushed; run 4, judged against run 1's model, can no longer be.
    run_span(config, span=2)
    assert _cli("approve", "5", "--reason", REASON) == cli.EXIT_PUSHED
    assert _cli("approve", "4", "--reason", REASON) == cli.EXIT_BLOCKED
    runs = history.runs(config.metadata_uri)
    assert len(runs) == 5, "every release folded into its run"
    stale, approved = runs[3], runs[4]
    assert approved.pushed and approved.baseline_model_id == first.model_id
    assert not stale.pushed and stale.blocked_by == "sign-off"
    assert "the served model changed since this candidate was judged" in stale.sign_off["reason"]
    assert "approved by alice" in stale.sign_off["reason"], "the person's decision stays on record"
    store = _mlmd(config)
    assert _served(config) == _fingerprint(store, approved.model_id)
    assert len(serving.versions(config.serving_dir)) == 2
    blessed = [history.property_value(b, "current_model_id")
               for b in store.get_artifacts_by_type("ModelBlessing")
               if history.property_value(b, "blessed") == 1]
    assert sorted(blessed) == [first.model_id, approved.model_id], "no other model is a baseline"


def test_a_slack_approval_releases_the_candidate_through_graceful_slack_gate(config, monkeypatch,
                                                                            tmp_path):
    """The deployment path: `graceful slack-gate` (its own process) records the approval typed in
    Slack's modal, answers Slack, and starts `graceful release` in the background."""
    api = SlackStandIn(token="xoxb-test", signing_secret=SECRET)
    for name, value in ((slack.TOKEN_ENV, "xoxb-test"), (slack.API_URL_ENV, api.url),
                        (slack.CHANNEL_ENV, "C_MODELS"), (slack.SIGNING_SECRET_ENV, SECRET),
                        (signoff.APPROVERS_ENV, "U_ALICE")):
        monkeypatch.setenv(name, value)
    run_span(config, span=1)
    [request] = signoff.Store(config.sign_off_store).requests()
    assert api.called("chat.postMessage"), "the run asked in Slack before it ended"

    gate = subprocess.Popen([sys.executable, "-m", "graceful.cli", "slack-gate", "--port", "0"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        listening = next(line for line in gate.stdout if "listening on" in line)
        url = listening.split("listening on ", 1)[1].split()[0]
        assert api.click(url, request.request_id, "approve", "U_ALICE") == (200, "")
        clicked = time.monotonic()
        assert api.submit(url, REASON) == (200, "")
        ended = next(line for line in gate.stdout if "ended with status" in line)
        seconds = time.monotonic() - clicked
    finally:
        gate.terminate()
        gate.wait(30)
        api.close()
    assert ended.rstrip().endswith("ended with status 0"), ended
    print(f"[timing] Slack approval to push: {seconds:.1f}s")
    [run] = history.runs(config.metadata_uri)
    assert run.pushed and (run.sign_off["source"], run.sign_off["approver_id"],
                           run.sign_off["reason"]) == ("slack", "U_ALICE", REASON)
    assert _served(config) == _fingerprint(_mlmd(config), run.model_id)


def test_a_release_that_fails_after_its_claim_can_be_run_again_and_pushes_once(config, capsys):
    """The release run claims the request in SignOffRelease, before its Evaluator and Pusher run.
    If those fail (here: the eval examples are gone when the Evaluator reads them), nothing is
    pushed and the claim is given back: the approval is not lost, and `graceful release` (the
    examples restored) runs it again and pushes, once."""
    assert cli.run_once(dataclasses.replace(config, span=1)) == cli.EXIT_AWAITING
    sign_offs = signoff.Store(config.sign_off_store)
    [request] = sign_offs.requests()
    from graceful.pipeline import release

    examples = release.values(request)[release.EVAL_EXAMPLES_URI]
    moved = examples.rstrip("/") + ".moved"
    os.rename(examples, moved)
    try:
        assert _cli("approve", "1", "--reason", REASON) == cli.EXIT_FAILED
    finally:
        os.rename(moved, examples)
    printed = capsys.readouterr()
    assert "the release failed, nothing was pushed" in printed.err, printed.err
    assert f"graceful release {request.request_id}" in printed.out, printed.out
    failed = sign_offs.request(request.request_id)
    assert failed.released_at is None and failed.released_by is None, "the claim was given back"
    assert sign_offs.decision(request.request_id).approved, "the approval stands"
    assert serving.versions(config.serving_dir) == []
    assert _mlmd(config).get_artifacts_by_type("PushedModel") == []
    assert [history.property_value(b, "blessed")
            for b in _mlmd(config).get_artifacts_by_type("ModelBlessing")] == []
    [run] = history.runs(config.metadata_uri)
    assert not run.pushed and run.failed_step == "Evaluator", run

    # Run again: the same decision is released, and pushed.
    assert _cli("release", "1") == cli.EXIT_PUSHED
    released = sign_offs.request(request.request_id)
    assert released.released_at is not None and released.released_by is not None
    [run] = history.runs(config.metadata_uri)
    assert run.pushed and run.blessed
    assert run.failed_step is None and run.status == "pushed", "the repeat's outcome, not the failure"
    assert _served(config) == _fingerprint(_mlmd(config), run.model_id)
    assert len(history.run_contexts(_mlmd(config))) == 3, "the run and its two releases"
    capsys.readouterr()
    assert _cli("lineage", "--run", "1") == 0  # lineage too reads the repeat, not the failure
    shown = capsys.readouterr().out
    assert f"pushed to: {serving.served_version_dir(config.serving_dir)}\n" in shown, shown
    assert "signed off: approve by alice (alice, cli) at " in shown and "evaluator (TFMA): " in shown
    # Released now: a third attempt does nothing, and it was pushed exactly once.
    assert _cli("release", "1") == cli.EXIT_NOTHING_TO_DO
    assert len(serving.versions(config.serving_dir)) == 1
    assert len(_mlmd(config).get_artifacts_by_type("PushedModel")) == 1
    print(f"[release retry] history after the repeat: {run.status}")
