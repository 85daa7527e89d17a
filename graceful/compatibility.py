"""Backward compatibility of embeddings: can new-model queries search an old-model gallery?

BCT (Shen et al., CVPR 2020) calls a new embedding compatible with the old one when
M(phi_new queries, phi_old gallery) > M(phi_old queries, phi_old gallery): re-indexing the gallery is
then unnecessary. M here is retrieval top-1 accuracy with cosine similarity. numpy only.
"""
from __future__ import annotations

import numpy as np


def _normalize(embeddings: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    return embeddings / np.maximum(norms, 1e-12)


def retrieval_top1(queries: np.ndarray, query_labels: np.ndarray, gallery: np.ndarray,
                   gallery_labels: np.ndarray) -> float:
    """Share of queries whose nearest gallery item (cosine) has the query's label."""
    if queries.shape[1] != gallery.shape[1]:
        raise ValueError(f"query embeddings have {queries.shape[1]} dimensions but the gallery has "
                         f"{gallery.shape[1]}; project the new embedding to the old size first.")
    nearest = np.argmax(_normalize(queries) @ _normalize(gallery).T, axis=1)
    return float(np.mean(gallery_labels[nearest] == query_labels))


def compatibility(new_embedding: np.ndarray, old_embedding: np.ndarray,
                  labels: np.ndarray) -> dict:
    """Splits the examples in half (gallery = first half, queries = second) and compares
    new-vs-old with old-vs-old retrieval; `compatible` is the BCT criterion."""
    half = len(labels) // 2
    gallery, gallery_labels = old_embedding[:half], labels[:half]
    new_old = retrieval_top1(new_embedding[half:], labels[half:], gallery, gallery_labels)
    old_old = retrieval_top1(old_embedding[half:], labels[half:], gallery, gallery_labels)
    return {"new_old_top1": new_old, "old_old_top1": old_old, "compatible": bool(new_old > old_old)}
