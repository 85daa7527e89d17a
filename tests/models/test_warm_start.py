"""graceful.models.warm_start on real Keras models (the built-in ones, saved as the pipeline saves
them): weights copied, other architectures refused, alpha applied, the held-out split."""
import numpy as np
import pytest
import tensorflow as tf

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
                                         r"\('cnn', from test\) differ: weighted layer 1 differs: "
                                         r"served layer 'embedding' \(Dense.*candidate layer "
                                         r"'conv2d.*\(Conv2D"):
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
