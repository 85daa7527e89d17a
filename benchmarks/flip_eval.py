"""Benchmark: flip-evaluation throughput vs the floor of two raw forward passes.

Two models in the pipeline's SavedModel format (old = small MLP, new = CNN, briefly trained on span 1)
are run over the 10k Fashion-MNIST test images (gzipped tf.Examples, as ExampleGen writes them):
  * raw (the floor): both models' `graceful_outputs` signatures inside one tf.function, on batches
    of 1024 serialized examples in memory — the fastest way found to run the two forward passes
    (TensorFlow optimises the inlined graphs); also timed, as `raw_signature_calls`, the obvious way:
    calling each loaded signature directly, which is ~1.8x slower for these models;
  * flip eval: the FlipEvaluator's Beam pass (components.flip_evaluator.executor.add_flip_report):
    read the gzipped TFRecords in batches, both models, flip metrics, ranked flips, verdict, report
    JSON + gallery pixels — on Beam's DirectRunner, with the models already loaded in the worker
    process (as raw has them); the first, cold pass (loading both SavedModels) is reported apart;
  * page: drawing the web page from the report (write_page), a fixed cost timed on its own.
Medians over repeats, also for the test set replicated 1x..10x (10k..100k examples).

    .venv/bin/python benchmarks/flip_eval.py [--repeats 3]

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

from components.flip_evaluator.executor import (REPORT_FILE, ReportSettings, add_flip_report,  # noqa: E402
                                                write_page)
from graceful import data  # noqa: E402
from models import training  # noqa: E402
from models.params import TrainingParams  # noqa: E402

RESULTS = Path(__file__).parent / "results"
BATCH = 1024


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


def raw_seconds(candidate: str, baseline: str, records: list[bytes], fused: bool = True) -> float:
    """Both models' forward passes over in-memory batches, models loaded and each pass warmed."""
    models = [tf.saved_model.load(p) for p in (candidate, baseline)]
    signatures = [m.signatures[training.OUTPUTS_SIGNATURE] for m in models]
    if fused:
        both = tf.function(lambda examples: [s(examples=examples)["logits"] for s in signatures],
                           input_signature=[tf.TensorSpec([None], tf.string)])
        passes = [both]
    else:
        passes = [lambda examples, s=s: [s(examples=examples)["logits"]] for s in signatures]
    for forward in passes:  # a function's first call builds it: not inference time
        forward(tf.constant(records[:BATCH]))
    started = time.perf_counter()
    for start in range(0, len(records), BATCH):
        batch = tf.constant(records[start:start + BATCH])
        for forward in passes:
            [logits.numpy() for logits in forward(batch)]
    return time.perf_counter() - started


SETTINGS = ReportSettings(class_names=data.CLASS_NAMES, image_feature=training.PIXELS_KEY)


def flip_eval_seconds(candidate: str, baseline: str, pattern: str, report_dir: str) -> float:
    started = time.perf_counter()
    with beam.Pipeline(options=beam.options.pipeline_options.PipelineOptions(
            ["--direct_running_mode=in_memory", "--direct_num_workers=1"])) as pipeline:
        add_flip_report(pipeline, pattern, candidate, baseline, report_dir, SETTINGS)
    return time.perf_counter() - started


def page_seconds(report_dir: str) -> float:
    started = time.perf_counter()
    write_page(report_dir)
    return time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
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

    raw_seconds(candidate, baseline, records[:BATCH])  # warm-up (allocations)
    cold = flip_eval_seconds(candidate, baseline, str(workdir / "x1" / "*"), report)
    page_seconds(report)  # warm-up: matplotlib's first figure
    times = {"raw": [], "raw_signature_calls": [], "flip": [], "page": []}
    for _ in range(repeats):  # interleaved, so the VM's drift hits each alike
        times["raw"].append(raw_seconds(candidate, baseline, records))
        times["raw_signature_calls"].append(raw_seconds(candidate, baseline, records, fused=False))
        times["flip"].append(flip_eval_seconds(candidate, baseline, str(workdir / "x1" / "*"), report))
        times["page"].append(page_seconds(report))
    raw, raw_calls, flip, page = (statistics.median(times[k]) for k in times)
    assert json.loads((Path(report) / REPORT_FILE).read_text())["summary"]["examples"] == len(records)

    scaling = []
    for copies in (1, 2, 5, 10):
        folder = workdir / f"x{copies}"
        for i in range(copies):  # copies get their own ids: the report traces every example
            if not (folder / f"part-{i}.gz").exists():
                data.write_tfrecord(folder / f"part-{i}.gz", data.serialize(
                    test.images, test.labels, test.ids + i * len(test)))
        seconds = statistics.median(flip_eval_seconds(candidate, baseline, str(folder / "*"), report)
                                    for _ in range(repeats))
        scaling.append({"examples": copies * len(records), "seconds": seconds})
        print(f"flip eval, {copies * len(records)} examples: {seconds:.1f}s", flush=True)

    slope = np.polyfit([s["examples"] for s in scaling], [s["seconds"] for s in scaling], 1)[0]
    return {"examples": len(records), "repeats": repeats,
            "flip_eval_examples_per_s": len(records) / flip,
            "raw_inference_examples_per_s": len(records) / raw,
            "ratio": raw / flip, "scaling": scaling,
            "raw_signature_calls_examples_per_s": len(records) / raw_calls,
            "ratio_vs_signature_calls": raw_calls / flip,
            "steady_state_examples_per_s": 1 / slope,
            "steady_state_ratio": raw / len(records) / slope,
            "cold_first_pass_seconds": cold, "page_seconds": page,
            "ratio_including_page": raw / (flip + page),
            "note": "raw = both models' signatures in one tf.function on in-memory batches of 1024 "
                    "serialized examples, models loaded (raw_signature_calls: each loaded "
                    "signature called directly); flip eval = FlipEvaluator Beam pass "
                    "(DirectRunner, in_memory, 1 worker, models loaded in the process as for raw) "
                    "incl. reading gzipped TFRecords, parsing ids/labels, flip metrics, ranked "
                    "flips and writing the report JSON + gallery; cold_first_pass_seconds = the "
                    "first pass of the process, which also loads both SavedModels; page_seconds = "
                    "drawing the web page afterwards (fixed cost); steady state = inverse slope of "
                    "the scaling fit (fixed costs excluded); raw, raw_signature_calls, flip and "
                    "page timed interleaved"}


if __name__ == "__main__":
    main()
