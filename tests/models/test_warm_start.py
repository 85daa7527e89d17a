"""graceful.models.warm_start on real Keras models (the built-in ones, saved as the pipeline saves
them): weights copied, other architectures refused, alpha applied, the held-out split."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from graceful import interpolation
from graceful.models import architectures, warm_start


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tf.keras.utils.set_random_seed(1)
    model = architectures.build("small", probabilities=True)
    path = str(tmp_path_factory.mktemp("served"))
    model.save(path, save_format="tf")
    return warm_start.ServedWeights(path)


def test_start_copies_the_served_weights_layer_by_layer(served):
    tf.keras.utils.set_random_seed(2)
    candidate = architectures.build("small", probabilities=True)
    assert not np.allclose(warm_start.layer_weights(candidate)[0], served.weights[0])
    served.start(candidate, "test")
    for copied, original in zip(warm_start.layer_weights(candidate), served.weights):
        np.testing.assert_array_equal(copied, original)


def test_start_refuses_another_architecture_naming_both(served):
    with pytest.raises(ValueError, match=r"served model .* \(Keras model 'small'\) and the candidate "
                                         r"\('cnn', from test\) differ: layer \d+ differs: "
                                         r"served layer .*candidate layer .*--model small"):
        served.start(architectures.build("cnn", probabilities=True), "test")


def test_choose_alpha_leaves_the_model_at_the_chosen_interpolation(served):
    tf.keras.utils.set_random_seed(3)
    candidate = architectures.build("small", probabilities=True)
    trained = warm_start.layer_weights(candidate)
    pixels = np.random.default_rng(0).integers(0, 256, size=(64, 784)).astype(np.float32)

    def predict(model):
        return model({"pixels": pixels}, training=False).numpy().argmax(1)

    old_pred = predict(served.model)
    labels = old_pred.copy()  # the old model is right everywhere: any change is a negative flip
    alpha, scores = warm_start.choose_alpha(candidate, served, labels, old_pred, predict,
                                            log=lambda _: None)
    assert [s.alpha for s in scores] == list(interpolation.GRID)
    assert alpha == interpolation.choose_alpha(scores).alpha
    expected = interpolation.interpolate(trained, served.weights, alpha)
    for weight, want in zip(warm_start.layer_weights(candidate), expected):
        np.testing.assert_allclose(weight, want, rtol=1e-6)


def test_held_out_split_is_deterministic_disjoint_and_about_ten_percent():
    examples = tf.data.Dataset.from_tensor_slices([f"example {i}".encode() for i in range(2000)])
    kept, held = warm_start.split_held_out(examples)
    kept, held = [x.numpy() for x in kept], [x.numpy() for x in held]
    assert not set(kept) & set(held) and len(kept) + len(held) == 2000
    assert 150 < len(held) < 250
    again = [x.numpy() for x in warm_start.split_held_out(examples.shuffle(2000, seed=1))[1]]
    assert sorted(again) == sorted(held)  # by content, not position


def _tiny(activation="relu", dropout=0.1, stride=1, name="tiny"):
    pixels = keras.Input((8, 8, 1), name="pixels")
    hidden = keras.layers.Conv2D(4, 3, strides=stride, padding="same", activation=activation)(pixels)
    hidden = keras.layers.Dropout(dropout, seed=7)(hidden)
    hidden = keras.layers.Flatten()(hidden)
    return keras.Model({"pixels": pixels}, keras.layers.Dense(3)(hidden), name=name)


def _saved(model, directory) -> warm_start.ServedWeights:
    model.save(str(directory), save_format="tf")
    return warm_start.ServedWeights(str(directory))


def test_start_refuses_another_activation_stride_or_weightless_layer(tmp_path):
    served = _saved(_tiny(), tmp_path / "served")
    served.start(_tiny(), "test")  # the same architecture, built again (other layer names)
    with pytest.raises(ValueError, match=r"layer 2 differs: served layer 'conv2d.*another "
                                         r"configuration, activation: 'relu' vs 'tanh'.*from "
                                         r"scratch"):
        served.start(_tiny(activation="tanh"), "test")
    with pytest.raises(ValueError, match=r"layer 2 differs.*strides\[0\]: 1 vs 2"):
        served.start(_tiny(stride=2), "test")
    with pytest.raises(ValueError, match=r"layer 3 differs: served layer 'dropout.*\(Dropout, "
                                         r"weights none\).*rate: 0.1 vs 0.5"):
        served.start(_tiny(dropout=0.5), "test")


@pytest.mark.parametrize("name", ["mlp", "small", "cnn"])
def test_built_in_models_accept_themselves_built_with_another_seed(name, tmp_path):
    tf.keras.utils.set_random_seed(11)
    served = _saved(architectures.build(name, probabilities=True), tmp_path / name)
    tf.keras.utils.set_random_seed(12)
    candidate = architectures.build(name, probabilities=True)
    served.start(candidate, "test")
    for copied, original in zip(warm_start.layer_weights(candidate), served.weights):
        np.testing.assert_array_equal(copied, original)


class _TransformLike(keras.layers.Layer):
    """Stands in for the TFT layer training.export attaches as model.tft_layer (with a variable)."""

    def build(self, input_shape):
        self.scale = self.add_weight(name="scale", shape=(1,), initializer="ones")

    def call(self, features):
        return features


def test_the_tft_layer_is_neither_architecture_nor_weights(tmp_path):
    served_model = _tiny()
    served_model.tft_layer = _TransformLike(name="anything")
    served_model.tft_layer(tf.zeros((1, 1)))
    assert served_model.tft_layer in served_model.layers  # tf_keras tracks it as a layer
    served = _saved(served_model, tmp_path / "served")
    assert any(type(layer).__name__ == "_TransformLike" for layer in served.model.layers)
    candidate = _tiny()  # a fresh candidate has no tft_layer yet
    served.start(candidate, "test")
    assert len(served.weights) == len(warm_start.layer_weights(candidate)) == 4
    served.interpolate(candidate, warm_start.layer_weights(candidate), 0.5)
    # and the other way round: a candidate carrying one, a served model without
    plain = _saved(_tiny(), tmp_path / "plain")
    carrying = _tiny()
    carrying.tft_layer = _TransformLike(name="transform_features_layer")
    carrying.tft_layer(tf.zeros((1, 1)))
    plain.start(carrying, "test")
    assert [w.shape for w in warm_start.layer_weights(carrying)] == [w.shape for w in plain.weights]


def _spans(root):
    for span in (1, 2):
        directory = root / f"Span-{span}" / "Split-train"
        directory.mkdir(parents=True)
        for part in range(2):
            (directory / f"data_tfrecord-0000{part}-of-00002.gz").write_bytes(b"")
    return root


def test_newest_span_files_match_whatever_way_the_patterns_are_written(tmp_path, monkeypatch):
    root = _spans(tmp_path)
    train = [f"{root}/Span-1/Split-train/*", f"{root}/Span-2/Split-train/*"]
    newest_want = sorted(str(p) for p in (root / "Span-2" / "Split-train").iterdir())
    older_want = sorted(str(p) for p in (root / "Span-1" / "Split-train").iterdir())
    monkeypatch.chdir(root)
    for newest_patterns in ([train[1]],                                    # as the executor lists it
                            [f"{root}/Span-2/Split-train//*"],             # another spelling
                            ["Span-2/Split-train/*"],                      # relative
                            [f"{root}/Span-2/./Split-train/data_tfrecord-*.gz"],
                            newest_want):                                  # file by file
        assert warm_start.newest_span_files(train, newest_patterns) == (newest_want, older_want)
    # one pattern over both spans: the newest span's files are still found
    assert warm_start.newest_span_files([f"{root}/Span-*/Split-train/*"], [train[1]]) == (
        newest_want, older_want)
    assert warm_start.newest_span_files(train, []) == ([], older_want + newest_want)
    assert warm_start.newest_span_files(train, [f"{root}/Span-9/*"])[0] == []


def _examples_file(path, count):
    with tf.io.TFRecordWriter(str(path)) as writer:
        for number in range(count):
            writer.write(f"{path.name} {number}".encode())


def test_begin_records_and_logs_where_alpha_is_held_out(tmp_path, monkeypatch, served):
    for span in (1, 2):
        (tmp_path / f"span{span}").mkdir()
        _examples_file(tmp_path / f"span{span}" / "data.tfrecord", 500)
    train = [str(tmp_path / "span1" / "*"), str(tmp_path / "span2" / "*")]
    tf.keras.utils.set_random_seed(4)
    for newest, want in (([str(tmp_path / "span2") + "/*"], "newest span"),
                         ([], "all spans: the trainer was not told the newest span's files"),
                         ([str(tmp_path / "elsewhere" / "*")], "all spans: none of the newest")):
        logs = []
        warm = warm_start.WarmStart("auto", served.path, logs.append)
        warm.begin(architectures.build("small", probabilities=True), "test", train, newest)
        assert warm.summary["alpha_held_out"].startswith(want)
        warned = [line for line in logs if "WARNING" in line]
        if want == "newest span":
            assert not warned and warm.summary["held_out_from"] == [
                str(tmp_path / "span2" / "data.tfrecord")]
            held = [x.numpy() for x in warm.held_out]
            assert held and all(x.startswith(b"data.tfrecord") for x in held)
        else:
            assert len(warned) == 1 and "EVERY span" in warned[0]
            assert len(warm.summary["held_out_from"]) == 2
