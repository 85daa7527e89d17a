"""graceful.models.distillation.class_logits: every contract form of class scores becomes the class
logits the losses compare, as ModelContract.class_logits says (checked by hand)."""
import math

import numpy as np
import tensorflow as tf
import tf_keras as keras

from graceful.contract import ModelContract
from graceful.models import distillation

LOGITS, PROBABILITIES = ModelContract(scores="logits"), ModelContract(scores="probabilities")


def test_logits_pass_and_binary_logit_becomes_zero_and_z():
    np.testing.assert_allclose(distillation.class_logits([[1.0, -2.0, 0.5]], LOGITS).numpy(),
                               [[1.0, -2.0, 0.5]])
    np.testing.assert_allclose(distillation.class_logits([[2.0]], LOGITS).numpy(), [[0.0, 2.0]])


def test_probabilities_become_log_probabilities():
    np.testing.assert_allclose(distillation.class_logits([[0.25, 0.75]], PROBABILITIES).numpy(),
                               [[math.log(0.25), math.log(0.75)]], rtol=1e-6)
    np.testing.assert_allclose(distillation.class_logits([[0.75]], PROBABILITIES).numpy(),
                               [[math.log(0.25), math.log(0.75)]], rtol=1e-6)
    np.testing.assert_allclose(  # as the numpy contract reads them
        distillation.class_logits([[0.1, 0.2, 0.7]], PROBABILITIES).numpy(),
        PROBABILITIES.class_logits([[0.1, 0.2, 0.7]]), rtol=1e-6)


def test_keras_softmax_and_sigmoid_outputs_use_their_logits():
    """Where a probability rounds to 0 in float32, the log of it would be clipped; the logits the
    Keras activation keeps give the exact log-probability."""
    z = tf.constant([[0.0, 120.0]])
    softmax = keras.layers.Softmax()(z)
    np.testing.assert_allclose(distillation.class_logits(softmax, PROBABILITIES).numpy(),
                               [[-120.0, 0.0]], atol=1e-4)
    sigmoid = keras.activations.sigmoid(tf.constant([[-120.0]]))
    np.testing.assert_allclose(distillation.class_logits(sigmoid, PROBABILITIES).numpy(),
                               [[0.0, -120.0]], atol=1e-4)
