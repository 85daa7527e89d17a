"""VoG maths (graceful.vog) on a linear model, whose input gradient is a weight column: the answer
is worked out by hand below."""
import numpy as np
import pytest

from graceful import vog

# A linear classifier logits = x @ W (2 features, 2 classes): the input gradient of the true-class
# logit of an example of class c is the column W[:, c], whatever the example's features.
W_CHECKPOINT_1 = np.array([[1.0, 0.0],
                           [0.0, 1.0]])
W_CHECKPOINT_2 = np.array([[3.0, 0.0],
                           [0.0, 1.0]])


def linear_gradients(weights, labels):
    """[K, N, features]: the true-class input gradients at each checkpoint."""
    return np.stack([w[:, labels].T for w in weights])


def test_vog_of_a_linear_model_by_hand():
    labels = np.array([0, 1, 0])
    gradients = linear_gradients([W_CHECKPOINT_1, W_CHECKPOINT_2], labels)
    # Class 0: gradient (1, 0) then (3, 0): feature 0 has mean 2 and population variance
    # ((1-2)^2 + (3-2)^2) / 2 = 1, feature 1 variance 0; mean over the 2 features = 0.5.
    # Class 1: (0, 1) both times: 0.
    np.testing.assert_allclose(vog.vog(gradients), [0.5, 0.0, 0.5])


def test_vog_averages_every_feature_axis_of_images():
    # 2 checkpoints, 1 example, a 2x2 "image": one pixel moves 0 -> 2 (variance 1), the rest still.
    gradients = np.zeros((2, 1, 2, 2))
    gradients[1, 0, 0, 1] = 2.0
    np.testing.assert_allclose(vog.vog(gradients), [0.25])


def test_vog_is_the_population_variance_not_the_sample_one():
    gradients = np.array([[[0.0]], [[1.0]], [[2.0]]])  # K=3: ((1)^2 + 0 + 1^2) / 3
    np.testing.assert_allclose(vog.vog(gradients), [2 / 3])


@pytest.mark.parametrize("shape, problem", [((2, 3), "features"), ((1, 3, 2), ">= 2 checkpoints")])
def test_vog_refuses_shapes_it_cannot_read(shape, problem):
    with pytest.raises(ValueError, match=problem):
        vog.vog(np.zeros(shape))


def test_class_normalisation_by_hand():
    scores = np.array([1.0, 2.0, 3.0, 7.0, 5.0, 5.0])
    labels = np.array([0, 0, 0, 1, 2, 2])
    # class 0: mean 2, population std sqrt(2/3); class 1 alone and class 2 without spread: 0.
    z = 1 / np.sqrt(2 / 3)
    np.testing.assert_allclose(vog.class_normalized(scores, labels), [-z, 0, z, 0, 0, 0])


def test_top_k_is_highest_first_with_ties_broken_by_id():
    scores = np.array([1.0, 2.0, 2.0, 0.0])
    ids = np.array([5, 9, 3, 1])
    assert vog.top_k(scores, ids, 3).tolist() == [2, 1, 0]
    # the same examples in another order give the same queue (by id)
    order = np.array([3, 1, 0, 2])
    assert ids[order][vog.top_k(scores[order], ids[order], 3)].tolist() == [3, 9, 5]
    assert vog.top_k(scores, np.array(["b", "c", "a", "d"]), 2).tolist() == [2, 1]
    assert vog.top_k(scores, ids, 10).tolist() == [2, 1, 0, 3]
