"""Benchmark: the edge branch's TensorFlow Lite models, float vs int8, for the demo models.

The demo models ("small" MLP and "cnn") are trained briefly (Keras fit, `--epochs`, on the first 20k
Fashion-MNIST training images) and exported as the pipeline exports them (models.training.export);
then the EdgeConverter's own code converts each (components/edge_converter/executor.py: load_keras,
convert, int8 calibrated on the EdgeConfig default of 200 training examples read from gzipped
tf.Examples, as from a span) and checks it against the cloud model on the 10k test images (check:
the SavedModel's serving signature vs tf.lite.Interpreter, flips by graceful.flips). Per model and
quantization: edge NFR vs the cloud model (negative flips / examples), the flips, confident flips,
the .tflite size in bytes, conversion time, and both accuracies.

    .venv/bin/python -m benchmarks.edge [--epochs 2]   # from the repo root

Writes benchmarks/results/edge.json and prints the README table.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

from graceful import data  # noqa: E402
from graceful.components.edge_converter import executor as edge  # noqa: E402
from graceful.gate import GateConfig  # noqa: E402
from graceful.models import architectures, training  # noqa: E402
from graceful.pipeline.configs import EdgeConfig, fashion_mnist_data, fashion_mnist_model  # noqa: E402

RESULTS = Path(__file__).parent / "results"
MODEL, DATA = fashion_mnist_model(), fashion_mnist_data()
TRAIN_IMAGES = 20000
FEATURES = {architectures.PIXELS_KEY: tf.io.FixedLenFeature([architectures.IMAGE_PIXELS], tf.int64)}


def export_model(architecture: str, train, epochs: int, path: str) -> float:
    """Trains the demo architecture briefly and exports it as the pipeline does; returns seconds."""
    keras.utils.set_random_seed(0)
    model = architectures.build(architecture, probabilities=True)
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    started = time.perf_counter()
    model.fit({architectures.PIXELS_KEY: train.images.astype(np.int64)}, train.labels,
              batch_size=128, epochs=epochs, verbose=0)
    seconds = time.perf_counter() - started
    training.export(model, path, FEATURES, MODEL)
    return seconds


def measure(model_dir: str, quantization: str, train_pattern: str, test_pattern: str) -> dict:
    keras_model = edge.load_keras(model_dir)
    shapes = {name: spec.shape[1:].as_list() for name, spec in edge.input_specs(keras_model).items()}
    started = time.perf_counter()
    content = edge.convert(keras_model, quantization, edge.representative_dataset(
        [train_pattern], keras_model, EdgeConfig().representative_examples))
    seconds = time.perf_counter() - started
    report = edge.check(test_pattern, model_dir, content, None, shapes, DATA, MODEL, GateConfig(),
                        0.9, 512)
    summary = report["vs_cloud"]["summary"]
    return {"quantization": quantization, "size_bytes": len(content),
            "conversion_seconds": round(seconds, 2), "examples": summary["examples"],
            "cloud_accuracy": report["cloud_accuracy"], "edge_accuracy": report["edge_accuracy"],
            "edge_nfr": summary["nfr"], "negative_flips": summary["negative_flips"],
            "positive_flips": summary["positive_flips"],
            "high_confidence_flips": summary["high_confidence_flips"],
            "passes_default_limits": report["gate"]["blessed"],
            "failures": report["gate"]["failures"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    train, test = data.load("train").take(0, TRAIN_IMAGES), data.load("test")
    results = {"epochs": args.epochs, "train_images": TRAIN_IMAGES, "test_images": len(test.labels),
               "representative_examples": EdgeConfig().representative_examples,
               "default_limits": {k: v for k, v in vars(GateConfig()).items()
                                  if k.startswith("max_edge")}, "models": {}}
    with tempfile.TemporaryDirectory() as scratch:
        train_file, test_file = Path(scratch, "train.gz"), Path(scratch, "test.gz")
        data.write_tfrecord(train_file, data.serialize(*(a[:1000] for a in (
            train.images, train.labels, train.ids))))
        data.write_tfrecord(test_file, data.serialize(test.images, test.labels, test.ids))
        for architecture in ("small", "cnn"):
            model_dir = os.path.join(scratch, architecture)
            trained = export_model(architecture, train, args.epochs, model_dir)
            saved_bytes = sum(f.stat().st_size for f in Path(model_dir).rglob("*") if f.is_file())
            rows = [measure(model_dir, q, str(train_file), str(test_file)) for q in ("float", "int8")]
            results["models"][architecture] = {"training_seconds": round(trained, 1),
                                               "saved_model_bytes": saved_bytes, "edge": rows}
            print(json.dumps(results["models"][architecture]), flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "edge.json").write_text(json.dumps(results, indent=1) + "\n")
    print("| model | quantization | edge NFR vs cloud (flips / 10k) | confident flips | .tflite "
          "bytes | conversion s | cloud acc | edge acc |")
    print("|---|---|---|---|---|---|---|---|")
    for architecture, found in results["models"].items():
        for row in found["edge"]:
            print(f"| {architecture} | {row['quantization']} | {row['edge_nfr']:.4f} "
                  f"({row['negative_flips']}) | {row['high_confidence_flips']} | "
                  f"{row['size_bytes']:,} | {row['conversion_seconds']:.1f} | "
                  f"{row['cloud_accuracy']:.4f} | {row['edge_accuracy']:.4f} |")


if __name__ == "__main__":
    main()
