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
    assert "Unknown model architecture 'vgg'; choose one of cnn, mlp, small." in capsys.readouterr().err
