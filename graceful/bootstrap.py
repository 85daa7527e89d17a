"""Paired bootstrap confidence intervals for the flip metrics: how much of a number is noise.

Two models that differ only in their training seed disagree on a few percent of the test images, the
same order as the flip limits, so a point NFR of 0.031 against a limit of 0.03 says little on its own.
This module resamples the eval examples with replacement and recomputes, on each resample, NFR,
relative NFR, NFR within each class (class = true label, as `graceful.flips.per_group(..., labels)`)
and the accuracy change (new - old) from the SAME resampled rows of (labels, old predictions, new
predictions): the pairing keeps the two models' correlation, so the interval of a difference is as
narrow as the data allow. Intervals are percentile intervals of the resampled values.

Every ratio comes from `graceful.flips.rates` (the one definition, also behind `summarize`), applied
to arrays of counts. Vectorised with the multinomial-counts trick: a resample is a vector of how many
times each example was drawn, so every count a metric needs for all resamples is a sum of those
counts: the overall counts one matrix product (resample counts [B, N] @ per-example indicators
[N, 3]), the per-class counts one product with a sparse [N, 2C] class one-hot (scipy.sparse, at
most 2N non-zeros), so no dense N x C class indicator is ever built. Memory: a few [b, N] float64
chunks of at most `_CHUNK_DRAWS` cells (~8 MB each), O(N) per-example arrays, and the result's
B x (3 + 2C) floats (16 MB at 1000 resamples x 1000 classes), whatever N; the sums are of whole
numbers, so exact in any order. 10k examples x 1000 resamples take 0.11 s (median of 15, a shared
2-core machine; benchmarks/bootstrap.py). numpy and scipy.sparse only (no TFX).
"""
from __future__ import annotations

import dataclasses

import numpy as np
from scipy import sparse

from graceful import flips

DEFAULT_RESAMPLES = 1000
DEFAULT_LEVEL = 0.95
DEFAULT_SEED = 0
# Draws per chunk (resamples x examples): bounds each chunk's indices and counts to ~8 MB apiece
# whatever the eval set's size (the per-class sums use a sparse one-hot, not an N x C matrix); the
# random stream, and so the result, does not depend on it.
_CHUNK_DRAWS = 1_000_000


@dataclasses.dataclass(frozen=True)
class Intervals:
    """Percentile intervals (lower, upper) at confidence `level` over `resamples` paired resamples
    drawn with `seed`; per_class is keyed by class id (the true label)."""

    level: float
    resamples: int
    seed: int
    nfr: tuple[float, float]
    relative_nfr: tuple[float, float]
    accuracy_change: tuple[float, float]
    per_class: dict

    def to_dict(self) -> dict:
        """The flip report's "intervals": plain floats, [lower, upper] lists, class ids as strings
        (the report's per_class keys)."""
        pair = lambda bounds: [float(bounds[0]), float(bounds[1])]  # noqa: E731
        return {"level": float(self.level), "resamples": int(self.resamples),
                "seed": int(self.seed), "nfr": pair(self.nfr),
                "relative_nfr": pair(self.relative_nfr),
                "accuracy_change": pair(self.accuracy_change),
                "per_class": {str(c): pair(b) for c, b in sorted(self.per_class.items())}}


def resample_counts(examples: int, resamples: int, rng: np.random.Generator):
    """Chunks of [b, examples] float arrays: how often each example is drawn in each resample (each
    row sums to `examples`), `resamples` rows in all, drawn in order from `rng`."""
    chunk = max(1, _CHUNK_DRAWS // examples)
    for start in range(0, resamples, chunk):
        rows = min(chunk, resamples - start)
        drawn = rng.integers(0, examples, size=(rows, examples))
        drawn += np.arange(rows)[:, None] * examples
        yield np.bincount(drawn.ravel(), minlength=rows * examples).reshape(
            rows, examples).astype(np.float64)


def resampled(labels, old_pred, new_pred, resamples: int = DEFAULT_RESAMPLES,
              seed: int = DEFAULT_SEED) -> dict:
    """The metrics on each of `resamples` paired resamples: {"nfr", "relative_nfr",
    "accuracy_change": [resamples] arrays, "per_class": {class id: [resamples] NFR}}. A class
    absent from a resample has no NFR there (NaN, left out of its interval): counting it as 0
    would pull a small class's interval down to 0."""
    y, o, n = flips._triple(labels, old_pred, new_pred)
    if int(resamples) < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    old_right, new_right = o == y, n == y
    negative = old_right & ~new_right
    indicators = np.column_stack([old_right, new_right, negative]).astype(np.float64)
    # Per-class counts through a sparse [N, 2C] one-hot (in class, negative flip in class): nnz <= 2N.
    classes, class_of = np.unique(y, return_inverse=True)
    rows = np.arange(len(y))
    one_hot = sparse.csc_matrix(
        (np.ones(len(y) + int(negative.sum())),
         (np.r_[rows, rows[negative]], np.r_[class_of, class_of[negative] + len(classes)])),
        shape=(len(y), 2 * len(classes)))

    def sums_of(counts):
        return np.hstack([counts @ indicators, (one_hot.T @ counts.T).T])
    sums = np.concatenate([sums_of(counts) for counts in
                           resample_counts(len(y), int(resamples), np.random.default_rng(seed))])
    k = len(classes)
    overall = flips.rates(len(y), sums[:, 0], sums[:, 1], sums[:, 2])
    in_resample = sums[:, 3:3 + k]
    class_nfr = np.where(in_resample > 0,
                         flips.rates(in_resample, 0, 0, sums[:, 3 + k:])["nfr"], np.nan)
    return {**overall, "per_class": {int(c): class_nfr[:, i] for i, c in enumerate(classes)}}


def intervals(labels, old_pred, new_pred, level: float = DEFAULT_LEVEL,
              resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED) -> Intervals:
    """Paired bootstrap percentile intervals at confidence `level` (e.g. 0.95: the 2.5th and 97.5th
    percentiles) of NFR, relative NFR, per-class NFR and the accuracy change."""
    if not 0.0 < float(level) < 1.0:
        raise ValueError(f"level must be a confidence in (0, 1), e.g. 0.95, got {level}")
    values = resampled(labels, old_pred, new_pred, resamples, seed)
    tails = [(1.0 - level) / 2.0, (1.0 + level) / 2.0]

    def bounds(v):  # a class absent from every resample (a handful of examples): no information
        return (0.0, 1.0) if np.isnan(v).all() else tuple(float(q) for q in np.nanquantile(v, tails))
    return Intervals(level=float(level), resamples=int(resamples), seed=int(seed),
                     nfr=bounds(values["nfr"]), relative_nfr=bounds(values["relative_nfr"]),
                     accuracy_change=bounds(values["accuracy_change"]),
                     per_class={c: bounds(v) for c, v in values["per_class"].items()})


def with_interval(value: float, interval=None, spec: str = ".4f") -> str:
    """A value with its interval as the gate, report page, `graceful history`/`report` and the
    sign-off show it, e.g. "0.0218 [0.0190, 0.0244]"; the value alone without an interval."""
    if interval is None:
        return format(value, spec)
    return f"{value:{spec}} [{interval[0]:{spec}}, {interval[1]:{spec}}]"


def shown(report: dict) -> dict:
    """A flip report's headline values with their intervals, as the page and `graceful report` show
    them: {"accuracy_change", "nfr", "relative_nfr"} strings (values alone in an older report)."""
    summary, bounds = report["summary"], report.get("intervals") or {}
    return {"accuracy_change": with_interval(summary["new_accuracy"] - summary["old_accuracy"],
                                             bounds.get("accuracy_change"), "+.4f"),
            "nfr": with_interval(summary["nfr"], bounds.get("nfr")),
            "relative_nfr": with_interval(summary["relative_nfr"], bounds.get("relative_nfr"),
                                          ".3f")}


def describe(intervals: dict, flip_bound: str = "point") -> str:
    """The caption of a report's "intervals" and what the gate judged (GateConfig.flip_bound), e.g.
    "in brackets: 95% paired bootstrap intervals over the eval examples (1000 resamples); the gate
    judges point values"."""
    judged = "point values" if flip_bound == "point" else f"their {flip_bound} bounds"
    return (f"in brackets: {intervals['level']:.0%} paired bootstrap intervals over the eval "
            f"examples ({intervals['resamples']} resamples); the gate judges {judged}")
