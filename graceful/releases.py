"""Flips against earlier releases: the candidate against each of the last N pushed models, not only
the last one (the baseline), so a model that re-breaks what an older release had right is visible.

Per earlier release R (newest first; the first is the baseline itself), on the same eval examples:
  nfr, negative_flips   graceful.flips on (labels, R's predictions, the candidate's): examples R
                        got right that the candidate gets wrong
  rebroken              examples R got right, the baseline got wrong and the candidate gets wrong
                        too: something an earlier release got right, lost since and not won back.
                        0 for the baseline itself.
`GateConfig.max_history_nfr` (default 1.0: informational) limits the NFR against each release.

TFX-free (numpy only); the FlipEvaluator runs the models (one pass, graceful's pipeline resolves
the releases with components/release_history) and applies this.
"""
from __future__ import annotations

import numpy as np

from graceful import flips

MAX_LISTED = 50  # re-broken example ids listed per release
NONE_RESOLVED = ("GateConfig.history_models is set, but no earlier pushed model was resolved: none "
                 "pushed yet, or a runner that cannot compile the release-history resolver "
                 "(Kubeflow v2, where PipelineConfig.cross_run_window is off)")


def compare(release: dict, ids, labels, baseline_pred, new_pred, release_pred) -> dict:
    """One release's entry of the report's "history" section: `release` ({"model_id", "uri"})
    with the candidate's flips against it (see the module docstring)."""
    summary = flips.summarize(labels, release_pred, new_pred)
    labels, baseline_pred, new_pred, release_pred = (
        np.asarray(a) for a in (labels, baseline_pred, new_pred, release_pred))
    rebroken = (release_pred == labels) & (baseline_pred != labels) & (new_pred != labels)
    return {**release, "examples": summary.examples, "accuracy": summary.old_accuracy,
            "negative_flips": summary.negative_flips, "nfr": summary.nfr,
            "relative_nfr": summary.relative_nfr, "rebroken": int(rebroken.sum()),
            "rebroken_ids": [np.asarray(ids)[i].item()
                             for i in np.flatnonzero(rebroken)[:MAX_LISTED]]}


def failures(history: list[dict] | None, max_history_nfr: float) -> list[str]:
    """One gate failure line per earlier release whose NFR exceeds `max_history_nfr`."""
    return [f"NFR vs earlier release {h['model_id']} ({position} back) "
            f"{h['nfr']:.4f} > max_history_nfr {max_history_nfr:.4g} ({h['negative_flips']} of "
            f"{h['examples']} examples; {h['rebroken']} re-broken)"
            for position, h in enumerate(history or [], 1) if h["nfr"] > max_history_nfr]


def summary_lines(history: list[dict]) -> list[str]:
    """The text report's lines: one per release, newest first."""
    return [f"  model {h['model_id']}: accuracy {h['accuracy']:.4f}, NFR {h['nfr']:.4f} "
            f"({h['negative_flips']} of {h['examples']}), re-broken {h['rebroken']}"
            for h in history]
