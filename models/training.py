"""graceful's `run_fn`: trains a user module's model (or the built-in demo model) against the served
model, streaming the training window, and exports it.

What a run does:
  1. reads the contracts and parameters (`TrainingSetup.from_fn_args`), builds the model
     (`build_model(context)`, graceful.models.user_module) and checks it; with `warm_start`, copies
     the served model's weights into it (same architecture, else the run stops naming the first
     layer that differs; first run: from scratch) and, when alpha is chosen on data, keeps a
     hashed 10% of the newest span's training examples out of training
     (graceful.models.warm_start);
  2. one unshuffled pass over the window's examples computes the reference's outputs (through the
     served model's serving signature) and caches them on disk (graceful.models.distillation);
  3. trains from that cache, shuffled in a bounded buffer (memory does not grow with the window);
  4. with warm start, sets the weights to alpha * trained + (1 - alpha) * served, alpha fixed
     or the one with the fewest negative flips on the held-out examples at no accuracy loss
     (graceful.interpolation);
  5. exports a SavedModel whose `serving_default` takes serialized tf.Examples and returns
     {output_key: class scores} as the model contract declares, and writes `training_summary.json`
     (optional for any run_fn: GracefulTrainer records it on the model only when present).

The export has only the serving signature: graceful gates any model through it, so a model trained
here and one trained by a team's own code are read the same way.

With a TFX Transform (PipelineConfig.transform_module; GracefulTrainer(transform_graph=...)), the
run_fn gets the transform graph as `fn_args.transform_graph_path` and
  * builds the model on the TRANSFORMED features: `ModelContext.feature_spec` is the transform
    graph's transformed feature spec, without the label and the id;
  * feeds it raw examples parsed and transformed in the tf.data pipeline by the graph's Keras layer
    (`tft.TFTransformOutput(...).transform_features_layer()`); Transform's materialized examples
    are not read, as the served model must score the same raw examples;
  * reads the label raw, never transformed: the transform graph gets every raw feature but the
    label and the id (a served model gets no label), so outputs of the preprocessing_fn that need
    either are pruned; it may pass them through or ignore them, the model cannot read them;
  * exports `serving_default` as raw serialized tf.Examples -> transform layer -> model, with the
    layer tracked by the model (`model.tft_layer`): the SavedModel carries the transform graph, so
    the one artifact takes raw examples, and the FlipEvaluator, the Evaluator and the next run's
    reference read it like any other model;
  * for BCT, reads the served model's embedding through the transform layer that model carries
    (the transform of its own run, whose statistics may differ from this run's).
The reference's outputs come from the served model's serving signature on the raw examples, as
without Transform.

`fn_args.custom_config` as GracefulTrainer fills it (also what your own run_fn receives):
  {"training": TrainingParams fields, "data_contract": DataContract fields,
   "model_contract": ModelContract fields, "module_file": str, "module_path": str,
   "newest_train_files": [train-split file patterns of the window's newest span]}
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import tempfile
import time
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
import tf_keras as keras
from tfx import v1 as tfx

from graceful import compatibility, interpolation, losses
from graceful.contract import DataContract, ModelContract, from_dict
from graceful.models import distillation, inputs, review, warm_start
from graceful.models.params import TrainingParams
from graceful.models.user_module import ModelContext, check_model, load_build_model

SUMMARY_FILE = "training_summary.json"
# custom_config key: the train-split file patterns of the window's newest span (GracefulTrainer's
# executor), the data the served model has not seen: warm start chooses alpha on part of it.
NEWEST_TRAIN_FILES = "newest_train_files"
DEFAULT_OUTPUT_KEY = "scores"   # the serving output's name when the contract names none
SHUFFLE_BUFFER = 10_000         # examples; bounds memory whatever the window's size
MAX_REFERENCE_STEP_FACTOR = 10  # a larger factor is a typo, not a training budget
COMPATIBILITY_EXAMPLES = 10_000  # eval examples the BCT compatibility criterion is computed on
OLD_LOGITS, OLD_EMBEDDING = "old_logits", "old_embedding"
BCT_NEEDS_EMBEDDING = (
    "loss {loss!r} uses BCT, which needs the model's embedding: set the model contract's "
    "embedding_layer to the name of the Keras layer whose output is the representation (the "
    "layers after it are the old head), or use loss 'fd_kl' (focal distillation needs no "
    "embedding)")


@dataclasses.dataclass(frozen=True)
class TrainingSetup:
    """Everything a run_fn needs besides the data: parameters, contracts, schema, vocabulary."""

    params: TrainingParams
    data: DataContract
    model: ModelContract
    feature_spec: dict
    class_names: tuple
    module_file: str = ""
    module_path: str = ""
    transform: Any = None         # the TFT layer (raw features -> transformed), None = no Transform
    transformed_spec: dict | None = None  # the transform graph's output feature spec
    newest_train_files: tuple = ()  # train files of the window's newest span (warm start)

    @classmethod
    def from_fn_args(cls, fn_args) -> "TrainingSetup":
        config = dict(fn_args.custom_config or {})
        data = from_dict(DataContract, config.get("data_contract") or {})
        schema = inputs.load_schema(fn_args.schema_path)
        transform, transformed_spec = None, None
        if fn_args.transform_graph_path:
            graph = tft.TFTransformOutput(fn_args.transform_graph_path)
            transform = graph.transform_features_layer()
            transformed_spec = dict(graph.transformed_feature_spec())
        return cls(params=TrainingParams.from_custom_config(config.get("training")), data=data,
                   model=from_dict(ModelContract, config.get("model_contract") or {}),
                   feature_spec=inputs.feature_spec(schema),
                   class_names=inputs.class_names(data, schema),
                   module_file=config.get("module_file") or "",
                   module_path=config.get("module_path") or "",
                   transform=transform, transformed_spec=transformed_spec,
                   newest_train_files=tuple(config.get(NEWEST_TRAIN_FILES) or ()))

    @property
    def where(self) -> str:
        """Where the model comes from, for messages."""
        return self.module_file or self.module_path or "graceful's built-in model"

    def context(self) -> ModelContext:
        hidden = {self.data.label_key, self.data.id_key}
        model_spec = self.feature_spec if self.transform is None else self.transformed_spec
        spec = {name: value for name, value in model_spec.items() if name not in hidden}
        return ModelContext(feature_spec=spec, label_key=self.data.label_key,
                            num_classes=len(self.class_names), class_names=self.class_names,
                            model=self.model, params=self.params)

    def parser(self, input_names, transform=None) -> inputs.ExampleParser:
        """Reads the features `input_names` of a model whose inputs are raw features (transform
        None) or the outputs of `transform` (this run's `self.transform`, or a reference's)."""
        return inputs.ExampleParser(self.feature_spec, input_names, self.data, self.class_names,
                                    transform)


def check_params(params: TrainingParams, builtin_model: bool = True) -> losses.DistillationParams:
    """Fails early, with the allowed values, on a bad architecture (built-in models only), loss or
    loss parameter."""
    if builtin_model:
        from graceful.models import architectures
        architectures.check_name(params.architecture)
    if params.loss not in losses.LOSSES:
        raise ValueError(f"Unknown loss {params.loss!r}; choose one of {', '.join(losses.LOSSES)}.")
    if params.epochs < 1 or params.batch_size < 1 or params.learning_rate <= 0:
        raise ValueError("epochs and batch size must be >= 1 and the learning rate > 0.")
    if not params.lambda_align >= 0 or params.lambda_align == float("inf"):
        raise ValueError(f"lambda_align must be a finite number >= 0, got {params.lambda_align}")
    if not 0 <= params.ema_momentum < 1:
        raise ValueError(f"ema_momentum must be in [0, 1) (0 = off), got {params.ema_momentum}")
    if not 0 < params.reference_step_factor <= MAX_REFERENCE_STEP_FACTOR:
        raise ValueError(f"reference_step_factor must be in (0, {MAX_REFERENCE_STEP_FACTOR}] "
                         f"(1 = as many steps as a first run), got {params.reference_step_factor}")
    interpolation.parse_alpha(params.warm_start_alpha)
    return losses.DistillationParams(params.temperature, params.alpha, params.beta, params.lam,
                                     params.margin).validate()


def effective_loss(params: TrainingParams, contract: ModelContract, has_reference: bool) -> str:
    """The loss this run trains with; BCT without an embedding layer is refused even on a first
    run (no reference yet), so a configuration that cannot work fails at once."""
    if params.loss.startswith("bct") and not contract.embedding_layer:
        raise ValueError(BCT_NEEDS_EMBEDDING.format(loss=params.loss))
    if params.loss != "plain" and contract.threshold != 0.5:
        raise ValueError(
            f"loss {params.loss!r} weighs examples by whether the old model was right, read as "
            f"the argmax of its class scores (a binary threshold of 0.5), but the model contract's "
            f"threshold is {contract.threshold}, so the gates would count other examples as right; "
            "train with loss 'plain' (the gates still apply the threshold) or threshold 0.5")
    return params.loss if has_reference else "plain"


def objective(params: TrainingParams, loss: str, contract: ModelContract):
    """loss(scores, labels, extras, old_head_scores) for the chosen method (graceful.losses)."""
    distillation_params = check_params(params, builtin_model=False)
    fd_kind = "fd_kl" if loss == "bct+fd" else loss

    def compute(scores, labels, extras, old_head_scores):
        logits = distillation.class_logits(scores, contract)
        if loss == "plain":
            return losses.cross_entropy(logits, labels)
        if loss == "bct":
            return losses.bct_loss(logits, labels,
                                   distillation.class_logits(old_head_scores, contract),
                                   params.lambda_bct)
        total = losses.focal_distillation_loss(logits, extras[OLD_LOGITS], labels,
                                               distillation_params, fd_kind)
        if loss == "bct+fd":
            total += params.lambda_bct * losses.cross_entropy(
                distillation.class_logits(old_head_scores, contract), labels)
        return total

    return compute


@dataclasses.dataclass
class Schedule:
    """Steps of a run: epochs over `examples` examples in batches, times reference_step_factor
    when the run distils from a served model, capped by max_steps."""

    examples: int
    params: TrainingParams
    distilling: bool = False

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.examples / self.params.batch_size)

    @property
    def total_steps(self) -> int:
        factor = self.params.reference_step_factor if self.distilling else 1.0
        total = max(1, round(factor * self.params.epochs * self.steps_per_epoch))
        return min(total, self.params.max_steps) if self.params.max_steps else total


def training_batches(cached: tf.data.Dataset, schedule: Schedule,
                     parser: inputs.ExampleParser) -> tf.data.Dataset:
    """(features, class ids, {old_logits, old_embedding}) batches: each epoch a fresh shuffle of the
    cache in a buffer of at most SHUFFLE_BUFFER examples, then batched and parsed."""
    def split(batch):
        extras = {key: value for key, value in batch.items() if key != distillation.EXAMPLES}
        features, labels = parser(batch[distillation.EXAMPLES])
        return features, labels, extras

    params = schedule.params
    return (cached.shuffle(min(schedule.examples, SHUFFLE_BUFFER), seed=params.seed,
                           reshuffle_each_iteration=True)
            .batch(params.batch_size).map(split, num_parallel_calls=tf.data.AUTOTUNE)
            .repeat().take(schedule.total_steps).prefetch(2))


def train(model: keras.Model, batches: tf.data.Dataset, schedule: Schedule, loss: str,
          contract: ModelContract, bct: distillation.KerasReference | None = None, log=print,
          on_step=None):
    """Trains `model` in place on `batches`; returns the BCT projection (None without BCT). The
    model ends as its weight average when params.ema_momentum > 0. `on_step(number)` is called
    after each optimizer step (the review queue's weight snapshots, graceful.models.review)."""
    params = schedule.params
    compute = objective(params, loss, contract)
    projection, forward, variables = None, model, list(model.trainable_variables)
    if bct is not None:
        embedder = distillation.split_embedding(model, contract.embedding_layer, "the new model")
        forward = keras.Model(model.inputs, [model.output, embedder.output])
        projection = keras.layers.Dense(bct.embedding_size, use_bias=False, name="bct_projection")
        projection.build((None, int(embedder.output.shape[-1])))
        variables += projection.trainable_variables
    optimizer = keras.optimizers.Adam(params.learning_rate)
    optimizer.build(variables)  # slots now, so the step is traced once, not again to create them
    average = (distillation.WeightAverage(params.ema_momentum, optimizer, variables)
               if params.ema_momentum else None)
    align = params.lambda_align if bct is not None else 0.0

    @tf.function(reduce_retracing=True)  # the last, smaller batch reuses the trace
    def step(features, labels, extras):
        with tf.GradientTape() as tape:
            if projection is None:
                scores, old_head = forward(features, training=True), None
            else:
                scores, embedding = forward(features, training=True)
                old_head = bct.head(projection(embedding), training=False)
            value = compute(scores, labels, extras, old_head)
            if align:
                value += align * losses.embedding_alignment(projection(embedding),
                                                            extras[OLD_EMBEDDING])
        optimizer.apply_gradients(zip(tape.gradient(value, variables), variables))
        if average:
            average.update()
        return value

    running = []
    for number, (features, labels, extras) in enumerate(batches, 1):
        running.append(float(step(features, labels, extras)))
        if on_step is not None:
            on_step(number)
        if number % schedule.steps_per_epoch == 0 or number == schedule.total_steps:
            log(f"[train] step {number}/{schedule.total_steps} loss {np.mean(running):.4f} "
                f"({loss})")
            running = []
    if average:
        average.assign()
    return projection


def export(model: keras.Model, directory: str, feature_spec: dict,
           contract: ModelContract, transform=None) -> None:
    """Saves `model` with the contract's signature (serving_default), which parses serialized
    tf.Examples itself and returns {output_key: class scores}.

    With a `transform` (a TFT layer), `feature_spec` holds the raw features it is given
    (inputs.transform_input_spec) and the signature is raw examples -> transform -> model; the model
    tracks the layer as `tft_layer`, so the SavedModel carries the transform graph (one artifact)."""
    if transform is not None:
        model.tft_layer = transform
    spec = feature_spec if transform is not None else {
        name: feature_spec[name] for name in model.input_names}
    output_key = contract.output_key or DEFAULT_OUTPUT_KEY
    signature = [tf.TensorSpec([None], tf.string, name="examples")]

    @tf.function(input_signature=signature)
    def serve(examples):
        features = tf.io.parse_example(examples, spec)
        if transform is not None:
            features = model.tft_layer(features)
        return {output_key: model({name: features[name] for name in model.input_names},
                                  training=False)}

    # Keras' SavedModel export raises absl's logger to WARNING as a side effect, which would silence
    # TFX's own per-component log lines for the rest of the run; keep the level we were given.
    absl_logger = logging.getLogger("absl")
    level = absl_logger.level
    model.save(directory, save_format="tf",
               signatures={contract.signature: serve})
    absl_logger.setLevel(level)


def reference_functions(setup: TrainingSetup, reference_dir: str, loss: str, examples):
    """{name: fn(serialized batch)} of the reference's outputs this loss needs, computed once:
    class logits through its serving signature; for BCT with alignment, also its embedding.
    Returns (functions, ReferenceModel or None, KerasReference or None)."""
    if loss == "plain":
        return {}, None, None
    reference = distillation.ReferenceModel(reference_dir, setup.model)
    reference.verify(examples)
    functions = {OLD_LOGITS: reference.class_logits}
    bct = None
    if loss.startswith("bct"):
        bct = distillation.KerasReference(reference_dir, setup.model.embedding_layer)
        if setup.params.lambda_align:
            parse = setup.parser(bct.model.input_names, bct.transform)
            functions[OLD_EMBEDDING] = lambda serialized: bct.embedder(parse(serialized)[0],
                                                                       training=False)
    return functions, reference, bct


def compatibility_report(model: keras.Model, projection, bct: distillation.KerasReference,
                         eval_files, setup: TrainingSetup) -> dict:
    """BCT criterion on up to COMPATIBILITY_EXAMPLES distinct eval examples (a window repeats
    the same eval examples once per span; duplicates would find themselves in the gallery)."""
    serialized = [record.numpy() for record in
                  inputs.serialized_examples(eval_files).take(COMPATIBILITY_EXAMPLES)]
    _, first = np.unique(np.array(serialized, dtype=object).astype(bytes), return_index=True)
    batch = tf.constant([serialized[index] for index in sorted(first)])
    new_parse = setup.parser(model.input_names, setup.transform)
    old_parse = setup.parser(bct.model.input_names, bct.transform)
    embedder = distillation.split_embedding(model, setup.model.embedding_layer, "the new model")
    new_embedding, old_embedding, labels = [], [], []
    for chunk in tf.data.Dataset.from_tensor_slices(batch).batch(distillation.REFERENCE_BATCH):
        features, chunk_labels = new_parse(chunk)
        new_embedding.append(projection(embedder(features, training=False)).numpy())
        old_embedding.append(bct.embedder(old_parse(chunk)[0], training=False).numpy())
        labels.append(chunk_labels.numpy())
    return {"comparable": True, **compatibility.compatibility(
        np.concatenate(new_embedding), np.concatenate(old_embedding), np.concatenate(labels))}


def build(setup: TrainingSetup) -> keras.Model:
    """The user module's (or the built-in) model, seeded and checked."""
    where = setup.where
    build_model = load_build_model(setup.module_file, setup.module_path)
    keras.utils.set_random_seed(setup.params.seed)
    context = setup.context()
    model = build_model(context)
    check_model(model, context, where)
    if setup.params.loss.startswith("bct"):
        distillation.split_embedding(model, setup.model.embedding_layer, f"{where}: the model")
    return model


def run_fn(fn_args: tfx.components.FnArgs) -> None:
    """TFX Trainer entry point (`graceful.models.training.run_fn`)."""
    setup = TrainingSetup.from_fn_args(fn_args)
    log = lambda line: print(line, flush=True)  # noqa: E731
    check_params(setup.params, builtin_model=not (setup.module_file or setup.module_path))
    loss = effective_loss(setup.params, setup.model, bool(fn_args.base_model))
    log(f"[train] params {json.dumps(dataclasses.asdict(setup.params))}")
    if loss == "plain" and setup.params.loss != "plain":
        log(f"[train] no blessed model yet: training plainly instead of '{setup.params.loss}'")
    model = build(setup)
    examples = inputs.serialized_examples(fn_args.train_files)
    warm = None
    if setup.params.warm_start:
        warm = warm_start.WarmStart(setup.params.warm_start_alpha, fn_args.base_model, log)
        examples = warm.begin(model, setup.where, fn_args.train_files, setup.newest_train_files)
    functions, reference, bct = reference_functions(setup, fn_args.base_model, loss, examples)
    tf.io.gfile.makedirs(fn_args.model_run_dir)
    with tempfile.TemporaryDirectory(dir=fn_args.model_run_dir, prefix="cache-") as scratch:
        cached, count = distillation.timed_reference_outputs(examples, functions,
                                                             f"{scratch}/train", log)
        schedule = Schedule(count, setup.params, distilling=loss != "plain")
        snapshots = review.Snapshots(model, schedule.total_steps, setup.params.review_checkpoints)
        started = time.monotonic()
        projection = train(model, training_batches(cached, schedule,
                                                   setup.parser(model.input_names,
                                                                setup.transform)),
                           schedule, loss, setup.model, bct, log, snapshots.after_step)
        seconds = time.monotonic() - started
    log(f"[train] done in {seconds:.1f}s")
    if warm is not None:
        snapshots.after_training()  # the review queue's last checkpoint: trained, not interpolated
        warm.finish(model, setup.parser(model.input_names, setup.transform), setup.model)
    export_spec = (setup.feature_spec if setup.transform is None
                   else inputs.transform_input_spec(setup.feature_spec, setup.data))
    export(model, fn_args.serving_model_dir, export_spec, setup.model, setup.transform)
    review.write_queue(model, snapshots, fn_args.eval_files,
                       setup.parser(model.input_names, setup.transform), setup.data, setup.model,
                       setup.params.review_top_k, fn_args.model_run_dir, log,
                       budget_seconds=review.BUDGET_SHARE * seconds)
    summary = {"requested_loss": setup.params.loss, "effective_loss": loss,
               "reference_model": fn_args.base_model or None, "train_seconds": seconds,
               "train_examples": count, "train_steps": schedule.total_steps,
               "reference_examples_scored": int(reference.examples_scored.numpy())
               if reference else 0}
    if warm is not None:
        summary["warm_start"] = warm.summary
    if bct is not None:
        summary["compatibility"] = compatibility_report(model, projection, bct,
                                                        fn_args.eval_files, setup)
    with tf.io.gfile.GFile(f"{fn_args.model_run_dir}/{SUMMARY_FILE}", "w") as handle:
        json.dump(summary, handle, indent=2)
