"""Probe: is an ensemble of new models (the NFR "paragon") a way to the ≥ 40% NFR cut of issue #3?

Same regime as benchmarks/training.py (old = small MLP on span 1, new = CNN on spans 1+2, 5 epochs,
10k test images): trains `--teachers` plain CNNs (the plain baseline too), scores their averaged
logits as an ensemble, then distils the ensemble into single CNNs (fd_kl with α=1, β=0: distillation
on every example) for `--seeds` student seeds. Writes benchmarks/results/ensemble_probe.json.

    .venv/bin/python -m benchmarks.ensemble_probe        # from the repo root; ≈ 4 min on 2 cores
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from benchmarks.training import RESULTS, machine, predict  # noqa: E402
from graceful import data, flips  # noqa: E402
from graceful.models import training  # noqa: E402
from graceful.models.params import TrainingParams  # noqa: E402

STUDENTS = {"ensemble KD (T=1, λ=0.5)": dict(temperature=1.0, lam=0.5),
            "ensemble KD (T=2, λ=0.8)": dict(temperature=2.0, lam=0.8)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--teachers", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--span-size", type=int, default=20000)
    parser.add_argument("--out", default=str(RESULTS / "ensemble_probe.json"))
    args = parser.parse_args()
    train, test = data.load("train"), data.load("test")
    scale = lambda pixels: pixels.astype(np.float32) / 255.0  # noqa: E731  as the pipeline does
    old_x, old_y = scale(train.images[:args.span_size]), train.labels[:args.span_size]
    new_x, new_y = scale(train.images[:2 * args.span_size]), train.labels[:2 * args.span_size]
    test_x, test_y = scale(test.images), test.labels
    quiet = lambda _: None  # noqa: E731
    old, _, _ = training.train(TrainingParams(architecture="small", seed=0), old_x, old_y, log=quiet)
    old_pred = predict(old, test_x).argmax(1)
    result = {"machine": machine(), "old_error": float(np.mean(old_pred != test_y)), "runs": []}

    def score(method, test_logits, seconds, seed=None):
        s = flips.summarize(test_y, old_pred, test_logits.argmax(1))
        result["runs"].append({"method": method, "seed": seed, "error": 1 - s.new_accuracy,
                               "nfr": s.nfr, "rel_nfr": s.relative_nfr, "train_seconds": seconds})
        Path(args.out).write_text(json.dumps(result, indent=1))
        print(f"{method:28s} seed {seed}: error {100 * (1 - s.new_accuracy):.2f}% "
              f"NFR {100 * s.nfr:.2f}% ({seconds:.0f}s)", flush=True)

    teacher_train, teacher_test, teacher_seconds = [], [], 0.0
    for seed in range(10, 10 + args.teachers):
        started = time.monotonic()
        model, _, _ = training.train(TrainingParams(architecture="cnn", seed=seed), new_x, new_y,
                                     log=quiet)
        seconds = time.monotonic() - started
        teacher_seconds += seconds
        teacher_train.append(predict(model, new_x))
        teacher_test.append(predict(model, test_x))
        score("plain", teacher_test[-1], seconds, seed)
    score(f"ensemble of {args.teachers} (paragon)", np.mean(teacher_test, axis=0), teacher_seconds)
    ensemble_logits = np.mean(teacher_train, axis=0).astype(np.float32)
    reference = training.Reference(old)  # only gates the distillation path; the teacher is the ensemble
    for seed in range(args.seeds):
        for method, changes in STUDENTS.items():
            params = TrainingParams(architecture="cnn", seed=seed, loss="fd_kl", alpha=1.0,
                                    beta=0.0, **changes)
            started = time.monotonic()
            model, _, _ = training.train(params, new_x, new_y, reference, ensemble_logits, log=quiet)
            score(method, predict(model, test_x), teacher_seconds + time.monotonic() - started, seed)


if __name__ == "__main__":
    main()
