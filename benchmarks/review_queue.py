"""Benchmark: what the review queue (VoG, graceful.models.review) costs next to the training run.

Regime of the demo: the real GracefulTrainer (graceful's run_fn, default TrainingParams: the `small`
model, 5 epochs, batch 128, weight averaging; plain, as a first run) on a 20k-image Fashion-MNIST
span whose eval split is the 10k test images, each run a fresh process (benchmarks/training_memory.py's
one-node TFX pipeline). With the queue at its defaults (review_checkpoints, review_top_k), the run's
own numbers give the ratio: the queue's seconds (review_queue.json: reading and deduplicating the
eval files, input gradients at every checkpoint, VoG, ids, the top-k's pixels) over the training
loop's (training_summary.json), in one run. Runs without the queue (review_checkpoints=0) are
interleaved with them, for the whole process's wall time with and without.

    .venv/bin/python benchmarks/review_queue.py [--repeats 3] [--span-size 20000]

Writes benchmarks/results/review_queue.json. History: with all 10,000 test images ranked the queue
took 0.83-0.90 s, 10.1-10.9% of quiet runs' training, so review.MAX_EXAMPLES became 5,000.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import training_memory

from graceful.models.params import TrainingParams
from graceful.models.review import QUEUE_FILE

RESULTS = Path(__file__).parent / "results"
OFF = dict(loss="plain", review_checkpoints=0)
ON = dict(loss="plain")  # the defaults: review_checkpoints, review_top_k


def one_run(examples: Path, work: Path, epochs: int, params: dict) -> dict:
    run = training_memory.measure(examples, "", work, epochs, params)
    [run_dir] = Path(work, "root", "Trainer", "model_run").iterdir()
    queue = run_dir / QUEUE_FILE
    result = {"train_seconds": run["train_seconds"], "process_seconds": run["child_seconds"],
              "peak_rss_mb": run["peak_rss_mb"]}
    if queue.exists():
        document = json.loads(queue.read_text())
        result.update({"review_seconds": document["seconds"], "examples": document["examples"],
                       "checkpoints": document["checkpoints"],
                       "ratio": document["seconds"] / run["train_seconds"],
                       "seconds_by_step": document["seconds_by_step"],
                       "examples_read": document["examples_read"],
                       "budget_seconds": document["budget_seconds"],
                       "top": [[row["id"], row["label"], round(row["vog"], 2)]
                               for row in document["queue"]]})
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--span-size", type=int, default=20000)
    parser.add_argument("--epochs", type=int, default=TrainingParams.epochs)
    parser.add_argument("--architecture", default=TrainingParams.architecture)
    parser.add_argument("--out", default=str(RESULTS / "review_queue.json"))
    args = parser.parse_args()

    from graceful import data

    on, off = [], []
    with tempfile.TemporaryDirectory(prefix="graceful-bench-") as scratch:
        scratch = Path(scratch)
        train, test = data.load("train"), data.load("test")
        span = data.write_span(scratch / "data", 1, train.take(0, args.span_size), test)
        training_memory.write_examples_artifact(span, 1, scratch / "examples")
        for repeat in range(args.repeats):  # interleaved: the VM's drift hits both alike
            for runs, params, name in ((on, ON, "on"), (off, OFF, "off")):
                runs.append(one_run(scratch / "examples", scratch / f"{name}-{repeat}",
                                    args.epochs, {**params, "architecture": args.architecture}))
                print(f"repeat {repeat}, queue {name}: {json.dumps(runs[-1])[:300]}", flush=True)
    median = (lambda runs, key: statistics.median(run[key] for run in runs))  # noqa: E731
    defaults = TrainingParams()
    result = {
        "machine": training_memory.machine(),
        "regime": {"architecture": args.architecture, "train_examples": args.span_size,
                   "epochs": args.epochs, "batch_size": defaults.batch_size,
                   "eval_examples_read": on[0]["examples_read"],
                   "eval_examples_ranked": [run["examples"] for run in on],
                   "review_checkpoints": defaults.review_checkpoints,
                   "review_top_k": defaults.review_top_k},
        "median_train_seconds": median(on, "train_seconds"),
        "median_review_seconds": median(on, "review_seconds"),
        "median_ratio": median(on, "ratio"),
        "target_ratio": 0.10,
        "median_process_seconds_with_queue": median(on, "process_seconds"),
        "median_process_seconds_without_queue": median(off, "process_seconds"),
        "median_train_seconds_without_queue": median(off, "train_seconds"),
        "note": "ratio = the queue's seconds / the training loop's seconds of the same run (the "
                "Trainer's own timings); medians over repeats, queue on and off interleaved, each "
                "run a fresh process; other work shared the 2 CPUs while this ran",
        "runs_with_queue": on, "runs_without_queue": off}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"median: train {result['median_train_seconds']:.1f} s, review "
          f"{result['median_review_seconds']:.2f} s, ratio {result['median_ratio']:.3f} "
          f"(target <= 0.10); whole Trainer process {result['median_process_seconds_with_queue']:.1f}"
          f" s with the queue, {result['median_process_seconds_without_queue']:.1f} s without "
          f"-> {args.out}")


if __name__ == "__main__":
    main()
