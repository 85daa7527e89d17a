"""Warm start from the served model, and weight interpolation back toward it (graceful's run_fn).

Why: fine-tuning the served model instead of training from scratch keeps much of what it got right
(and lets a team that may keep only recent data build on what the old data taught), and
interpolating the fine-tuned weights back toward the served ones (BCWI) removes more negative flips
at no accuracy cost. Both only make sense for the same architecture: every layer of the candidate
(weightless ones too: activations, dropout, pooling, flatten) must match the served model's, in
order, in class, weight shapes and configuration (get_config() without names, seeds and
initializers), else the run stops and says which layer differs and how. The Transform layer the
pipeline attaches as `model.tft_layer` is not part of the architecture (`model_layers`).

  * `WarmStart`: one run's warm start, as graceful's run_fn uses it: `begin` before training,
    `finish` after it, `summary` for training_summary.json (recorded in MLMD).
  * `ServedWeights(path)`: the served model (the last blessed one, fn_args.base_model) loaded with
    Keras; `start(model)` checks the architecture and copies its weights into the candidate.
  * `split_held_out(examples)`: a deterministic HELD_OUT_PERCENT of the newest span's training
    examples (by a hash of each serialized example, so the same examples whatever the file order),
    kept out of training to choose alpha on; never the eval split the gates judge the candidate on,
    and never data the served model was trained on (older spans of the window): there it is right
    more often than on new data, which pulls alpha toward the served model (an earlier version
    that held out from every span chose smaller alphas at an accuracy cost; that run is not in
    benchmarks/results; from the newest span only, benchmarks/results/warm_start.json records
    alphas 0.7, 0.6, 0.6 for plain + interpolation at no loss). When the newest span's files
    cannot be found among the training files, every span is used, with a WARNING, and
    summary["alpha_held_out"] says so.
  * `choose_alpha(...)`: theta(alpha) = alpha * trained + (1 - alpha) * served for each alpha of
    graceful.interpolation.GRID, scored on the held-out examples, picked by
    graceful.interpolation.choose_alpha.

The BCT projection (loss bct / bct+fd) is trained for the weights before interpolation; the
compatibility criterion recorded with the model is computed after it, on the exported weights.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np
import tensorflow as tf
import tf_keras as keras

from graceful import interpolation
from graceful.models import distillation, inputs

_HASH_BUCKETS = 100


# get_config() settings that may differ between two builds of one architecture: layer names
# (Keras numbers them per process), random seeds (dropout, noise) and initializers (warm start
# overwrites the initial weights). Everything else (activation, strides, padding, rates, pool
# sizes, trainable, dtype, regularizers, ...) must be equal.
_IGNORED_SETTINGS = ("name", "seed")


def _comparable(config):
    if isinstance(config, dict):
        return {key: _comparable(value) for key, value in config.items()
                if key not in _IGNORED_SETTINGS and not str(key).endswith("_initializer")}
    if isinstance(config, (list, tuple)):
        return [_comparable(value) for value in config]
    return config


def model_layers(model: keras.Model) -> list:
    """The model's own layers, in order, weightless ones too, without the Transform layer the
    pipeline attaches as `model.tft_layer` (training.export: tf_keras tracks it as a layer, so a
    served model loaded back lists it, while a fresh candidate does not): it is preprocessing, not
    the architecture, and its variables are not the model's to copy or interpolate. Excluded by
    identity, whatever its name."""
    transform = getattr(model, "tft_layer", None)
    return [layer for layer in model.layers if transform is None or layer is not transform]


def weighted_layers(model: keras.Model) -> list:
    """The model's layers that hold weights, in order (what warm start copies)."""
    return [layer for layer in model_layers(model) if layer.weights]


def _layer_config(layer) -> dict | None:
    if isinstance(layer, keras.Model):
        # a nested model's config names its layers' connections by layer name: compare its
        # layers instead (class and config of each, in order)
        return {"layers": [{"class": type(inner).__name__, "config": _layer_config(inner)}
                           for inner in model_layers(layer)]}
    try:
        return _comparable(layer.get_config())
    except NotImplementedError:  # a custom layer without get_config: class and shapes only
        return None


def describe(model: keras.Model) -> list[interpolation.LayerWeights]:
    """Every layer of the model in order (model_layers), with its class, weight shapes and
    configuration, for interpolation.architecture_mismatch."""
    return [interpolation.LayerWeights(layer.name, type(layer).__name__,
                                       tuple(tuple(weight.shape) for weight in layer.weights),
                                       _layer_config(layer))
            for layer in model_layers(model)]


def layer_weights(model: keras.Model) -> list[np.ndarray]:
    return [weight for layer in weighted_layers(model) for weight in layer.get_weights()]


def set_layer_weights(model: keras.Model, weights: list[np.ndarray]) -> None:
    position = 0
    for layer in weighted_layers(model):
        count = len(layer.weights)
        layer.set_weights(weights[position:position + count])
        position += count


class ServedWeights:
    """The served model's weights, to start a candidate of the same architecture from."""

    def __init__(self, path: str):
        self.path = path
        self.model = distillation.load_keras_model(path, "warm start")
        self.layers = describe(self.model)
        self.weights = layer_weights(self.model)

    def start(self, model: keras.Model, where: str) -> None:
        """Copies the served weights into `model` (built by `where`), or raises ValueError naming
        both architectures and the first layer that differs."""
        mismatch = interpolation.architecture_mismatch(self.layers, describe(model))
        if mismatch:
            raise ValueError(
                f"warm start needs the served model's architecture, but the served model "
                f"{self.path} (Keras model {self.model.name!r}) and the candidate ({model.name!r}, "
                f"from {where}) differ: {mismatch}. Train the candidate from scratch (drop "
                "--warm-start, or warm_start=False in the project's training parameters) or build "
                "it with the served model's architecture (built-in models: --model "
                f"{self.model.name})")
        set_layer_weights(model, self.weights)

    def interpolate(self, model: keras.Model, trained: list[np.ndarray], alpha: float) -> None:
        """Sets `model` to alpha * `trained` + (1 - alpha) * the served weights."""
        set_layer_weights(model, interpolation.interpolate(trained, self.weights, alpha))


def split_held_out(examples: tf.data.Dataset,
                   percent: int = interpolation.HELD_OUT_PERCENT) -> tuple[tf.data.Dataset,
                                                                           tf.data.Dataset]:
    """(training examples, held-out examples) of serialized tf.Examples: an example is held out
    when a fingerprint of its bytes falls in the first `percent` of 100 buckets."""
    def held(serialized):
        return tf.strings.to_hash_bucket_fast(serialized, _HASH_BUCKETS) < percent

    return (examples.filter(lambda serialized: tf.logical_not(held(serialized))),
            examples.filter(held))


def held_out_labels(held_out: tf.data.Dataset, parser, reference: distillation.ReferenceModel,
                    contract) -> tuple[np.ndarray, np.ndarray]:
    """(labels, the served model's predicted classes through its serving signature) of the
    held-out examples, streamed in batches."""
    labels, old_pred = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for serialized in held_out.batch(distillation.REFERENCE_BATCH):
        labels.append(parser(serialized)[1].numpy())
        old_pred.append(contract.predict(reference.scores(serialized).numpy(),
                                         f"served model {reference.path}")[0])
    return np.concatenate(labels), np.concatenate(old_pred)


def choose_alpha(model: keras.Model, served: ServedWeights, labels, old_pred, predict,
                 log=print) -> tuple[float, list]:
    """Scores theta(alpha) for every alpha of the grid on held-out examples (accuracy, NFR vs the
    served model's predictions `old_pred`; `predict(model)` gives the candidate's predicted classes
    on the same examples), sets `model` to the chosen one and returns (its alpha, every
    AlphaScore). With no held-out example, alpha = 1."""
    if not len(labels):
        log("[train] warm start: no held-out example to choose alpha on; alpha = 1")
        return 1.0, []
    trained = layer_weights(model)
    scores = []
    for alpha in interpolation.GRID:
        served.interpolate(model, trained, alpha)
        scores.append(interpolation.AlphaScore.of(alpha, labels, old_pred, predict(model)))
    chosen = interpolation.choose_alpha(scores)
    served.interpolate(model, trained, chosen.alpha)
    log(f"[train] warm start: alpha {chosen.alpha} on {len(labels)} held-out examples (accuracy "
        f"{chosen.accuracy:.4f}, NFR {chosen.nfr:.4f}; alpha 1: accuracy "
        f"{scores[-1].accuracy:.4f}, NFR {scores[-1].nfr:.4f})")
    return chosen.alpha, scores


# summary["alpha_held_out"]: where alpha's held-out examples came from
NEWEST_SPAN = "newest span"
ALL_SPANS = "all spans"


def _normalised(path: str) -> str:
    return path if "://" in path else os.path.normpath(os.path.abspath(path))


def newest_span_files(train_files, newest_files) -> tuple[list[str], list[str]]:
    """(the training files of the newest span, the other training files), as sorted file paths:
    both lists of patterns are globbed and compared file by file (paths normalised), so a pattern
    written another way (a trailing slash, a relative path, one pattern per file or per directory)
    still matches. ([], every training file) when no newest file is among the training files."""
    train = inputs.data_files(train_files)
    newest = set()
    for pattern in newest_files or ():
        newest.update(_normalised(path) for path in tf.io.gfile.glob(_normalised(pattern)))
    return ([path for path in train if _normalised(path) in newest],
            [path for path in train if _normalised(path) not in newest])


class WarmStart:
    """One run's warm start: `begin` before training (copies the served weights, carves the held-out
    examples when alpha is chosen), `finish` after it (interpolates); `summary` goes into
    training_summary.json as "warm_start" (GracefulTrainer records it on the Model artifact)."""

    def __init__(self, alpha_setting: str, base_model: str | None, log=print):
        self.alpha = interpolation.parse_alpha(alpha_setting)  # None = choose on held-out data
        self.base_model = base_model or None
        self.log = log
        self.served: ServedWeights | None = None
        self.held_out: tf.data.Dataset | None = None
        self.summary: dict = {}

    def begin(self, model: keras.Model, where: str, train_files,
              newest_files=()) -> tf.data.Dataset:
        """Starts `model` from the served weights; returns the serialized examples of
        `train_files` to train on: all of them, or, when alpha is chosen on data, all but the
        held-out ones, taken from `newest_files` (the newest span's, which the served model has
        not seen). When none of them is among `train_files` (or none is given), from every file,
        logged as a WARNING and recorded as summary["alpha_held_out"] ("all spans: <why>"; else
        "newest span"), which GracefulTrainer puts on the Model artifact."""
        if not self.base_model:
            note = "no served model yet (first run): trained from scratch"
            self.log(f"[train] warm start: {note}")
            self.summary = {"from_model": None, "note": note}
            return inputs.serialized_examples(train_files)
        self.served = ServedWeights(self.base_model)
        self.served.start(model, where)
        self.log(f"[train] warm start from the served model {self.base_model} "
                 f"({len(weighted_layers(self.served.model))} weighted layers)")
        self.summary = {"from_model": self.base_model,
                        "alpha_choice": "held-out" if self.alpha is None else "fixed"}
        if self.alpha is not None:
            return inputs.serialized_examples(train_files)
        newest, older = newest_span_files(train_files, newest_files)
        if newest:
            self.summary["alpha_held_out"] = NEWEST_SPAN
        else:
            reason = ("the trainer was not told the newest span's files" if not newest_files else
                      f"none of the newest span's files {list(newest_files)} is among the "
                      f"training files {list(train_files)}")
            self.summary["alpha_held_out"] = f"{ALL_SPANS}: {reason}"
            self.log(f"[train] WARNING warm start: alpha is chosen on examples held out from EVERY "
                     f"span, since {reason}; older spans are data the served model was trained "
                     "on, which pulls alpha toward the served model (recorded as alpha_held_out)")
            newest, older = older, []
        kept, self.held_out = split_held_out(inputs.serialized_examples(newest))
        self.summary["held_out_percent"] = interpolation.HELD_OUT_PERCENT
        self.summary["held_out_from"] = newest
        return inputs.serialized_examples(older).concatenate(kept) if older else kept

    def finish(self, model: keras.Model, parser, contract) -> None:
        """Sets `model` to theta(alpha), alpha fixed or chosen on the held-out examples."""
        if self.served is None:
            return
        alpha = self.alpha
        if alpha is None:
            reference = distillation.ReferenceModel(self.base_model, contract)
            labels, old_pred = held_out_labels(self.held_out, parser, reference, contract)

            def predict(candidate):
                return np.concatenate([
                    contract.predict(candidate(parser(serialized)[0], training=False).numpy(),
                                     "candidate")[0]
                    for serialized in self.held_out.batch(distillation.REFERENCE_BATCH)])

            alpha, scores = choose_alpha(model, self.served, labels, old_pred, predict, self.log)
            self.summary["held_out"] = [dataclasses.asdict(score) for score in scores]
        elif alpha != 1.0:
            self.served.interpolate(model, layer_weights(model), alpha)
            self.log(f"[train] warm start: weights interpolated with alpha {alpha}")
        self.summary["alpha"] = alpha
