"""Warm start in the real pipeline: run 2 starts from run 1's served model (weights asserted,
recorded in MLMD), and is refused when the architectures differ."""
import glob
import json
import os

import numpy as np
import pytest
import tf_keras as keras
from ml_metadata.proto import metadata_store_pb2

from graceful import history, interpolation, lineage
from graceful.models import architectures, inputs, warm_start
from tests.components.test_graceful_trainer_e2e import _trainer_execution_and_model
from tests.conftest import run_span, with_training

pytestmark = pytest.mark.slow


def _trainer_io(store, model_id):
    """(trainer execution, the model, its ModelRun artifact, the ids of the Examples it read)."""
    execution, model = _trainer_execution_and_model(store, model_id)
    events = store.get_events_by_execution_ids([execution.id])
    [model_run] = store.get_artifacts_by_id([
        e.artifact_id for e in events
        if e.type == metadata_store_pb2.Event.OUTPUT and e.path.steps[0].key == "model_run"])
    examples = [e.artifact_id for e in events
                if e.type == metadata_store_pb2.Event.INPUT and e.path.steps[0].key == "examples"]
    return execution, model, model_run, examples


def _weights(model_artifact):
    model = keras.models.load_model(os.path.join(model_artifact.uri, "Format-Serving"),
                                    compile=False)
    return warm_start.layer_weights(model)


def test_warm_start_begins_from_the_served_models_weights(tiny_config):
    config = with_training(tiny_config, warm_start=True, loss="plain")
    run_span(config, span=1)
    # A learning rate so small that training cannot move the weights measurably: what is exported
    # is where training started. Without warm start that is a fresh random initialisation.
    run_span(with_training(config, learning_rate=1e-9, ema_momentum=0.0), span=2)
    first, second = history.runs(config.metadata_uri)
    store = history.open_store(config.metadata_uri)
    _, served, _, _ = _trainer_io(store, first.model_id)
    execution, started, model_run, examples = _trainer_io(store, second.model_id)

    old, new = _weights(served), _weights(started)
    fresh = warm_start.layer_weights(architectures.build("small", probabilities=True))
    assert [w.shape for w in new] == [w.shape for w in old] == [w.shape for w in fresh]
    for before, after, scratch in zip(old, new, fresh):
        np.testing.assert_allclose(after, before, atol=1e-5)
        # the check could tell: a model trained from scratch starts far from the served weights
        assert np.abs(scratch - before).max() > 1e-2

    # MLMD: where the weights came from and alpha, on the Model; no served model for run 1.
    assert first.pushed and first.model_id == second.reference_model_id
    assert served.custom_properties["warm_start_note"].string_value.startswith(
        "no served model yet (first run): trained from scratch")
    assert started.custom_properties["warm_start_model_id"].int_value == first.model_id
    assert started.custom_properties["warm_start_uri"].string_value.startswith(served.uri)
    alpha = started.custom_properties["warm_start_alpha"].double_value
    assert alpha in interpolation.GRID
    info = lineage.lineage(config.metadata_uri, second.model_id)
    assert info["warm_start"] == {"model_id": first.model_id, "alpha": alpha}
    assert (f"warm start: from model {first.model_id}, weights interpolated with alpha {alpha:g}"
            in lineage.format_lineage(info))
    assert lineage.lineage(config.metadata_uri, first.model_id)["warm_start"]["note"].startswith(
        "no served model yet")
    assert history.property_value(execution, "warm_start") == 1
    assert history.property_value(execution, "warm_start_alpha") == "auto"

    # alpha was chosen on training examples of the newest span (which the served model never saw),
    # kept out of training
    with open(os.path.join(model_run.uri, "training_summary.json")) as handle:
        summary = json.load(handle)
    held_out = summary["warm_start"]["held_out"]
    assert [score["alpha"] for score in held_out] == list(interpolation.GRID)
    window = {history.property_value(a, "span"): a for a in store.get_artifacts_by_id(examples)}
    assert sorted(window) == [1, 2]
    assert summary["warm_start"]["alpha_held_out"] == "newest span"
    assert started.custom_properties["warm_start_alpha_held_out"].string_value == "newest span"
    newest = summary["warm_start"]["held_out_from"]
    assert newest and all(path.startswith(os.path.join(window[2].uri, "Split-train"))
                          for path in newest)
    counts = {span: sum(1 for _ in inputs.serialized_examples(
        glob.glob(os.path.join(artifact.uri, "Split-train", "*")))) for span, artifact in window.items()}
    assert 0 < held_out[0]["examples"] < counts[2] / 4
    assert summary["train_examples"] + held_out[0]["examples"] == counts[1] + counts[2]


def test_warm_start_across_architectures_is_refused_and_nothing_is_pushed(tiny_config):
    config = with_training(tiny_config, loss="plain", architecture="mlp")
    run_span(config, span=1)
    served = sorted(os.listdir(config.serving_dir))
    with pytest.raises(Exception, match=(
            r"warm start needs the served model's architecture, but the served model .* \(Keras "
            r"model 'mlp'\) and the candidate \('small', from graceful's built-in model\) differ: "
            r"layer 3 differs: served layer 'embedding' \(Dense, weights \(784, 256\), "
            r"\(256,\)\), candidate layer 'embedding' \(Dense, weights \(784, 64\), \(64,\)\): "
            r"other weight shapes\. "
            r"Train the candidate from scratch \(drop --warm-start.*--model mlp")):
        run_span(with_training(config, architecture="small", warm_start=True), span=2)
    first, *others = history.runs(config.metadata_uri)
    assert first.pushed and not any(run.pushed or run.model_id for run in others)
    assert sorted(os.listdir(config.serving_dir)) == served


def test_warm_start_with_a_transform_leaves_the_tft_layer_out(tmp_path):
    """With a Transform, the served model carries the TFT layer (model.tft_layer, tracked by
    tf_keras); the fresh candidate does not yet. Warm start must neither refuse that nor copy or
    interpolate the TFT layer's variables."""
    import dataclasses

    from graceful.pipeline import local_runner
    from graceful.project import bootstrap_schema
    from tests import tabular
    from tests.pipeline.test_transform_e2e import _config

    class_names = tabular.write_spans("wine", str(tmp_path / "data"), num_spans=2)
    config = with_training(_config(tmp_path, class_names), warm_start=True, loss="plain",
                           epochs=5)
    bootstrap_schema(config, log=lambda _: None)
    for span in (1, 2):
        local_runner.run(dataclasses.replace(config, span=span), log=lambda _: None)
    first, second = history.runs(config.metadata_uri)
    store = history.open_store(config.metadata_uri)
    _, started, _, _ = _trainer_io(store, second.model_id)
    assert started.custom_properties["warm_start_model_id"].int_value == first.model_id
    assert started.custom_properties["warm_start_alpha_held_out"].string_value == "newest span"
    [old, new] = [keras.models.load_model(os.path.join(m.uri, "Format-Serving"), compile=False)
                  for m in store.get_artifacts_by_id([first.model_id, second.model_id])]
    for model in (old, new):
        assert model.tft_layer in model.layers  # the served model lists it ...
        assert model.tft_layer not in warm_start.model_layers(model)  # ... warm start does not
    assert interpolation.architecture_mismatch(warm_start.describe(old),
                                               warm_start.describe(new)) is None
