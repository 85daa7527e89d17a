"""One run at a time per home: a real flock held by another process, released by kill -9."""
import os
import signal
import subprocess
import sys
import time

import pytest

from graceful.home_lock import LOCK_FILE, HomeBusyError, home_lock

HOLD = """
import sys, time
from graceful.home_lock import home_lock
with home_lock(sys.argv[1], what="graceful run --span 2"):
    print("held", flush=True)
    time.sleep(600)
"""


@pytest.fixture
def holder(tmp_path):
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)],
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    yield process
    process.kill()
    process.wait()


def test_a_second_run_is_turned_away_naming_the_running_one(tmp_path, holder):
    with pytest.raises(HomeBusyError) as busy:
        with home_lock(str(tmp_path)):
            pytest.fail("the lock was taken twice")
    message = str(busy.value)
    assert f"pid {holder.pid}" in message and "graceful run --span 2" in message
    assert "One run at a time per home" in message


def test_a_run_killed_with_sigkill_does_not_leave_the_home_locked(tmp_path, holder):
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    started = time.monotonic()
    with home_lock(str(tmp_path), what="the next run"):
        assert "the next run" in (tmp_path / LOCK_FILE).read_text()
    assert time.monotonic() - started < 1.0


def test_the_lock_is_reentrant_within_one_process(tmp_path):
    with home_lock(str(tmp_path)):
        with home_lock(str(tmp_path)):
            pass
        assert (tmp_path / LOCK_FILE).read_text(), "the outer holder still owns it"
    assert (tmp_path / LOCK_FILE).read_text() == ""
