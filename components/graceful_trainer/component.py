"""GracefulTrainer: TFX's Trainer, extended to train against the last blessed model as reference.

It is a Trainer (same inputs, outputs and executor logic), with each training parameter — architecture,
epochs, loss (plain | fd_kl | fd_lm | fd_margin | bct | bct+fd), temperature, alpha, beta, lam, margin,
lambda_bct, ... — declared as its own execution property instead of an opaque custom_config, and the
`base_model` input used as the frozen reference (focal distillation, BCT) rather than for warm start.
"""
import dataclasses

from tfx import types
from tfx.components.trainer import component as trainer_component
from tfx.dsl.components.base import executor_spec
from tfx.proto import trainer_pb2
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ExecutionParameter

from graceful.components.graceful_trainer.executor import PARAMETER_NAMES, Executor
from graceful.models.params import TrainingParams

_TYPES = {int: int, float: float, str: str}


class GracefulTrainerSpec(standard_component_specs.TrainerSpec):
    PARAMETERS = {
        **standard_component_specs.TrainerSpec.PARAMETERS,
        **{f.name: ExecutionParameter(type=_TYPES[type(f.default)])
           for f in dataclasses.fields(TrainingParams)},
    }


class GracefulTrainer(trainer_component.Trainer):
    SPEC_CLASS = GracefulTrainerSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, examples: types.BaseChannel, schema: types.BaseChannel,
                 reference_model: types.BaseChannel, params: TrainingParams,
                 run_fn: str = "graceful.models.training.run_fn"):
        spec = GracefulTrainerSpec(
            examples=examples, schema=schema, base_model=reference_model,
            train_args=trainer_pb2.TrainArgs(), eval_args=trainer_pb2.EvalArgs(), run_fn=run_fn,
            model=types.Channel(type=standard_artifacts.Model),
            model_run=types.Channel(type=standard_artifacts.ModelRun),
            **{name: getattr(params, name) for name in PARAMETER_NAMES})
        # Skip Trainer.__init__ (it builds a plain TrainerSpec); initialise the component directly.
        super(trainer_component.Trainer, self).__init__(spec=spec)
