"""Variance of gradients (VoG, Agarwal, D'souza & Hooker, CVPR 2022): which examples deserve a
human look. TFX- and TensorFlow-free maths; the gradients come from graceful.models.review.

For each example, S_t is the gradient of its true-class score (the pre-softmax logit) with respect
to its input features at training checkpoint t = 1..K. Per feature position p,
    V_p = (1/K) * sum_t (S_t[p] - mu[p])^2,   mu = (1/K) * sum_t S_t     (population variance)
and the example's VoG is the mean of V_p over its feature positions. The paper prints
V_p = sqrt(1/K) * sum_t (S_t[p] - mu[p])^2, which is sqrt(K) times the population variance: for a
fixed K the two rank examples identically, and the class-normalised scores below are equal. We keep
the plain population variance, whose value does not depend on how many checkpoints were taken.

Class normalisation (the paper's, and our default for ranking): within each true class c,
    (VoG - mean_c) / std_c   (population std; 0 where a class has one example or no spread).
Gradient magnitudes differ a lot between classes (a bag's logit moves with more pixels than a
sandal's), so raw VoG would fill the queue with the examples of one or two classes; normalised, the
queue holds the examples that are atypical *for their class* — the mislabelled, ambiguous or rare
ones a reviewer should see. Both scores are reported.
"""
from __future__ import annotations

import numpy as np


def vog(gradients) -> np.ndarray:
    """[K, N, ...features] input gradients at K checkpoints -> [N] raw VoG (mean over feature
    positions of the population variance across checkpoints)."""
    gradients = np.asarray(gradients)
    if gradients.dtype.kind != "f":
        gradients = gradients.astype(np.float64)
    if gradients.ndim < 3:
        raise ValueError(f"gradients of shape {gradients.shape}; expected [K checkpoints, N "
                         "examples, features...] with at least one feature axis")
    if gradients.shape[0] < 2:
        raise ValueError(f"VoG needs gradients at >= 2 checkpoints, got {gradients.shape[0]}: "
                         "the variance across one checkpoint is always 0")
    # population variance (ddof=0) across checkpoints, two-pass (stable) in the gradients' own
    # precision (TensorFlow's float32: 2.6x faster than float64, relative difference ~1e-8); the
    # mean over features in float64
    variance = gradients.var(axis=0)
    return variance.reshape(variance.shape[0], -1).mean(axis=1, dtype=np.float64)


def class_normalized(scores, labels) -> np.ndarray:
    """(score - mean_c) / std_c within each true class c (population std); 0 where std_c is 0."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    if scores.shape != labels.shape or scores.ndim != 1:
        raise ValueError(f"scores {scores.shape} and labels {labels.shape} must be the same "
                         "1-D shape (one per example)")
    result = np.zeros_like(scores)
    for label in np.unique(labels):
        members = labels == label
        spread = scores[members].std()
        if spread > 0:
            result[members] = (scores[members] - scores[members].mean()) / spread
    return result


def top_k(scores, ids, k: int) -> np.ndarray:
    """Positions of the k highest scores, highest first; ties broken by id (ascending), so the
    queue is the same whatever order the examples came in."""
    scores, ids = np.asarray(scores, dtype=np.float64), np.asarray(ids)
    if scores.shape != ids.shape or scores.ndim != 1:
        raise ValueError(f"scores {scores.shape} and ids {ids.shape} must be the same 1-D shape")
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    return np.lexsort((ids, -scores))[:k]
