"""Runs the pipeline locally: LocalDagRunner with a SQLite ML Metadata store, all under one home."""
from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import sys
import tempfile
import time

from graceful.pipeline.configs import PipelineConfig

_NODE_EVENT = re.compile(r"^Component (\S+) is (running|finished)\.$")


class _ProgressHandler(logging.Handler):
    """Turns LocalDagRunner's per-component log lines into short progress lines with timings."""

    def __init__(self, log):
        super().__init__(logging.INFO)
        self._log = log
        self._started: dict[str, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        match = _NODE_EVENT.match(record.getMessage())
        if not match:
            return
        node, event = match.groups()
        if event == "running":
            self._started[node] = time.monotonic()
            self._log(f"[run] {node} ...")
        else:
            seconds = time.monotonic() - self._started.pop(node, time.monotonic())
            self._log(f"[run] {node} done ({seconds:.1f}s)")


@contextlib.contextmanager
def progress_lines(log=print):
    """Shows component progress; TFX's INFO and WARNING chatter stays out of the console."""
    absl_logger = logging.getLogger("absl")
    handler = _ProgressHandler(log)
    previous_level = absl_logger.level
    chatty = [logging.getLogger(name) for name in ("", "absl", "tensorflow")]
    quiet = [(h, h.level) for logger in chatty for h in logger.handlers]
    for h, _ in quiet:
        h.setLevel(max(h.level, logging.ERROR))
    absl_logger.setLevel(logging.INFO)
    absl_logger.addHandler(handler)
    try:
        yield
    finally:
        absl_logger.removeHandler(handler)
        absl_logger.setLevel(previous_level)
        for h, level in quiet:
            h.setLevel(level)


def metadata_config(config: PipelineConfig):
    """The ML Metadata connection of `config` (SQLite in the home, or its MySQL server)."""
    from graceful import mlmd_store

    return mlmd_store.connection_config(config.metadata_uri)


def run(config: PipelineConfig, log=print) -> None:
    """Builds the pipeline from `config` and runs it once with LocalDagRunner (raises on failure),
    as run_under_home does: `config.accept_unknown_serving` lets it start a new history on a lost
    store."""
    from graceful.pipeline.pipeline import create_pipeline

    run_under_home(config, lambda connection: create_pipeline(config, connection), log=log,
                   accept_unknown_serving=config.accept_unknown_serving)


def run_under_home(config: PipelineConfig, build, log=print,
                   accept_unknown_serving: str = "") -> None:
    """Runs the TFX pipeline `build(metadata connection config)` returns once with LocalDagRunner
    into `config`'s ML Metadata store (raises on failure): a run (`run`), or the release of a
    sign-off decision (pipeline/release.py).

    Holds the home's run lock throughout (HomeBusyError if another run has it), refuses a damaged
    metadata store (StoreDamagedError) or a lost one (LostStoreError; with
    `accept_unknown_serving`, a reason, the old artifacts are moved aside and a new history
    starts), and first repairs what a run that died mid-push left behind (graceful.recovery).
    Shows progress lines through `log`, hides the caller's argv from TFX's executors and keeps
    their temp files in a scratch folder of the home that is removed afterwards.
    """
    from tfx import v1 as tfx

    from graceful import recovery
    from graceful.home_lock import home_lock

    with home_lock(config.home):
        recovery.check_store_not_lost(config.metadata_uri, config.pipeline_root,
                                      accept_unknown_serving, log=log)
        recovery.reconcile(config.metadata_uri, config.serving_dir, log=log)
        tfx_pipeline = build(metadata_config(config))
        with progress_lines(log), own_argv(), scratch_tempdir(os.path.join(config.home, "scratch")):
            tfx.orchestration.LocalDagRunner().run(tfx_pipeline)


@contextlib.contextmanager
def scratch_tempdir(scratch: str | os.PathLike):
    """Points temp files of the run (Beam's, TF's, TFX's throwaway packages) at `scratch`, then
    deletes it: TFX never removes the 42 MB source package it builds per Beam step when Beam
    arguments are given, and a scheduled local pipeline would otherwise fill the disk. A local
    folder: the home lock taken before refuses a home that is a URI (graceful.home_lock)."""
    os.makedirs(scratch, exist_ok=True)
    saved_env, saved_default = os.environ.get("TMPDIR"), tempfile.tempdir
    os.environ["TMPDIR"], tempfile.tempdir = str(scratch), str(scratch)
    try:
        yield
    finally:
        tempfile.tempdir = saved_default
        if saved_env is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved_env
        shutil.rmtree(scratch, ignore_errors=True)


@contextlib.contextmanager
def own_argv():
    """TFX's Beam executors parse `sys.argv` as absl flags; the caller's arguments (`pytest -v`,
    `graceful run --span 2`) are not meant for them (`-v` is absl's --verbosity), so hide them."""
    saved = sys.argv
    sys.argv = saved[:1]
    try:
        yield
    finally:
        sys.argv = saved
