"""`graceful rollback` on a real SQLite MLMD store written as TFX's local runner records runs, with
real model folders pushed by AtomicPusher's executor. Fast: no pipeline runs (the end-to-end test is
tests/pipeline/test_rollback_e2e.py).

Which model the next run gets as its baseline is asked of TFX itself: its IR input resolution
(`channel_resolver`, LIVE artifacts only) feeding LatestBlessedModelStrategy, as the pipeline's
"baseline_model" resolver does.
"""
import os
import re
import subprocess
import sys

import pytest
from ml_metadata.proto import metadata_store_pb2 as mlmd
from tfx.dsl.input_resolution.strategies.latest_blessed_model_strategy import (
    LatestBlessedModelStrategy)
from tfx.orchestration import metadata
from tfx.orchestration.portable.input_resolution import channel_resolver
from tfx.proto.orchestration import pipeline_pb2
from tfx.utils import path_utils

from graceful import cli, history, lineage, recovery, rollback, serving, signoff
from graceful.components.baseline_guard.component import baseline_problem
from graceful.home_lock import HomeBusyError
from tests.components.test_atomic_pusher import make_model, push
from tests.graceful.test_history_roles import Runs

PIPELINE = "users.pipeline"
APPROVERS = frozenset({"alice"})


class Home:
    """A pipeline home whose store and serving/ hold releases made as the pipeline makes them."""

    def __init__(self, root):
        self.home = str(root / "home")
        self.metadata_uri = os.path.join(self.home, "metadata.sqlite")
        self.serving_dir = os.path.join(self.home, "serving")
        self.pipeline_root = os.path.join(self.home, "pipeline_root")
        os.makedirs(self.home)
        self.runs = Runs(self.metadata_uri, PIPELINE)

    def train(self, name: str):
        """A run that trained a model (real SavedModel-shaped files) and stopped there."""
        self.runs.new_run(name)
        [model] = self.runs.step("Trainer", "GracefulTrainer",
                                 produced=[(history.MODEL, {"tfx_version": "1.16.0"})])
        model.uri = os.path.join(self.pipeline_root, "Trainer", "model", str(model.id))
        self.runs.store.put_artifacts([model])
        make_model(model.uri, 1024, name.encode())
        return model

    def release(self, name: str, blessed: bool = True):
        """A run whose model the Evaluator blessed and AtomicPusher pushed; returns the model.
        `blessed=False`: a stock pipeline's Pusher without an Evaluator pushed it unblessed."""
        model = self.train(name)
        blessing = self.runs.step("Evaluator", "Evaluator", consumed=[model], produced=[
            (history.MODEL_BLESSING, {"blessed": 1, "current_model_id": model.id})]) if blessed \
            else []
        pushed = push(model.uri, self.serving_dir,
                      os.path.join(self.pipeline_root, "Pusher", "pushed_model", name))
        self.runs.step("Pusher", "AtomicPusher", consumed=[model, *blessing], produced=[
            (history.PUSHED_MODEL, {key: pushed.get_custom_property(key) for key in (
                "pushed", "pushed_destination", "pushed_version")})])
        return model

    def rollback(self, to=None, reason="B misreads shirts", approver="alice"):
        return rollback.rollback(self.home, self.metadata_uri, self.serving_dir,
                                 self.pipeline_root, reason=reason, approver=approver,
                                 approvers=APPROVERS, to=to, log=lambda _: None)

    def resolved_baseline(self) -> int | None:
        """The model TFX's baseline resolver would give the next run."""
        def channel(type_name: str):
            query = pipeline_pb2.InputSpec.Channel()
            context = query.context_queries.add()
            context.type.name = "pipeline"
            context.name.field_value.string_value = PIPELINE
            query.artifact_query.type.name = type_name
            return query

        with metadata.Metadata(metadata.sqlite_metadata_connection_config(
                self.metadata_uri)) as handle:
            inputs = {key: channel_resolver.resolve_single_channel(handle, channel(type_name))
                      for key, type_name in (("model", history.MODEL),
                                             ("model_blessing", history.MODEL_BLESSING))}
            resolved = LatestBlessedModelStrategy().resolve_artifacts(handle.store, inputs)
        return resolved["model"][0].id if resolved["model"] else None

    def served_print(self) -> str:
        return serving.fingerprint(serving.served_version_dir(self.serving_dir))

    def snapshot(self) -> tuple:
        """Everything a rollback could change: every MLMD record, and every file in serving/."""
        store = self.runs.store
        files = sorted((os.path.relpath(os.path.join(root, name), self.serving_dir),
                        open(os.path.join(root, name), "rb").read())
                       for root, _, names in os.walk(self.serving_dir) for name in names)
        return ([a.SerializeToString(deterministic=True) for a in store.get_artifacts()],
                [x.SerializeToString(deterministic=True) for x in store.get_executions()],
                [e.SerializeToString(deterministic=True) for e in store.get_events_by_execution_ids(
                    [x.id for x in store.get_executions()])],
                [t.name for t in store.get_execution_types()], files)


def fingerprint(model) -> str:
    return serving.fingerprint(path_utils.serving_model_path(model.uri))


@pytest.fixture
def home(tmp_path):
    return Home(tmp_path)


@pytest.fixture
def released(home):
    """Models A and B pushed, then C trained and blocked (never pushed)."""
    a, b = home.release("A"), home.release("B")
    c = home.train("C")
    return home, a, b, c


def _blessings(home) -> dict:
    return {b.custom_properties["current_model_id"].int_value: b
            for b in home.runs.store.get_artifacts_by_type(history.MODEL_BLESSING)}


@pytest.mark.parametrize("case, message", [
    (dict(reason=""), "A rollback needs a reason"),
    (dict(reason="   "), "A rollback needs a reason"),
    (dict(approver="mallory"), "mallory (mallory) is not on the approver allow-list"),
    (dict(to="unknown"), "Cannot roll back to model 999: there is no model with that id"),
    (dict(to="blessing"), "there is no model with that id"),
    (dict(to="C"), "it was never pushed, and only a model that was served can be served again"),
    (dict(to="B"), "is already the served model"),
])
def test_refusals_change_nothing(released, case, message):
    home, a, b, c = released
    case = dict(case)
    to = {"unknown": 999, "C": c.id, "B": b.id,
          "blessing": _blessings(home)[a.id].id}.get(case.pop("to", None))
    before = home.snapshot()
    with pytest.raises(ValueError, match=re.escape(message)) as refused:
        home.rollback(to=to, **case)
    assert "nothing was" in str(refused.value)
    assert home.snapshot() == before
    assert home.resolved_baseline() == b.id and home.served_print() == fingerprint(b)


def test_with_nothing_earlier_to_serve_the_default_rollback_is_refused(home):
    home.release("A")
    before = home.snapshot()
    with pytest.raises(rollback.RollbackRefused, match="no earlier pushed model is left"):
        home.rollback()
    assert home.snapshot() == before


def test_a_model_pushed_without_a_blessing_could_never_be_the_baseline_and_is_refused(home):
    unblessed = home.release("A", blessed=False)
    home.release("B")
    before = home.snapshot()
    with pytest.raises(rollback.RollbackRefused, match="was pushed without a blessing"):
        home.rollback(to=unblessed.id)
    assert home.snapshot() == before


def test_an_empty_allow_list_lets_nobody_roll_back(released):
    home, *_ = released
    before = home.snapshot()
    with pytest.raises(signoff.SignOffError, match="No approvers are configured"):
        rollback.rollback(home.home, home.metadata_uri, home.serving_dir, home.pipeline_root,
                          reason="why", approver="alice", approvers=frozenset())
    assert home.snapshot() == before


def test_a_rollback_waits_for_no_run_it_is_turned_away_while_one_holds_the_home(released):
    home, *_ = released
    before = home.snapshot()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom graceful.home_lock import home_lock\n"
         "with home_lock(sys.argv[1], 'graceful run --span 3'):\n"
         "    print('held', flush=True)\n    time.sleep(120)\n", home.home],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(HomeBusyError, match="graceful run --span 3"):
            home.rollback()
    finally:
        holder.kill()
        holder.wait()
    assert home.snapshot() == before


def test_the_cli_refuses_without_an_approver_on_the_list(released, tmp_path, monkeypatch, capsys):
    home, *_ = released
    monkeypatch.chdir(tmp_path)  # no project file here: the demo's layout under --home
    monkeypatch.setenv(signoff.APPROVERS_ENV, "alice")
    monkeypatch.setenv(signoff.APPROVER_ENV, "bob")
    before = home.snapshot()
    assert cli.main(["rollback", "--reason", "bad", "--home", home.home]) == cli.EXIT_USAGE
    assert "bob (bob) is not on the approver allow-list" in capsys.readouterr().err
    assert home.snapshot() == before


def test_rollback_serves_the_earlier_model_and_is_the_next_baseline(released, tmp_path,
                                                                    monkeypatch, capsys):
    home, a, b, c = released
    assert home.resolved_baseline() == b.id
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(signoff.APPROVERS_ENV, "alice,carol")
    monkeypatch.setenv(signoff.APPROVER_ENV, "alice")
    assert cli.main(["rollback", "--reason", "B misreads shirts", "--home", home.home]) == 0
    out = capsys.readouterr().out
    assert f"rollback to model {a.id} by alice: B misreads shirts" in out

    # serving/ holds A again, as a new version (a model server loads the highest)
    assert home.served_print() == fingerprint(a) and len(serving.versions(home.serving_dir)) == 3
    # TFX resolves A as the next baseline; B's blessing is out of resolution, with the reason
    assert home.resolved_baseline() == a.id
    blessings = _blessings(home)
    assert blessings[a.id].state == mlmd.Artifact.LIVE
    assert blessings[b.id].state == mlmd.Artifact.ABANDONED
    assert blessings[b.id].custom_properties[history.WITHDRAWN_REASON].string_value.startswith(
        f"rolled back to model {a.id} by alice at ")
    # the record: who, when, why, and what it linked
    [record] = history.rollbacks(home.runs.store)
    assert (record.model_id, record.withdrawn_model_ids, record.approver, record.reason,
            record.state) == (a.id, [b.id], "alice", "B misreads shirts", "COMPLETE")
    assert record.destination == serving.served_version_dir(home.serving_dir)
    store = home.runs.store
    events = store.get_events_by_execution_ids([record.execution_id])
    linked = {(e.type, e.path.steps[0].key, history.property_value(
        store.get_artifacts_by_id([e.artifact_id])[0], "pushed_destination")) for e in events}
    b_pushed = [p for p in store.get_artifacts_by_type(history.PUSHED_MODEL)
                if b.id in [m.id for m in lineage.Graph(store).artifacts(
                    lineage.Graph(store).producer(p), lineage.INPUT, history.MODEL)]]
    assert linked == {(mlmd.Event.INPUT, "model", None),
                      (mlmd.Event.INPUT, "withdrawn_pushed_model",
                       history.property_value(b_pushed[0], "pushed_destination")),
                      (mlmd.Event.OUTPUT, "pushed_model", record.destination)}
    # the rest of graceful agrees: the served model is A, nothing to repair, BaselineGuard passes
    assert lineage.pushed_model_ids(store)[-1] == a.id
    assert recovery.reconcile(home.metadata_uri, home.serving_dir, log=lambda _: None) == []
    assert baseline_problem(home.serving_dir, a.uri, a.id) is None
    assert home.served_print() == fingerprint(a)
    # history: B's run says it was rolled back, and the rollback has its line after the runs
    one, two, three = history.runs(home.metadata_uri)
    assert (one.status, two.status) == ("pushed", "pushed, rolled back")
    table = history.format_table([one, two, three], history.rollbacks(store)).splitlines()
    assert [line[:2] for line in table[2:]] == ["1 ", "2 ", "3 ", "- "]
    assert table[-1].startswith(f"-    rollback to model {a.id} by alice: B misreads shirts (")
    assert table[-1].endswith(f"; withdrawn: model {b.id})")
    # lineage of both models
    assert f"served again by rollback to model {a.id} by alice: B misreads shirts" in (
        lineage.format_lineage(lineage.lineage(home.metadata_uri, a.id)))
    assert f"withdrawn by rollback to model {a.id} by alice" in lineage.format_lineage(
        lineage.lineage(home.metadata_uri, b.id))
    # and nothing before A is left to roll back to
    with pytest.raises(rollback.RollbackRefused, match=f"Model {a.id} is served and no earlier"):
        home.rollback()


def test_a_rollback_stopped_before_its_record_is_caught_and_repeating_it_completes(
        released, monkeypatch):
    """Killed between the push and the MLMD transaction (simulated by stopping there): serving/
    holds A while ML Metadata still resolves B, so BaselineGuard stops the next run and says how to
    repair; the record says the rollback did not complete; the same command again completes it."""
    home, a, b, _ = released

    def killed(*_):
        raise KeyboardInterrupt

    monkeypatch.setattr(rollback, "_complete", killed)
    with pytest.raises(KeyboardInterrupt):
        home.rollback(to=a.id)
    monkeypatch.undo()
    assert home.served_print() == fingerprint(a) and home.resolved_baseline() == b.id
    assert "run the same rollback again" in baseline_problem(home.serving_dir, b.uri, b.id)
    [stopped] = history.rollbacks(home.runs.store)
    assert stopped.state == "RUNNING" and stopped.describe().endswith("[RUNNING: did not complete]")

    home.rollback(to=a.id)
    assert home.resolved_baseline() == a.id and home.served_print() == fingerprint(a)
    assert baseline_problem(home.serving_dir, a.uri, a.id) is None
    assert [r.state for r in history.rollbacks(home.runs.store)] == ["RUNNING", "COMPLETE"]


def test_roll_forward_restores_the_withdrawn_model(home):
    a, b, c = home.release("A"), home.release("B"), home.release("C")
    home.rollback(to=a.id, reason="B and C misread shirts")
    assert home.resolved_baseline() == a.id
    assert set(history.rollbacks(home.runs.store)[0].withdrawn_model_ids) == {b.id, c.id}

    home.rollback(to=c.id, reason="the shirts were mislabelled; C was right")
    assert home.resolved_baseline() == c.id and home.served_print() == fingerprint(c)
    blessings = _blessings(home)
    assert blessings[c.id].state == mlmd.Artifact.LIVE
    assert history.WITHDRAWN_REASON not in blessings[c.id].custom_properties
    assert blessings[b.id].state == mlmd.Artifact.ABANDONED, "B stays withdrawn"
    assert [r.status for r in history.runs(home.metadata_uri)] == [
        "pushed", "pushed, rolled back", "pushed"]
    # the default rollback skips the withdrawn B: back to A
    assert home.rollback().model_id == a.id
    assert home.resolved_baseline() == a.id and home.served_print() == fingerprint(a)
    assert [r.withdrawn_model_ids for r in history.rollbacks(home.runs.store)] == [
        [b.id, c.id], [], [c.id]]
