"""GracefulTrainer: TFX's Trainer, extended to train any team's Keras classifier against the served
model (the last blessed one) as frozen reference.

It is a Trainer (same inputs, outputs and executor logic) with
  * each training parameter — architecture, epochs, loss (plain | fd_kl | fd_lm | fd_margin | bct |
    bct+fd), temperature, alpha, beta, lam, margin, lambda_bct, ... — as its own execution property;
  * the data and model contracts (graceful.contract) as JSON execution properties `data_contract`
    and `model_contract`, so MLMD records how predictions were read;
  * `module_file`: a user module defining `build_model(context)` (graceful.models.user_module),
    trained by graceful's run_fn; without one, graceful's built-in Fashion-MNIST models;
  * `run_fn`: or your own training function (it gets everything in fn_args.custom_config, see
    graceful.models.training, and may use graceful.models.distillation);
  * the `base_model` input used as the frozen reference (focal distillation, BCT) and, with
    `warm_start`, as the candidate's starting weights (graceful.models.warm_start);
  * an optional `transform_graph` (a TFX Transform's output), as TFX's Trainer takes it: graceful's
    run_fn trains on the transformed features and attaches the graph to the exported model.
"""
import dataclasses
import json

from tfx import types
from tfx.components.trainer import component as trainer_component
from tfx.components.util import udf_utils
from tfx.dsl.components.base import executor_spec
from tfx.proto import trainer_pb2
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ExecutionParameter

from graceful.components.graceful_trainer.executor import (
    DATA_CONTRACT, MODEL_CONTRACT, Executor)
from graceful.contract import DataContract, ModelContract
from graceful.models.params import TrainingParams

# bool parameters (warm_start) travel as 0/1 ints: not every runner and MLMD backend keeps a boolean
# type; TrainingParams.from_custom_config makes them booleans again.
_TYPES = {int: int, float: float, str: str, bool: int}
DEFAULT_RUN_FN = "graceful.models.training.run_fn"


class GracefulTrainerSpec(standard_component_specs.TrainerSpec):
    PARAMETERS = {
        **standard_component_specs.TrainerSpec.PARAMETERS,
        **{f.name: ExecutionParameter(type=_TYPES[type(f.default)])
           for f in dataclasses.fields(TrainingParams)},
        DATA_CONTRACT: ExecutionParameter(type=str),
        MODEL_CONTRACT: ExecutionParameter(type=str),
    }


class GracefulTrainer(trainer_component.Trainer):
    SPEC_CLASS = GracefulTrainerSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, examples: types.BaseChannel, schema: types.BaseChannel,
                 reference_model: types.BaseChannel, params: TrainingParams,
                 data: DataContract, model: ModelContract, module_file: str | None = None,
                 run_fn: str = DEFAULT_RUN_FN, transform_graph: types.BaseChannel | None = None):
        """`module_file`: your module with build_model(context), trained by `run_fn` (graceful's by
        default); `run_fn`: a dotted path to your own training function instead; `transform_graph`:
        a Transform's graph, which the run_fn gets as fn_args.transform_graph_path."""
        spec = GracefulTrainerSpec(
            examples=examples, schema=schema, base_model=reference_model,
            transform_graph=transform_graph,
            train_args=trainer_pb2.TrainArgs(), eval_args=trainer_pb2.EvalArgs(), run_fn=run_fn,
            module_file=module_file or None,
            model=types.Channel(type=standard_artifacts.Model),
            model_run=types.Channel(type=standard_artifacts.ModelRun),
            **{DATA_CONTRACT: json.dumps(dataclasses.asdict(data)),
               MODEL_CONTRACT: json.dumps(dataclasses.asdict(model))},
            **{f.name: _TYPES[type(f.default)](getattr(params, f.name))
               for f in dataclasses.fields(TrainingParams)})
        # Skip Trainer.__init__ (it builds a plain TrainerSpec); initialise the component directly.
        super(trainer_component.Trainer, self).__init__(spec=spec)
        if module_file and udf_utils.should_package_user_modules():
            # As TFX's Trainer does: the module is packaged into a wheel for the executor, which
            # then gets its `module_path` instead of `module_file`.
            udf_utils.add_user_module_dependency(self, standard_component_specs.MODULE_FILE_KEY,
                                                 standard_component_specs.MODULE_PATH_KEY)
