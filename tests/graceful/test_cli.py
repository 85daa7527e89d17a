"""The CLI's errors name the problem and what to do; nothing runs on bad input."""
from pathlib import Path

import pytest

from graceful import cli


def test_unknown_loss_is_refused_before_anything_runs(tmp_path, capsys):
    assert cli.main(["run", "--home", str(tmp_path / "h"), "--loss", "fancy"]) == 2
    assert "Unknown loss 'fancy'; choose one of plain, fd_kl" in capsys.readouterr().err
    assert not (tmp_path / "h").exists()


def test_bad_distillation_parameter_is_refused(tmp_path, capsys):
    assert cli.main(["run", "--home", str(tmp_path / "h"), "--loss", "fd_kl", "--lam", "2"]) == 2
    assert "lam must be in [0, 1]" in capsys.readouterr().err


def test_a_bad_warm_start_alpha_is_refused(tmp_path, capsys):
    assert cli.main(["run", "--home", str(tmp_path / "h"), "--warm-start",
                     "--warm-start-alpha", "1.5"]) == 2
    assert "warm_start_alpha must be 'auto' or a number in [0, 1]" in capsys.readouterr().err
    assert not (tmp_path / "h").exists()


def test_warm_start_is_an_on_off_flag(tmp_path):
    parser = cli.build_parser()
    home = ["run", "--home", str(tmp_path / "h")]

    def training(*flags):
        args = parser.parse_args(home + list(flags))
        return cli.config_from_args(args, args.project_config).training

    assert training("--warm-start").warm_start is True
    assert training("--no-warm-start").warm_start is False
    assert training().warm_start is False and training().warm_start_alpha == "auto"
    assert training("--warm-start-alpha", "0.5").warm_start_alpha == "0.5"


def test_history_of_an_empty_home_says_what_to_do(tmp_path, capsys):
    assert cli.main(["history", "--home", str(tmp_path)]) == 2
    assert "run `graceful run` first" in capsys.readouterr().err


def test_demo_never_deletes_a_directory_it_did_not_create(tmp_path):
    keep = tmp_path / "precious"
    keep.mkdir()
    (keep / "data.txt").write_text("mine")
    with pytest.raises(SystemExit, match="refusing to delete"):
        cli.fresh_demo_home(keep)
    assert (keep / "data.txt").read_text() == "mine"


def test_demo_home_is_recreated_when_it_is_ours(tmp_path):
    home = tmp_path / "demo"
    cli.fresh_demo_home(home)
    (home / "old-run").mkdir()
    cli.fresh_demo_home(home)
    assert sorted(p.name for p in Path(home).iterdir()) == [cli.DEMO_MARKER]


def test_unknown_architecture_lists_the_choices(tmp_path, capsys):
    assert cli.main(["run", "--home", str(tmp_path / "h"), "--model", "vgg"]) == 2
    assert "Unknown model architecture 'vgg'; choose one of cnn, cnn1d, mlp, small." in capsys.readouterr().err


@pytest.mark.parametrize("span", ["0", "-1"])
def test_a_span_below_one_is_a_usage_error_and_writes_nothing(tmp_path, capsys, span):
    with pytest.raises(SystemExit) as usage:
        cli.main(["run", "--home", str(tmp_path / "h"), "--span", span])
    assert usage.value.code == cli.EXIT_USAGE
    assert "--span: must be 1 or more" in capsys.readouterr().err
    assert not (tmp_path / "h").exists()


def test_a_home_that_is_a_file_is_a_usage_error_for_every_command(tmp_path, capsys):
    home = tmp_path / "notes.txt"
    home.write_text("not a pipeline home")
    for command in (["run", "--span", "1"], ["history"], ["report"], ["lineage"], ["reconcile"],
                    ["approve", "--reason", "ok"]):
        assert cli.main([command[0], "--home", str(home), *command[1:]]) == cli.EXIT_USAGE, command
        err = capsys.readouterr().err
        assert f"--home {home} is a file, not a directory" in err and "Traceback" not in err
    assert home.read_text() == "not a pipeline home"


def test_exit_statuses_tell_a_scheduler_what_happened():
    from graceful.history import RunRecord

    def run(**fields):
        return RunRecord(run_id="r", started=0.0, **fields)

    assert cli.exit_status(None, run(pushed=True, blessed=True)) == cli.EXIT_PUSHED
    assert cli.exit_status(None, run(blessed=False, blocked_by="flip gate")) == cli.EXIT_BLOCKED
    assert cli.exit_status(None, run(blessed=False, blocked_by="sign-off")) == cli.EXIT_BLOCKED
    assert cli.exit_status(RuntimeError("x"), run(failed_step="DataGate")) == cli.EXIT_BLOCKED
    assert cli.exit_status(RuntimeError("x"), run(failed_step="Trainer")) == cli.EXIT_FAILED
    assert cli.exit_status(RuntimeError("x"), None) == cli.EXIT_FAILED
    assert cli.exit_status(None, run()) == cli.EXIT_FAILED, "incomplete is not success"
    assert len({cli.EXIT_PUSHED, cli.EXIT_FAILED, cli.EXIT_USAGE, cli.EXIT_BLOCKED,
                cli.EXIT_NOTHING_TO_DO, cli.EXIT_BUSY}) == 6


def test_deciding_on_a_run_that_died_while_waiting_says_the_run_is_gone(tmp_path, capsys,
                                                                        monkeypatch):
    import sqlite3

    from graceful import signoff

    home = tmp_path / "home"
    store = signoff.Store(home / "sign_off.sqlite")
    store.open_request("run-1", 7, {"pipeline": "graceful", "accuracy": 0.9, "flip_gate": "passed",
                                    "report": "/r/index.html"})
    with sqlite3.connect(home / "sign_off.sqlite") as db:  # its waiter's last heartbeat: 1 h ago
        db.execute("UPDATE requests SET heartbeat_at = heartbeat_at - 3600")
    monkeypatch.setenv(signoff.APPROVERS_ENV, "alice")
    monkeypatch.setenv(signoff.APPROVER_ENV, "alice")
    for named in ([], ["run-1"]):
        assert cli.main(["approve", *named, "--home", str(home), "--reason", "ok"]) == cli.EXIT_USAGE
        err = capsys.readouterr().err
        assert "closed: the run waiting for this decision is gone" in err, err
        assert "nothing will be pushed" in err and "approved" not in err
    assert not store.decision("run-1").approved


def test_a_data_dir_without_fashion_mnist_is_an_error_and_stays_empty(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.main(["run", "--home", str(tmp_path / "h"), "--data-dir", str(empty)]) == \
        cli.EXIT_USAGE
    assert f"{empty} does not hold the Fashion-MNIST files" in capsys.readouterr().err
    assert list(empty.iterdir()) == []


CHECK_PROJECT = """
from graceful.pipeline.configs import DataContract, ModelContract, PipelineConfig
CONFIG = PipelineConfig(demo_data=False, model=ModelContract(scores="logits"),
                        data=DataContract(root="data", class_names=("a", "b", "c")))
"""


@pytest.fixture(scope="module")
def logits_model(tmp_path_factory):
    """A real SavedModel on serialized tf.Examples returning 3 logits, and examples for it."""
    from tests.graceful.test_evaluation import FEATURES, example, export_model, write_files

    folder = tmp_path_factory.mktemp("check")
    model_dir = export_model(folder / "model", 3, None, seed=1)
    records = [example([0.1 * i] * FEATURES, i % 3, i) for i in range(12)]
    return model_dir, write_files(folder / "examples", records, parts=1)


def test_check_model_prints_what_it_verified(tmp_path, capsys, logits_model):
    model_dir, examples = logits_model
    (tmp_path / "graceful_project.py").write_text(CHECK_PROJECT)
    assert cli.main(["check-model", model_dir, "--project", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"{model_dir}: fits the model contract" in out
    assert "output 'scores'" in out and "multiclass, 3 classes, scores: logits" in out
    assert cli.main(["check-model", model_dir, "--project", str(tmp_path),
                     "--examples", examples]) == 0
    assert "ran on 12 examples: accuracy" in capsys.readouterr().out


def test_check_model_errors_name_the_model_and_exit_2(tmp_path, capsys, logits_model,
                                                      monkeypatch):
    model_dir, _ = logits_model
    monkeypatch.chdir(tmp_path)  # no project here: the demo's contract (output 'probabilities')
    assert cli.main(["check-model", model_dir]) == cli.EXIT_USAGE
    assert "no output 'probabilities'; the signature returns ['scores']" in capsys.readouterr().err
    assert cli.main(["check-model", str(tmp_path / "missing")]) == cli.EXIT_USAGE
    assert "missing is not a directory; pass a SavedModel's folder" in capsys.readouterr().err
    assert cli.main(["check-model", str(tmp_path)]) == cli.EXIT_USAGE
    assert f"{tmp_path}: cannot load a SavedModel" in capsys.readouterr().err
