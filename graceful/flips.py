"""Negative-flip metrics: what a new classifier breaks that the old one got right.

Accuracy alone hides regressions: a new model can be more accurate overall and still get wrong
examples the old model got right (a *negative flip*). Users notice those, because something that
worked stops working. This module measures them for multiclass classifiers from plain arrays of
integer class ids, so the same numbers can be computed in a TFX component, a notebook or a test.

It depends on numpy only (no TFX, no TensorFlow) on purpose: the metrics must be cheap to test and
must not change when the pipeline stack does.

Definitions, over N examples with labels y, old predictions o and new predictions n:

    old_right = o == y,  new_right = n == y
    NFR  = mean(old_right & ~new_right)            negative flip rate, over ALL examples
    PFR  = mean(~old_right & new_right)            positive flip rate, over ALL examples
    NFI  = #negative flips / #errors of new model  share of the new errors that are regressions
    relative NFR = NFR / ((1 - err_old) * err_new) NFR relative to what independent errors would give
    BTC  = #(both right) / #(old right)            backward trust compatibility
    BEC  = #(both wrong) / #(old wrong)            backward error compatibility

Every ratio has a stated value when its denominator is zero (see `FlipSummary`), so results are
never NaN and always JSON-serialisable.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

DEFAULT_HIGH_CONFIDENCE = 0.9


@dataclasses.dataclass(frozen=True)
class FlipSummary:
    """Negative-flip metrics for one set of examples.

    Conventions when a denominator is zero (chosen so nothing is NaN and the "nothing to break"
    case reads as harmless):
      * nfi = 0.0 when the new model makes no errors (there are no errors to attribute to flips).
      * relative_nfr = 0.0 when (1 - err_old) * err_new == 0, i.e. the old model is never right or
        the new model is never wrong; NFR is necessarily 0 in both cases.
      * btc = 1.0 when the old model gets nothing right (there is no trust to break).
      * bec = 0.0 when the old model makes no errors (there are no old errors to repeat).
      * high_confidence_flips = 0 when no new-model probabilities were given.
    """

    examples: int
    old_accuracy: float
    new_accuracy: float
    negative_flips: int
    positive_flips: int
    nfr: float
    pfr: float
    nfi: float
    relative_nfr: float
    btc: float
    bec: float
    high_confidence_flips: int

    def to_dict(self) -> dict:
        """Plain Python ints and floats, so the result can go straight into json.dumps or MLMD."""
        out = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            out[field.name] = int(value) if field.type in ("int", int) else float(value)
        return out


# --------------------------------------------------------------------------------------------------
# Input validation: every public function goes through these, so a mismatch fails loudly and early
# instead of silently broadcasting or comparing the wrong examples.


def _class_ids(name: str, values: Any) -> np.ndarray:
    """Returns `values` as a 1-D int64 array of non-negative class ids, or raises ValueError."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(
            f"{name} must be 1-D (one class id per example) but has shape {arr.shape}; "
            f"if these are probabilities or one-hot rows, take argmax over the last axis first")
    if arr.size == 0:
        raise ValueError(f"{name} is empty; pass at least one example")
    if arr.dtype.kind == "b" or arr.dtype.kind not in "iuf":
        raise ValueError(
            f"{name} must hold integer class ids but has dtype {arr.dtype}; "
            f"map class names to integer ids first")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise ValueError(
                f"{name} holds non-integer values; pass class ids, not scores or probabilities")
    arr = arr.astype(np.int64)
    if np.any(arr < 0):
        raise ValueError(
            f"{name} has negative class ids (min {arr.min()}); class ids must be >= 0, "
            f"so drop unlabeled examples (e.g. -1) before comparing models")
    return arr


def _same_length(**arrays: np.ndarray) -> int:
    """Returns the common length of `arrays`, or raises ValueError naming the first mismatch."""
    names = list(arrays)
    first = names[0]
    n = len(arrays[first])
    for name in names[1:]:
        if len(arrays[name]) != n:
            raise ValueError(
                f"{first} has {n} entries but {name} has {len(arrays[name])}; "
                f"pass {name} for the same examples in the same order")
    return n


def _triple(labels, old_pred, new_pred) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y = _class_ids("labels", labels)
    o = _class_ids("old_pred", old_pred)
    n = _class_ids("new_pred", new_pred)
    _same_length(labels=y, old_pred=o, new_pred=n)
    return y, o, n


def _probabilities(new_prob: Any, new_pred: np.ndarray) -> np.ndarray:
    """Returns `new_prob` as a float [N, C] array consistent with `new_pred`, or raises ValueError."""
    prob = np.asarray(new_prob, dtype=np.float64)
    if prob.ndim != 2:
        raise ValueError(
            f"new_prob must be 2-D [examples, classes] but has shape {prob.shape}; "
            f"pass the new model's full probability matrix")
    if prob.shape[0] != len(new_pred):
        raise ValueError(
            f"new_pred has {len(new_pred)} entries but new_prob has {prob.shape[0]} rows; "
            f"pass probabilities for the same examples in the same order")
    if not np.all(np.isfinite(prob)) or np.any(prob < 0.0) or np.any(prob > 1.0):
        raise ValueError(
            "new_prob has values outside [0, 1]; pass probabilities (apply softmax to logits first)")
    if new_pred.size and new_pred.max() >= prob.shape[1]:
        raise ValueError(
            f"new_pred has class id {new_pred.max()} but new_prob has only {prob.shape[1]} columns; "
            f"pass one probability column per class")
    return prob


def _threshold(high_confidence: float) -> float:
    t = float(high_confidence)
    if not 0.0 <= t <= 1.0:
        raise ValueError(f"high_confidence must be a probability in [0, 1], got {high_confidence}")
    return t


# --------------------------------------------------------------------------------------------------
# Public API


def class_label(class_names, c, with_id: bool = False) -> str:
    """Class id `c` (an int or the reports' str key) as every report, gate line and message names
    it: its name in `class_names`, followed by the id in parentheses with `with_id` (e.g.
    "dog (1)"); the id alone without names or for an id beyond them."""
    names, c = class_names or (), int(c)
    if not 0 <= c < len(names):
        return str(c)
    return f"{names[c]} ({c})" if with_id else str(names[c])


def negative_flip_mask(labels, old_pred, new_pred) -> np.ndarray:
    """Boolean mask of negative flips: examples the old model got right and the new one gets wrong.

    This is the primitive every other metric is built on; use it to pull the flipped examples out
    of a dataset for inspection.
    """
    y, o, n = _triple(labels, old_pred, new_pred)
    return (o == y) & (n != y)


def flip_confidence(new_prob, new_pred) -> np.ndarray:
    """Probability the new model gives to the class it predicted, for every example.

    For a negative flip this is how sure the new model is of its wrong answer: a confident flip is
    worse than a coin-toss flip, because calibration-based fallbacks will not catch it. Mask the
    result with `negative_flip_mask` to keep only the flips.
    """
    n = _class_ids("new_pred", new_pred)
    prob = _probabilities(new_prob, n)
    return prob[np.arange(len(n)), n]


def rates(examples, old_right, new_right, negative_flips) -> dict:
    """NFR, relative NFR and the accuracy change (new - old) from counts: the one definition of these
    ratios, for plain ints (`summarize`), weighted float counts (graceful.tfma_flips) and arrays of
    counts, one per bootstrap resample (graceful.bootstrap), elementwise. Relative NFR is
    neg * N / (old_right * new_wrong), computed from counts so small cases are exact, and 0 when that
    denominator is 0 (see `FlipSummary`); NFR and the accuracy change are 0 without examples.
    """
    examples, old_right, new_right, negative_flips = (
        np.asarray(v, dtype=np.float64) for v in (examples, old_right, new_right, negative_flips))
    denominator = old_right * (examples - new_right)
    has_examples = examples > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        out = {"nfr": np.where(has_examples, negative_flips / examples, 0.0),
               "relative_nfr": np.where(denominator > 0,
                                        negative_flips * examples / denominator, 0.0),
               "accuracy_change": np.where(has_examples, (new_right - old_right) / examples, 0.0)}
    return {k: float(v) if v.ndim == 0 else v for k, v in out.items()}


def _summarize(y: np.ndarray, o: np.ndarray, n: np.ndarray,
               prob: np.ndarray | None, threshold: float) -> FlipSummary:
    """Computes the summary from already-validated arrays (shared by summarize and per_group)."""
    total = len(y)
    old_right = o == y
    new_right = n == y
    negative = old_right & ~new_right
    positive = ~old_right & new_right

    n_old_right = int(old_right.sum())
    n_old_wrong = total - n_old_right
    n_new_wrong = total - int(new_right.sum())
    n_neg = int(negative.sum())
    n_pos = int(positive.sum())
    n_both_right = int((old_right & new_right).sum())
    n_both_wrong = int((~old_right & ~new_right).sum())

    ratios = rates(total, n_old_right, total - n_new_wrong, n_neg)
    high = 0
    if prob is not None:
        confidence = prob[np.arange(total), n]
        high = int((negative & (confidence >= threshold)).sum())

    return FlipSummary(
        examples=total,
        old_accuracy=n_old_right / total,
        new_accuracy=(total - n_new_wrong) / total,
        negative_flips=n_neg,
        positive_flips=n_pos,
        nfr=ratios["nfr"],
        pfr=n_pos / total,
        nfi=n_neg / n_new_wrong if n_new_wrong else 0.0,
        relative_nfr=ratios["relative_nfr"],
        btc=n_both_right / n_old_right if n_old_right else 1.0,
        bec=n_both_wrong / n_old_wrong if n_old_wrong else 0.0,
        high_confidence_flips=high,
    )


def summarize(labels, old_pred, new_pred, new_prob=None,
              high_confidence: float = DEFAULT_HIGH_CONFIDENCE) -> FlipSummary:
    """All negative-flip metrics for one old/new model pair on one set of examples.

    `new_prob` ([N, C] probabilities of the new model) is optional; without it
    `high_confidence_flips` is 0. A negative flip counts as high-confidence when the new model gives
    its wrong class probability >= `high_confidence`.
    """
    y, o, n = _triple(labels, old_pred, new_pred)
    prob = None if new_prob is None else _probabilities(new_prob, n)
    return _summarize(y, o, n, prob, _threshold(high_confidence))


def per_group(labels, old_pred, new_pred, groups, new_prob=None,
              high_confidence: float = DEFAULT_HIGH_CONFIDENCE) -> dict:
    """`summarize` on each slice of the examples, keyed by group value (sorted).

    Overall NFR can look fine while one class or one slice regresses badly; pass `groups=labels`
    for per-class results, or any per-example feature array (e.g. a device type) for slices.
    Each value equals `summarize` on that subset. Keys are plain Python values (not numpy scalars).
    """
    y, o, n = _triple(labels, old_pred, new_pred)
    g = np.asarray(groups)
    if g.ndim != 1:
        raise ValueError(
            f"groups must be 1-D (one group value per example) but has shape {g.shape}")
    _same_length(labels=y, groups=g)
    prob = None if new_prob is None else _probabilities(new_prob, n)
    threshold = _threshold(high_confidence)

    result = {}
    for value in np.unique(g):
        keep = g == value
        key = value.item() if isinstance(value, np.generic) else value
        result[key] = _summarize(y[keep], o[keep], n[keep],
                                 None if prob is None else prob[keep], threshold)
    return result


def flip_matrix(labels, old_pred, new_pred, num_classes: int) -> np.ndarray:
    """[C, C] int counts of negative flips, row = old predicted class, column = new predicted class.

    On a negative flip the old prediction equals the label, so rows are also the true class. A
    concentrated cell (e.g. shirt -> T-shirt) points at a specific confusion the new model learned.
    The matrix sums to the number of negative flips and its diagonal is always zero.
    """
    y, o, n = _triple(labels, old_pred, new_pred)
    c = int(num_classes)
    if c <= 0:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    for name, arr in (("labels", y), ("old_pred", o), ("new_pred", n)):
        if arr.max() >= c:
            raise ValueError(
                f"{name} has class id {arr.max()} but num_classes is {c}; "
                f"pass num_classes greater than the largest class id")
    negative = (o == y) & (n != y)
    matrix = np.zeros((c, c), dtype=np.int64)
    np.add.at(matrix, (o[negative], n[negative]), 1)
    return matrix


def ranked_flips(labels, old_pred, new_pred, new_prob, ids) -> list[dict]:
    """Negative flips worst first: highest new-model confidence first, ties by id ascending.

    The most confident regressions are the ones to look at first (likely label noise in the old
    data, or a real confusion the new model learned). Each entry is a plain dict with keys
    id, label, old_pred, new_pred, confidence, ready for a report or a review UI.
    """
    y, o, n = _triple(labels, old_pred, new_pred)
    prob = _probabilities(new_prob, n)
    id_arr = np.asarray(ids)
    if id_arr.ndim != 1:
        raise ValueError(f"ids must be 1-D (one id per example) but has shape {id_arr.shape}")
    _same_length(labels=y, ids=id_arr)
    if len(np.unique(id_arr)) != len(id_arr):
        raise ValueError("ids has duplicates; pass one unique id per example so flips can be traced")

    confidence = prob[np.arange(len(n)), n]
    rows = [
        {
            "id": id_arr[i].item() if isinstance(id_arr[i], np.generic) else id_arr[i],
            "label": int(y[i]),
            "old_pred": int(o[i]),
            "new_pred": int(n[i]),
            "confidence": float(confidence[i]),
        }
        for i in np.flatnonzero((o == y) & (n != y))
    ]
    rows.sort(key=lambda row: (-row["confidence"], row["id"]))
    return rows
