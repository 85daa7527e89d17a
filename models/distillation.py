"""Model-agnostic helpers to train a classifier against the served model (for graceful's run_fn and
for your own).

  * `class_logits(scores, contract)`: a model's class scores, in whatever form the model contract
    declares, as the class logits the losses compare (TensorFlow twin of
    `ModelContract.class_logits`: multiclass logits as they are, binary z -> [0, z], probabilities
    -> log-probabilities).
  * `ReferenceModel`: the served model, frozen, called through its own serving signature on
    serialized tf.Examples, so it works for any SavedModel the model contract describes (also one
    with preprocessing attached).
  * `reference_outputs(examples, outputs, cache_file)`: computes the reference's outputs ONCE over
    the training data, in one unshuffled pass, into a tf.data cache file; every epoch then streams
    them from disk (memory does not grow with the data).
  * `focal_distillation_loss(new_scores, old_logits, labels, ...)`: graceful.losses' FD on contract
    outputs.
  * `WeightAverage`: exponential moving average of the weights (the exported model is the average).
  * `KerasReference`: for BCT only, the served model loaded with Keras and split at the model
    contract's `embedding_layer` into the embedding network and the old head (the layers after the
    embedding). Requirement: the served model is a functional or Sequential Keras model saved with
    Keras (`model.save`), whose layers after the embedding layer depend on the embedding only.

A minimal own run_fn:

    setup = training.TrainingSetup.from_fn_args(fn_args)
    reference = distillation.ReferenceModel(fn_args.base_model, setup.model)
    cached, count = distillation.reference_outputs(
        inputs.serialized_examples(fn_args.train_files), {"old_logits": reference.class_logits},
        f"{scratch}/train")
    ... for each batch: loss = distillation.focal_distillation_loss(model(x), old_logits, y, ...)
"""
from __future__ import annotations

import time

import tensorflow as tf
import tf_keras as keras

from graceful import losses, model_check
from graceful.contract import ModelContract, ModelOutputError

EXAMPLES = "examples"      # key of the serialized tf.Examples in `reference_outputs` elements
REFERENCE_BATCH = 1024
_LOG_FLOOR = 1e-12         # the smallest probability taken to the log (as ModelContract does)


def class_logits(scores, contract: ModelContract) -> tf.Tensor:
    """Class scores [N, K] or [N, 1] in the contract's form -> class logits [N, K >= 2] float32.

    Logits: multiclass as they are, binary z -> [0, z]. Probabilities: log-probabilities (binary p
    -> [log(1 - p), log p]); when the scores come straight from a Keras softmax or sigmoid, its
    logits are used instead (as Keras' own losses do), which is exact where probabilities round to
    0 or 1.
    """
    scores = tf.convert_to_tensor(scores)
    keras_logits = getattr(scores, "_keras_logits", None)
    scores = tf.cast(scores, tf.float32)
    if scores.shape.rank != 2:
        raise ModelOutputError(f"class scores of shape {scores.shape}; expected [N, K] or [N, 1]")
    binary = scores.shape[-1] == 1
    if contract.scores == "logits":
        return losses.two_class_logits(scores)
    if keras_logits is not None:
        logits = tf.cast(keras_logits, tf.float32)
        if binary:
            return tf.concat([-tf.nn.softplus(logits), -tf.nn.softplus(-logits)], axis=-1)
        return tf.nn.log_softmax(logits, axis=-1)
    if binary:
        scores = tf.concat([1.0 - scores, scores], axis=-1)
    return tf.math.log(tf.clip_by_value(scores, _LOG_FLOOR, 1.0))


class ReferenceModel:
    """The served model as a frozen function: serialized tf.Examples [B] -> class logits [B, K]."""

    def __init__(self, path: str, contract: ModelContract):
        self.path = path
        self.contract = contract
        self._loaded = tf.saved_model.load(path)  # keeps the signature's variables alive
        self._signature = model_check.contract_signature(self._loaded, f"reference model {path}",
                                                         contract)
        self.examples_scored = tf.Variable(0, dtype=tf.int64, trainable=False)

    def scores(self, serialized: tf.Tensor) -> tf.Tensor:
        return self._signature.scores(serialized)

    def verify(self, examples: tf.data.Dataset) -> None:
        """Checks the scores of the first batch of `examples` against the contract (declared
        probabilities sum to 1, ...), so a wrong contract stops before any training."""
        first = next(iter(examples.batch(REFERENCE_BATCH)))
        self.contract.probabilities(self.scores(first).numpy(), self._signature.where)

    def class_logits(self, serialized: tf.Tensor) -> tf.Tensor:
        """Counts the examples it scores in `examples_scored` (how a test proves "once")."""
        counted = self.examples_scored.assign_add(tf.shape(serialized, out_type=tf.int64)[0])
        with tf.control_dependencies([counted]):
            return class_logits(self.scores(serialized), self.contract)


def reference_outputs(examples: tf.data.Dataset, outputs: dict, cache_file: str,
                      batch_size: int = REFERENCE_BATCH) -> tuple[tf.data.Dataset, int]:
    """One pass over `examples` (serialized tf.Examples) that computes each of `outputs`
    ({name: fn(serialized batch) -> tensor [B, ...]}) and stores everything in a tf.data cache
    at `cache_file`. Returns (dataset of {"examples": serialized, name: output} per example, read
    from the cache without calling any fn again; the number of examples)."""
    def compute(serialized):
        return {EXAMPLES: serialized, **{name: fn(serialized) for name, fn in outputs.items()}}

    cached = examples.batch(batch_size).map(compute).unbatch().cache(cache_file)
    count = int(cached.batch(batch_size).reduce(
        tf.constant(0, tf.int64), lambda n, batch: n + tf.shape(batch[EXAMPLES], tf.int64)[0]))
    if not count:
        raise ValueError("the training data holds no examples")
    return cached, count


def timed_reference_outputs(examples, outputs, cache_file, log=print):
    """`reference_outputs` with a progress line saying how long the one pass took."""
    started = time.monotonic()
    cached, count = reference_outputs(examples, outputs, cache_file)
    what = f"reference outputs ({', '.join(outputs)})" if outputs else "examples"
    log(f"[train] {count} examples; {what} computed once in {time.monotonic() - started:.1f}s")
    return cached, count


def focal_distillation_loss(new_scores, old_logits, labels, params: losses.DistillationParams,
                            kind: str, contract: ModelContract) -> tf.Tensor:
    """graceful.losses.focal_distillation_loss on the new model's contract-form scores and the
    reference's class logits (e.g. from `ReferenceModel.class_logits`)."""
    return losses.focal_distillation_loss(class_logits(new_scores, contract), old_logits, labels,
                                          params, kind)


class WeightAverage:
    """Exponential moving average of `variables`. TF's num_updates warm-up (momentum
    min(m, (1 + t) / (10 + t)) at step t) keeps short runs from averaging in initial weights."""

    def __init__(self, momentum: float, optimizer, variables):
        self.variables = list(variables)
        self._average = tf.train.ExponentialMovingAverage(momentum,
                                                          num_updates=optimizer.iterations)
        self._average.apply(self.variables)  # creates the averages outside any tf.function

    def update(self):
        """Call after each optimizer step (inside a tf.function is fine)."""
        return self._average.apply(self.variables)

    def assign(self) -> None:
        """Makes the model its weight average (before exporting it)."""
        for variable in self.variables:
            variable.assign(self._average.average(variable))


class KerasReference:
    """The served model loaded with Keras, split at `embedding_layer` for BCT (see the module
    docstring for the requirement): `embedder` (features -> old embedding) and `head` (embedding ->
    class scores, frozen). `transform`: the TFT layer a model exported with a TFX Transform carries
    (`tft_layer`): its inputs are that layer's outputs on raw features; None = raw features."""

    def __init__(self, path: str, embedding_layer: str):
        model = load_keras_model(path, "BCT")
        model.trainable = False
        self.model = model
        self.transform = getattr(model, "tft_layer", None)
        self.embedder = split_embedding(model, embedding_layer, f"reference model {path}")
        try:
            self.head = keras.Model(self.embedder.output, model.output)
        except Exception as error:  # noqa: BLE001
            raise ValueError(f"reference model {path}: the layers after {embedding_layer!r} do not "
                             f"form a head on the embedding alone ({error}); BCT needs them to"
                             ) from error
        self.head.trainable = False

    @property
    def embedding_size(self) -> int:
        return int(self.embedder.output.shape[-1])


def load_keras_model(path: str, purpose: str) -> keras.Model:
    """The served model at `path` as a Keras model (for BCT or warm start, named by `purpose`), or
    ValueError saying it must be a Keras model saved with model.save."""
    try:
        return keras.models.load_model(path, compile=False)
    except Exception as error:  # noqa: BLE001  any load failure means the same to the user
        raise ValueError(f"{purpose} needs the reference model {path} as a Keras model (saved with "
                         f"model.save), but Keras cannot load it: {error}") from error


def split_embedding(model: keras.Model, embedding_layer: str, where: str) -> keras.Model:
    """features -> the output of `embedding_layer` (sharing the model's weights)."""
    names = [layer.name for layer in model.layers]
    if embedding_layer not in names:
        raise ValueError(f"{where} has no layer {embedding_layer!r} (the model contract's "
                         f"embedding_layer); its layers: {names}")
    output = model.get_layer(embedding_layer).output
    if output.shape.rank != 2:
        raise ValueError(f"{where}: layer {embedding_layer!r} outputs shape {output.shape}; BCT "
                         "needs a flat embedding [N, D]")
    return keras.Model(model.inputs, output)

