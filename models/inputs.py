"""Streaming input for training: the window's tf.Example files, read and parsed with tf.data.

Why streaming: a training window grows with every span; reading it into memory (as graceful once
did) makes peak memory grow with the window. Everything here yields batches from the files, so
memory depends on the batch and shuffle-buffer sizes only.

Public helpers (also for your own run_fn):
  * `load_schema(path)`, `feature_spec(schema)`: the schema's features as tf.io parse specs;
  * `class_names(data, schema)`: the label vocabulary (the data contract's, else the schema's);
  * `serialized_examples(file_patterns)`: the serialized tf.Examples of TFX Examples files
    (gzipped TFRecords, as ExampleGen writes them), in a fixed order;
  * `ExampleParser`: serialized batch -> (features the model reads, int64 class ids), the features
    parsed raw or, with a TFT transform graph (TFX Transform), transformed by it;
  * `transform_input_spec(spec, data)`: the raw features a transform graph is given.
"""
from __future__ import annotations

import tensorflow as tf
from tensorflow_metadata.proto.v0 import schema_pb2
from tensorflow_transform.tf_metadata import schema_utils
from tfx.utils import io_utils

from graceful import model_check
from graceful.contract import DataContract, DataContractError


def load_schema(path: str) -> schema_pb2.Schema:
    return io_utils.parse_pbtxt_file(path, schema_pb2.Schema())


def feature_spec(schema: schema_pb2.Schema) -> dict:
    """Feature name -> tf.io.FixedLenFeature / VarLenFeature, as the schema declares it."""
    return dict(schema_utils.schema_as_feature_spec(schema).feature_spec)


def class_names(data: DataContract, schema: schema_pb2.Schema) -> tuple[str, ...]:
    """The label vocabulary in class-id order: the data contract's class_names, else the schema's
    string domain or integer domain (0..max) of the label feature."""
    if data.class_names:
        return tuple(str(name) for name in data.class_names)
    feature = _schema_feature(schema, data.label_key)
    if feature.HasField("string_domain"):
        return tuple(feature.string_domain.value)
    if feature.HasField("domain"):
        domains = {domain.name: domain for domain in schema.string_domain}
        if feature.domain in domains:
            return tuple(domains[feature.domain].value)
    if feature.HasField("int_domain") and feature.int_domain.HasField("max"):
        return tuple(str(index) for index in range(feature.int_domain.max + 1))
    raise DataContractError(
        f"cannot tell the classes of label {data.label_key!r}: the schema gives it no string "
        "domain and no integer domain with a max; set the data contract's class_names")


def _schema_feature(schema: schema_pb2.Schema, name: str) -> schema_pb2.Feature:
    for feature in schema.feature:
        if feature.name == name:
            return feature
    raise DataContractError(f"the schema has no feature {name!r} (features: "
                            f"{sorted(f.name for f in schema.feature)}); fix the data contract")


def data_files(file_patterns) -> list[str]:
    files = sorted(path for pattern in file_patterns for path in tf.io.gfile.glob(pattern))
    if not files:
        raise FileNotFoundError(f"no example files match {list(file_patterns)}")
    return files


def serialized_examples(file_patterns) -> tf.data.Dataset:
    """Serialized tf.Examples of every file matching `file_patterns`, file by file in sorted order
    (deterministic, so a pass over them is reproducible). Files ending in .gz are GZIP TFRecords."""
    files = data_files(file_patterns)
    compression = {model_check.tfrecord_compression(path) for path in files}
    if len(compression) > 1:
        raise ValueError(f"{file_patterns} mix gzipped and plain TFRecord files")
    return tf.data.TFRecordDataset(files, compression_type=compression.pop())


def transform_input_spec(spec: dict, data: DataContract) -> dict:
    """The raw features a transform graph is applied to: all the schema's but the label and the id.

    Why: a served model gets no label, and the id names an example, it is no input; TFT prunes the
    preprocessing_fn's outputs that need either (so a preprocessing_fn may pass them through)."""
    return {name: value for name, value in spec.items()
            if name not in (data.label_key, data.id_key)}


class ExampleParser:
    """serialized tf.Examples [B] -> ({name: tensor} for `input_names}, class ids int64 [B]).

    The features are parsed raw with the schema's spec or, given a `transform` (a TFT layer:
    `TFTransformOutput.transform_features_layer()`, or the `tft_layer` a model exported with one
    carries), parsed raw and transformed by it; the model reads the transformed features. The label
    is always read raw. Labels are integer class ids (checked to be in 0..K-1) or strings of the
    vocabulary (looked up); a label outside them stops training with a message naming it.
    """

    def __init__(self, spec: dict, input_names, data: DataContract, names: tuple[str, ...],
                 transform=None):
        self._check(spec, input_names if transform is None else [], data.label_key)
        self.input_names = list(input_names)
        self.transform = transform
        self.spec = (transform_input_spec(spec, data) if transform is not None
                     else {name: spec[name] for name in input_names})
        self.label_key = data.label_key
        self.label_spec = spec[data.label_key]
        self.num_classes = len(names)
        self.names = names
        self._table = None
        if self.label_spec.dtype == tf.string:
            self._table = tf.lookup.StaticHashTable(
                tf.lookup.KeyValueTensorInitializer(tf.constant(names),
                                                    tf.range(len(names), dtype=tf.int64)), -1)

    @staticmethod
    def _check(spec: dict, input_names, label_key: str) -> None:
        missing = [name for name in input_names if name not in spec]
        if missing:
            raise DataContractError(f"the model reads features {missing}, which the schema does "
                                    f"not have (schema features: {sorted(spec)})")
        if label_key not in spec:
            raise DataContractError(f"the schema has no label feature {label_key!r} (features: "
                                    f"{sorted(spec)}); set the data contract's label_key")
        for name in [*input_names, label_key]:
            if not isinstance(spec[name], tf.io.FixedLenFeature):
                raise DataContractError(
                    f"feature {name!r} has no fixed shape in the schema, so it cannot be fed to a "
                    "model as a dense tensor; give it one there, e.g. shape { dim { size: 1 } } "
                    "(SchemaGen does so for features every example has exactly once)")

    def __call__(self, serialized: tf.Tensor):
        parsed = tf.io.parse_example(serialized, {**self.spec, self.label_key: self.label_spec})
        labels = tf.reshape(parsed.pop(self.label_key), [-1])
        return self.model_features(parsed), self.class_ids(labels)

    def model_features(self, parsed: dict) -> dict:
        if self.transform is None:
            return parsed
        transformed = self.transform(parsed)
        missing = [name for name in self.input_names if name not in transformed]
        if missing:
            raise DataContractError(
                f"the model reads features {missing}, which the transform graph does not produce "
                f"from the raw features without the label and id (it produces "
                f"{sorted(transformed)}); read the preprocessing_fn's outputs")
        return {name: transformed[name] for name in self.input_names}

    def class_ids(self, labels: tf.Tensor) -> tf.Tensor:
        ids = self._table.lookup(labels) if self._table is not None else tf.cast(labels, tf.int64)
        valid = tf.reduce_all((ids >= 0) & (ids < self.num_classes))
        message = (f"label {self.label_key!r} holds a value outside the classes {list(self.names)}"
                   " (class ids 0..K-1 or these names); fix the data or the data contract's "
                   "class_names")
        with tf.control_dependencies([tf.debugging.Assert(valid, [message, labels])]):
            return tf.identity(ids)
