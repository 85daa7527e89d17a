"""Golden examples: a team's list of examples that must never flip, checked on every run.

Why a list of its own: the NFR limits are rates, so a handful of examples a team cares about most
(the demo images, a customer's reported cases, regressions fixed before) can flip while every rate
stays inside its limit. Golden examples are named by the ids the FlipEvaluator already gives every
example (graceful.model_check.example_ids: the data contract's id feature, or a hash of the
example's bytes) and come from `GateConfig.golden_ids` and/or a file of ids (`golden_ids_file`, one
id a line, `#` comments; read by the FlipEvaluator through TFX's fileio, so it may be a gs:// URI and
may change without recompiling the pipeline). Or the golden examples themselves: a fixed set of
tf.Examples outside the spans (`golden_examples`, a file pattern), every one golden, scored by the
FlipEvaluator in the same Beam pass as the eval split and counted in no other number.

A golden flip is a negative flip (graceful.flips) of a golden example: the baseline got it right,
the candidate gets it wrong. More than `GateConfig.max_golden_flips` (default 0) blocks the run.
A configured golden id that is not in the evaluated examples is never silently passed over: the
run is blocked with a line naming the ids, since a guarantee on an example nobody checked is no
guarantee (fix the ids, or add the examples to the eval split).

TFX-free (numpy only) so the check has millisecond tests; the FlipEvaluator applies it.
"""
from __future__ import annotations

import numpy as np

from graceful import flips

MAX_NAMED = 5  # golden flips / missing ids named in a gate failure line (the report lists all)


def parse_ids(text: str) -> list[str]:
    """Ids from a golden-ids file: one a line; blank lines and `#` comments are ignored."""
    return [line.split("#", 1)[0].strip() for line in text.splitlines()
            if line.split("#", 1)[0].strip()]


def as_id_type(golden_ids, ids: np.ndarray, source: str = "golden ids") -> np.ndarray:
    """`golden_ids` (ints or strings, from a config or a file) in the dtype of the examples' `ids`:
    integers for integer ids (a non-integer golden id is an error naming it), else strings."""
    golden = list(golden_ids)
    if ids.dtype.kind in "iu":
        try:
            return np.array([int(str(g).strip()) for g in golden], dtype=np.int64)
        except ValueError as error:
            raise ValueError(f"{source}: the examples' ids are integers, but a golden id is not "
                             f"({error}); list the examples' integer ids") from None
    return np.array([str(g) for g in golden], dtype=str)


def check(golden_ids, ids, labels, old_pred, new_pred) -> dict:
    """The report's "golden" section for golden ids `golden_ids` on the evaluated examples (`ids`,
    any order, with their labels and both models' predicted classes):
      configured  distinct golden ids configured
      found       how many of them are among the examples
      missing     the configured ids not among the examples (sorted)
      flipped     the golden negative flips, [{id, label, old_pred, new_pred}] by id
      wrong       golden examples the candidate gets wrong (flipped or not)."""
    ids = np.asarray(ids)
    golden = np.unique(as_id_type(golden_ids, ids))
    mask = flips.negative_flip_mask(labels, old_pred, new_pred)
    is_golden = np.isin(ids, golden)
    found = np.unique(ids[is_golden])
    labels, new_pred, old_pred = (np.asarray(a) for a in (labels, new_pred, old_pred))
    # An example both evaluated and in the golden files counts once (its first row); the
    # FlipEvaluator has checked that the two sources give it one label.
    once = np.zeros(len(ids), bool)
    once[np.unique(ids, return_index=True)[1]] = True
    is_golden &= once
    rows = [{"id": ids[i].item(), "label": int(labels[i]), "old_pred": int(old_pred[i]),
             "new_pred": int(new_pred[i])}
            for i in np.flatnonzero(is_golden & mask)]
    return {"configured": int(golden.size), "found": int(found.size),
            "missing": [g.item() for g in np.setdiff1d(golden, found)],
            "flipped": sorted(rows, key=lambda row: row["id"]),
            "wrong": int(np.sum(is_golden & (new_pred != labels)))}


def failures(golden: dict | None, max_golden_flips: int, class_names=()) -> list[str]:
    """Gate failure lines of a "golden" section (first in the verdict): the golden flips beyond
    `max_golden_flips`, each named with its class and both predictions, and missing golden ids."""
    if not golden:
        return []
    name = lambda c: flips.class_label(class_names, c)  # noqa: E731
    lines = []
    flipped = golden["flipped"]
    if len(flipped) > max_golden_flips:
        named = [f"golden example {f['id']} ({name(f['label'])}) flipped: old "
                 f"{name(f['old_pred'])} → new {name(f['new_pred'])}" for f in flipped[:MAX_NAMED]]
        more = (f" and {len(flipped) - MAX_NAMED} more (the report's golden section lists them)"
                if len(flipped) > MAX_NAMED else "")
        lines.append("; ".join(named) + more + f"; {len(flipped)} golden "
                     f"flip{'s' * (len(flipped) != 1)} > max_golden_flips {max_golden_flips}")
    missing = golden["missing"]
    if missing:
        shown = ", ".join(str(m) for m in missing[:MAX_NAMED])
        more = f" and {len(missing) - MAX_NAMED} more" if len(missing) > MAX_NAMED else ""
        lines.append(f"{len(missing)} of {golden['configured']} golden ids not in the evaluated "
                     f"examples: {shown}{more}; they cannot be checked. Fix GateConfig.golden_ids "
                     "/ golden_ids_file, or add those examples to the eval split")
    return lines


def summary_line(golden: dict, max_golden_flips: int) -> str:
    """One line for the text report and the sign-off message."""
    line = (f"golden examples: {len(golden['flipped'])} of {golden['found']} flipped "
            f"(max_golden_flips {max_golden_flips}); candidate wrong on {golden['wrong']}")
    if golden["missing"]:
        line += f"; {len(golden['missing'])} configured ids missing from the eval data"
    return line
