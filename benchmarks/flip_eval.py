"""Benchmark: flip-evaluation throughput vs the floor of two raw forward passes.

Two models in the pipeline's SavedModel format (old = small MLP, new = CNN, briefly trained on span 1)
are run over the 10k Fashion-MNIST test images (gzipped tf.Examples, as ExampleGen writes them):
  * raw (the floor): both models' `graceful_outputs` signatures inside one tf.function, on in-memory
    batches of serialized examples, models loaded once and warmed on every batch shape — the fastest
    way found to run the two forward passes (TensorFlow optimises the inlined graphs); timed at
    several batch sizes, the floor is the fastest. Also timed, as `raw_signature_calls`, the obvious
    way: calling each loaded signature directly (at the floor's batch size);
  * flip eval: the FlipEvaluator's pass (components.flip_evaluator.executor.evaluate): the Beam
    pipeline that reads the gzipped TFRecords in batches, runs both models and writes per-file
    prediction shards, then the report from them (flip metrics, ranked flips, verdict, report JSON +
    gallery pixels) — on Beam's DirectRunner, with the models already loaded in the worker process
    (as raw has them); the first, cold pass (loading both SavedModels) is reported apart;
  * page: drawing the web page from the report (write_page), a fixed cost timed on its own.
Medians over repeats, timed interleaved, also for the test set replicated 1x..10x (10k..100k).

    .venv/bin/python benchmarks/flip_eval.py [--repeats 5]

Writes benchmarks/results/flip_eval.json.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import apache_beam as beam  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from components.flip_evaluator.executor import ReportSettings, evaluate, write_page  # noqa: E402
from graceful import data  # noqa: E402
from models import training  # noqa: E402
from models.params import TrainingParams  # noqa: E402

RESULTS = Path(__file__).parent / "results"
RAW_BATCH_SIZES = (128, 256, 512, 1024)


def make_models(workdir: Path) -> tuple[str, str]:
    train = data.load("train").take(0, 20000)
    inputs = train.images.astype(np.float32) / 255.0
    paths = []
    for name, architecture in (("old", "small"), ("new", "cnn")):
        model, _, _ = training.train(TrainingParams(architecture=architecture, epochs=1, loss="plain"),
                                     inputs, train.labels, log=lambda _: None)
        path = str(workdir / name)
        training.export(model, path)
        paths.append(path)
    return paths[1], paths[0]


class RawPasses:
    """Both models' forward passes on a batch of serialized examples, the models loaded once."""

    def __init__(self, candidate: str, baseline: str, fused: bool = True):
        self._models = [tf.saved_model.load(p) for p in (candidate, baseline)]  # keeps variables alive
        signatures = [m.signatures[training.OUTPUTS_SIGNATURE] for m in self._models]
        if fused:
            both = tf.function(lambda examples: [s(examples=examples)["logits"] for s in signatures],
                               input_signature=[tf.TensorSpec([None], tf.string)])
            self._passes = [both]
        else:
            self._passes = [lambda examples, s=s: [s(examples=examples)["logits"]] for s in signatures]

    def seconds(self, records: list[bytes], batch_size: int) -> float:
        started = time.perf_counter()
        for start in range(0, len(records), batch_size):
            batch = tf.constant(records[start:start + batch_size])
            for forward in self._passes:
                [logits.numpy() for logits in forward(batch)]
        return time.perf_counter() - started


SETTINGS = ReportSettings(class_names=data.CLASS_NAMES, image_feature=training.PIXELS_KEY)


def flip_eval_seconds(candidate: str, baseline: str, folder: Path, report_dir: str,
                      examples: int) -> float:
    """One pass over every file in `folder`; checks the report counted all `examples`."""
    started = time.perf_counter()
    report = evaluate(lambda: beam.Pipeline(options=beam.options.pipeline_options.PipelineOptions(
        ["--direct_running_mode=in_memory", "--direct_num_workers=1"])),
        str(folder / "*"), candidate, baseline, report_dir, SETTINGS)
    seconds = time.perf_counter() - started
    assert report["summary"]["examples"] == examples, report["summary"]
    return seconds


def page_seconds(report_dir: str) -> float:
    started = time.perf_counter()
    write_page(report_dir)
    return time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=str(RESULTS / "flip_eval.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="flip_eval_") as workdir:
        result = measure(Path(workdir), args.repeats)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


def measure(workdir: Path, repeats: int) -> dict:
    """Raw inference, the flip-eval pass (cold, warm, page) and its scaling, all inside `workdir`."""
    candidate, baseline = make_models(workdir)
    test = data.load("test")
    records = data.serialize(test.images, test.labels, test.ids)
    data.write_tfrecord(workdir / "x1" / "part-0.gz", records)
    report = str(workdir / "report")

    fused, direct = RawPasses(candidate, baseline), RawPasses(candidate, baseline, fused=False)
    cold = flip_eval_seconds(candidate, baseline, workdir / "x1", report, len(records))
    page_seconds(report)  # warm-up: matplotlib's first figure
    raw_runs = {size: (lambda size=size: fused.seconds(records, size)) for size in RAW_BATCH_SIZES}
    for run in raw_runs.values():  # a function's first call on a shape builds it: not inference
        run()
    direct.seconds(records, SETTINGS.batch_size)
    times = {size: [] for size in RAW_BATCH_SIZES}
    times.update({"raw_signature_calls": [], "flip": [], "page": []})
    for _ in range(repeats):  # interleaved, so the VM's drift hits each alike
        for size, run in raw_runs.items():
            times[size].append(run())
        times["raw_signature_calls"].append(direct.seconds(records, SETTINGS.batch_size))
        times["flip"].append(flip_eval_seconds(candidate, baseline, workdir / "x1", report, len(records)))
        times["page"].append(page_seconds(report))
    medians = {key: statistics.median(values) for key, values in times.items()}
    raw_batch = min(RAW_BATCH_SIZES, key=medians.get)
    raw, raw_calls, flip, page = (medians[k] for k in (raw_batch, "raw_signature_calls", "flip", "page"))

    scaling = []
    for copies in (1, 2, 5, 10):  # raw on the same examples, interleaved with each pass
        folder = workdir / f"x{copies}"
        for i in range(copies):  # copies get their own ids: the report traces every example
            if not (folder / f"part-{i}.gz").exists():
                data.write_tfrecord(folder / f"part-{i}.gz", data.serialize(
                    test.images, test.labels, test.ids + i * len(test)))
        row = {"raw": [], "flip": []}
        for _ in range(repeats):
            row["raw"].append(fused.seconds(records * copies, raw_batch))
            row["flip"].append(flip_eval_seconds(candidate, baseline, folder, report,
                                                 copies * len(records)))
        raw_row, flip_row = (statistics.median(row[k]) for k in ("raw", "flip"))
        scaling.append({"examples": copies * len(records), "seconds": flip_row,
                        "raw_seconds": raw_row, "ratio": raw_row / flip_row})
        print(f"{copies * len(records)} examples: flip eval {flip_row:.2f}s, raw {raw_row:.2f}s",
              flush=True)

    sizes = [row["examples"] for row in scaling]
    flip_slope, raw_slope = (np.polyfit(sizes, [row[key] for row in scaling], 1)[0]
                             for key in ("seconds", "raw_seconds"))
    return {"examples": len(records), "repeats": repeats,
            "flip_eval_examples_per_s": len(records) / flip,
            "raw_inference_examples_per_s": len(records) / raw,
            "ratio": raw / flip, "scaling": scaling,
            "raw_batch_size": raw_batch, "flip_eval_batch_size": SETTINGS.batch_size,
            "raw_examples_per_s_by_batch_size": {size: len(records) / medians[size]
                                                 for size in RAW_BATCH_SIZES},
            "raw_signature_calls_examples_per_s": len(records) / raw_calls,
            "ratio_vs_signature_calls": raw_calls / flip,
            "steady_state_examples_per_s": 1 / flip_slope,
            "steady_state_ratio": raw_slope / flip_slope,
            "cold_first_pass_seconds": cold, "page_seconds": page,
            "ratio_including_page": raw / (flip + page),
            "note": "raw = both models' signatures in one tf.function on in-memory batches of "
                    "serialized examples, models loaded and warmed, at the fastest of "
                    "raw_examples_per_s_by_batch_size (raw_signature_calls: each loaded signature "
                    "called directly); flip eval = FlipEvaluator pass: Beam (DirectRunner, "
                    "in_memory, 1 worker, models loaded in the process as for raw) reading gzipped "
                    "TFRecords, both models, per-file prediction shards, then the report from them "
                    "(flip metrics, ranked flips, report JSON + gallery); cold_first_pass_seconds = the "
                    "first pass of the process, which also loads both SavedModels; page_seconds = "
                    "drawing the web page afterwards (fixed cost); scaling rows: raw on the same "
                    "examples in memory timed interleaved with each pass; steady state = inverse "
                    "slope of the scaling fit (fixed costs excluded), its ratio = the raw fit's "
                    "slope over the flip fit's; raw, raw_signature_calls, flip and "
                    "page timed interleaved"}


if __name__ == "__main__":
    main()
