"""graceful.models: training a user's model against a reference through the real GracefulTrainer
(binary sigmoid-logit and multiclass-logit models on a tiny tabular dataset), BCT refused without an
embedding layer, the exported model is the weight average the parameters ask for."""
import glob
import json
import textwrap

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras
from tfx import v1 as tfx

from graceful.components.graceful_trainer.component import GracefulTrainer
from graceful.contract import DataContract, ModelContract
from graceful.models import architectures, training
from graceful.models.params import TrainingParams

MODULE = textwrap.dedent('''
    import tf_keras as keras

    def build_model(context):
        features = context.keras_inputs(["x1", "x2"])
        joined = keras.layers.Concatenate()(list(features.values()))
        hidden = keras.layers.Dense(8, activation="relu", name="embedding")(joined)
        units = 1 if context.binary else context.num_classes
        return keras.Model(features, keras.layers.Dense(units, name="head")(hidden))
''')
SCHEMA = textwrap.dedent('''
    feature { name: "x1" type: FLOAT presence { min_fraction: 1 } shape { dim { size: 1 } } }
    feature { name: "x2" type: FLOAT presence { min_fraction: 1 } shape { dim { size: 1 } } }
    feature { name: "label" type: %s presence { min_fraction: 1 } shape { dim { size: 1 } } }
''')


def _example(x1, x2, label) -> bytes:
    value = (tf.train.Feature(bytes_list=tf.train.BytesList(value=[label.encode()]))
             if isinstance(label, str) else tf.train.Feature(int64_list=tf.train.Int64List(
                 value=[label])))
    return tf.train.Example(features=tf.train.Features(feature={
        "x1": tf.train.Feature(float_list=tf.train.FloatList(value=[x1])),
        "x2": tf.train.Feature(float_list=tf.train.FloatList(value=[x2])),
        "label": value})).SerializeToString()


def _write_data(root, names, n=240, seed=0):
    """Separable 2-d points: class = which of len(names) angular sectors a point falls in."""
    rng = np.random.default_rng(seed)
    for split in ("train", "eval"):
        points = rng.normal(size=(n, 2)).astype(np.float32)
        sector = ((np.arctan2(points[:, 1], points[:, 0]) + np.pi) / (2 * np.pi) * len(names))
        labels = np.minimum(sector.astype(int), len(names) - 1)
        (root / split).mkdir(parents=True)
        with tf.io.TFRecordWriter(str(root / split / "data.gz"), "GZIP") as writer:
            for (x1, x2), label in zip(points, labels):
                writer.write(_example(float(x1), float(x2),
                                      names[label] if isinstance(names[0], str) else int(label)))


def _train_twice(tmp_path, data: DataContract, model: ModelContract, label_type: str,
                 params: TrainingParams):
    """One LocalDagRunner run: trainer `first` (no reference: plain), then `second` against it."""
    (tmp_path / "schema").mkdir()
    (tmp_path / "schema" / "schema.pbtxt").write_text(SCHEMA % label_type)
    (tmp_path / "module.py").write_text(MODULE)
    examples = tfx.components.ImportExampleGen(
        input_base=str(tmp_path / "data"), input_config=tfx.proto.Input(splits=[
            tfx.proto.Input.Split(name="train", pattern="train/*"),
            tfx.proto.Input.Split(name="eval", pattern="eval/*")]))
    schema = tfx.components.ImportSchemaGen(schema_file=str(tmp_path / "schema/schema.pbtxt"))

    def trainer(reference):
        return GracefulTrainer(examples=examples.outputs["examples"], schema=schema.outputs["schema"],
                               reference_model=reference, params=params, data=data, model=model,
                               module_file=str(tmp_path / "module.py"))

    first = trainer(None).with_id("first")
    second = trainer(first.outputs["model"]).with_id("second")
    root = str(tmp_path / "root")
    tfx.orchestration.LocalDagRunner().run(tfx.dsl.Pipeline(
        pipeline_name="tiny", pipeline_root=root, components=[examples, schema, first, second],
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            str(tmp_path / "metadata.sqlite"))))
    [summary] = glob.glob(f"{root}/second/model_run/*/{training.SUMMARY_FILE}")
    [exported] = glob.glob(f"{root}/second/model/*/Format-Serving")
    return json.loads(open(summary).read()), exported


def _scores(exported, output_key, data_dir):
    serialized = [record.numpy() for record in
                  tf.data.TFRecordDataset(f"{data_dir}/eval/data.gz", "GZIP")]
    outputs = tf.saved_model.load(exported).signatures["serving_default"](
        examples=tf.constant(serialized))
    assert list(outputs) == [output_key]
    return outputs[output_key].numpy()


@pytest.mark.slow
@pytest.mark.parametrize("names, label_type, model, width", [
    ((0, 1), "INT", ModelContract(output_key="logit", scores="logits"), 1),
    (("north", "west", "south"), "BYTES", ModelContract(scores="logits"), 3),
], ids=["binary-sigmoid-logit", "multiclass-logits-string-labels"])
def test_user_module_trains_with_fd_against_a_reference(tmp_path, names, label_type, model,
                                                        width):
    _write_data(tmp_path / "data", names)
    data = DataContract(class_names=tuple(map(str, names)))
    params = TrainingParams(loss="fd_kl", epochs=3, batch_size=32, learning_rate=0.02,
                            temperature=1.0, alpha=0.0, beta=1.0, lam=0.5)
    summary, exported = _train_twice(tmp_path, data, model, label_type, params)
    assert summary["effective_loss"] == "fd_kl" and summary["reference_model"]
    # Three epochs, but the reference scored each training example once.
    assert summary["reference_examples_scored"] == summary["train_examples"] == 240
    scores = _scores(exported, model.output_key or training.DEFAULT_OUTPUT_KEY, tmp_path / "data")
    assert scores.shape == (240, width)
    predicted, _ = model.predict(scores)
    eval_labels = [int(label) for label in _labels(tmp_path / "data", names)]
    assert np.mean(predicted == np.array(eval_labels)) > 0.7


def _labels(data_dir, names):
    for record in tf.data.TFRecordDataset(f"{data_dir}/eval/data.gz", "GZIP"):
        value = tf.train.Example.FromString(record.numpy()).features.feature["label"]
        yield (names.index(value.bytes_list.value[0].decode()) if value.bytes_list.value
               else value.int64_list.value[0])


@pytest.mark.parametrize("loss", ["bct", "bct+fd"])
def test_bct_without_an_embedding_layer_is_refused(loss):
    with pytest.raises(ValueError, match="set the model contract's embedding_layer.*or use loss "
                                         "'fd_kl'"):
        training.effective_loss(TrainingParams(loss=loss), ModelContract(), has_reference=False)
    assert training.effective_loss(TrainingParams(loss="fd_kl"), ModelContract(), True) == "fd_kl"


def _weights(model):
    return [w.numpy().copy() for w in model.trainable_variables]


def _one_step(params):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (256, architectures.IMAGE_PIXELS)).astype(np.float32)
    labels = rng.integers(0, 10, 256)
    model = architectures.build("small")
    batches = tf.data.Dataset.from_tensors(({"pixels": pixels[:128]}, labels[:128], {}))
    training.train(model, batches, training.Schedule(256, params), "plain",
                   ModelContract(scores="logits"), log=lambda _: None)
    return model


def test_weight_average_with_warm_up_is_what_gets_exported():
    """One step: TF's warm-up momentum min(m, (1 + t) / (10 + t)) is 2/11 at t = 1, so the exported
    weights are 2/11 of the initial weights plus 9/11 of the trained ones."""
    keras.utils.set_random_seed(4)
    initial = _weights(architectures.build("small"))
    step = dict(max_steps=1, loss="plain")
    keras.utils.set_random_seed(4)
    trained = _weights(_one_step(TrainingParams(**step, ema_momentum=0.0)))
    keras.utils.set_random_seed(4)
    averaged = _weights(_one_step(TrainingParams(**step, ema_momentum=0.99)))
    for w0, w1, exported in zip(initial, trained, averaged):
        assert not np.allclose(w0, w1)
        np.testing.assert_allclose(exported, 2 / 11 * w0 + 9 / 11 * w1, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("momentum", [-0.1, 1.0, 1.5])
def test_momentum_outside_zero_to_one_is_refused(momentum):
    with pytest.raises(ValueError, match="ema_momentum must be in"):
        training.check_params(TrainingParams(ema_momentum=momentum))


def test_distillation_with_a_binary_threshold_other_than_half_is_refused():
    """The losses read "the old model was right" by argmax (threshold 0.5); the gates by the
    contract's threshold. Training with another threshold would weigh other examples than the gates
    count, so it stops at once, saying what to do; plain training is fine."""
    from graceful.contract import ModelContract
    from graceful.models.params import TrainingParams
    from graceful.models.training import effective_loss

    contract = ModelContract(scores="logits", threshold=0.3)
    with pytest.raises(ValueError, match="threshold is 0.3.*loss 'plain'"):
        effective_loss(TrainingParams(loss="fd_kl"), contract, has_reference=True)
    assert effective_loss(TrainingParams(loss="plain"), contract, has_reference=True) == "plain"


def test_reference_step_factor_lengthens_only_distillation():
    """Distillation gets reference_step_factor times the steps; a first or plain run trains its
    epochs; max_steps still caps both."""
    params = TrainingParams(epochs=3, batch_size=100, reference_step_factor=1.5)
    assert training.Schedule(1000, params).total_steps == 30
    assert training.Schedule(1000, params, distilling=True).total_steps == 45
    capped = TrainingParams(epochs=3, batch_size=100, reference_step_factor=1.5, max_steps=40)
    assert training.Schedule(1000, capped, distilling=True).total_steps == 40


@pytest.mark.parametrize("factor", [0.0, -1.0, 11.0, float("nan")])
def test_reference_step_factor_out_of_range_is_refused(factor):
    with pytest.raises(ValueError, match="reference_step_factor must be in"):
        training.check_params(TrainingParams(reference_step_factor=factor))
