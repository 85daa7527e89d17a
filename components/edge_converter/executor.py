"""EdgeConverter's executor: the candidate as a TensorFlow Lite model, and its negative flips.

Conversion. TFLite models take tensors, not serialized tf.Examples, so the converter takes the Keras
model inside the candidate's SavedModel (graceful's run_fn exports one: `tf_keras.models.load_model`
reads it), features -> class scores, and converts a tf.function over its inputs with
tf.lite.TFLiteConverter: "float" keeps float32 weights and maths; "int8" is post-training integer
quantization of weights and activations, calibrated on `representative_examples` examples of the
training window's train split (one at a time, as the converter asks for them). Its input and output
stay float32 (the converter's default): callers feed the same features as to the float model, and
the (de)quantization happens inside. A model exported with a TFX Transform graph (`tft_layer`), or
one Keras cannot load, is refused at conversion: the edge branch needs a Keras model on raw
features. A conversion that fails (that refusal, or TFLite's converter failing, e.g. on an op it
cannot convert) is not raised: an edge failure never blocks the cloud gate and push, which take this
artifact. The EdgeModel is written without model.tflite, its report blocked (blessed=0, one failure
line naming the cause and what to do), loudly logged; the EdgePusher then pushes nothing.

Flip check, on the eval split, read and parsed as the FlipEvaluator reads them
(model_check.read_batches, parse_examples), each example named as every report names it
(model_check.example_ids: the id feature, else the hash of its bytes; repeats made unique as the
FlipEvaluator does, model_check.unique_ids): each batch of serialized examples goes through the
cloud candidate's contract signature (graceful.model_check, as the FlipEvaluator calls it) and,
parsed in Python with the model's input features (typed from the first example, cast to the Keras
inputs' dtypes), through the edge model (tf.lite.Interpreter's signature runner) and the previously
pushed edge model when there is one. Scores become classes through the model contract
(ModelContract.predict); the flip numbers are graceful.flips' (overall, per class, confident
flips), the verdict graceful.gate.edge_failures'. A quantized softmax is a step function of 1/256:
its rows are renormalised to sum to 1 before the contract reads them (the predicted class is
unchanged).
"""
from __future__ import annotations

import json
import os
import time

import numpy as np
import tensorflow as tf
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import io_utils, path_utils

from graceful import flips, gate, model_check
from graceful.components.report_settings import settings_from
from graceful.contract import DataContract, ModelContract
from graceful.serving import EDGE_QUANTIZATIONS as QUANTIZATIONS
from graceful.serving import PUSHED_DESTINATION

EDGE_MODEL_FILE = "model.tflite"
EDGE_REPORT_FILE = "edge_report.json"
LISTED_FLIPS = 20          # the edge report lists the most confident flips vs the cloud candidate
_OUTPUT = "scores"         # the edge model's one output: class scores in the contract's form
_FEATURE_DTYPES = {"int64_list": tf.int64, "float_list": tf.float32, "bytes_list": tf.string}


class EdgeConversionError(ValueError):
    """The candidate cannot be converted to TensorFlow Lite (names the model and what to do)."""


def load_keras(model_dir: str):
    """The Keras model in an exported SavedModel, refused (EdgeConversionError) when Keras cannot
    load it, when it carries a TFX Transform graph, or when it has more than one output."""
    import tf_keras as keras

    try:
        model = keras.models.load_model(model_dir, compile=False)
    except Exception as error:  # noqa: BLE001 - any load failure means the same to the user
        model = error
    if not isinstance(model, keras.Model):  # a SavedModel not saved by Keras loads as a plain object
        raise EdgeConversionError(
            f"The edge branch converts the candidate's Keras model, but Keras cannot load "
            f"{model_dir} as one ({model if isinstance(model, Exception) else type(model).__name__})."
            " Export it with Keras' model.save (graceful's run_fn does), or turn the edge branch "
            "off (EdgeConfig.enabled=False).")
    if getattr(model, "tft_layer", None) is not None:
        raise EdgeConversionError(
            f"{model_dir} carries a TFX Transform graph (tft_layer): the edge branch needs a Keras "
            "model on raw features without a transform (a TFLite model cannot run the transform's "
            "analyzers' graph). Drop transform_module, or turn the edge branch off.")
    if len(model.outputs) != 1:
        raise EdgeConversionError(
            f"{model_dir}: the Keras model has {len(model.outputs)} outputs; the edge branch needs "
            "one output of class scores (the model contract's form).")
    return model


def input_specs(model) -> dict[str, tf.TensorSpec]:
    """The Keras model's inputs as named TensorSpecs with a free batch dimension."""
    return {name: tf.TensorSpec([None, *tensor.shape[1:]], tensor.dtype, name=name)
            for name, tensor in zip(model.input_names, model.inputs)}


def convert(model, quantization: str, representative=None) -> bytes:
    """The Keras `model` as a .tflite flatbuffer with one signature, serving_default: its inputs
    by name -> {"scores": class scores}. "int8": `representative()` yields feature dicts of one
    example each (float input and output kept)."""
    if quantization not in QUANTIZATIONS:
        raise EdgeConversionError(f"quantization must be one of {QUANTIZATIONS}, not "
                                  f"{quantization!r}")
    specs = input_specs(model)

    @tf.function(input_signature=[specs])
    def serve(features):
        return {_OUTPUT: model(features, training=False)}

    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [serve.get_concrete_function()], model)
    if quantization == "int8":
        if representative is None:
            raise EdgeConversionError("int8 quantization needs representative examples")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
    return converter.convert()


class EdgeModel:
    """A .tflite model called on parsed features: `scores(features)` -> class scores [N, K]."""

    def __init__(self, content: bytes, where: str):
        self.where = where
        interpreter = tf.lite.Interpreter(model_content=content)
        self._runner = interpreter.get_signature_runner()
        self._inputs = self._runner.get_input_details()

    @property
    def input_names(self) -> list[str]:
        return sorted(self._inputs)

    def scores(self, features: dict) -> np.ndarray:
        missing = [name for name in self._inputs if name not in features]
        if missing:
            raise EdgeConversionError(f"{self.where} takes {self.input_names}; the examples lack "
                                      f"{missing}")
        fed = {name: np.asarray(features[name]).astype(detail["dtype"])
               for name, detail in self._inputs.items()}
        return self._runner(**fed)[_OUTPUT]


def feature_spec(first_record: bytes, shapes: dict, where: str) -> dict:
    """tf.io.parse_example spec of the model's input features ({name: shape}), typed from the
    first example (the model's own dtypes may differ: integer pixels feed a float input)."""
    present = tf.train.Example.FromString(first_record).features.feature
    spec = {}
    for name, shape in shapes.items():
        kind = present[name].WhichOneof("kind") if name in present else None
        if kind not in _FEATURE_DTYPES:
            raise EdgeConversionError(f"{where}: the model's input {name!r} is not a feature of "
                                      f"the first example (its features: {sorted(present)})")
        spec[name] = tf.io.FixedLenFeature(shape, _FEATURE_DTYPES[kind])
    return spec


def _read(pattern: str, batch_size: int, limit: int | None = None):
    """Batches of serialized records of the TFRecord files matching `pattern`, in file order."""
    paths = sorted(tf.io.gfile.glob(pattern))
    if not paths:
        raise ValueError(f"No example files match {pattern}: check the ExampleGen output.")
    dataset = tf.data.TFRecordDataset(
        paths, compression_type=model_check.tfrecord_compression(paths[0]))
    if limit is not None:
        dataset = dataset.take(limit)
    for batch in dataset.batch(batch_size):
        yield batch


def representative_dataset(patterns: list[str], model, count: int):
    """A callable for TFLiteConverter.representative_dataset: up to `count` training examples'
    features, one example per step, as the Keras model's dtypes."""
    specs = input_specs(model)
    shapes = {name: spec.shape[1:].as_list() for name, spec in specs.items()}

    def examples():
        left = count
        for pattern in patterns:
            for batch in _read(pattern, min(left, 256), left):
                features = tf.io.parse_example(batch, feature_spec(batch[0].numpy(), shapes,
                                                                   pattern))
                for i in range(int(batch.shape[0])):
                    yield {name: tf.cast(features[name][i:i + 1], specs[name].dtype)
                           for name in specs}
                left -= int(batch.shape[0])
            if left <= 0:
                return

    return examples


def edge_scores(model: ModelContract, scores: np.ndarray) -> np.ndarray:
    """A TFLite model's scores made readable by the contract: quantized probability rows
    renormalised to sum to 1 (argmax unchanged)."""
    scores = np.asarray(scores, dtype=np.float64)
    if model.scores == "probabilities" and scores.ndim == 2 and scores.shape[1] > 1:
        sums = scores.sum(axis=1, keepdims=True)
        scores = np.divide(scores, sums, out=np.full_like(scores, 1.0 / scores.shape[1]),
                           where=sums > 0)
    return scores


def predictions(pattern: str, cloud_dir: str, edges: list[EdgeModel], shapes: dict,
                data: DataContract, model: ModelContract, batch_size: int) -> dict:
    """Every eval example through the cloud candidate (its contract signature on the serialized
    examples) and each edge model (on the parsed features): {"labels", "ids", "cloud_pred",
    "edge_pred" [per edge model], "edge_prob" [per edge model]}."""
    loaded = tf.saved_model.load(cloud_dir)
    signature = model_check.contract_signature(loaded, cloud_dir, model)
    columns = {"labels": [], "ids": [], "cloud_pred": [], "cloud_prob": [],
               "edge_pred": [[] for _ in edges], "edge_prob": [[] for _ in edges]}
    paths = sorted(tf.io.gfile.glob(pattern))
    if not paths:
        raise ValueError(f"No example files match {pattern}: check the ExampleGen output.")
    spec = None
    for path in paths:
        for batch in model_check.read_batches(path, batch_size):
            if spec is None:
                first = batch[0].numpy()
                spec = {**feature_spec(first, shapes, path),
                        **model_check.example_spec(first, data, path)}
            parsed = model_check.parse_examples(batch, spec, path)
            features = {name: parsed[name].numpy() for name in shapes}
            columns["labels"].append(data.class_ids(model_check.text_values(
                parsed[data.label_key].numpy())))
            # one example, one name: the id feature, else the hash of its bytes (as every report)
            columns["ids"].append(model_check.example_ids(batch, parsed, data))
            cloud_pred, cloud_prob = model.predict(signature.scores(batch).numpy(),
                                                   signature.where)
            columns["cloud_pred"].append(cloud_pred)
            columns["cloud_prob"].append(cloud_prob)
            for i, edge in enumerate(edges):
                pred, prob = model.predict(edge_scores(model, edge.scores(features)), edge.where)
                columns["edge_pred"][i].append(pred)
                columns["edge_prob"][i].append(prob)
    if spec is None:
        raise ValueError(f"No examples in {pattern}: nothing to compare the edge model on.")
    return {key: ([np.concatenate(c) for c in value] if key.startswith("edge_")
                  else np.concatenate(value)) for key, value in columns.items()}


def flip_numbers(labels, old_pred, new_pred, new_prob, high_confidence: float) -> dict:
    """{"summary", "per_class"} of new vs old (graceful.flips), as plain JSON values."""
    per_class = flips.per_group(labels, old_pred, new_pred, labels, new_prob, high_confidence)
    return {"summary": flips.summarize(labels, old_pred, new_pred, new_prob,
                                       high_confidence).to_dict(),
            "per_class": {str(c): s.to_dict() for c, s in per_class.items()}}


def previous_missing(previous: str) -> str:
    """The failure line when the previously pushed edge model's file is gone."""
    return (f"previous edge model {previous} is gone, so the edge model cannot be compared with "
            "what devices run: restore it (from the edge destination's backup), or set its "
            "EdgePush to a non-LIVE state in ML Metadata so the edge push before it is compared "
            "against (components/edge_pusher/strategy.py), or turn the edge branch off")


def check(pattern: str, cloud_dir: str, edge_content: bytes, previous: str | None, shapes: dict,
          data: DataContract, model: ModelContract, policy: gate.GateConfig,
          high_confidence: float, batch_size: int) -> dict:
    """The edge report's flip part: the edge model vs the cloud candidate and vs the previously
    pushed edge model (`previous`, a .tflite path, or None), and the verdict."""
    edges = [EdgeModel(edge_content, "the edge model")]
    report = {"vs_previous": None, "previous_edge_model": previous}
    if previous is not None:
        if tf.io.gfile.exists(previous):
            with tf.io.gfile.GFile(previous, "rb") as handle:
                edges.append(EdgeModel(handle.read(), f"previously pushed edge model {previous}"))
        else:  # not a skipped check: the edge gate cannot pass without it
            report["previous_missing"] = previous_missing(previous)
            print(f"[edge] {report['previous_missing']}", flush=True)
    found = predictions(pattern, cloud_dir, edges, shapes, data, model, batch_size)
    labels, edge_pred, edge_prob = found["labels"], found["edge_pred"][0], found["edge_prob"][0]
    report["vs_cloud"] = flip_numbers(labels, found["cloud_pred"], edge_pred, edge_prob,
                                      high_confidence)
    ids = model_check.unique_ids_in_order(found["ids"], data.id_key)
    report["vs_cloud"]["flips"] = flips.ranked_flips(labels, found["cloud_pred"], edge_pred,
                                                     edge_prob, ids)[:LISTED_FLIPS]
    if len(edges) > 1:
        report["vs_previous"] = flip_numbers(labels, found["edge_pred"][1], edge_pred, edge_prob,
                                             high_confidence)
    report["cloud_accuracy"] = report["vs_cloud"]["summary"]["old_accuracy"]
    report["edge_accuracy"] = report["vs_cloud"]["summary"]["new_accuracy"]
    failures = gate.edge_failures(policy, report["vs_cloud"], report["vs_previous"],
                                  list(data.class_names) or None)
    if report.get("previous_missing"):
        failures = [*failures, report["previous_missing"]]
    report["gate"] = {"blessed": not failures, "failures": failures}
    return report


def read_report(edge_model_uri: str) -> dict:
    """The edge report an EdgeConverter wrote into its EdgeModel artifact."""
    path = os.path.join(edge_model_uri, EDGE_REPORT_FILE)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"{path} is missing: {edge_model_uri} is not an EdgeConverter's "
                                "output, or it did not finish")
    with tf.io.gfile.GFile(path) as handle:
        return json.load(handle)


class Executor(base_executor.BaseExecutor):

    def Do(self, input_dict, output_dict, exec_properties):
        candidate = artifact_utils.get_single_instance(input_dict["model"])
        examples = artifact_utils.get_single_instance(input_dict["examples"])
        edge_artifact = artifact_utils.get_single_instance(output_dict["edge_model"])
        previous = (input_dict.get("previous_edge") or [None])[0]
        settings = settings_from(exec_properties)
        data, model, policy = settings.data, settings.model, settings.policy
        quantization = exec_properties["quantization"]
        cloud_dir = path_utils.serving_model_path(candidate.uri)

        previous_file = (os.path.join(previous.get_string_custom_property(PUSHED_DESTINATION),
                                      EDGE_MODEL_FILE) if previous is not None else None)
        started = time.perf_counter()
        try:
            keras_model = load_keras(cloud_dir)
            shapes = {name: spec.shape[1:].as_list()
                      for name, spec in input_specs(keras_model).items()}
            training = [os.path.join(artifact_utils.get_split_uri([a], "train"), "*")
                        for a in input_dict["training_examples"]]
            content = convert(keras_model, quantization, representative_dataset(
                training, keras_model, exec_properties["representative_examples"]))
        except Exception as error:  # noqa: BLE001 - EdgeConversionError, tf.lite's ConverterError
            # or any converter failure: an edge failure must never block the cloud gate and push
            # (the FlipEvaluator and HumanSignOff take this artifact), so it is recorded, not raised
            blocked_report(edge_artifact, candidate, quantization, data, previous_file, error,
                           time.perf_counter() - started)
            return
        seconds = time.perf_counter() - started
        io_utils.write_bytes_file(os.path.join(edge_artifact.uri, EDGE_MODEL_FILE), content)

        split = os.path.join(artifact_utils.get_split_uri([examples], exec_properties["split"]),
                             "*")
        try:
            report = check(split, cloud_dir, content, previous_file, shapes, data, model, policy,
                           settings.high_confidence, settings.batch_size)
        except EdgeConversionError as error:  # the edge model cannot take the examples' features
            blocked_report(edge_artifact, candidate, quantization, data, previous_file, error,
                           seconds)
            return
        report.update({"model_uri": candidate.uri, "model_id": candidate.id,
                       "quantization": quantization, "size_bytes": len(content),
                       "conversion_seconds": seconds, "class_names": list(data.class_names)})
        io_utils.write_string_file(os.path.join(edge_artifact.uri, EDGE_REPORT_FILE),
                                   json.dumps(report, indent=1))
        _record(edge_artifact, report, previous)
        verdict = "passed" if report["gate"]["blessed"] else "blocked: " + "; ".join(
            report["gate"]["failures"])
        print(f"[edge] {quantization} TFLite model, {len(content)} bytes; edge NFR vs the cloud "
              f"candidate {report['vs_cloud']['summary']['nfr']:.4f}; edge check {verdict}",
              flush=True)


def conversion_failure(error: Exception) -> str:
    """The edge report's failure line for a candidate that could not be converted: the cause and
    what to do."""
    cause = str(error).strip() or type(error).__name__
    return (f"the candidate could not be converted to TensorFlow Lite ({type(error).__name__}: "
            f"{cause}): no edge model this run; the cloud model is judged and pushed without it. "
            "Turn the edge branch off (EdgeConfig.enabled=False), or export a Keras model on raw "
            "features whose ops TFLite converts (no Transform graph), then run again")


def blocked_report(edge_artifact, candidate, quantization: str, data: DataContract,
                   previous_file: str | None, error: Exception, seconds: float) -> dict:
    """Writes the edge report of a failed conversion (no model.tflite; gate blessed=0, one failure
    line naming the cause) and its custom properties, and says so loudly."""
    failure = conversion_failure(error)
    report = {"model_uri": candidate.uri, "model_id": candidate.id, "quantization": quantization,
              "size_bytes": 0, "conversion_seconds": seconds,
              "class_names": list(data.class_names), "converted": False,
              "conversion_error": f"{type(error).__name__}: {error}",
              "vs_cloud": None, "vs_previous": None, "previous_edge_model": previous_file,
              "cloud_accuracy": None, "edge_accuracy": None,
              "gate": {"blessed": False, "failures": [failure]}}
    io_utils.write_string_file(os.path.join(edge_artifact.uri, EDGE_REPORT_FILE),
                               json.dumps(report, indent=1))
    _record(edge_artifact, report, None)
    banner = "=" * 78
    print(f"{banner}\n[edge] EDGE CONVERSION FAILED, edge check blocked: {failure}\n{banner}",
          flush=True)
    return report


def _record(edge_artifact, report: dict, previous) -> None:
    """Headline numbers and the verdict as custom properties (MLMD queries, the edge pusher)."""
    edge_artifact.set_int_custom_property("blessed", int(report["gate"]["blessed"]))
    edge_artifact.set_string_custom_property("failures", json.dumps(report["gate"]["failures"]))
    edge_artifact.set_string_custom_property("quantization", report["quantization"])
    edge_artifact.set_int_custom_property("size_bytes", report["size_bytes"])
    edge_artifact.set_string_custom_property("model_uri", report["model_uri"])
    if report.get("vs_cloud") is None:  # not converted: no numbers
        edge_artifact.set_int_custom_property("converted", 0)
        return
    summary = report["vs_cloud"]["summary"]
    edge_artifact.set_float_custom_property("edge_nfr", summary["nfr"])
    edge_artifact.set_int_custom_property("edge_negative_flips", summary["negative_flips"])
    edge_artifact.set_float_custom_property("edge_accuracy", report["edge_accuracy"])
    if report["vs_previous"] is not None:
        edge_artifact.set_float_custom_property("edge_previous_nfr",
                                                report["vs_previous"]["summary"]["nfr"])
        edge_artifact.set_int_custom_property("previous_edge_push_id", previous.id)


def report_section(edge_model_uri: str) -> dict:
    """What the flip report shows of the edge model (its "edge" key): the verdict and the headline
    numbers vs the cloud candidate and vs the previously pushed edge model."""
    report = read_report(edge_model_uri)
    previous = report.get("vs_previous")
    return {"uri": edge_model_uri, "quantization": report["quantization"],
            "size_bytes": report["size_bytes"], "cloud_accuracy": report["cloud_accuracy"],
            "edge_accuracy": report["edge_accuracy"], "gate": report["gate"],
            "vs_cloud": report["vs_cloud"]["summary"] if report.get("vs_cloud") else None,
            "vs_previous": previous["summary"] if previous else None,
            "previous_edge_model": report.get("previous_edge_model")}
