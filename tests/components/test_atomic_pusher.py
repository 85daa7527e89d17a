"""AtomicPusher: TFX's Pusher executor run for real, killed with SIGKILL in the middle of its copy.

A model server serves the highest numbered folder in serving/; the push must never leave a partial one.
"""
import os
import signal
import subprocess
import sys
import time

import pytest
from tfx.dsl.io import fileio

from graceful import recovery, serving

BIG_VARIABLES = 768 * 2**20  # large enough that the copy takes a while on any disk

PUSH = """
import sys
from tests.components.test_atomic_pusher import push
push(sys.argv[1], sys.argv[2], sys.argv[3])
"""


def make_model(uri: str, variables_bytes: int, seed: bytes) -> str:
    """A Model artifact folder in TFX's layout with a SavedModel-shaped Format-Serving inside."""
    model_dir = os.path.join(uri, "Format-Serving")
    os.makedirs(os.path.join(model_dir, "variables"))
    with open(os.path.join(model_dir, "saved_model.pb"), "wb") as handle:
        handle.write(b"graph " + seed)
    with open(os.path.join(model_dir, "variables", "variables.index"), "wb") as handle:
        handle.write(b"index " + seed)
    with open(os.path.join(model_dir, "variables", "variables.data-00000-of-00001"), "wb") as h:
        h.truncate(variables_bytes)
    return model_dir


def push(model_uri: str, serving_dir: str, pushed_uri: str):
    """Runs AtomicPusher's executor on a blessed model, as TFX's launcher would."""
    from tfx.proto import pusher_pb2
    from tfx.types import standard_artifacts
    from tfx.utils import proto_utils

    from graceful.components.atomic_pusher.executor import Executor

    model, blessing = standard_artifacts.Model(), standard_artifacts.ModelBlessing()
    model.uri = model_uri
    blessing.uri = os.path.join(pushed_uri, "..", "blessing")
    blessing.set_int_custom_property("blessed", 1)
    pushed = standard_artifacts.PushedModel()
    pushed.uri = pushed_uri
    destination = pusher_pb2.PushDestination(
        filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=serving_dir))
    Executor().Do({"model": [model], "model_blessing": [blessing]}, {"pushed_model": [pushed]},
                  {"push_destination": proto_utils.proto_to_json(destination),
                   "custom_config": "null"})
    return pushed


def test_sigkill_during_the_copy_leaves_the_served_model_alone(tmp_path):
    serving_dir = str(tmp_path / "serving")
    old = make_model(str(tmp_path / "old"), 1024, b"old")
    fileio.makedirs(serving_dir)
    subprocess.run(["cp", "-r", old, os.path.join(serving_dir, "100")], check=True)
    make_model(str(tmp_path / "new"), BIG_VARIABLES, b"new")

    process = subprocess.Popen(
        [sys.executable, "-c", PUSH, str(tmp_path / "new"), serving_dir, str(tmp_path / "pushed")],
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    deadline = time.monotonic() + 120
    while not serving.leftover_staging(serving_dir) and time.monotonic() < deadline:
        assert process.poll() is None, "the push ended before it could be interrupted"
        time.sleep(0.002)
    [staging] = serving.leftover_staging(serving_dir)
    while not any("variables" in root for root, _, _ in os.walk(staging)):
        time.sleep(0.002)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()

    staged_files = [name for _, _, files in os.walk(staging) for name in files]
    assert "saved_model.pb" not in staged_files, "killed mid-copy (TFX copies saved_model.pb last)"
    assert serving.versions(serving_dir) == [100]
    assert serving.fingerprint(os.path.join(serving_dir, "100")) == serving.fingerprint(old)

    recovery.reconcile(str(tmp_path / "no-store.sqlite"), serving_dir, log=lambda _: None)
    assert serving.leftover_staging(serving_dir) == []
    assert sorted(os.listdir(serving_dir)) == ["100"]


def test_a_completed_push_is_the_newest_version_and_the_whole_model(tmp_path):
    serving_dir = str(tmp_path / "serving")
    fileio.makedirs(os.path.join(serving_dir, str(int(time.time()) + 3600)))  # a clock set back
    new = make_model(str(tmp_path / "new"), 4096, b"new")
    pushed = push(str(tmp_path / "new"), serving_dir, str(tmp_path / "pushed"))
    versions = serving.versions(serving_dir)
    assert len(versions) == 2 and pushed.get_string_custom_property("pushed_version") == str(
        versions[-1])
    destination = pushed.get_string_custom_property("pushed_destination")
    assert destination == os.path.join(serving_dir, str(versions[-1]))
    assert serving.fingerprint(destination) == serving.fingerprint(new)
    assert serving.leftover_staging(serving_dir) == []


def test_fingerprints_tell_models_apart_and_name_an_incomplete_folder(tmp_path):
    a = make_model(str(tmp_path / "a"), 10, b"a")
    b = make_model(str(tmp_path / "b"), 10, b"b")
    assert serving.fingerprint(a) != serving.fingerprint(b)
    os.remove(os.path.join(b, "saved_model.pb"))
    with pytest.raises(FileNotFoundError, match="holds no complete SavedModel"):
        serving.fingerprint(b)
    for name in (".staging-x", ".unfinished-7", "notes", "12"):
        os.makedirs(tmp_path / "serving" / name)
    assert serving.versions(str(tmp_path / "serving")) == [12]
