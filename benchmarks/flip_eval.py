"""Benchmark: flip-evaluation throughput vs the floor of two raw forward passes.

Two models in the pipeline's SavedModel format (old = small MLP, new = CNN, briefly trained on span 1)
are run over the 10k Fashion-MNIST test images (gzipped tf.Examples, as ExampleGen writes them):
  * raw (the floor): both models' serving signatures inside one tf.function, on in-memory
    batches of serialized examples, models loaded once and warmed on every batch shape — the fastest
    way found to run the two forward passes (TensorFlow optimises the inlined graphs); timed at
    several batch sizes, the floor is the fastest. Also timed, as `raw_signature_calls`, the obvious
    way: calling each loaded signature directly (at the evaluator's default batch size);
  * flip eval: the FlipEvaluator's pass (components.flip_evaluator.executor.evaluate): the Beam
    pipeline that reads the gzipped TFRecords in batches, runs both models and writes per-file
    prediction shards, then the report from them (flip metrics, ranked flips, verdict, report JSON +
    gallery pixels) — on Beam's DirectRunner, with the models already loaded in the worker process
    (as raw has them); timed at each batch size, the headline at the evaluator's default; the
    first, cold pass (loading both SavedModels) is reported apart;
  * raw in Beam (the ceiling): the floor's exact work as the only element of a one-stage Beam pass
    on the same runner (benchmarks/beam_ceiling.py). What that pass adds is the runner's fixed cost
    per pass; raw / raw-in-Beam is the best ratio any Beam pass could reach at that size;
  * page: drawing the web page from the report (write_page), a fixed cost timed on its own.
Medians over repeats, timed interleaved, also for the test set replicated 1x..10x (10k..100k).

    .venv/bin/python benchmarks/flip_eval.py [--repeats 5]

Writes benchmarks/results/flip_eval.json.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
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
import tf_keras as keras  # noqa: E402

from beam_ceiling import seconds_in_beam  # noqa: E402
from graceful.components.flip_evaluator.executor import evaluate, write_page  # noqa: E402
from graceful.components.report_settings import ReportSettings  # noqa: E402
from graceful import data  # noqa: E402
from graceful.models import architectures, training  # noqa: E402
from graceful.pipeline.configs import fashion_mnist_data, fashion_mnist_model  # noqa: E402

RESULTS = Path(__file__).parent / "results"
RAW_BATCH_SIZES = (128, 256, 512, 1024)
MODEL = fashion_mnist_model()  # what the demo models export and the FlipEvaluator reads


def make_models(workdir: Path) -> tuple[str, str]:
    """(new, old) SavedModels as the pipeline exports the demo's: probabilities under serving_default.
    Trained one plain epoch each (Keras fit): only their forward passes are timed here."""
    train = data.load("train").take(0, 20000)
    feature_spec = {architectures.PIXELS_KEY: tf.io.FixedLenFeature([architectures.IMAGE_PIXELS],
                                                                    tf.int64)}
    paths = []
    for name, architecture in (("old", "small"), ("new", "cnn")):
        model = architectures.build(architecture, probabilities=True)
        model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
        model.fit({architectures.PIXELS_KEY: train.images.astype(np.int64)}, train.labels,
                  batch_size=128, epochs=1, verbose=0)
        path = str(workdir / name)
        training.export(model, path, feature_spec, MODEL)
        paths.append(path)
    return paths[1], paths[0]


class RawPasses:
    """Both models' forward passes on a batch of serialized examples, the models loaded once."""

    def __init__(self, candidate: str, baseline: str, fused: bool = True):
        self._models = [tf.saved_model.load(p) for p in (candidate, baseline)]  # keeps variables alive
        signatures = [m.signatures[MODEL.signature] for m in self._models]
        key = MODEL.output_key
        if fused:
            both = tf.function(lambda examples: [s(examples=examples)[key] for s in signatures],
                               input_signature=[tf.TensorSpec([None], tf.string)])
            self._passes = [both]
        else:
            self._passes = [lambda examples, s=s: [s(examples=examples)[key]] for s in signatures]

    def seconds(self, records: list[bytes], batch_size: int) -> float:
        started = time.perf_counter()
        for start in range(0, len(records), batch_size):
            batch = tf.constant(records[start:start + batch_size])
            for forward in self._passes:
                [logits.numpy() for logits in forward(batch)]
        return time.perf_counter() - started


SETTINGS = ReportSettings(data=fashion_mnist_data(), model=MODEL)


def direct_pipeline() -> beam.Pipeline:
    """The runner both Beam passes use: the DirectRunner in this process, one worker."""
    return beam.Pipeline(options=beam.options.pipeline_options.PipelineOptions(
        ["--direct_running_mode=in_memory", "--direct_num_workers=1"]))


def flip_eval_seconds(candidate: str, baseline: str, folder: Path, report_dir: str,
                      examples: int, settings: ReportSettings = SETTINGS) -> float:
    """One pass over every file in `folder`; checks the report counted all `examples`."""
    started = time.perf_counter()
    report = evaluate(direct_pipeline, str(folder / "*"), candidate, baseline, report_dir, settings)
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
    fused = RawPasses(candidate, baseline)
    cold = flip_eval_seconds(candidate, baseline, workdir / "x1", report, len(records))
    result = full_test_set(candidate, baseline, fused, records, workdir / "x1", report, repeats)
    result["cold_first_pass_seconds"] = cold
    scaling = scaling_rows(candidate, baseline, fused, test, records, workdir, report, repeats,
                           result["raw_batch_size"])
    sizes = [row["examples"] for row in scaling]
    flip_slope, raw_slope = (np.polyfit(sizes, [row[key] for row in scaling], 1)[0]
                             for key in ("seconds", "raw_seconds"))
    result.update({"scaling": scaling, "steady_state_examples_per_s": 1 / flip_slope,
                   "steady_state_ratio": raw_slope / flip_slope, "note": NOTE})
    return result


def full_test_set(candidate, baseline, fused, records, folder, report, repeats) -> dict:
    """At each batch size: raw, raw in Beam and the flip-eval pass; plus the direct signature
    calls and the page. All interleaved; medians."""
    runs = {}
    for size in RAW_BATCH_SIZES:
        runs[f"raw@{size}"] = functools.partial(fused.seconds, records, size)
        runs[f"raw_in_beam@{size}"] = functools.partial(seconds_in_beam, direct_pipeline,
                                                        runs[f"raw@{size}"])
        runs[f"flip@{size}"] = functools.partial(
            flip_eval_seconds, candidate, baseline, folder, report, len(records),
            dataclasses.replace(SETTINGS, batch_size=size))
    direct = RawPasses(candidate, baseline, fused=False)
    runs["raw_signature_calls"] = functools.partial(direct.seconds, records, SETTINGS.batch_size)
    runs["page"] = functools.partial(page_seconds, report)
    for run in runs.values():  # first calls build each shape's function, draw matplotlib's first figure
        run()
    median = interleaved_medians(runs, repeats)
    per_s = {key: len(records) / seconds for key, seconds in median.items()}
    raw_batch = max(RAW_BATCH_SIZES, key=lambda size: per_s[f"raw@{size}"])
    best_flip_batch = max(RAW_BATCH_SIZES, key=lambda size: per_s[f"flip@{size}"])
    raw, flip = per_s[f"raw@{raw_batch}"], per_s[f"flip@{SETTINGS.batch_size}"]
    return {"examples": len(records), "repeats": repeats,
            "flip_eval_examples_per_s": flip, "raw_inference_examples_per_s": raw,
            "ratio": flip / raw,
            "raw_batch_size": raw_batch, "flip_eval_batch_size": SETTINGS.batch_size,
            "best_flip_eval_batch_size": best_flip_batch,
            "best_flip_eval_ratio": per_s[f"flip@{best_flip_batch}"] / raw,
            "beam_ceiling": per_s[f"raw_in_beam@{raw_batch}"] / raw,
            "beam_fixed_seconds": median[f"raw_in_beam@{raw_batch}"] - median[f"raw@{raw_batch}"],
            "by_batch_size": {size: {kind: per_s[f"{kind}@{size}"]
                                     for kind in ("raw", "raw_in_beam", "flip")}
                              for size in RAW_BATCH_SIZES},
            "raw_signature_calls_examples_per_s": per_s["raw_signature_calls"],
            "ratio_vs_signature_calls": flip / per_s["raw_signature_calls"],
            "page_seconds": median["page"],
            "ratio_including_page": median[f"raw@{raw_batch}"] / (
                median[f"flip@{SETTINGS.batch_size}"] + median["page"])}


def interleaved_medians(runs: dict, repeats: int) -> dict:
    """Median seconds of each run, the runs taken in turn `repeats` times so the VM's drift hits
    each alike."""
    times = {key: [] for key in runs}
    for _ in range(repeats):
        for key, run in runs.items():
            times[key].append(run())
    return {key: statistics.median(values) for key, values in times.items()}


def scaling_rows(candidate, baseline, fused, test, records, workdir, report, repeats,
                 raw_batch) -> list:
    """The test set replicated 1x..10x (copies get their own ids: the report traces every example):
    the flip-eval pass at its default batch size, raw and raw in Beam on the same examples at raw's
    fastest, interleaved."""
    rows = []
    for copies in (1, 2, 5, 10):
        folder = workdir / f"x{copies}"
        for i in range(copies):
            if not (folder / f"part-{i}.gz").exists():
                data.write_tfrecord(folder / f"part-{i}.gz", data.serialize(
                    test.images, test.labels, test.ids + i * len(test)))
        raw = functools.partial(fused.seconds, records * copies, raw_batch)
        runs = {"raw": raw, "raw_in_beam": functools.partial(seconds_in_beam, direct_pipeline, raw),
                "flip": functools.partial(flip_eval_seconds, candidate, baseline, folder, report,
                                          copies * len(records))}
        median = interleaved_medians(runs, repeats)
        raw_s, in_beam_s, flip_s = (median[k] for k in runs)
        rows.append({"examples": copies * len(records), "seconds": flip_s,
                     "raw_seconds": raw_s, "ratio": raw_s / flip_s,
                     "raw_in_beam_seconds": in_beam_s, "beam_ceiling": raw_s / in_beam_s})
        print(f"{copies * len(records)} examples: flip eval {flip_s:.2f}s, raw {raw_s:.2f}s, "
              f"raw in Beam {in_beam_s:.2f}s", flush=True)
    return rows


NOTE = ("raw = both models' signatures in one tf.function on in-memory batches of serialized "
        "examples, models loaded and warmed; the floor (raw_inference_examples_per_s) is raw at its "
        "fastest batch size (raw_batch_size); raw_signature_calls = each loaded signature called "
        "directly. flip eval = the FlipEvaluator's pass: Beam (DirectRunner, in_memory, 1 worker, "
        "models loaded in the process as for raw) reading gzipped TFRecords, both models, per-file "
        "prediction shards, then the report from them (flip metrics, ranked flips, report JSON + "
        "gallery); ratio = flip eval at the evaluator's default batch size (flip_eval_batch_size) "
        "over the floor, best_flip_eval_ratio = at its fastest batch size. raw_in_beam = raw's exact "
        "work as the only element of a one-stage Beam pass on the same runner; beam_ceiling = its "
        "throughput over the floor's: the best ratio any Beam pass can reach at that size; "
        "beam_fixed_seconds = what that pass adds. cold_first_pass_seconds = the first pass of the "
        "process, which also loads both SavedModels; page_seconds = drawing the web page afterwards "
        "(fixed cost). Scaling rows: flip eval at the default batch size; raw and raw_in_beam on "
        "the same examples at raw_batch_size; steady state = inverse slope of the scaling fit "
        "(fixed costs excluded), its ratio = the raw fit's slope over the flip fit's. Everything "
        "timed interleaved; medians of `repeats`.")


if __name__ == "__main__":
    main()
