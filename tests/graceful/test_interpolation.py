"""The maths of warm start's weight interpolation: hand-checked numbers, no TensorFlow."""
import numpy as np
import pytest

from graceful import interpolation
from graceful.interpolation import AlphaScore, LayerWeights


def test_interpolate_mixes_each_weight_and_keeps_dtypes():
    new = [np.array([[1.0, 3.0]], dtype=np.float32), np.array([10.0]), np.array(7, dtype=np.int64)]
    old = [np.array([[3.0, -1.0]], dtype=np.float32), np.array([0.0]), np.array(2, dtype=np.int64)]
    mixed = interpolation.interpolate(new, old, 0.25)
    np.testing.assert_array_equal(mixed[0], [[2.5, 0.0]])   # 0.25 * new + 0.75 * old
    assert mixed[0].dtype == np.float32
    np.testing.assert_array_equal(mixed[1], [2.5])
    assert mixed[2] == 7 and mixed[2].dtype == np.int64      # counters: the new model's
    np.testing.assert_array_equal(interpolation.interpolate(new, old, 1.0)[0], new[0])
    np.testing.assert_array_equal(interpolation.interpolate(new, old, 0.0)[0], old[0])


def test_interpolate_refuses_weights_of_another_architecture():
    with pytest.raises(ValueError, match=r"weight 0: shape \(2,\) \(new\) vs \(3,\) \(old\)"):
        interpolation.interpolate([np.zeros(2)], [np.zeros(3)], 0.5)
    with pytest.raises(ValueError, match="cannot interpolate 1 weights with 2"):
        interpolation.interpolate([np.zeros(2)], [np.zeros(2), np.zeros(1)], 0.5)


def test_choose_alpha_takes_the_fewest_flips_that_lose_no_accuracy():
    scores = [AlphaScore(0.2, accuracy=0.80, nfr=0.01, examples=1000),   # too inaccurate
              AlphaScore(0.5, accuracy=0.8995, nfr=0.02, examples=1000),  # within the tolerance
              AlphaScore(0.7, accuracy=0.91, nfr=0.03, examples=1000),
              AlphaScore(1.0, accuracy=0.90, nfr=0.05, examples=1000)]
    assert interpolation.choose_alpha(scores).alpha == 0.5
    assert interpolation.choose_alpha(scores, tolerance=0.0).alpha == 0.7


def test_choose_alpha_ties_go_to_accuracy_then_to_the_larger_alpha():
    scores = [AlphaScore(0.4, 0.90, 0.02, 10), AlphaScore(0.6, 0.92, 0.02, 10),
              AlphaScore(0.8, 0.92, 0.02, 10), AlphaScore(1.0, 0.92, 0.04, 10)]
    assert interpolation.choose_alpha(scores).alpha == 0.8


def test_choose_alpha_needs_the_fine_tuned_model_and_falls_back_to_it():
    with pytest.raises(ValueError, match="needs the score of alpha = 1"):
        interpolation.choose_alpha([AlphaScore(0.5, 0.9, 0.0, 10)])
    only_worse = [AlphaScore(0.5, 0.5, 0.0, 10), AlphaScore(1.0, 0.9, 0.1, 10)]
    assert interpolation.choose_alpha(only_worse).alpha == 1.0


def test_alpha_score_counts_flips_with_graceful_flips():
    labels, old, new = [0, 1, 2, 2], [0, 1, 0, 2], [0, 2, 2, 2]
    score = AlphaScore.of(0.3, labels, old, new)
    assert (score.alpha, score.accuracy, score.nfr, score.examples) == (0.3, 0.75, 0.25, 4)


def test_parse_alpha():
    assert interpolation.parse_alpha("auto") is None and interpolation.parse_alpha(" AUTO") is None
    assert interpolation.parse_alpha("0.3") == 0.3 and interpolation.parse_alpha("1") == 1.0
    for bad in ("1.5", "-0.1", "nan", "half"):
        with pytest.raises(ValueError, match=f"'auto' or a number in \\[0, 1\\].*{bad!r}"):
            interpolation.parse_alpha(bad)


def test_architecture_mismatch_names_the_first_differing_layer_in_both_models():
    small = [LayerWeights("embedding", "Dense", ((784, 64), (64,))),
             LayerWeights("head", "Dense", ((64, 10), (10,)))]
    mlp = [LayerWeights("embedding", "Dense", ((784, 256), (256,))),
           LayerWeights("head", "Dense", ((256, 10), (10,)))]
    renamed = [LayerWeights("dense_7", "Dense", ((784, 64), (64,))),
               LayerWeights("dense_8", "Dense", ((64, 10), (10,)))]
    assert interpolation.architecture_mismatch(small, renamed) is None
    message = interpolation.architecture_mismatch(mlp, small)
    assert message == ("layer 1 differs: served layer 'embedding' (Dense, weights "
                       "(784, 256), (256,)), candidate layer 'embedding' (Dense, weights "
                       "(784, 64), (64,)): other weight shapes")
    deeper = small + [LayerWeights("extra", "Dense", ((10, 10), (10,)))]
    assert "the candidate goes on with layer 'extra'" in interpolation.architecture_mismatch(
        small, deeper)
    assert "the served model goes on with layer 'extra'" in interpolation.architecture_mismatch(
        deeper, small)


def test_architecture_mismatch_compares_classes_and_configurations_of_every_layer():
    def layer(name, kind, shapes=(), **config):
        return LayerWeights(name, kind, shapes, config)

    relu = [layer("x", "InputLayer"), layer("d", "Dense", ((4, 2), (2,)), units=2,
                                               activation="relu"), layer("drop", "Dropout", rate=0.1)]
    tanh = [relu[0], layer("d", "Dense", ((4, 2), (2,)), units=2, activation="tanh"), relu[2]]
    assert interpolation.architecture_mismatch(relu, relu) is None
    assert interpolation.architecture_mismatch(relu, tanh) == (
        "layer 2 differs: served layer 'd' (Dense, weights (4, 2), (2,)), candidate layer 'd' "
        "(Dense, weights (4, 2), (2,)): another configuration, activation: 'relu' vs 'tanh' "
        "(served vs candidate)")
    # weightless layers count: another dropout rate, another class, or one more of them
    more_dropout = relu[:2] + [layer("drop", "Dropout", rate=0.5)]
    assert "layer 3 differs" in interpolation.architecture_mismatch(relu, more_dropout)
    assert "rate: 0.1 vs 0.5" in interpolation.architecture_mismatch(relu, more_dropout)
    pooled = relu[:2] + [layer("pool", "MaxPooling1D")]
    assert "another layer class" in interpolation.architecture_mismatch(relu, pooled)
    flatter = relu + [layer("flat", "Flatten")]
    assert "goes on with layer 'flat' (Flatten, weights none)" in \
        interpolation.architecture_mismatch(relu, flatter)


def test_config_difference_names_nested_settings():
    assert interpolation.config_difference({"a": [1, 2]}, {"a": (1, 2)}) is None
    assert interpolation.config_difference({"strides": (1, 1)}, {"strides": (2, 2)}) == (
        "strides[0]: 1 vs 2")
    assert interpolation.config_difference({"reg": {"l2": 0.1}}, {"reg": None}) == (
        "reg.l2: 0.1 vs not set")
