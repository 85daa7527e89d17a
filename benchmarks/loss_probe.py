"""Probe: issue #17's other loss ideas, on the dataset where distillation helps least (MNIST-1D).

Same regime, old model, training loop and pairing by seed as benchmarks/training.py (every variant
exports the weight average, momentum 0.99, and trains the epochs' steps: reference_step_factor 1). Each variant replaces the focal-distillation objective
for its runs only (graceful.losses.focal_distillation_loss, patched in this process: the variants
are not pipeline losses, none earned a place there):

  * ce reweighted (b)     — cross-entropy weighted 1 + b where the old model was right (normalised)
  * confident fd_kl       — fd_kl's distillation only where the old model was right with p >= 0.9
  * class-balanced fd_kl  — focal weights divided by the old model's accuracy on the example's class
                            (within the batch), so classes the old model rarely gets right count as
                            much as the easy ones
  * fd_kl where new wrong — CE + mu * KL only on examples the old model gets right and the new model
                            currently gets wrong (the would-be flips)
  * lam ramped up / down  — fd_kl with lam growing from 0 to its value by mid-training / decaying
                            linearly to 0 (a curriculum on lam)

plus plain +ema and fd_kl (lam 0.5) +ema as the references. Writes
benchmarks/results/loss_probe.json and prints, per variant, the mean error and NFR and the mean
paired changes vs plain +ema.

    .venv/bin/python -m benchmarks.loss_probe [--seeds 2]    # from the repo root; ~5 min on 2 cores
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks import training as bench  # noqa: E402
from graceful import losses  # noqa: E402
from graceful.models import training  # noqa: E402
from graceful.models.params import TrainingParams  # noqa: E402

DATASET = "mnist1d"
FD = dict(loss="fd_kl", temperature=1.0, alpha=0.0, beta=1.0, lam=0.5)
VARIANTS = {  # name -> (objective variant or None = the pipeline's own loss, TrainingParams changes)
    "plain +ema": (None, dict(loss="plain")),
    "fd_kl +ema": (None, FD),
    "ce reweighted b=1": (dict(kind="reweighted", b=1.0), FD),
    "ce reweighted b=3": (dict(kind="reweighted", b=3.0), FD),
    "confident fd_kl p>=0.9": (dict(kind="confident", p=0.9), FD),
    "class-balanced fd_kl": (dict(kind="class_balanced"), FD),
    "fd_kl where new wrong, mu=1": (dict(kind="new_wrong", mu=1.0), FD),
    "lam ramped up to 0.5": (dict(kind="ramp_up"), FD),
    "lam ramped down from 0.5": (dict(kind="ramp_down"), FD),
}
BASELINE = "plain +ema"


def variant_loss(variant: dict, total_steps: int):
    """A stand-in for losses.focal_distillation_loss computing `variant`'s objective."""
    step = tf.Variable(0.0, trainable=False)

    def loss(new_logits, old_logits, labels, params, kind="fd_kl"):
        new = losses.two_class_logits(tf.convert_to_tensor(new_logits, tf.float32))
        old = tf.stop_gradient(tf.cast(losses.two_class_logits(old_logits), new.dtype))
        y = tf.reshape(tf.cast(labels, tf.int64), [-1])
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=new)
        right = tf.cast(tf.equal(tf.argmax(old, -1), y), new.dtype)
        kl = losses.kl_divergence(new, old, params.temperature)
        lam = params.lam
        if variant["kind"] == "reweighted":
            weights = 1.0 + variant["b"] * right
            return tf.reduce_sum(weights * ce) / tf.reduce_sum(weights)
        if variant["kind"] == "new_wrong":
            wrong = tf.cast(tf.not_equal(tf.argmax(new, -1), y), new.dtype)
            return tf.reduce_mean(ce) + variant["mu"] * tf.reduce_mean(right * wrong * kl)
        if variant["kind"] == "confident":
            p_true = tf.gather(tf.nn.softmax(old), y, batch_dims=1)
            weights = right * tf.cast(p_true >= variant["p"], new.dtype)
        elif variant["kind"] == "class_balanced":
            onehot = tf.one_hot(y, tf.shape(old)[-1], dtype=new.dtype)
            class_accuracy = (tf.reduce_sum(onehot * right[:, None], 0)
                              / tf.maximum(tf.reduce_sum(onehot, 0), 1.0))
            weights = right * tf.reduce_mean(right) / tf.maximum(
                tf.gather(class_accuracy, y), 1e-3)
        else:  # ramp_up / ramp_down
            progress = step.assign_add(1.0) / total_steps
            lam = lam * (tf.minimum(1.0, 2.0 * progress) if variant["kind"] == "ramp_up"
                         else 1.0 - progress)
            weights = right
        return (1 - lam) * tf.reduce_mean(ce) + lam * tf.reduce_mean(weights * kl)

    return loss


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--out", default=str(bench.RESULTS / "loss_probe.json"))
    args = parser.parse_args()
    tf.get_logger().setLevel("ERROR")
    dataset = bench.DATASETS[DATASET]
    old_x, old_y, new_x, new_y, test_x, test_y = dataset.load()
    old_params = TrainingParams(architecture=dataset.old_architecture, epochs=dataset.old_epochs,
                                seed=0, **bench.RAW_WEIGHTS)
    old_model, _ = bench.train_model(old_params, old_x, old_y, scale=dataset.scale)
    old_pred = bench.predict(old_model, test_x).argmax(1)
    reference = bench.as_reference(old_model, tempfile.mkdtemp(prefix="graceful-old-model-"))
    result = {"machine": bench.machine(), "dataset": DATASET,
              "old_error": float(np.mean(old_pred != test_y)),
              "variants": {name: {"objective": variant, "params": changes}
                           for name, (variant, changes) in VARIANTS.items()}, "runs": []}
    original = losses.focal_distillation_loss
    for seed in range(args.seeds):
        for name, (variant, changes) in VARIANTS.items():
            params = dataclasses.replace(TrainingParams(architecture=dataset.new_architecture,
                                                        epochs=dataset.epochs, seed=seed,
                                                        reference_step_factor=1.0), **changes)
            steps = training.Schedule(len(new_y), params, distilling=True).total_steps
            losses.focal_distillation_loss = (original if variant is None
                                              else variant_loss(variant, steps))
            try:
                _, metrics = bench.run_method(params, new_x, new_y, reference, test_x, test_y,
                                              old_pred, dataset.scale)
            finally:
                losses.focal_distillation_loss = original
            result["runs"].append({"variant": name, "seed": seed,
                                   "params": dataclasses.asdict(params), **metrics})
            Path(args.out).write_text(json.dumps(result, indent=1))
            print(f"{name:30s} seed {seed}: error {100 * metrics['error']:.2f}% NFR "
                  f"{100 * metrics['nfr']:.2f}%", flush=True)
    result["summary"] = summarize(result["runs"])
    Path(args.out).write_text(json.dumps(result, indent=1))
    for name, row in result["summary"].items():
        print(f"{name:30s} error {100 * row['error']:.2f}% NFR {100 * row['nfr']:.2f}% | vs "
              f"{BASELINE}: NFR {100 * row['nfr_change']:+.0f}%, error "
              f"{row['error_change_points']:+.2f} points")


def summarize(runs) -> dict:
    """Per variant: mean error and NFR over seeds, mean NFR change and error change (points) vs
    BASELINE, paired by seed."""
    base = {run["seed"]: run for run in runs if run["variant"] == BASELINE}
    out = {}
    for name in dict.fromkeys(run["variant"] for run in runs):
        group = [run for run in runs if run["variant"] == name and run["seed"] in base]
        out[name] = {
            "seeds": len(group),
            "error": statistics.mean(run["error"] for run in group),
            "nfr": statistics.mean(run["nfr"] for run in group),
            "nfr_change": statistics.mean(run["nfr"] / base[run["seed"]]["nfr"] - 1
                                          for run in group),
            "error_change_points": statistics.mean(
                100 * (run["error"] - base[run["seed"]]["error"]) for run in group)}
    return out


if __name__ == "__main__":
    main()
