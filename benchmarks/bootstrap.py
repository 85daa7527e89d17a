"""How wide the gate's noise is, and what the bootstrap costs: benchmarks/results/bootstrap.json.

1. Cost: graceful.bootstrap.intervals on 10k examples x 10 classes x 1000 resamples (synthetic,
   seeded), the median of `--repeats` timings.
2. Width: the 95% paired bootstrap intervals of NFR, relative NFR, per-class NFR and the accuracy
   change on real predictions (the FlipEvaluator's per-file shards of a run, e.g. a `graceful demo`
   home's pipeline_root/FlipEvaluator/flip_report/<id>/predictions), at all the run's examples and
   on seeded subsets of 1/4 and 1/16 of them, and the verdict of the default GateConfig in each
   flip_bound mode. The shards are read in the report's order (by id), so the intervals at all the
   examples are the report's.

    .venv/bin/python benchmarks/bootstrap.py --shards HOME/pipeline_root/FlipEvaluator/flip_report/34/predictions ...
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import time

import numpy as np

from graceful import bootstrap, flips, gate

RESULT = os.path.join(os.path.dirname(__file__), "results", "bootstrap.json")


def synthetic(n: int, classes: int = 10, seed: int = 0):
    """Labels and two correlated models' predictions (~85% and ~88% right, ~2-3% flips)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    wrong = lambda: (y + rng.integers(1, classes, n)) % classes  # noqa: E731
    old = np.where(rng.random(n) < 0.85, y, wrong())
    fresh = np.where(rng.random(n) < 0.88, y, wrong())
    return y, old, np.where(rng.random(n) < 0.8, old, fresh)


def timing(n: int, resamples: int, repeats: int) -> dict:
    y, old, new = synthetic(n)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        bootstrap.intervals(y, old, new, resamples=resamples)
        seconds.append(time.perf_counter() - start)
    return {"examples": n, "classes": 10, "resamples": resamples, "repeats": repeats,
            "median_seconds": round(statistics.median(seconds), 4),
            "min_seconds": round(min(seconds), 4),
            # the machine is shared: the 1-minute load average (2 cores) says how idle it was
            "load_average": round(os.getloadavg()[0], 2), "cpus": os.cpu_count()}


def read_shards(shard_dir: str):
    """(labels, old_pred, new_pred) of every shard, ordered by id as build_report orders them."""
    from graceful.components.flip_evaluator.executor import read_predictions
    batches = read_predictions(shard_dir)
    ids, labels, old, new = (np.concatenate([b[i] for b in batches]) for i in range(4))
    order = np.argsort(ids, kind="stable")
    return labels[order], old[order], new[order]


def widths(labels, old, new, level: float) -> dict:
    """Point values, intervals and widths of the four interval-gated metrics, and the default
    GateConfig's failures in each flip_bound mode."""
    summary = flips.summarize(labels, old, new).to_dict()
    per_class = {str(k): v.to_dict() for k, v in flips.per_group(labels, old, new, labels).items()}
    intervals = bootstrap.intervals(labels, old, new, level).to_dict()
    points = {"nfr": summary["nfr"], "relative_nfr": summary["relative_nfr"],
              "accuracy_change": summary["new_accuracy"] - summary["old_accuracy"]}
    class_widths = [hi - lo for lo, hi in intervals["per_class"].values()]
    return {
        "examples": len(labels),
        "point": points,
        "interval": {k: intervals[k] for k in points},
        "width": {k: round(intervals[k][1] - intervals[k][0], 5) for k in points},
        "class_nfr_width": {"median": round(float(np.median(class_widths)), 5),
                            "max": round(float(np.max(class_widths)), 5)},
        "verdicts": {mode: gate.failures(gate.GateConfig(flip_bound=mode), summary, per_class,
                                         intervals=intervals)
                     for mode in gate.FLIP_BOUNDS},
    }


def subset(arrays, fraction: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    keep = rng.permutation(len(arrays[0]))[:int(len(arrays[0]) * fraction)]
    return tuple(a[keep] for a in arrays)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", nargs="*", default=[],
                        help="FlipEvaluator predictions folders of real runs")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--level", type=float, default=bootstrap.DEFAULT_LEVEL)
    args = parser.parse_args()
    result = {"timing": [timing(n, bootstrap.DEFAULT_RESAMPLES, args.repeats)
                         for n in (1000, 10000, 60000)],
              "level": args.level, "resamples": bootstrap.DEFAULT_RESAMPLES, "runs": []}
    for shard_dir in args.shards:
        arrays = read_shards(shard_dir)
        result["runs"].append({"shards": shard_dir, "at": {
            str(fraction): widths(*subset(arrays, fraction) if fraction < 1 else arrays,
                                  args.level)
            for fraction in (1.0, 0.25, 0.0625)}})
    result["defaults"] = {k: v for k, v in dataclasses.asdict(gate.GateConfig()).items()
                          if k in ("max_nfr", "max_relative_nfr", "max_class_nfr",
                                   "max_accuracy_drop", "flip_bound", "confidence",
                                   "bootstrap_resamples")}
    os.makedirs(os.path.dirname(RESULT), exist_ok=True)
    with open(RESULT, "w") as handle:
        json.dump(result, handle, indent=1)
    print(json.dumps(result["timing"]))
    for run in result["runs"]:
        for fraction, numbers in run["at"].items():
            print(run["shards"], fraction, numbers["examples"], numbers["point"], numbers["width"],
                  numbers["class_nfr_width"],
                  {m: len(v) for m, v in numbers["verdicts"].items()})


if __name__ == "__main__":
    main()
