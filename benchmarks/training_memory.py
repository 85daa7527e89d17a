"""Benchmark: peak memory and wall time of a GracefulTrainer run as the training window grows.

The training step streams (graceful.models.training): the reference's outputs are computed once into
a tf.data cache on disk and every epoch is read from there in a bounded shuffle buffer, so peak
memory should not grow with the number of spans in the window, and time should grow linearly.

Setup: span 1 of Fashion-MNIST (`--span-size` training images, written with graceful.data) and a
reference model (the small MLP trained on it by the same trainer). Each measurement is a fresh child
process that runs a one-node TFX pipeline with LocalDagRunner: Importers for the window (span 1's
file repeated 1, 3 and 6 times as one Examples artifact), the schema and the reference model, then
the real GracefulTrainer (graceful's run_fn, focal distillation against the reference). Peak RSS
is the child's ru_maxrss (the whole process: TensorFlow, TFX, LocalDagRunner, training); wall time
is the Trainer's run_fn (from its progress lines) and the whole child.

    .venv/bin/python benchmarks/training_memory.py [--repeats 3] [--span-size 20000] [--epochs 5]

Writes benchmarks/results/training_memory.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

RESULTS = Path(__file__).parent / "results"
WINDOWS = (1, 3, 6)
FD = dict(loss="fd_kl", temperature=1.0, alpha=0.0, beta=1.0, lam=0.5)


def write_examples_artifact(span_folder: Path, copies: int, target: Path) -> None:
    """An Examples artifact folder (Split-train, Split-eval) holding span 1's train file `copies`
    times: a window of `copies` spans of the same size."""
    (target / "Split-train").mkdir(parents=True)
    (target / "Split-eval").mkdir(parents=True)
    for copy in range(copies):
        shutil.copy(span_folder / "train" / "data.tfrecord.gz",
                    target / "Split-train" / f"data-{copy:02d}.gz")
    shutil.copy(span_folder / "eval" / "data.tfrecord.gz", target / "Split-eval" / "data.gz")


def child(examples: str, reference: str, work: str, epochs: int, loss_params: dict) -> dict:
    """Runs GracefulTrainer once in this process; returns its numbers (peak RSS of this process)."""
    import contextlib
    import io

    from tfx import v1 as tfx
    from tfx.types import standard_artifacts

    from graceful.components.graceful_trainer.component import GracefulTrainer
    from graceful.models.params import TrainingParams
    from graceful.pipeline.configs import SCHEMA_DIR, fashion_mnist_data, fashion_mnist_model

    nodes = [tfx.dsl.Importer(source_uri=examples, artifact_type=standard_artifacts.Examples,
                              properties={"split_names": '["train", "eval"]'}).with_id("examples"),
             tfx.components.ImportSchemaGen(schema_file=str(SCHEMA_DIR / "schema.pbtxt"))]
    reference_channel = None
    if reference:
        nodes.append(tfx.dsl.Importer(source_uri=reference, artifact_type=standard_artifacts.Model
                                      ).with_id("reference"))
        reference_channel = nodes[-1].outputs["result"]
    params = TrainingParams(**{"architecture": "small", "epochs": epochs,
                               "reference_step_factor": 1.0, **loss_params})
    nodes.append(GracefulTrainer(examples=nodes[0].outputs["result"],
                                 schema=nodes[1].outputs["schema"],
                                 reference_model=reference_channel, params=params,
                                 data=fashion_mnist_data(), model=fashion_mnist_model()
                                 ).with_id("Trainer"))
    started = time.monotonic()
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        tfx.orchestration.LocalDagRunner().run(tfx.dsl.Pipeline(
            pipeline_name="bench", pipeline_root=f"{work}/root", components=nodes,
            metadata_connection_config=tfx.orchestration.metadata
            .sqlite_metadata_connection_config(f"{work}/metadata.sqlite")))
    total = time.monotonic() - started
    [run_dir] = Path(work, "root", "Trainer", "model_run").iterdir()
    summary = json.loads((run_dir / "training_summary.json").read_text())
    [model_dir] = Path(work, "root", "Trainer", "model").iterdir()
    lines = [line for line in printed.getvalue().splitlines() if line.startswith("[train]")]
    reference_line = next(line for line in lines if "computed once" in line)
    return {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "child_seconds": total, "train_seconds": summary["train_seconds"],
            "reference_pass_seconds": float(reference_line.rsplit(" in ", 1)[1].rstrip("s")),
            "examples": summary["train_examples"],
            "reference_examples_scored": summary["reference_examples_scored"],
            "model_uri": str(model_dir), "train_lines": lines}


def measure(examples: Path, reference: str, work: Path, epochs: int, loss_params: dict) -> dict:
    """`child` in a fresh process, so its peak RSS is this run's alone."""
    out = work / "result.json"
    command = [sys.executable, __file__, "--child", str(examples), "--reference", reference,
               "--work", str(work), "--epochs", str(epochs), "--loss", json.dumps(loss_params),
               "--child-out", str(out)]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())


def median(runs: list[dict], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def time_fit(rows: list[dict]) -> dict:
    """Least-squares line train_seconds = fixed + per_example * examples over the windows: time is
    linear when every window sits on it (residuals small against the time itself). The fixed part is
    tracing the train step and building the model, paid once per run whatever the window."""
    examples = [row["examples"] for row in rows]
    seconds = [row["train_seconds"] for row in rows]
    slope, intercept = statistics.linear_regression(examples, seconds)
    residuals = [s - (intercept + slope * n) for n, s in zip(examples, seconds)]
    return {"fixed_seconds": intercept, "ms_per_example": 1000 * slope,
            "max_residual_share": max(abs(r) / s for r, s in zip(residuals, seconds))}


def machine() -> dict:
    return {"python": platform.python_version(), "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--span-size", type=int, default=20000)
    parser.add_argument("--epochs", type=int, default=5)  # the pipeline's default
    parser.add_argument("--out", default=str(RESULTS / "training_memory.json"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--reference", default="", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--loss", default="{}", help=argparse.SUPPRESS)
    parser.add_argument("--child-out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = child(args.child, args.reference, args.work, args.epochs, json.loads(args.loss))
        Path(args.child_out).write_text(json.dumps(result))
        return

    from graceful import data

    with tempfile.TemporaryDirectory(prefix="graceful-bench-") as scratch:
        scratch = Path(scratch)
        source = data.find_source_dir()
        train, test = data.load("train", source), data.load("test", source)
        span = data.write_span(scratch / "data", 1, train.take(0, args.span_size), test)
        windows = {}
        for copies in WINDOWS:
            write_examples_artifact(span, copies, scratch / f"examples-{copies}")
        reference = measure(scratch / "examples-1", "", scratch / "reference", args.epochs,
                            dict(loss="plain"))["model_uri"]
        print(f"reference model trained: {reference}", flush=True)
        for repeat in range(args.repeats):
            for copies in WINDOWS:  # interleaved, so the VM's drift hits every window alike
                run = measure(scratch / f"examples-{copies}", reference,
                              scratch / f"run-{copies}-{repeat}", args.epochs, FD)
                windows.setdefault(copies, []).append(run)
                print(f"window {copies}: {run['examples']} examples, peak RSS "
                      f"{run['peak_rss_mb']:.0f} MB, train {run['train_seconds']:.1f}s, child "
                      f"{run['child_seconds']:.1f}s", flush=True)
    rows = {copies: {"spans": copies, "examples": runs[0]["examples"],
                     "peak_rss_mb": median(runs, "peak_rss_mb"),
                     "train_seconds": median(runs, "train_seconds"),
                     "reference_pass_seconds": median(runs, "reference_pass_seconds"),
                     "child_seconds": median(runs, "child_seconds"),
                     "train_ms_per_example": 1000 * median(runs, "train_seconds")
                     / runs[0]["examples"],
                     "reference_scored_once": all(r["reference_examples_scored"] == r["examples"]
                                                  for r in runs),
                     "runs": runs} for copies, runs in windows.items()}
    result = {"machine": machine(), "span_size": args.span_size, "epochs": args.epochs,
              "repeats": args.repeats, "loss": FD, "architecture": "small",
              "rss_ratio_6_to_1": rows[6]["peak_rss_mb"] / rows[1]["peak_rss_mb"],
              "train_time_ratio_6_to_1": rows[6]["train_seconds"] / rows[1]["train_seconds"],
              "train_time_fit": time_fit(list(rows.values())),
              "windows": list(rows.values())}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    for row in rows.values():
        print(f"{row['spans']} span(s), {row['examples']} examples: peak RSS "
              f"{row['peak_rss_mb']:.0f} MB, train {row['train_seconds']:.1f}s "
              f"({row['train_ms_per_example']:.3f} ms/example), reference pass "
              f"{row['reference_pass_seconds']:.1f}s")
    print(f"peak RSS 6 spans / 1 span: {result['rss_ratio_6_to_1']:.2f}x (target <= 1.2x)")


if __name__ == "__main__":
    main()
