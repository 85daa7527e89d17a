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


def _artifact(cls, uri, **ints):
    artifact = cls()
    artifact.uri = str(uri)
    for key, value in ints.items():
        artifact.set_int_custom_property(key, value)
    return artifact


def _convert_failing_candidate(tmp_path):
    """The EdgeConverter's executor on a candidate Keras cannot load (a plain tf.Module
    SavedModel): (the EdgeModel artifact it wrote, the candidate)."""
    from tfx.types import standard_artifacts

    from graceful.components.edge_converter.component import EdgeModel
    from graceful.components.report_settings import ReportSettings, settings_properties

    candidate = _artifact(standard_artifacts.Model, tmp_path / "model")
    module = tf.Module()
    module.f = tf.function(lambda x: {"scores": x},
                           input_signature=[tf.TensorSpec([None], tf.float32)])
    tf.saved_model.save(module, str(tmp_path / "model" / "Format-Serving"),
                        signatures={"serving_default": module.f})
    examples = _artifact(standard_artifacts.Examples, tmp_path / "examples")
    examples.split_names = '["train", "eval"]'
    edge_model = _artifact(EdgeModel, tmp_path / "edge_model")
    properties = {"quantization": "float", "representative_examples": 5, "split": "eval",
                  **settings_properties(ReportSettings())}
    edge.Executor().Do({"model": [candidate], "examples": [examples],
                        "training_examples": [examples]}, {"edge_model": [edge_model]}, properties)
    return edge_model, candidate


def test_a_conversion_failure_blocks_the_edge_push_only_and_the_cloud_gate_reads_it(tmp_path,
                                                                                      capsys):
    from tfx.types import standard_artifacts

    from graceful import report_html
    from graceful.components.edge_converter.component import EdgePush
    from graceful.components.edge_pusher.executor import Executor as EdgePusherExecutor
    from graceful.components.flip_evaluator.executor import REPORT_FILE, add_edge_section
    from graceful.components.human_signoff.executor import edge_evidence

    edge_model, candidate = _convert_failing_candidate(tmp_path)  # recorded, not raised
    assert "EDGE CONVERSION FAILED" in capsys.readouterr().out
    assert not os.path.exists(os.path.join(edge_model.uri, edge.EDGE_MODEL_FILE))
    report = edge.read_report(edge_model.uri)
    [failure] = report["gate"]["failures"]
    assert report["gate"]["blessed"] is False and edge_model.get_int_custom_property("blessed") == 0
    assert "could not be converted" in failure and "Keras cannot load" in failure
    assert "Turn the edge branch off" in failure
    # the FlipEvaluator's report and page, and the sign-off's evidence, take the blocked edge model
    out_dir = tmp_path / "flip_report"
    out_dir.mkdir()
    (out_dir / REPORT_FILE).write_text(json.dumps({"gate": {"blessed": True, "failures": []}}))
    add_edge_section(str(out_dir), edge_model.uri)
    section = json.loads((out_dir / REPORT_FILE).read_text())["edge"]
    assert section["vs_cloud"] is None and section["gate"]["failures"] == [failure]
    assert "not converted" in report_html._edge_section({"edge": section})
    assert "blocked" in edge_evidence(edge_model)
    # the edge pusher refuses it, and the cloud push stands
    pushed_model = _artifact(standard_artifacts.PushedModel, tmp_path / "pushed", pushed=1)
    pushed_model.set_string_custom_property(serving.PUSHED_VERSION, "3")
    edge_push = _artifact(EdgePush, tmp_path / "edge_push")
    EdgePusherExecutor().Do({"model": [candidate], "edge_model": [edge_model],
                             "pushed_model": [pushed_model]}, {"edge_push": [edge_push]},
                            {"destination": str(tmp_path / "edge_serving")})
    assert edge_push.get_int_custom_property(serving.PUSHED) == 0
    assert edge_push.get_string_custom_property("reason") == "the edge check failed: " + failure
    assert not os.path.exists(tmp_path / "edge_serving" / "3")


def test_a_release_without_an_edge_model_pushes_no_edge_model_and_does_not_fail(tmp_path):
    from tfx.types import standard_artifacts

    from graceful.components.edge_converter.component import EdgeModel, EdgePush
    from graceful.components.edge_pusher.executor import NO_EDGE_MODEL
    from graceful.components.edge_pusher.executor import Executor as EdgePusherExecutor

    edge_model = _artifact(EdgeModel, "")  # the importer of the release's "" edge_model_uri
    edge_push = _artifact(EdgePush, tmp_path / "edge_push")
    EdgePusherExecutor().Do({"model": [_artifact(standard_artifacts.Model, tmp_path / "m")],
                             "edge_model": [edge_model],
                             "pushed_model": [_artifact(standard_artifacts.PushedModel,
                                                        tmp_path / "p", pushed=1)]},
                            {"edge_push": [edge_push]},
                            {"destination": str(tmp_path / "edge_serving")})
    assert edge_push.get_int_custom_property(serving.PUSHED) == 0
    assert edge_push.get_string_custom_property("reason") == NO_EDGE_MODEL
    assert not os.path.exists(tmp_path / "edge_serving")


def test_a_previous_edge_model_that_is_gone_blocks_the_edge_check(tmp_path, monkeypatch):
    from graceful import gate
    from graceful.contract import DataContract

    labels = np.array([0, 1, 2, 1])
    probs = np.eye(3)[labels] * 0.9 + 0.1 / 3  # [examples, classes]

    def same_predictions(pattern, cloud_dir, edges, *rest):  # every model agrees, no flips
        return {"labels": labels, "ids": np.arange(4), "cloud_pred": labels, "cloud_prob": probs,
                "edge_pred": [labels] * len(edges), "edge_prob": [probs] * len(edges)}

    monkeypatch.setattr(edge, "predictions", same_predictions)
    content = edge.convert(_keras_model(), "float")
    previous = tmp_path / "edge_serving" / "3" / edge.EDGE_MODEL_FILE
    args = ("eval/*", "cloud", content)
    rest = ({"pixels": [4]}, DataContract(class_names=()), ModelContract(), gate.GateConfig(),
            0.9, 16)
    gone = edge.check(*args, str(previous), *rest)
    assert gone["gate"]["blessed"] is False and gone["vs_previous"] is None
    [failure] = gone["gate"]["failures"]
    assert failure.startswith(f"previous edge model {previous} is gone")
    assert "restore it" in failure
    previous.parent.mkdir(parents=True)
    previous.write_bytes(content)
    there = edge.check(*args, str(previous), *rest)
    assert there["gate"] == {"blessed": True, "failures": []} and there["vs_previous"] is not None
    assert edge.check(*args, None, *rest)["gate"]["blessed"], "none pushed yet: nothing to compare"


def test_edge_flips_name_examples_as_the_flip_evaluator_and_review_queue_do(tmp_path):
    """Without an id feature the edge report's ids are model_check.example_ids (the hash of each
    example's bytes), not row positions; identical examples get the FlipEvaluator's unique ids."""
    from graceful import model_check
    from graceful.contract import DataContract

    model = _keras_model()

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve(examples):
        parsed = tf.io.parse_example(examples, {"pixels": tf.io.FixedLenFeature([4], tf.float32)})
        return {"scores": model(parsed, training=False)}

    cloud_dir = str(tmp_path / "cloud")
    model.save(cloud_dir, signatures={"serving_default": serve})
    rows = np.random.default_rng(1).normal(size=(5, 4)).astype(np.float32)
    records = [tf.train.Example(features=tf.train.Features(feature={
        "pixels": tf.train.Feature(float_list=tf.train.FloatList(value=row)),
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[i % 3]))}))
        .SerializeToString() for i, row in enumerate([*rows, rows[0]])]  # the last repeats the 1st
    with tf.io.TFRecordWriter(str(tmp_path / "eval.tfrecord")) as writer:
        for record in records:
            writer.write(record)
    found = edge.predictions(str(tmp_path / "eval.tfrecord"), cloud_dir,
                             [edge.EdgeModel(edge.convert(model, "float"), "edge")],
                             {"pixels": [4]}, DataContract(), ModelContract(), 4)
    hashed = model_check.example_ids(tf.constant(records), {}, DataContract())
    np.testing.assert_array_equal(found["ids"], hashed)
    unique = model_check.unique_ids_in_order(found["ids"], "")
    assert len(set(unique)) == 6 and list(unique[:5]) == list(hashed[:5])
