"""EdgePusher's executor: the .tflite into the edge destination, only when the cloud model was
pushed and the edge check passed; staged, then renamed into place.

Layout (like the cloud serving directory): `<destination>/<version>/model.tflite` with the edge
report beside it. The version is the cloud push's version when that is larger than every edge
version already there (the same number names both halves of one release), else one above the
largest. The files are written into a hidden staging folder inside the destination (same
filesystem) and the complete folder is renamed to its version, so a device sync never sees a
partial model. The EdgePush records `pushed` (1/0), `reason`, `pushed_destination` (the version
folder), `pushed_version` and `model_uri`.
"""
from __future__ import annotations

import os
import uuid

from tfx.dsl.components.base import base_executor
from tfx.dsl.io import fileio
from tfx.types import artifact_utils

from graceful import serving
from graceful.components.edge_converter.executor import (EDGE_MODEL_FILE, EDGE_REPORT_FILE,
                                                         read_report)
from graceful.serving import PUSHED, PUSHED_DESTINATION, PUSHED_VERSION

NO_EDGE_MODEL = ("this release's request has no edge model (its run had the edge branch off, or "
                 "was opened before it was turned on): only the cloud model is released")


def why_not(report: dict, cloud_pushed: bool, model_uri: str) -> str:
    """Why the edge model must not be pushed; "" when it may."""
    if report.get("model_uri") != model_uri:
        return (f"the edge model was converted from {report.get('model_uri')}, not from the "
                f"candidate {model_uri}")
    if not cloud_pushed:
        return "the cloud model was not pushed"
    if not report["gate"]["blessed"]:
        return "the edge check failed: " + "; ".join(report["gate"]["failures"])
    return ""


def push(edge_model_uri: str, destination: str, cloud_version: str) -> tuple[str, int]:
    """Copies the edge model and its report into `destination/<version>` atomically; returns
    (that folder, version)."""
    fileio.makedirs(destination)
    staging = os.path.join(destination, serving.STAGING_PREFIX + uuid.uuid4().hex)
    try:
        fileio.makedirs(staging)
        for name in (EDGE_MODEL_FILE, EDGE_REPORT_FILE):
            fileio.copy(os.path.join(edge_model_uri, name), os.path.join(staging, name))
        existing = serving.versions(destination)
        version = max(int(cloud_version or 0), existing[-1] + 1 if existing else 0)
        final = os.path.join(destination, str(version))
        fileio.rename(staging, final)
    finally:
        if fileio.exists(staging):
            fileio.rmtree(staging)
    return final, version


class Executor(base_executor.BaseExecutor):

    def Do(self, input_dict, output_dict, exec_properties):
        edge_model = artifact_utils.get_single_instance(input_dict["edge_model"])
        pushed_model = artifact_utils.get_single_instance(input_dict["pushed_model"])
        model = artifact_utils.get_single_instance(input_dict["model"])
        edge_push = artifact_utils.get_single_instance(output_dict["edge_push"])
        edge_push.set_string_custom_property("model_uri", model.uri)
        if not edge_model.uri:  # a release compiled with the edge branch on, for a request without
            reason = NO_EDGE_MODEL  # an edge model: its importer imported the parameter's ""
        else:
            reason = why_not(read_report(edge_model.uri),
                             pushed_model.get_int_custom_property(PUSHED) == 1, model.uri)
        if reason:
            edge_push.set_int_custom_property(PUSHED, 0)
            edge_push.set_string_custom_property("reason", reason)
            print(f"[edge push] not pushed: {reason}", flush=True)
            return
        final, version = push(edge_model.uri, exec_properties["destination"],
                              pushed_model.get_string_custom_property(PUSHED_VERSION))
        edge_push.set_int_custom_property(PUSHED, 1)
        edge_push.set_string_custom_property("reason", "cloud model pushed, edge check passed")
        edge_push.set_string_custom_property(PUSHED_DESTINATION, final)
        edge_push.set_string_custom_property(PUSHED_VERSION, str(version))
        edge_push.set_string_custom_property(
            "cloud_destination", pushed_model.get_string_custom_property(PUSHED_DESTINATION))
        print(f"[edge push] {read_report(edge_model.uri)['quantization']} edge model served from "
              f"{os.path.join(final, EDGE_MODEL_FILE)}", flush=True)
