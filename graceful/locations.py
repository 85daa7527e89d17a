"""Locations are URIs: a pipeline home, data root or artifact may be a local path or a URI on another
file system (gs://bucket/graceful, s3://…, hdfs://…), and one rule tells them apart.

Why: on Kubeflow every location is a bucket URI, and the usual local tools mangle one silently:
pathlib turns `gs://b/x` into `gs:/b/x`, os.path.abspath into `<cwd>/gs:/b/x`, open() cannot read it.
So locations are joined as strings (`os.path.join` keeps `gs://`), read and written through TFX's
fileio or tf.io.gfile, and made absolute only when they are local; what only works on a local
file system (the run lock, the demo's home) refuses a URI and says so.
"""
from __future__ import annotations

import os
import re

__all__ = ["absolute", "is_uri"]

# TFX's fileio's own rule (tfx/dsl/io/filesystem_registry.py, get_filesystem_for_path).
_SCHEME = re.compile(r"^[a-z0-9]+://")


def is_uri(location: str) -> bool:
    """True for `scheme://…` (another file system), False for a local path."""
    return bool(_SCHEME.match(location))


def absolute(location: str) -> str:
    """A local path made absolute (to print, or to hand to a process with another working
    directory); a URI as it is."""
    return location if is_uri(location) else os.path.abspath(location)
