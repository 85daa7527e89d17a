"""The serving directory as a model server sees it, and how to tell which model it holds.

A model server (TF Serving's file-system source) serves the highest numbered version folder under the
serving directory and ignores every other name. graceful relies on that twice:
- a push is staged in a hidden folder (`.staging-*`) and renamed to its version number only when the
  copy is complete, so the server never sees a partial model;
- a version folder that a push left behind without finishing its record in ML Metadata is moved aside
  to a hidden `.unfinished-<version>` folder (kept, never deleted), so it stops being served.

Which model a folder holds is decided by a fingerprint of the SavedModel's graph and variable index
(the index carries a checksum of every variable), the same bytes the Pusher copied.

Locations are URIs (local paths, gs://...), read through TFX's fileio.
"""
from __future__ import annotations

import hashlib
import os

from tfx.dsl.io import fileio

# The custom properties a push artifact records (TFX's Pusher, the AtomicPusher, the EdgePusher).
PUSHED, PUSHED_DESTINATION, PUSHED_VERSION = "pushed", "pushed_destination", "pushed_version"
# How the edge branch may convert a model to TensorFlow Lite (EdgeConfig.quantization, the
# EdgeConverter): float32 weights and maths, or post-training int8 quantization.
EDGE_QUANTIZATIONS = ("float", "int8")
STAGING_PREFIX = ".staging-"
UNFINISHED_PREFIX = ".unfinished-"
_FINGERPRINTED = ("saved_model.pb", "variables/variables.index")


def _name(path: str) -> str:
    return os.path.basename(path.rstrip("/"))


def versions(serving_dir: str) -> list[int]:
    """The version numbers a model server would consider, oldest first."""
    if not fileio.isdir(serving_dir):
        return []
    return sorted(int(_name(child)) for child in fileio.listdir(serving_dir)
                  if _name(child).isdigit() and fileio.isdir(os.path.join(serving_dir, _name(child))))


def served_version_dir(serving_dir: str) -> str | None:
    """The folder being served (the highest version), or None when nothing is served."""
    found = versions(serving_dir)
    return os.path.join(serving_dir, str(found[-1])) if found else None


def fingerprint(model_dir: str) -> str:
    """A digest of the SavedModel in `model_dir`; equal digests mean the same graph and weights.

    Raises FileNotFoundError naming the folder when it holds no SavedModel.
    """
    digest = hashlib.sha256()
    for relative in _FINGERPRINTED:
        path = os.path.join(model_dir, relative)
        if not fileio.exists(path):
            raise FileNotFoundError(f"{model_dir} holds no complete SavedModel ({relative} is "
                                    "missing)")
        with fileio.open(path, "rb") as handle:
            digest.update(hashlib.sha256(handle.read()).digest())
    return digest.hexdigest()


def leftover_staging(serving_dir: str) -> list[str]:
    """Staging folders of pushes that never finished (the model they copied is still in its
    artifact, so they hold nothing that would be lost)."""
    if not fileio.isdir(serving_dir):
        return []
    return [os.path.join(serving_dir, _name(child)) for child in fileio.listdir(serving_dir)
            if _name(child).startswith(STAGING_PREFIX)]


def set_aside(version_dir: str) -> str:
    """Stops serving a version by renaming it to a hidden `.unfinished-<version>` folder beside it;
    returns the new path. The files are kept for whoever wants to look at them."""
    parent, name = os.path.dirname(version_dir.rstrip("/")), _name(version_dir)
    target = os.path.join(parent, UNFINISHED_PREFIX + name)
    suffix = 1
    while fileio.exists(target):
        suffix += 1
        target = os.path.join(parent, f"{UNFINISHED_PREFIX}{name}-{suffix}")
    fileio.rename(version_dir, target)
    return target
