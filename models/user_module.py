"""The user-module contract: how your Keras model gets into graceful's training.

A user module is a Python file (TFX's `module_file` convention; GracefulTrainer(module_file=...))
that defines

    def build_model(context: ModelContext) -> tf_keras.Model

returning an uncompiled Keras (tf_keras) model that
  * takes a dict of features by name: graceful feeds it exactly the features in
    `model.input_names`, parsed with the schema's feature spec (`context.feature_spec`; every one
    needs a fixed shape in the schema; `context.keras_inputs(names)` builds matching keras.Inputs);
    any preprocessing belongs inside the model, or in a TFX Transform `preprocessing_fn`
    (PipelineConfig.transform_module): then `context.feature_spec` holds the transformed features
    and graceful attaches the transform graph to the exported model; either way the exported
    model takes raw examples;
  * outputs class scores as the model contract (`context.model`) declares: [N, K] for K classes,
    or [N, 1] for a binary classifier (P(class 1) or its logit); logits are recommended
    (`scores="logits"`), probabilities work too (a final Keras softmax/sigmoid keeps its logits
    reachable for the losses);
  * for BCT (`loss` bct or bct+fd), has a layer named by the contract's `embedding_layer` whose
    output [N, D] is the representation; the layers after it must depend on it alone (they are the
    next run's "old head").

graceful's run_fn then trains it (plain, focal distillation, BCT, weight averaging) against the
served model and exports it with a `serving_default` signature on serialized tf.Examples that
returns {output_key: class scores}. `TrainingParams.seed` is set before build_model is called.
Without a module, graceful's built-in Fashion-MNIST models are used (graceful.models.architectures).
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import tf_keras as keras
from tfx.components.util import udf_utils

from graceful.contract import ModelContract
from graceful.models.params import TrainingParams

DEFAULT_MODULE = "graceful.models.architectures"
BUILD_MODEL = "build_model"


@dataclasses.dataclass(frozen=True)
class ModelContext:
    """What `build_model` knows about the data and the run.

    feature_spec: feature name -> tf.io parse spec, from the schema (with a TFX Transform: the
                  transformed features), without the label and id.
    label_key:    the label feature (never a model input).
    num_classes:  K; a binary classifier has 2 and may output [N, 1].
    class_names:  the label vocabulary in class-id order.
    model:        the model contract (output form, output key, embedding layer).
    params:       the run's TrainingParams (seed, architecture for the built-in models, ...).
    """

    feature_spec: dict
    label_key: str
    num_classes: int
    class_names: tuple
    model: ModelContract
    params: TrainingParams

    def keras_inputs(self, names=None) -> dict:
        """{name: keras.Input} shaped and typed like the schema's features (all by default)."""
        names = sorted(self.feature_spec) if names is None else list(names)
        unknown = [name for name in names if name not in self.feature_spec]
        if unknown:
            raise ValueError(f"features {unknown} are not in the schema (it has "
                             f"{sorted(self.feature_spec)})")
        return {name: keras.Input(shape=tuple(self.feature_spec[name].shape), name=name,
                                  dtype=self.feature_spec[name].dtype) for name in names}

    @property
    def binary(self) -> bool:
        return self.num_classes == 2


def load_build_model(module_file: str = "", module_path: str = "") -> Callable:
    """`build_model` from a module file or an importable module (TFX packages a module_file into
    a wheel and passes its module_path); neither = graceful's built-in models."""
    properties = {"module_file": module_file, "module_path": module_path or
                  ("" if module_file else DEFAULT_MODULE)}
    where = module_file or properties["module_path"]
    try:
        return udf_utils.get_fn(properties, BUILD_MODEL)
    except AttributeError as error:
        raise ValueError(f"user module {where} defines no {BUILD_MODEL}(context); define it (see "
                         "graceful.models.user_module) or set run_fn to your own") from error


def check_model(model, context: ModelContext, where: str) -> None:
    """Fails before training, naming what is wrong, on a model graceful could not train or gate."""
    if not isinstance(model, keras.Model):
        raise TypeError(f"{where}: build_model returned {type(model).__name__}, not a "
                        "tf_keras.Model (use `import tf_keras as keras`)")
    missing = [name for name in model.input_names if name not in context.feature_spec]
    if missing:
        raise ValueError(f"{where}: the model reads features {missing}, which it is not given "
                         "(not in the schema or, with a Transform, not among the preprocessing_fn's"
                         f" outputs, or the label/id); features: {sorted(context.feature_spec)}")
    shape = tuple(model.output_shape) if not isinstance(model.output_shape, list) else None
    allowed = {context.num_classes} | ({1} if context.binary else set())
    if shape is None or len(shape) != 2 or shape[-1] not in allowed:
        raise ValueError(f"{where}: the model outputs shape {model.output_shape}; expected "
                         f"[N, {context.num_classes}] class scores"
                         + (" or [N, 1] (binary)" if context.binary else "")
                         + f" for classes {list(context.class_names)}")
