"""Benchmark: do focal distillation / BCT cut negative flips vs plain retraining, and at what cost?

Regime of issue #3: old = small MLP on span 1 (20k images); new = CNN on spans 1+2 (40k); eval on the
10k Fashion-MNIST test images. Same training loop as the pipeline (models.training.train), fed from
memory. Each method runs with several seeds; the reference model's logits are computed once per run and that forward pass
is counted in the method's train_seconds. A small sweep over (lam, T, alpha, beta) maps the
error-vs-NFR frontier.

    .venv/bin/python benchmarks/training.py [--seeds 3] [--epochs 5] [--no-sweep] [--methods a,b]
    .venv/bin/python benchmarks/training.py --seeds 0 --no-sweep --time-repeats 3 \
        --out benchmarks/results/training_time.json    # time ratios from interleaved runs

Writes benchmarks/results/training.json (raw runs; fractions) and frontier.png beside it, and prints
a table.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

from graceful import compatibility, data, flips  # noqa: E402
from graceful.contract import ModelContract  # noqa: E402
from graceful.models import architectures, distillation, training  # noqa: E402
from graceful.models.params import TrainingParams  # noqa: E402

RESULTS = Path(__file__).parent / "results"
PAPER = dict(temperature=100.0, alpha=1.0, beta=5.0, lam=0.9)
FD = dict(temperature=1.0, alpha=0.0, beta=1.0, lam=0.5)
RAW_WEIGHTS = dict(ema_momentum=0.0)  # export the last weights, not their moving average
METHODS = {  # name -> params changed from TrainingParams defaults
    "plain": dict(loss="plain", **RAW_WEIGHTS),
    "fd_kl paper (T=100 a=1 b=5 lam=0.9)": dict(loss="fd_kl", **PAPER, **RAW_WEIGHTS),
    "fd_kl": dict(loss="fd_kl", **FD, **RAW_WEIGHTS),
    "fd_lm": dict(loss="fd_lm", alpha=0.0, beta=1.0, lam=0.05, **RAW_WEIGHTS),
    "fd_margin": dict(loss="fd_margin", alpha=0.0, beta=1.0, lam=0.5, margin=1.0, **RAW_WEIGHTS),
    "bct": dict(loss="bct", lambda_bct=1.0, lambda_align=0.0, **RAW_WEIGHTS),
    "bct+fd": dict(loss="bct+fd", **FD, lambda_bct=1.0, lambda_align=0.0, **RAW_WEIGHTS),
    "bct+fd+align": dict(loss="bct+fd", **FD, lambda_bct=1.0, lambda_align=1.0, **RAW_WEIGHTS),
    # The same losses, exporting the moving average of the weights (ema_momentum=0.99).
    "plain +ema": dict(loss="plain"),
    "fd_kl +ema": dict(loss="fd_kl", **FD),
    "bct+fd+align +ema (pipeline default)": dict(),
}
TIMED = ("plain", "fd_kl +ema", "bct+fd+align +ema (pipeline default)")
PLAIN_METHODS = ("plain", "plain +ema")  # seed-vs-seed NFR = how much flipping is pure noise
SWEEP = [dict(loss="fd_kl", temperature=t, alpha=a, beta=b, lam=lam)
         for t, a, b, lam in [(1, 0, 1, 0.3), (1, 0, 1, 0.7), (2, 0, 1, 0.3), (2, 0, 1, 0.5),
                              (4, 0, 1, 0.5), (1, 1, 0, 0.5), (1, 1, 5, 0.5), (1, 0, 1, 0.9)]]
SWEEP += [dict(loss="fd_margin", alpha=0.0, beta=1.0, lam=lam, margin=m)
          for lam, m in [(0.3, 0.0), (0.5, 2.0), (0.7, 1.0)]]


def machine() -> dict:
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "python": platform.python_version()}


def predict(model, inputs):
    return model.predict({"pixels": inputs}, batch_size=4096, verbose=0)


LOGITS = ModelContract(scores="logits", embedding_layer=architectures.EMBEDDING_LAYER)


def load_spans(span_size: int):
    """(old_x, old_y, new_x, new_y, test_x, test_y): span 1 (the first `span_size` training
    images), spans 1+2 and the 10k test images, pixels as float32 (the models scale them)."""
    train, test = data.load("train"), data.load("test")
    to_inputs = lambda pixels: pixels.astype(np.float32)  # noqa: E731
    return (to_inputs(train.images[:span_size]), train.labels[:span_size],
            to_inputs(train.images[:2 * span_size]), train.labels[:2 * span_size],
            to_inputs(test.images), test.labels)


def train_model(params, train_x, train_y, reference=None, start=None):
    """graceful's training loop (models.training.train) on in-memory arrays: the reference's
    logits and embeddings computed once, then shuffled batches as the pipeline streams them.
    `start(model)`, if given, is called on the freshly built model first (warm start)."""
    keras.utils.set_random_seed(params.seed)
    model = architectures.build(params.architecture, embedding_layer=LOGITS.embedding_layer)
    if start is not None:
        start(model)
    loss = params.loss if reference is not None else "plain"
    extras = {}
    if loss != "plain":
        extras[training.OLD_LOGITS] = predict(reference.model, train_x)
        extras[training.OLD_EMBEDDING] = reference.embedder.predict(
            {"pixels": train_x}, batch_size=4096, verbose=0)
    schedule = training.Schedule(len(train_y), params)
    batches = (tf.data.Dataset.from_tensor_slices(({"pixels": train_x}, train_y, extras))
               .shuffle(len(train_y), seed=params.seed, reshuffle_each_iteration=True)
               .batch(params.batch_size).repeat().take(schedule.total_steps))
    projection = training.train(model, batches, schedule, loss, LOGITS,
                                reference if loss.startswith("bct") else None, log=lambda _: None)
    return model, projection


def as_reference(model, directory):
    """The old model as the pipeline sees it: saved, then loaded back for BCT."""
    model.save(directory, save_format="tf")
    return distillation.KerasReference(directory, LOGITS.embedding_layer)


def compatibility_report(model, projection, reference, test_x, test_y):
    embedder = distillation.split_embedding(model, LOGITS.embedding_layer, "new model")
    new = projection(embedder.predict({"pixels": test_x}, batch_size=4096, verbose=0)).numpy()
    old = reference.embedder.predict({"pixels": test_x}, batch_size=4096, verbose=0)
    return {"comparable": True, **compatibility.compatibility(new, old, test_y)}


def run_method(params, train_x, train_y, reference, test_x, test_y, old_pred):
    started = time.monotonic()
    model, projection = train_model(params, train_x, train_y, reference)
    seconds = time.monotonic() - started
    new_pred = predict(model, test_x).argmax(1)
    summary = flips.summarize(test_y, old_pred, new_pred)
    metrics = {"error": 1 - summary.new_accuracy, "nfr": summary.nfr,
               "rel_nfr": summary.relative_nfr, "train_seconds": seconds}
    if projection is not None:  # BCT: can new queries search the old gallery?
        metrics["compatibility"] = compatibility_report(model, projection, reference, test_x,
                                                        test_y)
    return new_pred, metrics


def table(runs) -> str:
    by_method = {}
    for run in runs:
        by_method.setdefault(run["method"], []).append(run)
    plain = by_method["plain"]
    plain_seconds = statistics.median(r["train_seconds"] for r in plain)
    plain_nfr = statistics.mean(r["nfr"] for r in plain)
    averaged_nfr = statistics.mean(r["nfr"] for r in by_method.get("plain +ema", plain))
    lines = ["| method | new error | NFR | rel. NFR | NFR vs plain | NFR vs plain +ema | "
             "train time vs plain | seeds |", "|---|---|---|---|---|---|---|---|"]
    for method, group in by_method.items():
        mean = lambda key: statistics.mean(r[key] for r in group)  # noqa: E731
        std = lambda key: statistics.pstdev(r[key] for r in group)  # noqa: E731
        lines.append(
            f"| {method} | {100 * mean('error'):.2f}% ± {100 * std('error'):.2f} | "
            f"{100 * mean('nfr'):.2f}% ± {100 * std('nfr'):.2f} | {mean('rel_nfr'):.3f} | "
            f"{100 * (mean('nfr') / plain_nfr - 1):+.0f}% | "
            f"{100 * (mean('nfr') / averaged_nfr - 1):+.0f}% | "
            f"{statistics.median(r['train_seconds'] for r in group) / plain_seconds:.2f}× | "
            f"{len(group)} |")
    return "\n".join(lines)


def plot(runs, sweep, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for run in sweep:
        ax.scatter(100 * run["error"], 100 * run["nfr"], c="lightgray", s=25)
    methods = sorted({r["method"] for r in runs})
    colors = plt.get_cmap("tab20").colors
    for number, method in enumerate(methods):
        group = [r for r in runs if r["method"] == method]
        ax.scatter([100 * r["error"] for r in group], [100 * r["nfr"] for r in group], label=method,
                   s=40 if "+ema" in method else 25, marker="*" if "+ema" in method else "o",
                   color=colors[number % len(colors)])
    ax.set_xlabel("new-model error (%)")
    ax.set_ylabel("negative flip rate (%)")
    ax.set_title("Fashion-MNIST: small MLP (span 1) -> CNN (spans 1+2)\n"
                 "gray = sweep (fd_kl / fd_margin, weights averaged)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--span-size", type=int, default=20000)
    parser.add_argument("--no-sweep", action="store_true")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help="comma-separated subset of the methods (default: all)")
    parser.add_argument("--time-repeats", type=int, default=0,
                        help="then time the TIMED methods N times, interleaved, seed 0 (the VM's "
                             "speed drifts, so ratios come from neighbouring runs)")
    parser.add_argument("--out", default=str(RESULTS / "training.json"))
    args = parser.parse_args()

    old_x, old_y, new_x, new_y, test_x, test_y = load_spans(args.span_size)

    # Warm-up: the first training in a process pays TensorFlow's one-time start-up costs; keep them
    # out of the timed runs so the time ratios compare methods, not start-up.
    train_model(TrainingParams(architecture="cnn", max_steps=2), old_x[:256], old_y[:256])
    # The old model as in the issue's reference runs (last weights), so results stay comparable.
    old_params = TrainingParams(architecture="small", epochs=args.epochs, seed=0, **RAW_WEIGHTS)
    old_model, _ = train_model(old_params, old_x, old_y)
    old_pred = predict(old_model, test_x).argmax(1)
    old_error = float(np.mean(old_pred != test_y))
    print(f"old model (small MLP on {len(old_y)}): error {100 * old_error:.2f}%", flush=True)
    reference = as_reference(old_model, tempfile.mkdtemp(prefix="graceful-old-model-"))

    result = {"machine": machine(), "setup": {
        "old": dataclasses.asdict(old_params), "old_train_examples": len(old_y),
        "new_train_examples": len(new_y), "eval_examples": len(test_y), "old_error": old_error},
        "runs": [], "sweep": [], "plain_seed_pairs": [], "timing": {}}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    plain_preds = {}

    def record(kind, method, changes, seed):
        params = dataclasses.replace(TrainingParams(architecture="cnn", epochs=args.epochs,
                                                    seed=seed), **changes)
        pred, metrics = run_method(params, new_x, new_y, reference, test_x, test_y, old_pred)
        run = {"method": method, "loss": params.loss, "params": dataclasses.asdict(params),
               "seed": seed, **metrics}
        result[kind].append(run)
        out.write_text(json.dumps(result, indent=1))
        print(f"{kind:5s} {method:45s} seed {seed}: error {100 * metrics['error']:.2f}% "
              f"NFR {100 * metrics['nfr']:.2f}% ({metrics['train_seconds']:.0f}s)", flush=True)
        return pred

    for seed in range(args.seeds):
        for method in args.methods.split(","):
            pred = record("runs", method, METHODS[method], seed)
            if method in PLAIN_METHODS:
                plain_preds.setdefault(method, {})[seed] = pred
    for method, preds in plain_preds.items():
        for a in sorted(preds):
            for b in [seed for seed in sorted(preds) if seed > a]:
                s = flips.summarize(test_y, preds[a], preds[b])
                result["plain_seed_pairs"].append({"method": method, "seeds": [a, b], "nfr": s.nfr})
    if not args.no_sweep:
        for changes in SWEEP:
            label = ", ".join(f"{k}={v}" for k, v in changes.items())
            record("sweep", label, changes, 0)
    for _ in range(args.time_repeats):
        for method in TIMED:
            params = dataclasses.replace(TrainingParams(architecture="cnn", epochs=args.epochs),
                                         **METHODS[method])
            _, metrics = run_method(params, new_x, new_y, reference, test_x, test_y, old_pred)
            result["timing"].setdefault(method, []).append(metrics["train_seconds"])
            out.write_text(json.dumps(result, indent=1))
    for method, seconds in result["timing"].items():
        ratio = statistics.median(seconds) / statistics.median(result["timing"]["plain"])
        print(f"training time {method}: median {statistics.median(seconds):.1f}s = {ratio:.2f}x plain")
    out.write_text(json.dumps(result, indent=1))
    if result["sweep"]:
        plot(result["runs"], result["sweep"], out.with_name("frontier.png"))
    if result["runs"]:
        print(table(result["runs"]))
    for method in plain_preds:
        noise = [p["nfr"] for p in result["plain_seed_pairs"] if p["method"] == method]
        if noise:
            print(f"NFR between '{method}' models differing only in seed: "
                  f"{100 * statistics.mean(noise):.2f}%")


if __name__ == "__main__":
    main()
