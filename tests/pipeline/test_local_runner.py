"""pipeline/local_runner.run_under_home: the one wrapper a run and the release of a sign-off decision
(pipeline/release.py) are run in: the home's lock, a lost store refused, unfinished pushes repaired,
progress lines, a scratch folder."""
import fcntl
import os

import pytest

from graceful import recovery
from graceful.home_lock import LOCK_FILE, HomeBusyError
from graceful.pipeline import local_runner, release
from graceful.pipeline.configs import PipelineConfig

VALUES = {release.REQUEST_ID: "graceful.1", release.CANDIDATE_MODEL_URI: "/nowhere/model",
          release.EVAL_EXAMPLES_URI: "/nowhere/examples"}


@pytest.fixture
def config(tmp_path):
    return PipelineConfig(home=str(tmp_path / "home"))


def test_a_release_refuses_a_lost_store_as_a_run_does(config):
    """The store knows no runs but the pipeline root holds their artifacts: importing the
    candidate into it would start a history that has forgotten what is served."""
    os.makedirs(os.path.join(config.pipeline_root, "Trainer"))
    for run in (lambda: local_runner.run(config), lambda: release.run(config, VALUES)):
        with pytest.raises(recovery.LostStoreError, match="knows no runs"):
            run()
    assert os.listdir(config.pipeline_root) == ["Trainer"], "nothing moved, nothing ran"


def _flock(config):
    """The home's lock file, locked here as another run would (raises BlockingIOError if held)."""
    os.makedirs(config.home, exist_ok=True)
    handle = open(os.path.join(config.home, LOCK_FILE), "a+")
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return handle


def test_a_release_is_turned_away_while_a_run_holds_the_home(config):
    with _flock(config):
        with pytest.raises(HomeBusyError):
            release.run(config, VALUES)


def test_run_under_home_builds_the_pipeline_inside_the_lock_with_the_homes_store(config,
                                                                                  monkeypatch):
    seen = []

    def build(connection):
        seen.append(connection)
        with pytest.raises(BlockingIOError):  # held by run_under_home while it builds and runs
            _flock(config)
        raise RuntimeError("stop before running")

    with pytest.raises(RuntimeError, match="stop before running"):
        local_runner.run_under_home(config, build)
    assert seen == [local_runner.metadata_config(config)]
    assert not os.path.exists(os.path.join(config.home, "scratch"))
