"""graceful.models.review's gradients on a linear Keras model, whose input gradient of the true-class
logit is the weight column of that class: checked against the weights set at each checkpoint."""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from graceful import vog
from graceful.contract import ModelContract
from graceful.models import review

W1 = np.array([[1.0, 0.0, 2.0], [0.0, 1.0, 0.0]], np.float32)   # 2 features x 3 classes
W2 = np.array([[3.0, 0.0, 2.0], [0.0, 1.0, -1.0]], np.float32)
BIAS = np.zeros(3, np.float32)


def _linear(activation=None, dtype="float32"):
    x = keras.Input(shape=(2,), name="x", dtype=dtype)
    ids = keras.Input(shape=(1,), name="bucket", dtype="int64")  # no gradient: skipped
    if activation == "Softmax layer":  # as graceful's built-in models end
        scores = keras.layers.Softmax()(keras.layers.Dense(3, name="head")(x))
    else:
        scores = keras.layers.Dense(3, activation=activation, name="head")(x)
    return keras.Model({"x": x, "bucket": ids}, scores)


def _parse(features, labels):
    return lambda serialized: ({"x": tf.constant(features), "bucket": tf.zeros([len(labels), 1],
                                                                                tf.int64)},
                               tf.constant(labels, tf.int64))


def _gradients(*args):
    """[K, N, D] gradients and [N] labels from the per-batch stream."""
    batches = list(review.checkpoint_gradients(*args))
    return (np.concatenate([g for g, _ in batches], axis=1),
            np.concatenate([labels for _, labels in batches]))


@pytest.mark.parametrize("activation, scores", [(None, "logits"), ("softmax", "probabilities"),
                                               ("Softmax layer", "probabilities")])
def test_gradients_are_the_true_class_weight_columns_at_each_checkpoint(activation, scores):
    model = _linear(activation)
    final = [np.full((2, 3), 7.0, np.float32), BIAS]
    model.set_weights(final)
    features = np.array([[0.5, -1.0], [2.0, 3.0], [1.0, 1.0]], np.float32)
    labels = [0, 2, 1]
    gradients, got_labels = _gradients(
        model, [[W1, BIAS], [W2, BIAS]], _parse(features, labels), [b"a", b"b", b"c"],
        ModelContract(scores=scores))
    # the pre-softmax logit's gradient (not the log-probability's, which depends on x)
    np.testing.assert_allclose(gradients, [W1[:, labels].T, W2[:, labels].T])
    assert got_labels.tolist() == labels
    for kept, wanted in zip(model.get_weights(), final):
        np.testing.assert_array_equal(kept, wanted)  # the model ends as it was
    # by hand: class 0 (1,0)->(3,0): var 1 and 0 -> 0.5; class 2 (2,0)->(2,-1): 0 and 0.25 -> 0.125
    np.testing.assert_allclose(vog.vog(gradients), [0.5, 0.125, 0.0])


def test_integer_pixels_are_cast_to_the_float_input():
    model = _linear()
    gradients, _ = _gradients(
        model, [[W1, BIAS], [W2, BIAS]],
        lambda s: ({"x": tf.constant([[3, 4]], tf.int64), "bucket": tf.zeros([1, 1], tf.int64)},
                   tf.constant([2], tf.int64)), [b"a"], ModelContract(scores="logits"))
    np.testing.assert_allclose(gradients[:, 0], [W1[:, 2], W2[:, 2]])


def test_a_binary_logit_gives_the_same_vog_for_both_classes():
    x = keras.Input(shape=(2,), name="x")
    model = keras.Model({"x": x}, keras.layers.Dense(1)(x))
    w1, w2 = [np.array([[1.0], [0.0]], np.float32), np.zeros(1, np.float32)], \
        [np.array([[3.0], [0.0]], np.float32), np.zeros(1, np.float32)]
    gradients, _ = _gradients(
        model, [w1, w2], lambda s: ({"x": tf.ones([2, 2])}, tf.constant([0, 1], tf.int64)),
        [b"a", b"b"], ModelContract(scores="logits"))
    np.testing.assert_allclose(vog.vog(gradients), [0.5, 0.5])


def test_snapshots_are_evenly_spaced_and_need_two_checkpoints():
    model = _linear()
    snapshots = review.Snapshots(model, 100, 4)
    assert snapshots.steps == [25, 50, 75]
    for step in range(1, 101):
        snapshots.after_step(step)
    assert len(snapshots.weights) == 3
    assert review.Snapshots(model, 100, 0).steps == []
    with pytest.raises(ValueError, match="review_checkpoints"):
        review.Snapshots(model, 100, 1)


def test_a_model_without_float_inputs_is_refused():
    ids = keras.Input(shape=(1,), name="bucket", dtype="int64")
    model = keras.Model({"bucket": ids}, keras.layers.Dense(2)(tf.cast(ids, tf.float32)))
    with pytest.raises(ValueError, match="review_checkpoints=0"):
        review.gradient_function(model, ModelContract(), {"bucket": tf.zeros([1, 1], tf.int64)},
                                 tf.zeros([1], tf.int64))


def test_vog_streams_batch_by_batch(monkeypatch):
    """Three examples in batches of 2 (the last one smaller): the same VoG as by hand."""
    monkeypatch.setattr(review, "BATCH", 2)
    model = _linear()
    features = tf.constant([[0.5, -1.0], [2.0, 3.0], [1.0, 1.0]])
    labels = tf.constant([0, 2, 1], tf.int64)

    def parse(serialized):
        rows = tf.strings.to_number(serialized, tf.int32)
        return ({"x": tf.gather(features, rows), "bucket": tf.zeros([len(serialized), 1], tf.int64)},
                tf.gather(labels, rows))

    raw, got_labels, width = review.checkpoint_vog(model, [[W1, BIAS], [W2, BIAS]], parse,
                                                   np.array([b"0", b"1", b"2"], dtype=object),
                                                   ModelContract(scores="logits"))
    np.testing.assert_allclose(raw, [0.5, 0.125, 0.0])
    assert got_labels.tolist() == [0, 2, 1] and width == 2


def test_a_deadline_stops_after_the_batch_that_passed_it(monkeypatch):
    monkeypatch.setattr(review, "BATCH", 2)
    model = _linear()
    parse = lambda serialized: ({"x": tf.ones([len(serialized), 2]),  # noqa: E731
                                 "bucket": tf.zeros([len(serialized), 1], tf.int64)},
                                tf.zeros([len(serialized)], tf.int64))
    raw, labels, _ = review.checkpoint_vog(model, [[W1, BIAS], [W2, BIAS]], parse,
                                           np.array([b"a", b"b", b"c", b"d", b"e"], dtype=object),
                                           ModelContract(scores="logits"), deadline=0.0)
    assert len(raw) == len(labels) == 2  # the first batch only: the deadline had passed


def test_the_last_checkpoint_is_the_trained_weights_not_the_interpolated_ones(monkeypatch):
    """Warm start interpolates after training: the queue's K-th checkpoint must be the trained
    weights (on the training path), while the model keeps the exported, interpolated ones."""
    model = _linear()
    snapshots = review.Snapshots(model, 4, 2)
    model.get_layer("head").set_weights([W1, BIAS])
    snapshots.after_step(2)                              # checkpoint 1
    model.get_layer("head").set_weights([W2, BIAS])      # end of training
    snapshots.after_training()
    interpolated = [(W1 + W2) / 2, BIAS]                 # what warm start exports
    model.get_layer("head").set_weights(interpolated)
    seen = {}
    real_vog = review.checkpoint_vog

    class Stop(Exception):
        pass

    def spy(model, checkpoints, parse, serialized, contract, deadline=None):
        seen["checkpoints"] = checkpoints
        real_vog(model, checkpoints, parse, serialized, contract, deadline)
        raise Stop

    monkeypatch.setattr(review, "checkpoint_vog", spy)
    monkeypatch.setattr(review, "eval_examples", lambda files: np.array([b"0"], dtype=object))
    with pytest.raises(Stop):
        review.write_queue(model, snapshots, ["eval"], _parse([[1.0, 2.0]], [0]), None,
                           ModelContract(scores="logits"), 1, "unused")
    first, last = seen["checkpoints"]
    np.testing.assert_array_equal(first[0], W1)
    np.testing.assert_array_equal(last[0], W2)           # trained, not interpolated
    np.testing.assert_array_equal(model.get_layer("head").get_weights()[0], interpolated[0])
