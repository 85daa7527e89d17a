"""The Trainer's `run_fn`: reads the spans through TFX's data accessor, trains, exports a SavedModel.

The exported SavedModel carries two signatures on serialized tf.Examples:
  * `serving_default` -> {"probabilities"}: what TFMA's Evaluator and a serving system call;
  * `graceful_outputs` -> {"logits", "embedding"}: what the flip evaluator and reference-model
    distillation read (raw logits and the representation phi).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import time

import numpy as np
import tensorflow as tf
import tf_keras as keras
from tfx import v1 as tfx
from tfx_bsl.public import tfxio
from tensorflow_metadata.proto.v0 import schema_pb2

from models import architectures
from models.params import TrainingParams

LABEL_KEY = "label"
PIXELS_KEY = "pixels"
ID_KEY = "example_id"
SERVING_SIGNATURE = "serving_default"
OUTPUTS_SIGNATURE = "graceful_outputs"


def to_inputs(pixels: tf.Tensor) -> tf.Tensor:
    """uint8-range integer pixels -> floats in [0, 1], the models' input."""
    return tf.cast(pixels, tf.float32) / 255.0


def read_examples(file_patterns, data_accessor, schema) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reads all examples once into memory (Fashion-MNIST spans are small) as (pixels, labels, ids)."""
    dataset = data_accessor.tf_dataset_factory(
        file_patterns, tfxio.TensorFlowDatasetOptions(batch_size=2048, num_epochs=1, shuffle=False),
        schema)
    pixels, labels, ids = [], [], []
    for batch in dataset:
        pixels.append(batch[PIXELS_KEY].numpy())
        labels.append(batch[LABEL_KEY].numpy().reshape(-1))
        ids.append(batch[ID_KEY].numpy().reshape(-1))
    if not labels:
        raise ValueError(f"No examples found in {file_patterns}.")
    return np.concatenate(pixels), np.concatenate(labels), np.concatenate(ids)


def export(model: keras.Model, directory: str) -> None:
    """Saves `model` with signatures that parse serialized tf.Examples themselves."""
    feature_spec = {PIXELS_KEY: tf.io.FixedLenFeature([architectures.IMAGE_PIXELS], tf.int64)}
    embedder = keras.Model(model.inputs, model.get_layer(architectures.EMBEDDING_LAYER).output)

    def parse(serialized):
        return to_inputs(tf.io.parse_example(serialized, feature_spec)[PIXELS_KEY])

    spec = [tf.TensorSpec([None], tf.string, name="examples")]

    @tf.function(input_signature=spec)
    def serve(examples):
        return {"probabilities": tf.nn.softmax(model(parse(examples), training=False))}

    @tf.function(input_signature=spec)
    def outputs(examples):
        inputs = parse(examples)
        return {"logits": model(inputs, training=False),
                "embedding": embedder(inputs, training=False)}

    # Keras' SavedModel export raises absl's logger to WARNING as a side effect, which would silence
    # TFX's own per-component log lines for the rest of the run; keep the level we were given.
    absl_logger = logging.getLogger("absl")
    level = absl_logger.level
    model.save(directory, save_format="tf",
               signatures={SERVING_SIGNATURE: serve, OUTPUTS_SIGNATURE: outputs})
    absl_logger.setLevel(level)


def train_plain(params: TrainingParams, pixels: np.ndarray, labels: np.ndarray) -> keras.Model:
    model = architectures.build(params.architecture, seed=params.seed)
    model.compile(optimizer=keras.optimizers.Adam(params.learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    inputs = to_inputs(pixels).numpy()
    steps_per_epoch = int(np.ceil(len(labels) / params.batch_size))
    epochs = params.epochs
    if params.max_steps:
        steps_per_epoch = min(steps_per_epoch, params.max_steps)
        epochs = max(1, min(epochs, int(np.ceil(params.max_steps / steps_per_epoch))))
    dataset = (tf.data.Dataset.from_tensor_slices((inputs, labels))
               .shuffle(len(labels), seed=params.seed).batch(params.batch_size).repeat())
    model.fit(dataset, epochs=epochs, steps_per_epoch=steps_per_epoch, verbose=2)
    return model


def run_fn(fn_args: tfx.components.FnArgs) -> None:
    """TFX Trainer entry point (referenced as `models.training.run_fn`)."""
    params = TrainingParams.from_custom_config(fn_args.custom_config)
    schema = tfx.utils.parse_pbtxt_file(fn_args.schema_path, schema_pb2.Schema())
    pixels, labels, _ = read_examples(fn_args.train_files, fn_args.data_accessor, schema)
    print(f"[train] {len(labels)} examples, params {json.dumps(dataclasses.asdict(params))}",
          flush=True)
    started = time.monotonic()
    model = train_plain(params, pixels, labels)
    print(f"[train] done in {time.monotonic() - started:.1f}s", flush=True)
    export(model, fn_args.serving_model_dir)
