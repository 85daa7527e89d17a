"""Benchmark: warm start from the served model (± weight interpolation) vs training from scratch.

Warm start needs the served model's architecture, so the regime is a data update of the SAME
architecture: old = small MLP on span 1 (20k Fashion-MNIST images), new = small MLP on spans 1+2
(40k), eval on the 10k test images; error, NFR and relative NFR vs the old model, and training time
(for interpolation, choosing alpha on the held-out examples included). Same training loop as the
pipeline (models.training.train via benchmarks/training.py's train_model, fed from memory), the
same warm-start code (models.warm_start.ServedWeights, choose_alpha; graceful.interpolation).

Methods (each with --seeds seeds; the old model is one, seed 0, as in benchmarks/training.py):
  * scratch plain                  — loss plain, last weights
  * scratch, bct+fd+align +ema      — loss bct+fd with alignment, weight averaging, the epochs'
                                     steps (the pipeline's default recipe before issue #17)
  * warm start plain (alpha 1)      — starts from the old weights, loss plain, last weights
  * warm start plain + interpolation — the same, then alpha chosen on a held-out 10% of span 2
    (kept out of training; as the pipeline does, from the newest span only, which the old model
    never saw; the pipeline hashes serialized examples, here a fixed random 10% of the arrays)
  * warm start + bct+fd+align + interpolation — what `graceful run --warm-start` did before
    issue #17 changed the default loss

    .venv/bin/python -m benchmarks.warm_start [--seeds 3] [--epochs 5] [--span-size 20000]   # from the repo root

Writes benchmarks/results/warm_start.json (raw runs, per-method mean/std/median/min/max) and prints
the README table.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks import training as bench  # noqa: E402
from graceful import flips, interpolation  # noqa: E402
from graceful.models import warm_start  # noqa: E402
from graceful.models.params import TrainingParams  # noqa: E402

ARCHITECTURE = "small"
PLAIN = dict(loss="plain", **bench.RAW_WEIGHTS)
BCT_FD_ALIGN = dict(bench.METHODS["bct+fd+align +ema"], reference_step_factor=1.0)
METHODS = {  # name -> (TrainingParams changes, warm start, alpha: None = chosen on held-out data)
    "scratch plain": (PLAIN, False, 1.0),
    "scratch, bct+fd+align +ema": (BCT_FD_ALIGN, False, 1.0),
    "warm start plain (alpha 1)": (PLAIN, True, 1.0),
    "warm start plain + interpolation": (PLAIN, True, None),
    "warm start + bct+fd+align + interpolation": (BCT_FD_ALIGN, True, None),
}
BASELINE = "scratch plain"
METRICS = ("error", "nfr", "rel_nfr", "train_seconds")


def spread(values) -> dict:
    values = list(values)
    return {"mean": statistics.mean(values), "std": statistics.pstdev(values),
            "median": statistics.median(values), "min": min(values), "max": max(values)}


def summarize(runs) -> dict:
    by_method = {}
    for run in runs:
        by_method.setdefault(run["method"], []).append(run)
    out = {}
    for method, group in by_method.items():
        out[method] = {key: spread(run[key] for run in group) for key in METRICS}
        alphas = [run["alpha"] for run in group]
        out[method]["alpha"] = {"values": alphas, "median": statistics.median(alphas)}
        out[method]["seeds"] = len(group)
    return out


def table(summary) -> str:
    base_nfr = summary[BASELINE]["nfr"]["mean"]
    base_seconds = summary[BASELINE]["train_seconds"]["median"]
    lines = ["| method | error | NFR | rel. NFR | NFR vs scratch plain | train time (median) | "
             "alpha | seeds |", "|---|---|---|---|---|---|---|---|"]
    for method, s in summary.items():
        lines.append(
            f"| {method} | {100 * s['error']['mean']:.2f}% ± {100 * s['error']['std']:.2f} | "
            f"{100 * s['nfr']['mean']:.2f}% ± {100 * s['nfr']['std']:.2f} | "
            f"{s['rel_nfr']['mean']:.3f} ± {s['rel_nfr']['std']:.3f} | "
            f"{100 * (s['nfr']['mean'] / base_nfr - 1):+.0f}% | "
            f"{s['train_seconds']['median']:.1f} s ({s['train_seconds']['median'] / base_seconds:.2f}×) | "
            f"{', '.join(f'{a:g}' for a in s['alpha']['values'])} | {s['seeds']} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--span-size", type=int, default=20000)
    parser.add_argument("--out", default=str(bench.RESULTS / "warm_start.json"))
    args = parser.parse_args()
    tf.get_logger().setLevel("ERROR")  # Keras' retracing notes on each model.predict

    old_x, old_y, new_x, new_y, test_x, test_y = bench.load_spans(args.span_size)
    # Held out as the pipeline does: from the newest span only (the old model never saw it).
    order = args.span_size + np.random.default_rng(12345).permutation(args.span_size)
    cut = args.span_size * interpolation.HELD_OUT_PERCENT // 100
    held = np.sort(order[:cut])
    kept = np.setdiff1d(np.arange(len(new_y)), held)

    # Warm-up: TensorFlow's one-time start-up costs stay out of the timed runs.
    bench.train_model(TrainingParams(architecture=ARCHITECTURE, max_steps=2), old_x[:256],
                      old_y[:256])
    old_params = TrainingParams(architecture=ARCHITECTURE, epochs=args.epochs, seed=0,
                                **bench.RAW_WEIGHTS)
    old_model, _ = bench.train_model(old_params, old_x, old_y)
    old_pred = bench.predict(old_model, test_x).argmax(1)
    old_error = float(np.mean(old_pred != test_y))
    print(f"old model ({ARCHITECTURE} on {len(old_y)}): error {100 * old_error:.2f}%", flush=True)
    served_dir = tempfile.mkdtemp(prefix="graceful-old-model-")
    reference = bench.as_reference(old_model, served_dir)
    served = warm_start.ServedWeights(served_dir)
    old_held_pred = bench.predict(old_model, new_x[held]).argmax(1)

    result = {"machine": bench.machine(), "setup": {
        "architecture": ARCHITECTURE, "old": dataclasses.asdict(old_params),
        "old_train_examples": len(old_y), "new_train_examples": len(new_y),
        "held_out_examples": len(held), "eval_examples": len(test_y), "old_error": old_error,
        "alpha_grid": list(interpolation.GRID),
        "accuracy_tolerance": interpolation.ACCURACY_TOLERANCE},
        "methods": {name: {"changes": changes, "warm_start": warm,
                           "alpha": "auto" if alpha is None else alpha}
                    for name, (changes, warm, alpha) in METHODS.items()},
        "runs": []}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    scratch_preds = {}
    for seed in range(args.seeds):
        for method, (changes, warm, alpha) in METHODS.items():
            params = dataclasses.replace(TrainingParams(architecture=ARCHITECTURE,
                                                        epochs=args.epochs, seed=seed), **changes)
            x, y = (new_x[kept], new_y[kept]) if alpha is None else (new_x, new_y)
            start = (lambda model: served.start(model, "benchmark")) if warm else None
            started = time.monotonic()
            model, _ = bench.train_model(params, x, y, reference, start=start)
            scores = []
            if alpha is None:
                alpha, scores = warm_start.choose_alpha(
                    model, served, new_y[held], old_held_pred,
                    lambda candidate: bench.predict(candidate, new_x[held]).argmax(1),
                    log=lambda _: None)
            seconds = time.monotonic() - started
            new_pred = bench.predict(model, test_x).argmax(1)
            if method == BASELINE:
                scratch_preds[seed] = new_pred
            s = flips.summarize(test_y, old_pred, new_pred)
            result["runs"].append({
                "method": method, "seed": seed, "params": dataclasses.asdict(params),
                "error": 1 - s.new_accuracy, "nfr": s.nfr, "rel_nfr": s.relative_nfr,
                "train_seconds": seconds, "alpha": alpha,
                "held_out_scores": [dataclasses.asdict(score) for score in scores]})
            out.write_text(json.dumps(result, indent=1))
            print(f"{method:48s} seed {seed}: error {100 * (1 - s.new_accuracy):.2f}% NFR "
                  f"{100 * s.nfr:.2f}% alpha {alpha:g} ({seconds:.0f}s)", flush=True)
    result["summary"] = summarize(result["runs"])
    result["scratch_seed_pairs_nfr"] = [
        flips.summarize(test_y, scratch_preds[a], scratch_preds[b]).nfr
        for a in sorted(scratch_preds) for b in sorted(scratch_preds) if b > a]
    out.write_text(json.dumps(result, indent=1))
    print(table(result["summary"]))
    if result["scratch_seed_pairs_nfr"]:
        print(f"NFR between scratch-plain models differing only in seed: "
              f"{100 * statistics.mean(result['scratch_seed_pairs_nfr']):.2f}%")


if __name__ == "__main__":
    main()
