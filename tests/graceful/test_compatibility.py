"""Retrieval top-1 and the BCT compatibility criterion on hand-made embeddings."""
import numpy as np
import pytest

from graceful.compatibility import compatibility, retrieval_top1


def test_top1_counts_nearest_neighbour_labels():
    gallery = np.array([[1.0, 0.0], [0.0, 1.0]])
    queries = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    # nearest: 0, 1, 0 -> labels 0, 1, 0 vs query labels 0, 1, 1 -> 2 of 3
    assert retrieval_top1(queries, np.array([0, 1, 1]), gallery, np.array([0, 1])) == 2 / 3


def test_cosine_ignores_scale():
    gallery = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert retrieval_top1(np.array([[100.0, 1.0]]), np.array([0]), gallery, np.array([0, 1])) == 1.0


def test_dimension_mismatch_is_explained():
    with pytest.raises(ValueError, match="project the new embedding"):
        retrieval_top1(np.ones((2, 3)), np.zeros(2), np.ones((2, 2)), np.zeros(2))


def test_criterion_compares_new_old_with_old_old():
    labels = np.array([0, 1, 0, 1])
    old = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0]])   # old queries: both wrong
    new = np.array([[9.0, 9.0], [9.0, 9.0], [1.0, 0.1], [0.1, 1.0]])   # new queries: both right
    result = compatibility(new, old, labels)
    assert result == {"new_old_top1": 1.0, "old_old_top1": 0.0, "compatible": True}
