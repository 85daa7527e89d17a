"""A training function for tests that plants negative flips: it trains the model as the pipeline
does (models.training.run_fn), then re-exports it so that the examples listed in $PLANTED_IDS_ENV are
predicted as (label + 1) mod classes with probability 1. The gates downstream see an ordinary
SavedModel with the demo's serving signature; which examples it breaks is known in advance."""
import json
import os
import shutil

import tensorflow as tf

from graceful.models import training
from graceful.pipeline.configs import fashion_mnist_model

PLANTED_IDS_ENV = "GRACEFUL_TEST_PLANTED_IDS"
CONTRACT = fashion_mnist_model()


class _Planted(tf.Module):
    def __init__(self, trained, planted_ids):
        super().__init__()
        self.trained = trained  # tracked, so its variables are saved with this module
        self.planted = tf.constant(planted_ids, tf.int64)
        self._keys = {k: tf.io.FixedLenFeature([1], tf.int64) for k in ("example_id", "label")}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve(self, examples):
        served = self.trained.signatures[CONTRACT.signature](examples=examples)
        probabilities = served[CONTRACT.output_key]
        keys = tf.io.parse_example(examples, self._keys)
        hit = tf.reduce_any(tf.equal(keys["example_id"], self.planted[None, :]), axis=1)
        classes = tf.shape(probabilities)[1]
        wrong = tf.math.floormod(keys["label"][:, 0] + 1, tf.cast(classes, tf.int64))
        forced = tf.one_hot(wrong, classes, dtype=probabilities.dtype)
        return {CONTRACT.output_key: tf.where(hit[:, None], forced, probabilities)}


def run_fn(fn_args) -> None:
    training.run_fn(fn_args)
    planted_ids = json.loads(os.environ[PLANTED_IDS_ENV])
    directory = fn_args.serving_model_dir
    module = _Planted(tf.saved_model.load(directory), planted_ids)
    staged = directory.rstrip("/") + "-planted"
    tf.saved_model.save(module, staged, signatures={CONTRACT.signature: module.serve})
    shutil.rmtree(directory)
    os.rename(staged, directory)
