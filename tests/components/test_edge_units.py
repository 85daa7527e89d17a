"""The edge branch's pieces without a pipeline run: what the converter refuses, what float conversion
keeps, how quantized probabilities are read, and how the edge pusher decides and versions a push."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from graceful import serving
from graceful.components.edge_converter import executor as edge
from graceful.components.edge_pusher.executor import push, why_not
from graceful.contract import ModelContract

PASSED = {"model_uri": "m", "gate": {"blessed": True, "failures": []}}


def _keras_model():
    keras.utils.set_random_seed(0)
    pixels = keras.Input(shape=(4,), name="pixels")
    scores = keras.layers.Dense(3, activation="softmax")(keras.layers.Dense(8)(pixels))
    return keras.Model({"pixels": pixels}, scores)


def test_a_model_keras_cannot_load_is_refused_saying_what_to_do(tmp_path):
    module = tf.Module()
    module.f = tf.function(lambda x: {"scores": x}, input_signature=[tf.TensorSpec([None], tf.float32)])
    tf.saved_model.save(module, str(tmp_path), signatures={"serving_default": module.f})
    with pytest.raises(edge.EdgeConversionError, match="Keras cannot load .*EdgeConfig.enabled"):
        edge.load_keras(str(tmp_path))


def test_float_conversion_keeps_the_keras_scores_and_int8_needs_examples(tmp_path):
    model = _keras_model()
    content = edge.convert(model, "float")
    features = {"pixels": np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)}
    scores = edge.EdgeModel(content, "float model").scores(features)
    np.testing.assert_allclose(scores, model(features).numpy(), atol=1e-6)
    with pytest.raises(edge.EdgeConversionError, match="representative"):
        edge.convert(model, "int8")
    with pytest.raises(edge.EdgeConversionError, match="quantization"):
        edge.convert(model, "int4")


def test_quantized_probability_rows_are_renormalised_without_changing_the_class():
    steps = np.array([[0.5, 0.25, 0.2578125], [0.0, 0.0, 0.0]])  # int8 softmax: steps of 1/256
    read = edge.edge_scores(ModelContract(), steps)
    np.testing.assert_allclose(read.sum(axis=1), 1.0)
    assert list(np.argmax(read, axis=1)) == [0, 0]
    logits = np.array([[3.0, -1.0]])
    np.testing.assert_array_equal(edge.edge_scores(ModelContract(scores="logits"), logits), logits)


def test_the_edge_pusher_pushes_only_a_checked_model_of_a_pushed_release():
    assert why_not(PASSED, cloud_pushed=True, model_uri="m") == ""
    assert why_not(PASSED, cloud_pushed=False, model_uri="m") == "the cloud model was not pushed"
    failed = {**PASSED, "gate": {"blessed": False, "failures": ["edge NFR ... > max_edge_nfr"]}}
    assert why_not(failed, True, "m") == "the edge check failed: edge NFR ... > max_edge_nfr"
    assert why_not(PASSED, True, "other").startswith("the edge model was converted from m")


def test_a_push_is_renamed_into_a_new_version_and_leaves_no_staging(tmp_path):
    source = tmp_path / "edge_model"
    source.mkdir()
    (source / edge.EDGE_MODEL_FILE).write_bytes(b"tflite")
    (source / edge.EDGE_REPORT_FILE).write_text(json.dumps(PASSED))
    destination = str(tmp_path / "edge_serving")
    first, version = push(str(source), destination, "5")
    assert (first, version) == (os.path.join(destination, "5"), 5)
    assert push(str(source), destination, "5")[1] == 6, "never below or equal to a served version"
    assert serving.versions(destination) == [5, 6] and serving.leftover_staging(destination) == []
    with open(os.path.join(first, edge.EDGE_MODEL_FILE), "rb") as handle:
        assert handle.read() == b"tflite"
