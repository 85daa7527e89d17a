"""The gate's promise under faults, tried as an operator would: kill -9 between blessing and push,
two runs at once, an emptied or garbled metadata store, deleted model files. Real `graceful run`
processes (LocalDagRunner, SQLite MLMD) on tiny spans; every assertion reads ML Metadata, the
serving directory or the exit status."""
import os
import shutil
import signal
import subprocess
import sys

import pytest
from ml_metadata.proto import metadata_store_pb2

from graceful import cli, history, recovery, serving
from tests.conftest import TINY_EVAL, TINY_SPAN, run_span, with_training

pytestmark = pytest.mark.slow

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LENIENT = ["--model", "small", "--epochs", "3", "--span-size", str(TINY_SPAN), "--eval-size",
           str(TINY_EVAL), "--auto-approve", "--min-accuracy", "0.3", "--max-accuracy-drop", "1",
           "--max-nfr", "1", "--max-class-nfr", "1", "--max-relative-nfr", "100"]


def graceful(home, *args) -> subprocess.Popen:
    """`graceful run` in its own process, as a scheduler starts it."""
    return subprocess.Popen([sys.executable, "-m", "graceful.cli", "run", "--home", home, *args],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def kill_when(process: subprocess.Popen, line: str) -> list[str]:
    """SIGKILLs `process` as soon as it prints a line starting with `line`; returns what it
    printed."""
    seen = []
    for printed in process.stdout:
        seen.append(printed)
        if printed.startswith(line):
            os.kill(process.pid, signal.SIGKILL)
            break
    process.wait()
    return seen


def test_sigkill_between_blessing_and_push_the_rerun_is_judged_against_the_served_model(
        tiny_config):
    run_span(tiny_config, span=1)
    [first] = history.runs(tiny_config.metadata_uri)
    served = serving.served_version_dir(tiny_config.serving_dir)

    printed = kill_when(graceful(tiny_config.home, "--span", "2", *LENIENT),
                        "[run] Evaluator done")
    assert printed[-1].startswith("[run] Evaluator done"), "".join(printed)
    first, killed = history.runs(tiny_config.metadata_uri)
    assert killed.blessed and not killed.pushed, "killed after the blessing, before the push"
    assert killed.status == "incomplete"
    assert serving.served_version_dir(tiny_config.serving_dir) == served

    # What a kill after the rename but before MLMD recorded the push leaves: the dead run's model
    # in a new version folder that no completed push recorded.
    store = history.open_store(tiny_config.metadata_uri)
    [unpushed] = [m for m in store.get_artifacts_by_type("Model") if m.id == killed.model_id]
    orphan = os.path.join(tiny_config.serving_dir, str(int(os.path.basename(served)) + 1))
    shutil.copytree(os.path.join(unpushed.uri, "Format-Serving"), orphan)

    notes = []
    run_span(with_training(tiny_config, architecture="mlp"), span=2)
    _, killed, rerun = history.runs(tiny_config.metadata_uri)
    assert killed.status == "stopped before its push completed; not a baseline"
    assert rerun.baseline_model_id == first.model_id, "judged against the model being served"
    assert rerun.reference_model_id == first.model_id, "distilled from the model being served"
    assert rerun.pushed
    assert not os.path.exists(orphan) and os.path.isdir(
        os.path.join(tiny_config.serving_dir, serving.UNFINISHED_PREFIX + os.path.basename(orphan)))

    store = history.open_store(tiny_config.metadata_uri)
    [abandoned] = [b for b in store.get_artifacts_by_type("ModelBlessing")
                   if history.property_value(b, "current_model_id") == killed.model_id]
    assert abandoned.state == metadata_store_pb2.Artifact.ABANDONED
    assert "stopped before its push completed" in history.property_value(
        abandoned, recovery.ABANDONED_REASON)
    assert recovery.reconcile(tiny_config.metadata_uri, tiny_config.serving_dir,
                              log=notes.append) == [] and notes == [], "repaired once"


def test_two_runs_at_once_on_one_fresh_home_one_runs_the_other_is_turned_away(tmp_path):
    home = str(tmp_path / "home")
    runs = [graceful(home, "--span", "1", *LENIENT) for _ in range(2)]
    results = [(p.wait(), *p.communicate()) for p in runs]
    codes = sorted(code for code, _, _ in results)
    assert codes == [cli.EXIT_PUSHED, cli.EXIT_BUSY], results
    winner = next(p for p, (code, _, _) in zip(runs, results) if code == cli.EXIT_PUSHED)
    [turned_away] = [err for code, _, err in results if code == cli.EXIT_BUSY]
    assert f"is in use by another run (pid {winner.pid}" in turned_away
    assert "Traceback" not in turned_away

    [run] = history.runs(f"{home}/metadata.sqlite")
    assert run.pushed and run.training_spans == [1]
    assert len(serving.versions(f"{home}/serving")) == 1
    assert sorted(os.listdir(f"{home}/data")) == ["span-1"]


def test_an_emptied_store_is_refused_until_restored_or_overridden_with_a_reason(tiny_config,
                                                                                   capsys):
    run_span(tiny_config, span=1)
    open(tiny_config.metadata_uri, "w").close()  # the store emptied; serving/ still has run 1

    args = ["run", "--home", tiny_config.home, "--span", "2", *LENIENT]
    assert cli.main(args) == cli.EXIT_FAILED
    err = capsys.readouterr().err
    assert f"The ML Metadata store {tiny_config.metadata_uri} knows no runs, but" in err
    assert "Restore the store from a backup" in err and "--accept-unknown-serving" in err
    assert history.runs(tiny_config.metadata_uri) == [], "nothing ran"
    assert len(serving.versions(tiny_config.serving_dir)) == 1

    assert cli.main(["history", "--home", tiny_config.home]) == 0
    assert "was metadata.sqlite emptied or replaced?" in capsys.readouterr().err

    reason = "store lost in a disk failure; serving/ checked by hand"
    assert cli.main([*args, "--accept-unknown-serving", reason]) == cli.EXIT_PUSHED
    store = history.open_store(tiny_config.metadata_uri)
    guards = [x for x in store.get_executions()
              if store.get_execution_types_by_id([x.type_id])[0].name.endswith("BaselineGuard")]
    assert history.property_value(guards[-1], "unknown_serving_reason") == reason
    [orphaned] = [p for p in os.listdir(tiny_config.home) if p.startswith("pipeline_root.orphaned")]
    assert os.listdir(os.path.join(tiny_config.home, orphaned)), "earlier artifacts kept"


def test_a_garbled_store_gives_one_message_naming_it_from_every_command(tiny_config, capsys):
    os.makedirs(tiny_config.home)
    with open(tiny_config.metadata_uri, "wb") as handle:
        handle.write(os.urandom(8192))
    garbled = open(tiny_config.metadata_uri, "rb").read()
    for command in (["run", "--span", "1", *LENIENT], ["history"], ["report"], ["lineage"],
                    ["run", "--latest"], ["reconcile"]):
        code = cli.main([command[0], "--home", tiny_config.home, *command[1:]])
        err = capsys.readouterr().err
        assert code == cli.EXIT_FAILED, command
        assert f"The ML Metadata store {tiny_config.metadata_uri} is damaged" in err, command
        assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert open(tiny_config.metadata_uri, "rb").read() == garbled, "left as it was"
    assert not os.path.exists(tiny_config.serving_dir)


def test_deleted_baseline_files_are_named_as_the_baseline(tiny_config):
    from graceful.components.baseline_guard.component import BaselineMismatchError

    run_span(tiny_config, span=1)
    [first] = history.runs(tiny_config.metadata_uri)
    store = history.open_store(tiny_config.metadata_uri)
    [model] = [m for m in store.get_artifacts_by_type("Model") if m.id == first.model_id]
    shutil.rmtree(model.uri)
    with pytest.raises(BaselineMismatchError, match=f"the baseline model {first.model_id} .*cannot "
                                                    "be read.*restore"):
        run_span(tiny_config, span=2)
    assert history.runs(tiny_config.metadata_uri)[1].model_id is None
