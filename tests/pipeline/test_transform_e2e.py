"""Optional TFX Transform, end to end: a CSV project (scikit-learn's wine table, two spans) whose
preprocessing_fn z-scores every numeric feature and whose model reads only the transformed features.

Span 1 is pushed; span 2 is trained with BCT + focal distillation against the served model and
judged by the flip gate. Checked independently of graceful's code: the Transform was fitted on the
whole window (numpy z-scores of spans 1+2), the pushed SavedModel takes RAW serialized examples and
answers model(transform(raw)), it keeps answering with the pipeline's transform graph gone (one
artifact), and the flip report's numbers are a numpy count on the two served models.
"""
import dataclasses
import glob
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras

from graceful import history
from graceful.contract import DataContract, ModelContract
from graceful.models.params import TrainingParams
from graceful.pipeline import local_runner
from graceful.pipeline.configs import GateConfig, PipelineConfig, SignOffConfig
from graceful.project import bootstrap_schema
from tests import tabular
from tests.pipeline import transform_module

pytestmark = pytest.mark.slow
HERE = Path(__file__).parent


def _config(tmp_path, class_names) -> PipelineConfig:
    data = DataContract(root=str(tmp_path / "data"), format="csv",
                        train_pattern="span-{SPAN}/train/*", eval_pattern="span-{SPAN}/eval/*",
                        label_key=tabular.LABEL, id_key=tabular.ID, class_names=class_names)
    return PipelineConfig(
        home=str(tmp_path / "home"), data=data, demo_data=False,
        schema_dir=str(tmp_path / "schema"),
        module_file=str(HERE / "transformed_model.py"),
        transform_module=str(HERE / "transform_module.py"),
        model=ModelContract(scores="logits", embedding_layer="embedding"),
        # BCT on purpose (not the default loss): the old head and embedding of a model that
        # carries its Transform layer
        training=TrainingParams(epochs=30, batch_size=16, learning_rate=0.01, loss="bct+fd"),
        gate=GateConfig(min_accuracy=0.3, max_accuracy_drop=0.0, max_nfr=1.0, max_class_nfr=1.0,
                        max_relative_nfr=100.0),
        sign_off=SignOffConfig(auto_approve=True))


def _trainer_input(store, model_id: int, type_name: str):
    """The artifact of `type_name` the Trainer that produced `model_id` read (ML Metadata)."""
    [producer] = [e.execution_id for e in store.get_events_by_artifact_ids([model_id])
                  if e.type == e.OUTPUT]
    inputs = [e.artifact_id for e in store.get_events_by_execution_ids([producer])
              if e.type == e.INPUT]
    type_id = store.get_artifact_type(type_name).id
    [wanted] = [a for a in store.get_artifacts_by_id(inputs) if a.type_id == type_id]
    return wanted


def _eval_records(store, span: int) -> list[bytes]:
    [examples] = [e for e in store.get_artifacts_by_type("Examples")
                  if e.custom_properties["span"].int_value == span][-1:]
    files = sorted(glob.glob(os.path.join(examples.uri, "Split-eval", "*")))
    return [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]


def _scores(model_dir: str, records: list[bytes]) -> np.ndarray:
    serve = tf.saved_model.load(model_dir).signatures["serving_default"]
    [scores] = serve(examples=tf.constant(records)).values()
    return scores.numpy()


def _window_z_scores(data_root: str, records: list[bytes]) -> dict:
    """{<name>_xf: z-scores of the records' raw values} with the mean and population standard
    deviation of the training rows of spans 1 and 2, in numpy."""
    window = pd.concat(pd.read_csv(path) for path in
                       sorted(glob.glob(os.path.join(data_root, "span-*", "train", "*.csv"))))
    examples = [tf.train.Example.FromString(r).features.feature for r in records]
    z_scores = {}
    for name in window.columns.drop([tabular.LABEL, tabular.ID]):
        raw = np.array([feature[name].float_list.value[0] for feature in examples])
        column = window[name].to_numpy(np.float64)
        z_scores[name + transform_module.SUFFIX] = (raw - column.mean()) / column.std()
    return z_scores


def _numpy_count(store, run: history.RunRecord, records: list[bytes]) -> dict:
    models = {m.id: m for m in store.get_artifacts_by_id([run.model_id, run.baseline_model_id])}
    labels = np.array([tf.train.Example.FromString(r).features.feature[tabular.LABEL]
                       .int64_list.value[0] for r in records])
    new, old = (_scores(os.path.join(models[i].uri, "Format-Serving"), records).argmax(axis=1)
                for i in (run.model_id, run.baseline_model_id))
    flipped = (old == labels) & (new != labels)
    return {"examples": len(labels), "negative_flips": int(flipped.sum()), "nfr": flipped.mean(),
            "new_accuracy": (new == labels).mean(), "old_accuracy": (old == labels).mean()}


def test_a_transform_is_fitted_on_the_window_and_served_inside_the_model(tmp_path):
    class_names = tabular.write_spans("wine", str(tmp_path / "data"), num_spans=2)
    config = _config(tmp_path, class_names)
    bootstrap_schema(config, log=lambda _: None)
    for span in (1, 2):
        local_runner.run(dataclasses.replace(config, span=span), log=lambda _: None)

    first, second = history.runs(config.metadata_uri)
    assert first.pushed and (second.span, second.training_spans) == (2, [1, 2])
    assert second.baseline_model_id == first.model_id == second.reference_model_id
    assert second.loss == "bct+fd"
    store = history.open_store(config.metadata_uri)
    records = _eval_records(store, span=2)

    # The Transform of run 2 saw both spans of the window: its z-scores are the window's.
    graph = _trainer_input(store, second.model_id, "TransformGraph")
    transformed = tft.TFTransformOutput(graph.uri).transform_raw_features(
        tf.io.parse_example(tf.constant(records), {
            name: spec for name, spec in tft.TFTransformOutput(graph.uri).raw_feature_spec().items()
            if name not in (tabular.LABEL, tabular.ID)}), drop_unused_features=True)
    expected = _window_z_scores(config.data_root, records)
    assert sorted(transformed) == sorted(expected), "the label is withheld, so its output pruned"
    for name, values in expected.items():
        np.testing.assert_allclose(transformed[name].numpy().reshape(-1), values, atol=1e-4)

    # The newest served model takes raw examples and answers model(transform(raw)).
    served = os.path.join(config.serving_dir, sorted(os.listdir(config.serving_dir))[-1])
    served_id = second.model_id if second.pushed else first.model_id
    served_graph = _trainer_input(store, served_id, "TransformGraph")
    keras_model = keras.models.load_model(served, compile=False)
    raw_spec = tft.TFTransformOutput(served_graph.uri).raw_feature_spec()
    features = tft.TFTransformOutput(served_graph.uri).transform_raw_features(
        tf.io.parse_example(tf.constant(records), {name: raw_spec[name] for name in raw_spec
                                                    if name != tabular.LABEL}),
        drop_unused_features=True)
    independent = keras_model({name: features[name] for name in keras_model.input_names}).numpy()
    np.testing.assert_allclose(_scores(served, records), independent, rtol=1e-5, atol=1e-5)

    # One artifact: a copy of it serves with the pipeline's transform graphs gone.
    copy = str(tmp_path / "copied_model")
    shutil.copytree(served, copy)
    shutil.move(os.path.join(config.pipeline_root, "Transform"), str(tmp_path / "graphs_gone"))
    np.testing.assert_allclose(_scores(copy, records), independent, rtol=1e-5, atol=1e-5)

    # The flip gate's numbers, recounted in numpy from both served models' own answers.
    with open(second.flip_report) as handle:
        summary = json.load(handle)["summary"]
    count = _numpy_count(store, second, records)
    for key in ("examples", "negative_flips"):
        assert summary[key] == count[key], key
    for key in ("nfr", "new_accuracy", "old_accuracy"):
        assert summary[key] == pytest.approx(count[key], abs=1e-12), key
