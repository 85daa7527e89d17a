"""The edge (TensorFlow Lite) branch end to end (LocalDagRunner, SQLite ML Metadata, tiny spans):
an edge model that flips more than its limit is not pushed while the cloud model is; the edge NFR
the gate used equals a numpy count on the two models' predictions, computed here with TensorFlow
Lite's Interpreter and the SavedModel's serving signature; an edge model within its limits is pushed
(also by the release pipeline after a deferred sign-off) and the next run compares its edge model
against it. Every assertion reads ML Metadata, the artifacts' files or the edge destination."""
import dataclasses
import glob
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from ml_metadata.proto import metadata_store_pb2
from tfx.utils import path_utils

from graceful import history, serving, signoff, slack
from graceful.components.edge_converter.executor import EDGE_MODEL_FILE, EDGE_REPORT_FILE
from graceful.pipeline import release
from graceful.pipeline.configs import EdgeConfig, SignOffConfig
from tests.conftest import make_tiny_config, run_span

pytestmark = pytest.mark.slow


def _edge_config(tmp_path, quantization="float", **limits):
    config = make_tiny_config(tmp_path)
    return dataclasses.replace(
        config, edge=EdgeConfig(enabled=True, quantization=quantization,
                                representative_examples=20),
        gate=dataclasses.replace(config.gate, **limits))


def _artifacts(config, type_name):
    return sorted(history.open_store(config.metadata_uri).get_artifacts_by_type(type_name),
                  key=lambda a: a.id)


def _prop(artifact, name):
    value = artifact.custom_properties[name]
    return value.WhichOneof("value") and getattr(value, value.WhichOneof("value"))


def _eval_examples(config):
    """(pixels [N, 784], labels [N], serialized [N]) of the newest eval split ExampleGen wrote."""
    [examples] = _artifacts(config, "Examples")[-1:]
    paths = sorted(glob.glob(os.path.join(examples.uri, "Split-eval", "*")))
    serialized = [r.numpy() for r in tf.data.TFRecordDataset(paths, compression_type="GZIP")]
    parsed = tf.io.parse_example(serialized, {
        "pixels": tf.io.FixedLenFeature([784], tf.int64),
        "label": tf.io.FixedLenFeature([], tf.int64)})
    return parsed["pixels"].numpy(), parsed["label"].numpy(), serialized


def _tflite_classes(path, pixels):
    """Predicted classes of a .tflite file, run here with TensorFlow Lite's own Interpreter."""
    interpreter = tf.lite.Interpreter(model_path=path)
    runner = interpreter.get_signature_runner()
    [output] = runner(pixels=pixels.astype(np.float32)).values()
    return np.argmax(output, axis=1)


def _cloud_classes(model_uri, serialized):
    loaded = tf.saved_model.load(path_utils.serving_model_path(model_uri))
    scores = loaded.signatures["serving_default"](examples=tf.constant(serialized))
    return np.argmax(scores["probabilities"].numpy(), axis=1)


def _assert_one_model_and_one_run(config, model_id, *nodes):
    """Lineage in ML Metadata: each of `nodes` has one execution consuming the Model `model_id`,
    and all of them belong to one pipeline run."""
    store = history.open_store(config.metadata_uri)
    node_of = history.node_ids(store)
    executions = {node_of.get(event.execution_id): event.execution_id
                  for event in store.get_events_by_artifact_ids([model_id])
                  if event.type == metadata_store_pb2.Event.INPUT}
    assert set(nodes) <= set(executions), executions
    runs = [{c.id for c in store.get_contexts_by_execution(executions[node])
             if c.type in history.RUN_CONTEXT_TYPES or c.type_id in _run_type_ids(store)}
            for node in nodes]
    assert runs[0] and all(run == runs[0] for run in runs), runs


def _run_type_ids(store):
    return {t.id for t in store.get_context_types() if t.name in history.RUN_CONTEXT_TYPES}


def _nfr(labels, old, new):
    return float(np.mean((old == labels) & (new != labels)))


def test_an_edge_model_that_flips_too_much_is_not_pushed_while_the_cloud_model_is(tmp_path):
    config = _edge_config(tmp_path, quantization="int8", max_edge_nfr=0.0)
    run_span(config, span=1)

    [model] = _artifacts(config, "Model")
    [edge_model] = _artifacts(config, "graceful.EdgeModel")
    [edge_push] = _artifacts(config, "graceful.EdgePush")
    pixels, labels, serialized = _eval_examples(config)
    tflite = os.path.join(edge_model.uri, EDGE_MODEL_FILE)
    edge = _tflite_classes(tflite, pixels)
    cloud = _cloud_classes(model.uri, serialized)
    nfr = _nfr(labels, cloud, edge)
    assert nfr > 0, "int8 quantization flipped nothing: the test would prove nothing"
    with open(os.path.join(edge_model.uri, EDGE_REPORT_FILE)) as handle:
        report = json.load(handle)
    assert report["vs_cloud"]["summary"]["nfr"] == pytest.approx(nfr, abs=1e-12)
    assert report["vs_cloud"]["summary"]["negative_flips"] == int(
        np.sum((cloud == labels) & (edge != labels)))
    assert report["vs_previous"] is None and report["quantization"] == "int8"
    assert _prop(edge_model, "edge_nfr") == pytest.approx(nfr, abs=1e-6)  # MLMD rounds
    assert _prop(edge_model, "blessed") == 0
    assert report["gate"]["failures"][0].startswith("edge NFR vs the cloud candidate")
    assert report["size_bytes"] == os.path.getsize(tflite)

    # The flip report shows the edge numbers and verdict; the flip gate does not count them.
    [flip_report] = _artifacts(config, "graceful.FlipReport")
    with open(os.path.join(flip_report.uri, "flip_report.json")) as handle:
        shown = json.load(handle)
    assert shown["edge"]["vs_cloud"]["nfr"] == pytest.approx(nfr, abs=1e-12)
    assert shown["edge"]["gate"]["blessed"] is False and shown["gate"]["blessed"] is True
    with open(os.path.join(flip_report.uri, "index.html")) as handle:
        page = handle.read()
    assert "Edge model (TensorFlow Lite)" in page and "Edge check (gates the edge push only)" in page

    # The cloud model is pushed; the edge model is not.
    assert serving.served_version_dir(config.serving_dir) is not None
    assert _prop(_artifacts(config, "PushedModel")[0], "pushed") == 1
    assert _prop(edge_push, "pushed") == 0
    assert _prop(edge_push, "reason").startswith("the edge check failed: edge NFR")
    assert serving.versions(config.edge_serving_dir) == []


def test_an_edge_model_within_limits_is_pushed_and_the_next_is_compared_with_it(tmp_path,
                                                                             monkeypatch):
    for name in ("SLACK_BOT_TOKEN", "GRACEFUL_SLACK_CHANNEL"):
        monkeypatch.delenv(name, raising=False)
    # Tiny models vary between spans: the cloud gates and the edge-vs-previous limit are open,
    # so the test judges the wiring; float conversion must stay within 5% of the cloud model.
    config = _edge_config(tmp_path, max_edge_previous_nfr=1.0, max_edge_class_nfr=1.0,
                          max_edge_nfr=0.05, max_edge_high_confidence_flips=1000,
                          max_accuracy_drop=1.0)
    run_span(config, span=1)
    [first_push] = _artifacts(config, "graceful.EdgePush")
    assert _prop(first_push, "pushed") == 1, _prop(first_push, "reason")
    [cloud_version] = serving.versions(config.serving_dir)
    assert serving.versions(config.edge_serving_dir) == [cloud_version], "one release, one number"
    first_file = os.path.join(config.edge_serving_dir, str(cloud_version), EDGE_MODEL_FILE)
    with open(first_file, "rb") as pushed, open(os.path.join(
            _artifacts(config, "graceful.EdgeModel")[0].uri, EDGE_MODEL_FILE), "rb") as converted:
        assert pushed.read() == converted.read()

    _assert_one_model_and_one_run(config, _artifacts(config, "Model")[0].id, "Pusher", "EdgePusher")

    # Run 2 defers its sign-off: the release pipeline pushes both models after the approval.
    deferred = dataclasses.replace(config, sign_off=SignOffConfig(timeout_seconds=3600))
    run_span(deferred, span=2)
    second_edge = _artifacts(config, "graceful.EdgeModel")[-1]
    assert _prop(second_edge, "previous_edge_push_id") == first_push.id
    with open(os.path.join(second_edge.uri, EDGE_REPORT_FILE)) as handle:
        report = json.load(handle)
    assert report["previous_edge_model"] == first_file
    pixels, labels, _ = _eval_examples(config)
    previous = _tflite_classes(first_file, pixels)
    new = _tflite_classes(os.path.join(second_edge.uri, EDGE_MODEL_FILE), pixels)
    assert report["vs_previous"]["summary"]["nfr"] == pytest.approx(
        _nfr(labels, previous, new), abs=1e-12)
    assert len(_artifacts(config, "graceful.EdgePush")) == 1, "nothing pushed before the decision"

    store = signoff.Store(config.sign_off_store)
    [request] = [r for r in store.requests() if r.deadline_at is not None]
    assert release.values(request, config)[release.EDGE_MODEL_URI] == second_edge.uri
    # What the approver sees of the edge model, also in the Slack message.
    assert request.evidence["edge"].startswith("float TFLite, ")
    assert request.evidence["edge"].endswith("edge check passed")
    assert any(request.evidence["edge"] in json.dumps(block)
               for block in slack.message_blocks(request))
    store.decide(request.request_id, signoff.APPROVE, "alice", "alice", "edge test", "cli",
                 approvers=frozenset({"alice"}))
    release.run(config, release.values(request, config), log=lambda _: None)
    second_push = _artifacts(config, "graceful.EdgePush")[-1]
    assert _prop(second_push, "pushed") == 1, _prop(second_push, "reason")
    versions = serving.versions(config.edge_serving_dir)
    assert len(versions) == 2 and versions[-1] == serving.versions(config.serving_dir)[-1]
    assert _prop(second_push, "model_uri") == _artifacts(config, "Model")[-1].uri
    # The release run pushed both halves of run 2's model: one model, one (release) run.
    _assert_one_model_and_one_run(config, _artifacts(config, "Model")[-1].id, "Pusher",
                                  "EdgePusher")


def test_a_candidate_tflite_cannot_convert_leaves_the_cloud_gate_and_push_working(tmp_path,
                                                                                 monkeypatch):
    """TFLite's converter failing (here made to, as on an op it cannot convert): the run still
    judges, signs off and pushes the cloud model; the edge model is blocked and not pushed."""
    from tensorflow.lite.python.convert_phase import ConverterError

    from graceful.components.edge_converter import executor as edge_executor

    def fails(*args, **kwargs):
        raise ConverterError("'tfl.custom_op' op is neither a custom op nor a flex op")

    monkeypatch.setattr(edge_executor, "convert", fails)  # LocalDagRunner runs in this process
    config = _edge_config(tmp_path)
    run_span(config, span=1)

    [edge_model] = _artifacts(config, "graceful.EdgeModel")
    assert not os.path.exists(os.path.join(edge_model.uri, EDGE_MODEL_FILE))
    [failure] = json.loads(_prop(edge_model, "failures"))
    assert "ConverterError" in failure and "Turn the edge branch off" in failure
    assert _prop(_artifacts(config, "PushedModel")[0], "pushed") == 1
    assert serving.served_version_dir(config.serving_dir) is not None
    [edge_push] = _artifacts(config, "graceful.EdgePush")
    assert _prop(edge_push, "pushed") == 0
    assert _prop(edge_push, "reason") == "the edge check failed: " + failure
    assert serving.versions(config.edge_serving_dir) == []
