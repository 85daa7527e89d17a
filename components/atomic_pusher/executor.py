"""AtomicPusher's executor: TFX's Pusher executor, staged, then renamed into place.

Why: TFX's Pusher copies the model file by file straight into `<serving>/<version>`. A process killed
during that copy leaves a partial version folder that a model server would try to load, and since it
has the highest number, serve. Here TFX's own executor pushes into a hidden staging folder inside the
serving directory (same filesystem, invisible to model servers), and the complete version folder is
then renamed into place: the serving directory holds the old model or the new one, never a part.

The version is also made larger than every version already there (TFX uses the current second, which
repeats when two pushes share it, and which a clock step back would make smaller than the served one).
"""
from __future__ import annotations

import os
import uuid

from tfx.components.pusher import executor as tfx_pusher
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import proto_utils

from graceful import serving
from graceful.serving import PUSHED_DESTINATION, PUSHED_VERSION


class Executor(tfx_pusher.Executor):

    def Do(self, input_dict, output_dict, exec_properties):
        destination = pusher_pb2.PushDestination()
        proto_utils.json_to_proto(
            exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], destination)
        serving_dir = destination.filesystem.base_directory
        staging = os.path.join(serving_dir, serving.STAGING_PREFIX + uuid.uuid4().hex)
        destination.filesystem.base_directory = staging
        staged = {**exec_properties,
                  standard_component_specs.PUSH_DESTINATION_KEY: proto_utils.proto_to_json(
                      destination)}
        try:
            super().Do(input_dict, output_dict, staged)
            model_push = artifact_utils.get_single_instance(
                output_dict[standard_component_specs.PUSHED_MODEL_KEY])
            if model_push.get_int_custom_property("pushed") == 1:
                self._move_into_place(model_push, serving_dir)
        finally:
            if fileio.exists(staging):
                fileio.rmtree(staging)

    @staticmethod
    def _move_into_place(model_push, serving_dir: str) -> None:
        staged_dir = model_push.get_string_custom_property(PUSHED_DESTINATION)
        existing = serving.versions(serving_dir)
        version = max(int(model_push.get_string_custom_property(PUSHED_VERSION)),
                      existing[-1] + 1 if existing else 0)
        final_dir = os.path.join(serving_dir, str(version))
        fileio.rename(staged_dir, final_dir)
        model_push.set_string_custom_property(PUSHED_DESTINATION, final_dir)
        model_push.set_string_custom_property(PUSHED_VERSION, str(version))
        print(f"[push] model served from {final_dir}", flush=True)
