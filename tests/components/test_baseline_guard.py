"""BaselineGuard's verdict on real folders: the resolved baseline against what serving/ serves."""
import os
import shutil

from graceful.components.baseline_guard.component import baseline_problem
from tests.components.test_atomic_pusher import make_model


def _serve(model_dir: str, serving_dir: str, version: int) -> None:
    shutil.copytree(model_dir, os.path.join(serving_dir, str(version)))


def test_the_served_baseline_passes_and_a_first_run_has_nothing_to_compare(tmp_path):
    serving_dir = str(tmp_path / "serving")
    assert baseline_problem(serving_dir, None, None) is None
    model = make_model(str(tmp_path / "model-6"), 10, b"6")
    _serve(model, serving_dir, 100)
    assert baseline_problem(serving_dir, str(tmp_path / "model-6"), 6) is None


def test_a_served_model_unknown_to_the_store_is_a_lost_store(tmp_path):
    serving_dir = str(tmp_path / "serving")
    _serve(make_model(str(tmp_path / "model-6"), 10, b"6"), serving_dir, 100)
    problem = baseline_problem(serving_dir, None, None)
    assert problem.startswith(f"{serving_dir}/100 is being served, but ML Metadata knows no pushed "
                              "model") and "Restore the store from a backup" in problem


def test_a_blessed_model_that_is_not_served_is_named(tmp_path):
    serving_dir = str(tmp_path / "serving")
    _serve(make_model(str(tmp_path / "model-6"), 10, b"6"), serving_dir, 100)
    make_model(str(tmp_path / "model-9"), 10, b"9")
    problem = baseline_problem(serving_dir, str(tmp_path / "model-9"), 9)
    assert f"{serving_dir}/100 is not the baseline ML Metadata resolved (model 9" in problem
    assert "stopped before its push completed" in problem


def test_the_newest_version_is_the_one_compared(tmp_path):
    serving_dir = str(tmp_path / "serving")
    _serve(make_model(str(tmp_path / "model-6"), 10, b"6"), serving_dir, 100)
    _serve(make_model(str(tmp_path / "model-9"), 10, b"9"), serving_dir, 200)
    os.makedirs(os.path.join(serving_dir, ".unfinished-300"))
    assert baseline_problem(serving_dir, str(tmp_path / "model-9"), 9) is None
    assert "is not the baseline" in baseline_problem(serving_dir, str(tmp_path / "model-6"), 6)


def test_deleted_baseline_files_and_an_emptied_serving_directory_are_named(tmp_path):
    serving_dir = str(tmp_path / "serving")
    make_model(str(tmp_path / "model-6"), 10, b"6")
    assert "serves nothing: the served model was removed" in baseline_problem(
        serving_dir, str(tmp_path / "model-6"), 6)
    shutil.rmtree(tmp_path / "model-6")
    problem = baseline_problem(serving_dir, str(tmp_path / "model-6"), 6)
    assert problem.startswith("the baseline model 6 (the last blessed model in ML Metadata) cannot "
                              "be read")
