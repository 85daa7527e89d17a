"""The review queue: the eval examples most worth a human look, ranked by variance of gradients
(VoG, graceful.vog), computed by graceful's run_fn after training and written to the Trainer's
`model_run` output (never into the exported model, which is what gets pushed to serving).

How a run gets the gradients:
  * `Snapshots` keeps the model's weights (`get_weights()`: numpy copies, in memory) at K-1 evenly
    spaced optimizer steps during training (steps T/K, 2T/K, ... of T). These are the RAW training
    weights. The K-th checkpoint is the model at the end of training, i.e. after training.train()
    has made it its weight average (WeightAverage, when ema_momentum > 0): the exported model, the
    one a reviewer's flips come from. With warm start, the exported weights are then interpolated
    toward the served model's (graceful.models.warm_start), a point off the training path that
    would inflate VoG; so run_fn calls `Snapshots.after_training()` before interpolating and the
    K-th checkpoint is the trained weights ("trained (before interpolation)" in the queue's
    checkpoint_steps; otherwise "exported").
  * after training, for each checkpoint the model is set to its weights, the gradient of each
    example's true-class score with respect to the model's inputs is computed, and the exported
    weights are put back (also on an error): the SavedModel is written before any of this and the
    model object ends as it was, so the exported model is the same with or without the queue.
  * true-class score: the pre-softmax logit of the example's true class, as the paper uses. A
    Keras softmax/sigmoid output's logits are read from the Keras tensor (as Keras' own losses do);
    a binary [N, 1] output gives its logit z (VoG is blind to the sign, so class 0's -z gives the
    same); other probabilities their log-probability (graceful.models.distillation.class_logits).
  * inputs: every floating-point model input (integer features such as Fashion-MNIST's pixels are
    cast to the Keras input's float dtype first, as Keras would); integer or string inputs (ids
    looked up in an embedding, vocabularies) have no gradient and are skipped. Per-example
    gradients of several inputs are flattened and concatenated. One backward pass per batch: the
    gradient of the SUM of the batch's true-class scores w.r.t. the inputs is each example's own
    gradient (at inference, no example's score depends on another's inputs).
  * examples: at most `MAX_EXAMPLES` distinct eval examples (a window repeats its eval examples once
    per span), named by graceful.model_check.example_ids like the FlipEvaluator names its flips.
  * cost: bounded by BUDGET_SHARE of the training loop's time. Batches are scored in file order
    until MAX_EXAMPLES or the budget is spent (at least one batch), so a small model ranks all
    5,000 and a costlier one (the CNN) fewer; the queue says how many it ranked.

Written to the model_run dir: QUEUE_FILE (the top-k: rank, id, label, class-normalised and raw
VoG, and how it was computed) and, for image data (DataContract.image_feature), PIXELS_FILE with
the top-k's pixels keyed by rank.
"""
from __future__ import annotations

import io
import json
import os
import time

import numpy as np
import tensorflow as tf

from graceful import model_check, vog
from graceful.contract import DataContract, ModelContract
from graceful.models import distillation, inputs

QUEUE_FILE = "review_queue.json"
PIXELS_FILE = "review_queue.npz"   # pixels of the queue's examples (image data only)
# Distinct eval examples scored (the first ones, in file order, as the BCT compatibility check
# reads them): 5,000 keeps the queue under 10% of the training loop in the demo regime
# (benchmarks/results/review_queue.json; 10,000 measured 10-11% on a quiet 2-core VM).
MAX_EXAMPLES = 5_000
BUDGET_SHARE = 0.10  # of the training loop's seconds: the cost limit
BATCH = 256  # examples per gradient pass (the CNN: ~35% faster than 512, 2048 examples x 4)
SCORE = "VoG, class-normalised: (VoG - mean_c) / std_c within the true class (graceful.vog)"


class Snapshots:
    """The model's raw weights at K-1 evenly spaced steps of a `total_steps` run; call
    `after_step(number)` after each optimizer step (1-based). checkpoints = K (0: off)."""

    def __init__(self, model, total_steps: int, checkpoints: int):
        if checkpoints == 1 or checkpoints < 0:
            raise ValueError(f"review_checkpoints must be 0 (no review queue) or >= 2 (VoG is a "
                             f"variance across checkpoints), got {checkpoints}")
        self.model = model
        self.weights: list[list[np.ndarray]] = []
        self.trained: list[np.ndarray] | None = None  # after_training(): the last checkpoint
        self.steps = sorted({max(1, round(total_steps * i / checkpoints))
                             for i in range(1, checkpoints)}) if checkpoints else []

    def after_step(self, number: int) -> None:
        if number in self.steps:
            self.weights.append(self.model.get_weights())

    def after_training(self) -> None:
        """Keeps the model's weights at the end of training as the last checkpoint, for a run that
        changes them afterwards off the training path (warm start's interpolation toward the
        served model): VoG measures the training trajectory, and an interpolated end point would
        inflate it. Without it, the last checkpoint is the model as write_queue finds it."""
        if self.steps:
            self.trained = self.model.get_weights()


def true_class_scores(scores, labels, contract: ModelContract) -> tf.Tensor:
    """[B] pre-softmax score of each example's true class (see the module docstring)."""
    keras_logits = getattr(scores, "_keras_logits", None)
    if contract.scores == "probabilities" and keras_logits is not None:
        logits = tf.cast(keras_logits, tf.float32)
    elif scores.shape[-1] == 1:
        two = distillation.class_logits(scores, contract)
        logits = two[:, 1:] - two[:, :1]  # the log-odds z
    else:
        logits = distillation.class_logits(scores, contract)
    if logits.shape[-1] == 1:
        return logits[:, 0]
    return tf.gather(logits, labels, batch_dims=1)


def gradient_function(model, contract: ModelContract, features: dict, labels):
    """fn(features, labels) -> [B, D] per-example input gradients of the true-class score (the
    model's floating inputs flattened and concatenated in input order), traced once for any batch
    size from one example batch (`features`, `labels`)."""
    dtypes = {name: tensor.dtype for name, tensor in zip(model.input_names, model.inputs)}
    names = [name for name, dtype in dtypes.items() if tf.as_dtype(dtype).is_floating]
    if not names:
        raise ValueError(f"the model's inputs {sorted(dtypes)} are all integer or string: there "
                         "is no input gradient to rank examples by; set review_checkpoints=0")

    @tf.function
    def gradients(features, labels):
        features = dict(features)
        for name in names:
            features[name] = tf.cast(features[name], dtypes[name])
        watched = [features[name] for name in names]
        with tf.GradientTape() as tape:
            tape.watch(watched)
            scores = model(features, training=False)
            total = tf.reduce_sum(true_class_scores(scores, labels, contract))
        grads = tape.gradient(total, watched, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        return tf.concat([tf.reshape(g, [tf.shape(g)[0], -1]) for g in grads], axis=1)

    any_batch = (lambda t: tf.TensorSpec([None, *t.shape[1:]], t.dtype))  # noqa: E731
    return gradients.get_concrete_function(tf.nest.map_structure(any_batch, dict(features)),
                                           any_batch(labels))


def eval_examples(eval_files, limit: int = MAX_EXAMPLES) -> np.ndarray:
    """Up to `limit` distinct serialized eval examples (first occurrences, in file order)."""
    chunks = list(inputs.serialized_examples(eval_files).take(limit).batch(4096)
                  .as_numpy_iterator())
    if not chunks:
        return np.array([], dtype=object)
    records = np.concatenate(chunks)
    _, first = np.unique(records, return_index=True)
    return records[np.sort(first)]


def checkpoint_gradients(model, checkpoints: list, parse, serialized,
                         contract: ModelContract):
    """Yields ([K, B, D] input gradients at each checkpoint's weights, [B] class ids) per batch of
    `serialized` examples: memory holds one batch's gradients, whatever the eval set's size. The
    model ends with the weights it had (restored even when a checkpoint fails)."""
    final, gradients = model.get_weights(), None
    try:
        for start in range(0, len(serialized), BATCH):
            features, labels = parse(tf.constant(serialized[start:start + BATCH]))
            if gradients is None:
                gradients = gradient_function(model, contract, features, labels)
            per_checkpoint = []
            for weights in checkpoints:
                model.set_weights(weights)
                per_checkpoint.append(gradients(features=features, labels=labels).numpy())
            yield np.stack(per_checkpoint), labels.numpy()
    finally:
        model.set_weights(final)


def checkpoint_vog(model, checkpoints: list, parse, serialized, contract: ModelContract,
                   deadline: float | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """([n] raw VoG, [n] class ids, features per example) of the first n `serialized` examples:
    all of them, or, given a `deadline` (time.monotonic()), the batches that fit before it (at
    least one)."""
    scores, labels, width = [], [], 0
    last, previous, first = None, time.monotonic(), True
    for gradients, batch_labels in checkpoint_gradients(model, checkpoints, parse, serialized,
                                                        contract):
        scores.append(vog.vog(gradients))
        labels.append(batch_labels)
        width = gradients.shape[2]
        now = time.monotonic()
        # stop when the next batch (as long as the last one; the first, with the trace, is not a
        # guide) would end after the deadline
        if deadline is not None and now + (last or 0.0) > deadline:
            break
        last = None if first else now - previous
        previous, first = now, False
    return np.concatenate(scores), np.concatenate(labels), width


def build_queue(raw: np.ndarray, labels: np.ndarray, ids: np.ndarray,
                k: int) -> tuple[list, np.ndarray]:
    """(the top-k as report rows, their positions): rank (1 = most worth a look), id, label, VoG
    (class-normalised, what ranks) and raw VoG, from the [N] raw VoG scores."""
    normalised = vog.class_normalized(raw, labels)
    rows = vog.top_k(normalised, ids, k)
    return [{"rank": rank, "id": ids[i].item(), "label": int(labels[i]),
             "vog": float(normalised[i]), "vog_raw": float(raw[i])}
            for rank, i in enumerate(rows, 1)], rows


def write_queue(model, snapshots: Snapshots, eval_files, parse, data: DataContract,
                contract: ModelContract, k: int, out_dir: str, log=print,
                budget_seconds: float | None = None) -> dict | None:
    """Scores the eval examples (the module docstring says how) within `budget_seconds` (None:
    all) and writes QUEUE_FILE (and PIXELS_FILE for image data) into `out_dir`; returns the queue
    document (None when off)."""
    if not snapshots.steps:
        return None
    started = time.monotonic()
    serialized = eval_examples(eval_files)
    read_count = len(serialized)
    if not len(serialized):
        raise ValueError(f"no eval examples in {eval_files}: the review queue ranks eval "
                         "examples; set review_checkpoints=0 to train without it")
    last = "exported" if snapshots.trained is None else "trained (before interpolation)"
    checkpoints = snapshots.weights + [model.get_weights() if snapshots.trained is None
                                       else snapshots.trained]
    read = time.monotonic() - started
    raw, labels, width = checkpoint_vog(
        model, checkpoints, parse, serialized, contract,
        None if budget_seconds is None else started + budget_seconds)
    serialized = serialized[:len(raw)]
    scored = time.monotonic() - started - read
    where = f"{eval_files}"
    spec = model_check.example_spec(serialized[0], data, where)
    ids = model_check.example_ids(tf.constant(serialized),
                                  tf.io.parse_example(tf.constant(serialized), spec), data)
    queue, rows = build_queue(raw, labels, ids, k)
    seconds = time.monotonic() - started
    document = {"score": SCORE, "checkpoints": len(checkpoints),
                "checkpoint_steps": snapshots.steps + [last],
                "examples": len(serialized), "examples_read": read_count,
                "budget_seconds": budget_seconds, "features": int(width),
                "seconds": seconds, "queue": queue,
                "seconds_by_step": {"read": read, "gradients_and_vog": scored,
                                    "ids_and_queue": seconds - read - scored}}
    tf.io.gfile.makedirs(out_dir)
    with tf.io.gfile.GFile(os.path.join(out_dir, QUEUE_FILE), "w") as handle:
        json.dump(document, handle, indent=1)
    if data.image_feature and queue:
        image = model_check.image_spec(serialized[0], data, where)
        parsed = tf.io.parse_example(tf.constant(serialized[rows]), image)
        pixels = tf.sparse.to_dense(parsed[data.image_feature]).numpy()
        buffer = io.BytesIO()
        np.savez(buffer, **{str(row["rank"]): p for row, p in zip(queue, pixels)})
        with tf.io.gfile.GFile(os.path.join(out_dir, PIXELS_FILE), "wb") as handle:
            handle.write(buffer.getvalue())
    budget = "" if budget_seconds is None else f" (budget {budget_seconds:.1f} s)"
    log(f"[review] VoG of {len(serialized)} examples at {len(checkpoints)} checkpoints in "
        f"{seconds:.1f} s{budget}; top {len(queue)} written to {QUEUE_FILE}")
    return document


def read_queue(model_run_dir: str) -> tuple[dict | None, dict]:
    """(the queue document, {rank: pixels}) a run wrote into its model_run dir; (None, {}) when
    the run wrote none (review_checkpoints=0, or a team's own run_fn)."""
    path = os.path.join(model_run_dir, QUEUE_FILE)
    if not tf.io.gfile.exists(path):
        return None, {}
    with tf.io.gfile.GFile(path) as handle:
        document = json.load(handle)
    pixels = {}
    pixels_path = os.path.join(model_run_dir, PIXELS_FILE)
    if tf.io.gfile.exists(pixels_path):
        with tf.io.gfile.GFile(pixels_path, "rb") as handle:
            with np.load(io.BytesIO(handle.read())) as saved:
                pixels = {int(rank): saved[rank] for rank in saved.files}
    return document, pixels
