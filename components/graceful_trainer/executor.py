"""GracefulTrainer's executor: TFX's GenericExecutor, fed with explicit parameters and a reference.

Every training parameter arrives as its own execution property (so MLMD records each one); this
executor hands them to `run_fn` as its custom_config, runs TFX's Trainer logic unchanged, then records
what actually happened on the Model artifact: the loss used (plain when there was no blessed model
yet), the reference model, and the BCT compatibility criterion.
"""
import json
import os

from tfx.components.trainer import executor as trainer_executor
from tfx.types import artifact_utils

from graceful.models.params import TrainingParams
from graceful.models.training import SUMMARY_FILE

PARAMETER_NAMES = tuple(field for field in TrainingParams.__dataclass_fields__)


class Executor(trainer_executor.GenericExecutor):

    def _GetFnArgs(self, input_dict, output_dict, exec_properties):
        fn_args = super()._GetFnArgs(input_dict, output_dict, exec_properties)
        fn_args.custom_config = {name: exec_properties[name] for name in PARAMETER_NAMES}
        return fn_args

    def Do(self, input_dict, output_dict, exec_properties):
        super().Do(input_dict, output_dict, exec_properties)
        model = artifact_utils.get_single_instance(output_dict["model"])
        model_run_uri = artifact_utils.get_single_uri(output_dict["model_run"])
        with open(os.path.join(model_run_uri, SUMMARY_FILE)) as handle:
            summary = json.load(handle)
        model.set_string_custom_property("loss", summary["effective_loss"])
        model.set_float_custom_property("train_seconds", summary["train_seconds"])
        for reference in input_dict.get("base_model", []):
            model.set_int_custom_property("reference_model_id", reference.id)
        if not input_dict.get("base_model"):
            model.set_string_custom_property(
                "reference_note", "no blessed model yet: trained plainly")
        compat = summary.get("compatibility") or {}
        if compat.get("comparable"):
            model.set_float_custom_property("compat_new_old_top1", compat["new_old_top1"])
            model.set_float_custom_property("compat_old_old_top1", compat["old_old_top1"])
            model.set_int_custom_property("compatible", int(compat["compatible"]))
