"""Reads a SavedModel and tf.Examples through the contracts (graceful.contract), with TensorFlow and
without TFX: what `graceful check-model DIR` runs, and what the FlipEvaluator and the EdgeConverter
use to call a model and to read, parse and name the eval examples.

Why a check before any pipeline run: a team's model that returns logits where probabilities were
declared, one sigmoid column, or an extra dimension would otherwise be found out by a failed (or,
worse, a quietly wrong) gate after minutes of training. Here it fails in seconds, naming the model
directory, the signature, the output key and the shapes, and saying what to change.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, NamedTuple

import numpy as np
import tensorflow as tf

from graceful.contract import DataContract, DataContractError, ModelContract, ModelOutputError

DEFAULT_MAX_EXAMPLES = 256
# tf.Example feature kinds that hold one label, id or slice value per example, as parsing dtypes.
_SCALAR_KINDS = {"int64_list": tf.int64, "bytes_list": tf.string}
_IMAGE_KINDS = {"int64_list": tf.int64, "float_list": tf.float32}
# Ids without an id feature: farmhash of the serialized example (stable across runs and machines).
_DERIVED_ID_BUCKETS = 2**63 - 1
# tf.data's compression_type per compression Beam's CompressionTypes.detect_compression_type names
# (its GZIP and UNCOMPRESSED values; Beam is imported only when files are read: read_batches).
_TF_RECORD_COMPRESSION = {"gzip": "GZIP", "uncompressed": ""}
_NO_AUTOTUNE = tf.data.Options()
_NO_AUTOTUNE.autotune.enabled = False
_NO_AUTOTUNE.experimental_optimization.inject_prefetch = False


class ContractSignature(NamedTuple):
    """A model's contract signature, checked: call `scores(serialized)` for raw class scores."""

    function: Callable
    input_name: str
    output_key: str
    where: str  # "<model dir>: signature '<name>', output '<key>'", for error messages

    def scores(self, serialized: tf.Tensor) -> tf.Tensor:
        return self.function(**{self.input_name: serialized})[self.output_key]


@dataclasses.dataclass(frozen=True)
class ModelCheck:
    """What `check_model` found: enough to fill in (or confirm) a model contract."""

    model_dir: str
    signature: str
    input_name: str
    output_key: str
    form: str                # "binary" ([N, 1] or [N, 2]) or "multiclass" ([N, K > 2])
    classes: int | None      # K (2 for [N, 1]); None when unknown without examples
    scores: str              # the contract's "probabilities" or "logits", verified on examples
    examples: int = 0        # examples the model ran on (0: signature checked only)
    accuracy: float | None = None  # on those examples, when labels were read


def contract_signature(loaded, model_dir: str, model: ModelContract) -> ContractSignature:
    """The signature `model.signature` of a loaded SavedModel, checked against the contract: it
    exists, takes one string tensor of serialized tf.Examples, and returns the output key with
    class scores of a readable shape ([N, K >= 2] or [N, 1]) as far as the signature tells."""
    names = sorted(loaded.signatures)
    if model.signature not in names:
        raise ModelOutputError(
            f"{model_dir}: no signature {model.signature!r}; the SavedModel has {names}. Export "
            "the model with it (model.save(dir, signatures={...})) or set the model contract's "
            "signature to one of those.")
    function = loaded.signatures[model.signature]
    where = f"{model_dir}: signature {model.signature!r}"
    input_name = _string_input(function, where)
    output_key = model.pick_output(function.structured_outputs, where)
    where = f"{where}, output {output_key!r}"
    shape = function.structured_outputs[output_key].shape
    if shape.rank is not None:
        model.check_shape(shape.as_list(), where)
    return ContractSignature(function, input_name, output_key, where)


def _string_input(function, where: str) -> str:
    """The name of the signature's one input, which must be a 1-D string tensor (serialized
    tf.Examples: how TFMA, the FlipEvaluator and TF Serving's Predict call a model)."""
    args, kwargs = function.structured_input_signature
    specs = {**{str(i): spec for i, spec in enumerate(args)}, **kwargs}
    if len(specs) == 1:
        [(name, spec)] = specs.items()
        if spec.dtype == tf.string and spec.shape.rank == 1:
            return name
    found = {name: f"{spec.dtype.name}{spec.shape.as_list() if spec.shape.rank is not None else ''}"
             for name, spec in specs.items()}
    raise ModelOutputError(
        f"{where} takes {found}; the model contract needs exactly one input, a string tensor [N] "
        "of serialized tf.Examples. Export a signature that parses the examples itself "
        "(tf.io.parse_example) and calls the model.")


def example_spec(first_record: bytes, data: DataContract, where: str, ids: bool = True) -> dict:
    """tf.io.parse_example spec of the label, the id (when `ids` and the contract names one) and
    the slice features, typed from the first example: the evaluation reads no schema. A missing
    label or id fails here, naming the feature, `where` and the features the example has; an
    example without a slice feature falls in the slice -1 or ""."""
    present = tf.train.Example.FromString(first_record).features.feature
    spec = {name: _slice_feature(present, name, where) for name in data.slice_features}
    required = [("label_key", data.label_key)] + ([("id_key", data.id_key)]
                                                  if ids and data.id_key else [])
    for field, name in required:
        kind = _kind(present, name)
        if kind not in _SCALAR_KINDS:
            raise DataContractError(
                f"{where}: the data contract's {field} {name!r} is "
                f"{'missing' if kind is None else f'a {kind} feature'} in the first example (its "
                f"features: {sorted(present)}); set {field} to an integer or string feature with "
                "one value per example.")
        spec[name] = tf.io.FixedLenFeature([1], _SCALAR_KINDS[kind])
    return spec


def image_spec(first_record: bytes, data: DataContract, where: str) -> dict:
    """Parsing spec of the contract's image feature (integer or float pixels), {} without one."""
    if not data.image_feature:
        return {}
    present = tf.train.Example.FromString(first_record).features.feature
    kind = _kind(present, data.image_feature)
    if kind not in _IMAGE_KINDS:
        raise DataContractError(
            f"{where}: the data contract's image_feature {data.image_feature!r} is "
            f"{'missing' if kind is None else f'a {kind} feature'} in the first example (its "
            f"features: {sorted(present)}); set it to a feature of square grayscale pixels, "
            'or to "" for no gallery.')
    return {data.image_feature: tf.io.VarLenFeature(_IMAGE_KINDS[kind])}


def _kind(present, name: str) -> str | None:
    return present[name].WhichOneof("kind") if name in present else None


def _slice_feature(present, name: str, where: str) -> tf.io.FixedLenFeature:
    kind = _kind(present, name)
    if kind not in _SCALAR_KINDS:
        raise DataContractError(
            f"{where}: slice feature {name!r} must be an integer or string feature with one value "
            f"per example; the first example has {kind or 'no such feature'} (its features: "
            f"{sorted(present)}).")
    dtype = _SCALAR_KINDS[kind]
    return tf.io.FixedLenFeature([1], dtype, default_value=[-1 if dtype == tf.int64 else b""])


def example_ids(serialized, features: dict, data: DataContract) -> np.ndarray:
    """The examples' ids as every report names them (the FlipEvaluator's flips, the trainer's
    review queue): the id feature's values (integers or str, from `features` parsed with
    example_spec), or, without one, a stable hash of each serialized example's bytes (farmhash:
    the same on every run and machine)."""
    if data.id_key:
        return text_values(features[data.id_key].numpy())
    return tf.strings.to_hash_bucket_fast(serialized, _DERIVED_ID_BUCKETS).numpy()


def read_batches(path: str, batch_size: int):
    """One TFRecord file as string tensors of serialized records, read and decompressed by tf.data
    in C++ one batch ahead of the models. Only one: tf.data's autotuning and deeper prefetching
    competed with the models for the 2 cores (measured at 10k examples: one batch ahead 1.03 s,
    in step 1.09 s, the models on in-memory batches 0.97 s)."""
    from apache_beam.io.filesystem import CompressionTypes  # here: `graceful check-model` is light

    compression = _TF_RECORD_COMPRESSION.get(CompressionTypes.detect_compression_type(path))
    if compression is None:
        raise ValueError(f"{path}: only uncompressed or gzip (.gz) TFRecord files can be evaluated")
    dataset = tf.data.TFRecordDataset(path, compression_type=compression).batch(batch_size)
    yield from dataset.prefetch(1).with_options(_NO_AUTOTUNE)


def parse_examples(serialized, spec: dict, path: str) -> dict:
    """The batch's label, id, slice (and image) features; an example without its label or id fails
    naming the file (the first example of the file was checked by example_spec)."""
    try:
        return tf.io.parse_example(serialized, spec)
    except tf.errors.InvalidArgumentError as error:
        raise DataContractError(f"{path}: {error.message}") from error


def unique_ids(ids: np.ndarray, id_key: str, source: str = "the eval split") -> np.ndarray:
    """Sorted ids, each once. Ids hashed from the examples' bytes repeat only for identical
    examples (duplicate rows are common in tabular data): the k-th repeat gets id - k, stable
    because repeats are interchangeable. Repeats of an id feature are a data error, named."""
    repeats = np.flatnonzero(ids[1:] == ids[:-1]) + 1
    if not repeats.size:
        return ids
    if id_key:
        raise DataContractError(f"{source}: id feature {id_key!r} has the value "
                                f"{ids[repeats[0]]!r} more than once; the data contract's id_key "
                                'must name each example uniquely (or set it to "" to derive ids '
                                "from the examples)")
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    occurrence = np.arange(len(ids)) - np.repeat(starts, np.diff(np.r_[starts, len(ids)]))
    return ids - occurrence


def unique_ids_in_order(ids: np.ndarray, id_key: str) -> np.ndarray:
    """The examples' ids made unique as unique_ids makes them (identical examples' hashed ids: the
    k-th repeat -> id - k; a repeated id feature value is a data error), in the examples' order."""
    order = np.argsort(ids, kind="stable")
    unique = np.empty_like(ids)
    unique[order] = unique_ids(ids[order], id_key)
    return unique


def text_values(values: np.ndarray) -> np.ndarray:
    """Parsed [N, 1] feature values as a flat array: integers as they are, bytes as str."""
    flat = values.reshape(-1)
    # "replace": a stray non-UTF-8 byte in an id or slice value must not stop the evaluation.
    return (np.array([v.decode("utf-8", "replace") for v in flat]) if flat.dtype.kind in "SO"
            else flat)


def check_model(model_dir: str, model: ModelContract, examples: str | None = None,
                data: DataContract | None = None,
                max_examples: int = DEFAULT_MAX_EXAMPLES) -> ModelCheck:
    """Checks the SavedModel in `model_dir` against `model`; with `examples` (a file pattern of
    TFRecord, optionally gzip (.gz), tf.Examples) also runs it on up to `max_examples` of them,
    verifying its scores (ModelContract.probabilities) and, with `data`, reading their labels
    (DataContract.class_ids) for a sample accuracy. Raises ModelOutputError / DataContractError."""
    signature = contract_signature(tf.saved_model.load(model_dir), model_dir, model)
    shape = signature.function.structured_outputs[signature.output_key].shape
    width = shape.as_list()[-1] if shape.rank == 2 else None
    result = ModelCheck(model_dir, model.signature, signature.input_name, signature.output_key,
                        _form(width), None if width is None else max(width, 2), model.scores)
    if examples is None:
        return result
    records = read_records(examples, max_examples)
    _, probabilities = model.predict(signature.scores(tf.constant(records)).numpy(),
                                     signature.where)
    classes = probabilities.shape[1]
    result = dataclasses.replace(result, form=_form(classes), classes=classes,
                                 examples=len(records))
    if data is None:
        return result
    check_classes(data, classes, signature.where)
    where = f"{examples} (first example)"
    labels = data.class_ids(text_values(tf.io.parse_example(
        records, example_spec(records[0], data, where, ids=False))[data.label_key].numpy()))
    if labels.max() >= classes:
        raise DataContractError(f"label {data.label_key!r} has class id {labels.max()}, but "
                                f"{signature.where} scores {classes} classes")
    accuracy = float(np.mean(model.predicted_class(probabilities) == labels))
    return dataclasses.replace(result, accuracy=accuracy)


def check_classes(data: DataContract, classes: int, where: str) -> None:
    """The model scores as many classes as the data contract names (when it names them)."""
    if data.class_names and len(data.class_names) != classes:
        raise ModelOutputError(
            f"{where}: scores {classes} classes, but the data contract's class_names has "
            f"{len(data.class_names)} ({list(data.class_names)}); make them agree")


def _form(classes: int | None) -> str:
    if classes is None:
        return "unknown"
    return "multiclass" if classes > 2 else "binary"


def tfrecord_compression(path: str) -> str:
    """TFRecordDataset's compression_type for an example file, by its extension as ExampleGen
    names them: ".gz" is GZIP, anything else plain."""
    return "GZIP" if path.endswith(".gz") else ""


def read_records(pattern: str, limit: int) -> list[bytes]:
    """Up to `limit` serialized records from the TFRecord files matching `pattern`, in order."""
    paths = sorted(tf.io.gfile.glob(pattern))
    if not paths:
        raise DataContractError(f"no files match {pattern}: pass TFRecord files of tf.Examples")
    records = []
    for path in paths:
        dataset = tf.data.TFRecordDataset(path, tfrecord_compression(path))
        records += [record.numpy() for record in dataset.take(limit - len(records))]
        if len(records) >= limit:
            break
    if not records:
        raise DataContractError(f"{pattern}: the files hold no examples")
    return records
