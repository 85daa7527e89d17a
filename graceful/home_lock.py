"""One run at a time per pipeline home.

Why: two runs on one home resolve the same baseline, both push, and the next baseline is whichever
pushed last; on a fresh home they also race on writing the same data span. A run therefore holds an
exclusive lock on `<home>/.graceful-run.lock` while it prepares data, runs and pushes. The lock is an
`fcntl.flock` on an open file: the kernel releases it when the holder exits for any reason, kill -9
included, so a crashed run never leaves it stuck. The file keeps who holds it (pid, host, command,
start time) so the run that is turned away can name the one running.

The lock is re-entrant within a process (the CLI takes it around data preparation and the pipeline
run, and the local runner takes it again for callers that use it directly).

A home on a bucket (gs://…) is refused (RemoteHomeError): an object store has no file locks, and the
local runner's scratch folder lives in the home too. Runs on such a home belong to an orchestrator
that runs one at a time itself (Kubeflow: kubeflow/schedule.py's max_concurrency=1).
"""
from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import socket
import sys

from graceful import locations

LOCK_FILE = ".graceful-run.lock"
_held: dict[str, int] = {}  # real path of the lock file -> nesting depth in this process


class HomeBusyError(RuntimeError):
    """Another run holds the home."""


class RemoteHomeError(ValueError):
    """A run was asked to lock a home that is a URI, not a local folder."""


def _describe(holder: dict) -> str:
    if not holder:
        return "another run (no details recorded)"
    return (f"another run (pid {holder.get('pid')} on {holder.get('host')}, started "
            f"{holder.get('started')}: {holder.get('command')})")


@contextlib.contextmanager
def home_lock(home: str, what: str | None = None):
    """Holds the home's run lock; raises HomeBusyError at once when another process holds it, and
    RemoteHomeError for a home that is a URI."""
    if locations.is_uri(home):
        raise RemoteHomeError(
            f"--home {home} is not a local folder: a local run locks its home with a file lock, "
            "which a bucket cannot hold. Run with a local --home, or on Kubeflow "
            f"(`graceful compile kubeflow --home {home}`; kubeflow/schedule.py runs one at a time).")
    os.makedirs(home, exist_ok=True)
    path = os.path.realpath(os.path.join(home, LOCK_FILE))
    if path in _held:
        _held[path] += 1
        try:
            yield
        finally:
            _held[path] -= 1
        return
    handle = open(path, "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            try:
                holder = json.loads(handle.read() or "{}")
            except ValueError:
                holder = {}
            raise HomeBusyError(
                f"{home} is in use by {_describe(holder)}. One run at a time per home: wait for it "
                "to finish and try again.") from None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({
            "pid": os.getpid(), "host": socket.gethostname(),
            "started": datetime.datetime.now().isoformat(timespec="seconds"),
            "command": what or " ".join([os.path.basename(sys.argv[0]), *sys.argv[1:]])}))
        handle.flush()
        _held[path] = 1
        try:
            yield
        finally:
            del _held[path]
            handle.seek(0)
            handle.truncate()
    finally:
        handle.close()  # releases the flock
