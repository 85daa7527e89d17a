"""Repairs what a run that died mid-way left behind, before the next run resolves its baseline.

A run killed after its Evaluator blessed the candidate and before its Pusher finished leaves a LIVE
ModelBlessing with blessed=1 in ML Metadata. TFX's LatestBlessedModelStrategy (and the Kubeflow v2
baseline query, `state=LIVE AND metadata.blessed=1`) would take that never-served model as the next
baseline. Every resolver only considers LIVE artifacts, so the repair is to set such a blessing's
state to ABANDONED, with the reason recorded on it: it leaves resolution on every runner, and the
record stays for the audit trail. A version folder the dead push may already have renamed into
serving/ is set aside (kept, no longer served), and staging folders of unfinished pushes are removed
(the model they copied is still in its artifact).

Run before a pipeline run, with no other run on the same store (graceful.home_lock for the local
runner, `max_active_runs=1` on Airflow).
"""
from __future__ import annotations

import os
import time

from ml_metadata.proto import metadata_store_pb2
from tfx.dsl.io import fileio
from tfx.utils import path_utils

from graceful import mlmd_store, serving
from graceful.history import (ABANDONED_REASON, MODEL_BLESSING, PUSHED_MODEL, RUN_CONTEXT_TYPES,
                              property_value)
from graceful.lineage import Graph

_DONE = (metadata_store_pb2.Execution.COMPLETE, metadata_store_pb2.Execution.CACHED)


def _run_of(store, execution) -> str:
    runs = [c.name for c in store.get_contexts_by_execution(execution.id)
            if c.type_id in {t.id for t in store.get_context_types()
                             if t.name in RUN_CONTEXT_TYPES}]
    return f"run {runs[0]}" if runs else "an unknown run"


def unfinished_pushes(store) -> list:
    """LIVE, blessed ModelBlessings that no completed push (a step producing a PushedModel) consumed."""
    graph, found = Graph(store), []
    for blessing in store.get_artifacts_by_type(MODEL_BLESSING):
        if blessing.state != metadata_store_pb2.Artifact.LIVE:
            continue
        if property_value(blessing, "blessed") != 1:
            continue
        if not any(x.last_known_state in _DONE for x in graph.consumers(blessing, PUSHED_MODEL)):
            found.append(blessing)
    return found


def _served_by_completed_pushes(store) -> set[str]:
    """Version folders completed pushes recorded (URIs: compared without a trailing slash, since
    os.path.normpath would turn gs://b into gs:/b)."""
    return {str(property_value(p, "pushed_destination")).rstrip("/")
            for p in store.get_artifacts_by_type(PUSHED_MODEL)
            if property_value(p, "pushed") == 1 and property_value(p, "pushed_destination")}


def _set_aside_unrecorded_copies(store, model_id: int, serving_dir: str, log) -> None:
    """A version folder holding `model_id` that no completed push recorded came from the dead push."""
    [model] = store.get_artifacts_by_id([model_id])
    try:
        wanted = serving.fingerprint(path_utils.serving_model_path(model.uri))
    except FileNotFoundError:
        return
    recorded = _served_by_completed_pushes(store)
    for version in serving.versions(serving_dir):
        folder = os.path.join(serving_dir, str(version))
        if folder.rstrip("/") in recorded:
            continue
        try:
            same = serving.fingerprint(folder) == wanted
        except FileNotFoundError:
            same = False
        if same:
            log(f"[recover] {folder} holds model {model_id}, whose push never completed: "
                f"set aside to {serving.set_aside(folder)} (no longer served)")


def reconcile(metadata_path: str, serving_dir: str, log=print) -> list[int]:
    """Takes unfinished pushes out of baseline resolution; returns the abandoned blessings' ids."""
    for staging in serving.leftover_staging(serving_dir):
        fileio.rmtree(staging)
        log(f"[recover] removed {staging}, the partial copy of a push that never finished")
    if not mlmd_store.exists(metadata_path):
        return []
    store = mlmd_store.open_store(metadata_path, readonly=False)
    graph, abandoned = Graph(store), []
    for blessing in unfinished_pushes(store):
        model_id = property_value(blessing, "current_model_id")
        evaluator = graph.producer(blessing)
        run = _run_of(store, evaluator) if evaluator else "an unknown run"
        reason = (f"model {model_id} was blessed by {run}, which stopped before its push "
                  "completed; it was never served, so it is no baseline")
        blessing.state = metadata_store_pb2.Artifact.ABANDONED
        blessing.custom_properties[ABANDONED_REASON].string_value = reason
        store.put_artifacts([blessing])
        abandoned.append(blessing.id)
        log(f"[recover] {reason} (ModelBlessing {blessing.id} marked ABANDONED in ML Metadata)")
        if model_id is not None:
            _set_aside_unrecorded_copies(store, int(model_id), serving_dir, log)
    return abandoned


class LostStoreError(RuntimeError):
    """The metadata store knows no runs although earlier runs left artifacts: it was lost."""


def check_store_not_lost(metadata_path: str, pipeline_root: str, override_reason: str = "",
                         log=print) -> None:
    """Refuses to run on a store that was emptied or replaced while the home kept its artifacts.

    Such a store restarts execution ids, so new artifacts would collide with old ones, and it has
    forgotten which model is served. With an explicit override reason, the orphaned artifacts are
    moved aside (kept) and a new history starts; BaselineGuard then records the reason.
    """
    if not fileio.isdir(pipeline_root) or not fileio.listdir(pipeline_root):
        return
    if mlmd_store.open_store(metadata_path, readonly=False).get_executions():
        return
    if not override_reason.strip():
        raise LostStoreError(
            f"The ML Metadata store {metadata_path} knows no runs, but {pipeline_root} holds "
            "artifacts of earlier runs: the store was emptied, replaced or lost. Nothing was run. "
            "Restore the store from a backup. To start a new history instead, run again with "
            "--accept-unknown-serving \"<why>\": the old artifacts are moved aside (kept) and the "
            "reason is recorded.")
    aside = f"{pipeline_root.rstrip('/')}.orphaned-{int(time.time())}"
    fileio.rename(pipeline_root, aside)
    log(f"[recover] the metadata store knows no runs ({override_reason}): earlier artifacts moved "
        f"to {aside}")
