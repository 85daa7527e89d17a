"""Weight interpolation for warm start, the maths: numpy only, no TFX, no TensorFlow.

A candidate that starts from the served model's weights and is then fine-tuned on the new data keeps
much of what the served model got right. Weight interpolation (BCWI, "backward-compatible weight
interpolation") goes one step further: after training, the exported weights are

    theta(alpha) = alpha * theta_new + (1 - alpha) * theta_old

for an alpha in (0, 1] chosen on held-out data: the one with the fewest negative flips vs the old
model among those that lose no accuracy vs alpha = 1 (the fine-tuned model itself), up to
ACCURACY_TOLERANCE. Interpolating only makes sense between weights of the same architecture that
share an origin (fine-tuning from theta_old): `architecture_mismatch` says whether two models'
layers line up one to one (class, weight shapes, configuration), and `interpolate` refuses weight
lists that do not.

graceful.models.warm_start applies this to Keras models (graceful's run_fn); the numbers here are
what its unit tests check in milliseconds.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from graceful import flips

AUTO = "auto"   # TrainingParams.warm_start_alpha: choose alpha on held-out data
# alpha = 0 is the served model itself (nothing learnt from the new data), so the grid starts above.
GRID = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
# "No accuracy loss": held-out accuracy at least that of alpha = 1 minus this (0.1 points, i.e. one
# example in a thousand), so a tie that sampling noise breaks either way does not forbid a
# smaller alpha.
ACCURACY_TOLERANCE = 0.001
# Share of the newest span's training examples kept out of training to choose alpha on (data the
# served model never saw: on its own training data it looks better than it is).
HELD_OUT_PERCENT = 10


def parse_alpha(text: str) -> float | None:
    """TrainingParams.warm_start_alpha -> None for "auto" (choose on held-out data), else the fixed
    alpha in [0, 1] ("1" = export the fine-tuned weights as they are)."""
    if str(text).strip().lower() == AUTO:
        return None
    try:
        alpha = float(text)
    except ValueError:
        alpha = float("nan")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"warm_start_alpha must be 'auto' or a number in [0, 1] (1 = no "
                         f"interpolation, 0 = the served model's weights), got {text!r}")
    return alpha


@dataclasses.dataclass(frozen=True)
class LayerWeights:
    """One layer of a model, in order (weightless layers too): its name, its class, the shapes of
    its weights in order and its configuration (Keras get_config() without what may legitimately
    differ between two builds of one architecture, see graceful.models.warm_start; None when the
    layer has none to compare)."""

    name: str
    kind: str
    shapes: tuple
    config: dict | None = dataclasses.field(default=None, compare=False)

    def describe(self) -> str:
        shapes = ", ".join(str(tuple(shape)) for shape in self.shapes)
        return f"layer {self.name!r} ({self.kind}, weights {shapes or 'none'})"


def _flatten(value, prefix: str = "") -> dict:
    if isinstance(value, dict):
        items = {}
        for key in value:
            items.update(_flatten(value[key], f"{prefix}.{key}" if prefix else str(key)))
        return items or {prefix: {}}
    if isinstance(value, (list, tuple)):
        items = {}
        for number, item in enumerate(value):
            items.update(_flatten(item, f"{prefix}[{number}]"))
        return items or {prefix: []}
    return {prefix: value}


def config_difference(old: dict, new: dict) -> str | None:
    """None when two layer configurations are equal, else the first setting that differs, as
    "setting: old vs new" (nested settings dotted, e.g. "activation: 'relu' vs 'tanh'")."""
    before, after = _flatten(old), _flatten(new)
    for key in list(before) + [key for key in after if key not in before]:
        if key not in after:
            return f"{key}: {before[key]!r} vs not set"
        if key not in before:
            return f"{key}: not set vs {after[key]!r}"
        if before[key] != after[key] and not (isinstance(before[key], (list, tuple))
                                              and list(before[key]) == list(after[key])):
            return f"{key}: {before[key]!r} vs {after[key]!r}"
    return None


def architecture_mismatch(old: Sequence[LayerWeights], new: Sequence[LayerWeights]) -> str | None:
    """None when `new`'s layers match `old`'s one to one, in order (same count; each of the same
    class, with the same weight shapes and, where both have one, the same configuration; layer
    names may differ, as Keras numbers them per process), else a sentence naming the first layer
    that differs in both models and what differs."""
    for number, (before, after) in enumerate(zip(old, new), 1):
        where = (f"layer {number} differs: served {before.describe()}, candidate "
                 f"{after.describe()}")
        if before.kind != after.kind:
            return f"{where}: another layer class"
        if [tuple(s) for s in before.shapes] != [tuple(s) for s in after.shapes]:
            return f"{where}: other weight shapes"
        if before.config is not None and after.config is not None:
            difference = config_difference(before.config, after.config)
            if difference:
                return f"{where}: another configuration, {difference} (served vs candidate)"
    if len(old) != len(new):
        shorter, longer, which = (old, new, "candidate") if len(old) < len(new) else (
            new, old, "served model")
        return (f"the served model has {len(old)} layers, the candidate {len(new)}; the "
                f"{which} goes on with {longer[len(shorter)].describe()}")
    return None


def interpolate(new_weights: Sequence[np.ndarray], old_weights: Sequence[np.ndarray],
                alpha: float) -> list[np.ndarray]:
    """alpha * new + (1 - alpha) * old, weight by weight (in the new weights' dtype). Weights that
    are not floating point (step counters, ...) are taken from the new model."""
    if len(new_weights) != len(old_weights):
        raise ValueError(f"cannot interpolate {len(new_weights)} weights with {len(old_weights)}: "
                         "the models do not share an architecture")
    out = []
    for number, (new, old) in enumerate(zip(new_weights, old_weights)):
        new, old = np.asarray(new), np.asarray(old)
        if new.shape != old.shape:
            raise ValueError(f"weight {number}: shape {new.shape} (new) vs {old.shape} (old); "
                             "the models do not share an architecture")
        if not np.issubdtype(new.dtype, np.floating):
            out.append(new.copy())
            continue
        mixed = alpha * new.astype(np.float64) + (1.0 - alpha) * old.astype(np.float64)
        out.append(mixed.astype(new.dtype))
    return out


@dataclasses.dataclass(frozen=True)
class AlphaScore:
    """Held-out accuracy and negative flip rate vs the old model of theta(alpha)."""

    alpha: float
    accuracy: float
    nfr: float
    examples: int

    @classmethod
    def of(cls, alpha: float, labels, old_pred, new_pred) -> "AlphaScore":
        summary = flips.summarize(labels, old_pred, new_pred)
        return cls(float(alpha), summary.new_accuracy, summary.nfr, summary.examples)


def choose_alpha(scores: Sequence[AlphaScore],
                 tolerance: float = ACCURACY_TOLERANCE) -> AlphaScore:
    """Among the alphas whose accuracy is at least that of alpha = 1 minus `tolerance`, the one with
    the lowest NFR (ties: higher accuracy, then larger alpha). alpha = 1 must be among `scores`: it
    is the fine-tuned model the others are compared with, and always a valid answer."""
    full = [score for score in scores if score.alpha == 1.0]
    if not full:
        raise ValueError(f"choose_alpha needs the score of alpha = 1 (the fine-tuned model) to "
                         f"compare with; got alphas {[score.alpha for score in scores]}")
    floor = full[0].accuracy - tolerance
    eligible = [score for score in scores if score.accuracy >= floor]
    return min(eligible, key=lambda score: (score.nfr, -score.accuracy, -score.alpha))
