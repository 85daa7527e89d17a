"""Probe: is an ensemble of new models (the NFR "paragon") a way to issue #17's NFR cut?

Same regime, old model and training loop as benchmarks/training.py, on each of its datasets: trains
`--teachers` plain +ema models of the new architecture (seeds 10, 11, ...; weights averaged as the
pipeline's default), scores their averaged logits as an ensemble (K times the inference cost), then
distils the ensemble into single new models (ELODI's idea of an ensemble target, here with fd_kl
and alpha=1, beta=0: distillation on every example, not only where the old model was right) for
`--seeds` student seeds, also averaged. Student time includes the teachers' training. Writes
benchmarks/results/ensemble_probe.json (a dataset's entry replaced, the others kept).

    .venv/bin/python -m benchmarks.ensemble_probe [--datasets mnist1d,fashion_mnist]   # repo root;
                                                  # ~15 min on 2 cores
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
import types
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from benchmarks import training as bench  # noqa: E402
from graceful import flips  # noqa: E402
from graceful.models.params import TrainingParams  # noqa: E402

STUDENTS = {"ensemble KD (T=1, λ=0.5) +ema": dict(temperature=1.0, lam=0.5),
            "ensemble KD (T=2, λ=0.8) +ema": dict(temperature=2.0, lam=0.8)}


class Ensemble:
    """The teachers as one model to train_model and predict: the mean of their logits."""

    def __init__(self, models):
        self.models = models

    def predict(self, inputs, **kwargs):
        return np.mean([model.predict(inputs, **kwargs) for model in self.models], axis=0)


def probe(dataset: bench.Dataset, args, result: dict, save) -> None:
    old_x, old_y, new_x, new_y, test_x, test_y = dataset.load()
    old_params = TrainingParams(architecture=dataset.old_architecture,
                                epochs=dataset.old_epochs or args.epochs, seed=0,
                                **bench.RAW_WEIGHTS)
    old_model, _ = bench.train_model(old_params, old_x, old_y, scale=dataset.scale)
    old_pred = bench.predict(old_model, test_x).argmax(1)
    entry = result["datasets"][dataset.name] = {
        "old_error": float(np.mean(old_pred != test_y)), "runs": [],
        "students": {method: dict(loss="fd_kl", alpha=1.0, beta=0.0, reference_step_factor=1.0,
                                  **changes) for method, changes in STUDENTS.items()}}

    def score(method, logits, seconds, seed=None):
        s = flips.summarize(test_y, old_pred, logits.argmax(1))
        entry["runs"].append({"method": method, "seed": seed, "error": 1 - s.new_accuracy,
                              "nfr": s.nfr, "rel_nfr": s.relative_nfr, "train_seconds": seconds})
        save()
        print(f"[{dataset.name}] {method:32s} seed {seed}: error {100 * (1 - s.new_accuracy):.2f}% "
              f"NFR {100 * s.nfr:.2f}% ({seconds:.0f}s)", flush=True)

    # Teachers and students train the epochs' steps (reference_step_factor 1, as when the probe's
    # results were taken), so a student's cost is one more training run.
    new_params = TrainingParams(architecture=dataset.new_architecture,
                                epochs=dataset.epochs or args.epochs, reference_step_factor=1.0)
    teachers, teacher_logits, teacher_seconds = [], [], 0.0
    for seed in range(10, 10 + args.teachers):
        started = time.monotonic()
        model, _ = bench.train_model(dataclasses.replace(new_params, loss="plain", seed=seed),
                                     new_x, new_y, scale=dataset.scale)
        seconds = time.monotonic() - started
        teacher_seconds += seconds
        teachers.append(model)
        teacher_logits.append(bench.predict(model, test_x))
        score("plain +ema", teacher_logits[-1], seconds, seed)
    score(f"ensemble of {args.teachers} plain +ema (paragon)", np.mean(teacher_logits, axis=0),
          teacher_seconds)
    # train_model reads the distillation target from reference.model (and, unused by fd_kl, an
    # embedding from reference.embedder): the ensemble stands in for the old model there.
    ensemble = Ensemble(teachers)
    target = types.SimpleNamespace(model=ensemble, embedder=ensemble)
    for seed in range(args.seeds):
        for method, changes in STUDENTS.items():
            params = dataclasses.replace(new_params, seed=seed, loss="fd_kl", alpha=1.0, beta=0.0,
                                         **changes)
            started = time.monotonic()
            model, _ = bench.train_model(params, new_x, new_y, target, scale=dataset.scale)
            score(method, bench.predict(model, test_x),
                  teacher_seconds + time.monotonic() - started, seed)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--teachers", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=5,
                        help="the new models' epochs where the dataset fixes none (Fashion-MNIST)")
    parser.add_argument("--datasets", default=",".join(bench.DATASETS))
    parser.add_argument("--out", default=str(bench.RESULTS / "ensemble_probe.json"))
    args = parser.parse_args()
    out = Path(args.out)
    stored = json.loads(out.read_text()) if out.exists() else {}
    result = {"machine": bench.machine(), "teachers": args.teachers,
              # other datasets' results stay (the probe runs one dataset at a time if asked)
              "datasets": stored.get("datasets", {}) if stored.get("teachers") == args.teachers
              else {}}
    save = lambda: out.write_text(json.dumps(result, indent=1))  # noqa: E731
    for name in args.datasets.split(","):
        probe(bench.DATASETS[name], args, result, save)


if __name__ == "__main__":
    main()
