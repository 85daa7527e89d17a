"""The training step's `run_fn`: reads the spans through TFX's data accessor, trains (optionally
against the last blessed model as reference), exports a SavedModel.

The exported SavedModel carries two signatures on serialized tf.Examples:
  * `serving_default` -> {"probabilities"}: what TFMA's Evaluator and a serving system call;
  * `graceful_outputs` -> {"logits", "embedding"[, "compatible_embedding"]}: what the flip evaluator
    and the next run's reference read (raw logits, the representation phi and, for BCT, phi projected
    into the old embedding space).
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

from graceful.models import architectures
from graceful import compatibility, losses
from graceful.models.params import TrainingParams

LABEL_KEY = "label"
PIXELS_KEY = "pixels"
ID_KEY = "example_id"
SERVING_SIGNATURE = "serving_default"
OUTPUTS_SIGNATURE = "graceful_outputs"
SUMMARY_FILE = "training_summary.json"
REFERENCE_BATCH = 4096


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


def export(model: keras.Model, directory: str, projection: keras.layers.Layer | None = None) -> None:
    """Saves `model` with signatures that parse serialized tf.Examples themselves."""
    feature_spec = {PIXELS_KEY: tf.io.FixedLenFeature([architectures.IMAGE_PIXELS], tf.int64)}
    embedder = architectures.embedder(model)

    def parse(serialized):
        return to_inputs(tf.io.parse_example(serialized, feature_spec)[PIXELS_KEY])

    spec = [tf.TensorSpec([None], tf.string, name="examples")]
    if projection is not None:
        model.bct_projection = projection  # tracked by the model, so its weights are saved

    @tf.function(input_signature=spec)
    def serve(examples):
        return {"probabilities": tf.nn.softmax(model(parse(examples), training=False))}

    @tf.function(input_signature=spec)
    def outputs(examples):
        inputs = parse(examples)
        embedding = embedder(inputs, training=False)
        result = {"logits": model(inputs, training=False), "embedding": embedding}
        if projection is not None:
            result["compatible_embedding"] = projection(embedding)
        return result

    # Keras' SavedModel export raises absl's logger to WARNING as a side effect, which would silence
    # TFX's own per-component log lines for the rest of the run; keep the level we were given.
    absl_logger = logging.getLogger("absl")
    level = absl_logger.level
    model.save(directory, save_format="tf",
               signatures={SERVING_SIGNATURE: serve, OUTPUTS_SIGNATURE: outputs})
    absl_logger.setLevel(level)


@dataclasses.dataclass
class Reference:
    """The last blessed model, frozen: its logits on the training data are computed once per run."""

    model: keras.Model

    @classmethod
    def load(cls, path: str) -> "Reference":
        model = keras.models.load_model(path, compile=False)
        model.trainable = False
        return cls(model)

    @property
    def head(self) -> keras.layers.Layer:
        return self.model.get_layer(architectures.HEAD_LAYER)

    @property
    def embedding_size(self) -> int:
        return int(self.head.kernel.shape[0])

    def predict(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(logits, embedding) in one batched forward pass."""
        both = keras.Model(self.model.inputs,
                           [self.model.output, architectures.embedder(self.model).output])
        logits, embedding = both.predict(inputs, batch_size=REFERENCE_BATCH, verbose=0)
        return logits, embedding


def check_params(params: TrainingParams) -> losses.DistillationParams:
    """Fails early, with the allowed values, on a bad architecture, loss or loss parameter."""
    architectures.check_name(params.architecture)
    if params.loss not in losses.LOSSES:
        raise ValueError(f"Unknown loss {params.loss!r}; choose one of {', '.join(losses.LOSSES)}.")
    if params.epochs < 1 or params.batch_size < 1 or params.learning_rate <= 0:
        raise ValueError("epochs and batch size must be >= 1 and the learning rate > 0.")
    if not params.lambda_align >= 0 or params.lambda_align == float("inf"):
        raise ValueError(f"lambda_align must be a finite number >= 0, got {params.lambda_align}")
    if not 0 <= params.ema_momentum < 1:
        raise ValueError(f"ema_momentum must be in [0, 1) (0 = off), got {params.ema_momentum}")
    return losses.DistillationParams(params.temperature, params.alpha, params.beta, params.lam,
                                     params.margin).validate()


def objective(params: TrainingParams, loss: str):
    """loss(logits, labels, old_logits, old_head_logits) for the chosen method (graceful.losses)."""
    distillation = check_params(params)
    fd_kind = "fd_kl" if loss == "bct+fd" else loss

    def compute(logits, labels, old_logits, old_head_logits):
        if loss == "plain":
            return losses.cross_entropy(logits, labels)
        if loss == "bct":
            return losses.bct_loss(logits, labels, old_head_logits, params.lambda_bct)
        total = losses.focal_distillation_loss(logits, old_logits, labels, distillation, fd_kind)
        if loss == "bct+fd":
            total += params.lambda_bct * losses.cross_entropy(old_head_logits, labels)
        return total

    return compute


def _weight_average(momentum: float, optimizer, variables):
    """Moving average of `variables` (None when momentum is 0). TF's num_updates warm-up, momentum
    min(m, (1 + t) / (10 + t)) at step t, keeps short runs from averaging in their initial weights."""
    if not momentum:
        return None
    average = tf.train.ExponentialMovingAverage(momentum, num_updates=optimizer.iterations)
    average.apply(variables)  # creates the averages (= the initial weights) outside tf.function
    return average


def train(params: TrainingParams, inputs: np.ndarray, labels: np.ndarray,
          reference: Reference | None = None, old_logits: np.ndarray | None = None, log=print,
          old_embeddings: np.ndarray | None = None):
    """Trains a new model; returns (model, BCT projection or None, the loss actually used).
    `old_logits` / `old_embeddings`: the reference's outputs on `inputs`, computed once."""
    check_params(params)
    loss = params.loss if reference is not None else "plain"
    model = architectures.build(params.architecture, seed=params.seed)
    embedder = architectures.embedder(model)
    head = model.get_layer(architectures.HEAD_LAYER)
    projection = None
    variables = list(model.trainable_variables)
    if loss.startswith("bct"):
        projection = keras.layers.Dense(reference.embedding_size, use_bias=False,
                                        name="bct_projection")
        projection.build((None, int(head.kernel.shape[0])))
        variables += projection.trainable_variables
    compute = objective(params, loss)
    optimizer = keras.optimizers.Adam(params.learning_rate)
    average = _weight_average(params.ema_momentum, optimizer, variables)
    if old_logits is None:
        old_logits = np.zeros((len(labels), architectures.NUM_CLASSES), np.float32)
    align = params.lambda_align if projection is not None else 0.0
    if align and old_embeddings is None:
        raise ValueError("lambda_align needs the reference's embeddings of the training data")
    if not align:
        old_embeddings = np.zeros((len(labels), 1), np.float32)  # unused placeholder

    @tf.function
    def step(x, y, old, old_embedding):
        with tf.GradientTape() as tape:
            embedding = embedder(x, training=True)
            logits = head(embedding)
            old_head_logits = reference.head(projection(embedding)) if projection else logits
            value = compute(logits, y, old, old_head_logits)
            if align:
                value += align * losses.embedding_alignment(projection(embedding), old_embedding)
        optimizer.apply_gradients(zip(tape.gradient(value, variables), variables))
        if average:
            average.apply(variables)
        return value

    steps_per_epoch = int(np.ceil(len(labels) / params.batch_size))
    total_steps = params.epochs * steps_per_epoch
    if params.max_steps:
        total_steps = min(total_steps, params.max_steps)
    dataset = (tf.data.Dataset.from_tensor_slices((inputs, labels, old_logits.astype(np.float32),
                                                   old_embeddings.astype(np.float32)))
               .shuffle(len(labels), seed=params.seed, reshuffle_each_iteration=True)
               .batch(params.batch_size).repeat().take(total_steps))
    running = []
    for number, (x, y, old, old_embedding) in enumerate(dataset, 1):
        running.append(float(step(x, y, old, old_embedding)))
        if number % steps_per_epoch == 0 or number == total_steps:
            log(f"[train] step {number}/{total_steps} loss {np.mean(running):.4f} ({loss})")
            running = []
    if average:  # the model becomes its weight average
        for variable in variables:
            variable.assign(average.average(variable))
    return model, projection, loss


def compatibility_report(model, projection, reference: Reference, inputs, labels) -> dict:
    """BCT criterion on the eval split; new-vs-old needs embeddings of the same size."""
    new_embedding = architectures.embedder(model).predict(inputs, batch_size=REFERENCE_BATCH,
                                                           verbose=0)
    if projection is not None:
        new_embedding = projection(new_embedding).numpy()
    _, old_embedding = reference.predict(inputs)
    if new_embedding.shape[1] != old_embedding.shape[1]:
        return {"comparable": False, "reason": f"embedding sizes differ ({new_embedding.shape[1]} vs "
                f"{old_embedding.shape[1]}) and the loss has no BCT projection"}
    return {"comparable": True, **compatibility.compatibility(new_embedding, old_embedding, labels)}


def run_fn(fn_args: tfx.components.FnArgs) -> None:
    """TFX Trainer entry point (referenced as `models.training.run_fn`)."""
    params = TrainingParams.from_custom_config(fn_args.custom_config)
    schema = tfx.utils.parse_pbtxt_file(fn_args.schema_path, schema_pb2.Schema())
    pixels, labels, _ = read_examples(fn_args.train_files, fn_args.data_accessor, schema)
    inputs = to_inputs(pixels).numpy()
    print(f"[train] {len(labels)} examples, params {json.dumps(dataclasses.asdict(params))}",
          flush=True)
    reference = old_logits = old_embeddings = None
    if fn_args.base_model:
        reference = Reference.load(fn_args.base_model)
        started = time.monotonic()
        old_logits, old_embeddings = reference.predict(inputs)
        print(f"[train] reference model {fn_args.base_model}: logits for {len(labels)} examples "
              f"computed once in {time.monotonic() - started:.1f}s", flush=True)
    elif params.loss != "plain":
        print(f"[train] no blessed model yet: training plainly instead of '{params.loss}'", flush=True)
    started = time.monotonic()
    model, projection, loss = train(params, inputs, labels, reference, old_logits,
                                    log=lambda line: print(line, flush=True),
                                    old_embeddings=old_embeddings)
    seconds = time.monotonic() - started
    print(f"[train] done in {seconds:.1f}s", flush=True)
    export(model, fn_args.serving_model_dir, projection)
    summary = {"requested_loss": params.loss, "effective_loss": loss,
               "reference_model": fn_args.base_model or None, "train_seconds": seconds,
               "train_examples": int(len(labels))}
    if reference is not None:
        eval_pixels, eval_labels, eval_ids = read_examples(fn_args.eval_files,
                                                           fn_args.data_accessor, schema)
        # Every span carries the same eval images: keep one copy of each, or queries would find
        # their own duplicates in the gallery.
        _, first = np.unique(eval_ids, return_index=True)
        first.sort()
        summary["compatibility"] = compatibility_report(
            model, projection, reference, to_inputs(eval_pixels[first]).numpy(), eval_labels[first])
    tf.io.gfile.makedirs(fn_args.model_run_dir)
    with tf.io.gfile.GFile(f"{fn_args.model_run_dir}/{SUMMARY_FILE}", "w") as handle:
        json.dump(summary, handle, indent=2)
