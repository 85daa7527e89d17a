"""GracefulTrainer's executor: TFX's GenericExecutor, fed with explicit parameters, the contracts and
a reference.

Every training parameter and both contracts arrive as execution properties (so MLMD records them);
this executor hands them to `run_fn` as its custom_config (layout in graceful.models.training),
runs it, then records on the Model artifact what happened: the reference model always, and from the
run_fn's `training_summary.json` — only if it wrote one (your own run_fn need not) — the loss actually
used (plain when there was no blessed model yet), the BCT compatibility criterion (BCT losses) and, with warm
start, the model the weights started from (`warm_start_model_id`, `warm_start_uri`) and the
interpolation weight `warm_start_alpha` (or `warm_start_note` when there was none to start from).

Unlike TFX's Trainer, `module_file` here is a module defining `build_model(context)` for graceful's
run_fn, not a module defining run_fn; `run_fn` is always the dotted path given to the component.
"""
import json
import os

import absl.logging
from tfx.components.trainer import executor as trainer_executor
from tfx.components.util import udf_utils
from tfx.dsl.io import fileio
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils

from graceful.components.span_window.strategy import span_of
from graceful.models.params import TrainingParams
from graceful.models.training import NEWEST_TRAIN_FILES, SUMMARY_FILE

PARAMETER_NAMES = tuple(field for field in TrainingParams.__dataclass_fields__)
DATA_CONTRACT, MODEL_CONTRACT = "data_contract", "model_contract"
_MODULE_KEYS = (standard_component_specs.MODULE_FILE_KEY, standard_component_specs.MODULE_PATH_KEY)


class Executor(trainer_executor.GenericExecutor):

    def _GetFnArgs(self, input_dict, output_dict, exec_properties):
        fn_args = super()._GetFnArgs(input_dict, output_dict, exec_properties)
        fn_args.custom_config = {
            "training": {name: exec_properties[name] for name in PARAMETER_NAMES},
            DATA_CONTRACT: json.loads(exec_properties.get(DATA_CONTRACT) or "{}"),
            MODEL_CONTRACT: json.loads(exec_properties.get(MODEL_CONTRACT) or "{}"),
            **{key: exec_properties.get(key) or "" for key in _MODULE_KEYS},
            NEWEST_TRAIN_FILES: _newest_train_files(
                input_dict[standard_component_specs.EXAMPLES_KEY])}
        return fn_args

    def Do(self, input_dict, output_dict, exec_properties):
        self._log_startup(input_dict, output_dict, exec_properties)
        fn_args = self._GetFnArgs(input_dict, output_dict, exec_properties)
        # Only the run_fn path: TFX would look run_fn up inside module_file, which here holds
        # build_model for graceful's run_fn.
        run_fn = udf_utils.get_fn({"run_fn": exec_properties["run_fn"]}, "run_fn")
        absl.logging.info("Training model.")
        run_fn(fn_args)
        if not fileio.exists(fn_args.serving_model_dir):
            raise RuntimeError(f"run_fn {exec_properties['run_fn']} wrote no model to "
                               f"{fn_args.serving_model_dir}; it must save a SavedModel there")
        self._record(input_dict, output_dict)

    @staticmethod
    def _record(input_dict, output_dict):
        model = artifact_utils.get_single_instance(output_dict["model"])
        for reference in input_dict.get("base_model", []):
            model.set_int_custom_property("reference_model_id", reference.id)
        if not input_dict.get("base_model"):
            model.set_string_custom_property(
                "reference_note", "no blessed model yet: trained plainly")
        summary_path = os.path.join(artifact_utils.get_single_uri(output_dict["model_run"]),
                                    SUMMARY_FILE)
        if not fileio.exists(summary_path):
            return
        with fileio.open(summary_path) as handle:
            summary = json.load(handle)
        if "effective_loss" in summary:
            model.set_string_custom_property("loss", summary["effective_loss"])
        if "train_seconds" in summary:
            model.set_float_custom_property("train_seconds", summary["train_seconds"])
        compat = summary.get("compatibility") or {}
        if compat.get("comparable"):
            model.set_float_custom_property("compat_new_old_top1", compat["new_old_top1"])
            model.set_float_custom_property("compat_old_old_top1", compat["old_old_top1"])
            model.set_int_custom_property("compatible", int(compat["compatible"]))
        warm = summary.get("warm_start") or {}
        if warm.get("from_model"):
            for reference in input_dict.get("base_model", []):
                model.set_int_custom_property("warm_start_model_id", reference.id)
            model.set_string_custom_property("warm_start_uri", warm["from_model"])
            model.set_float_custom_property("warm_start_alpha", warm["alpha"])
            if warm.get("alpha_held_out"):
                model.set_string_custom_property("warm_start_alpha_held_out",
                                                 warm["alpha_held_out"])
        elif warm.get("note"):
            model.set_string_custom_property("warm_start_note", warm["note"])


def _newest_train_files(examples) -> list[str]:
    """Train-split file patterns (as fn_args.train_files lists them) of the window's newest span."""
    newest = max(span_of(artifact) for artifact in examples)
    return [io_utils.all_files_pattern(uri) for uri in artifact_utils.get_split_uris(
        [artifact for artifact in examples if span_of(artifact) == newest], "train")]
