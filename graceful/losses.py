"""Losses for positive-congruent training: teach the new model without breaking what the old one got right.

A "negative flip" is an example the old model classified correctly and the new model gets wrong. The losses
here are plain TensorFlow ops (no TFX, no Keras) so the trainer can use them in any training step and the
tests can check them on tiny tensors. Shapes: logits are float [N, C], labels are integer class ids [N]
(a [N, 1] label column is accepted and flattened).

Binary models: a single logit column [N, 1] (a sigmoid model's z) is read as the two-class logits
[0, z] (softmax([0, z]) = [1 - sigmoid(z), sigmoid(z)]), the same reading as
graceful.contract.ModelContract.class_logits, so new and old logits of a binary model may each be
[N, 1] or [N, 2] and every loss below compares like with like. Scores that are probabilities are
turned into log-probabilities before they get here (graceful.models.distillation.class_logits).

Loss names (``LOSSES``), as the trainer selects them:

* ``plain``     -- mean sparse softmax cross-entropy, no old model involved.
* ``fd_kl``     -- focal distillation with KL divergence (Yan et al., "Positive-Congruent Training: Towards
  Regression-Free Model Updates", CVPR 2021)::

      total = (1 - lam) * CE(new, y) + lam * sum_i w_i * D(new_i, old_i) / N
      w_i   = alpha + beta * 1[argmax(old_i) == y_i]                          (focal weights)
      D     = T^2 * KL(softmax(old_i / T) || softmax(new_i / T))

  The T^2 factor keeps the distillation gradients on the same scale for any temperature (Hinton et al.).
* ``fd_lm``     -- focal distillation with logit matching, D = 1/2 * ||new_i - old_i||^2.
* ``fd_margin`` -- an ELODI-style margin variant (after Zhao et al., "ELODI: Ensemble Logit Difference
  Inhibition for Positive-Congruent Training"; this is a simplified single-old-model form, not ELODI
  itself). With the logit margin of the true class ``m(z, y) = z[y] - max_{c != y} z[c]``::

      D = 1[argmax(old_i) == y_i] * relu(m(old_i, y_i) - m(new_i, y_i) + margin)

  It only acts on examples the old model got right, and only while the new model's margin is smaller than
  the old model's (plus ``margin``); once the new model is at least as confident there, the term is zero
  and the new model is otherwise free to move. It is weighted by the same focal weights and mixed with CE
  by ``lam`` like the other two.
* ``bct``       -- backward-compatible training (Shen et al., "Towards Backward-Compatible Representation
  Learning", CVPR 2020)::

      total = CE(new, y) + lambda_bct * CE(old_head(phi_new), y)

  where ``old_head`` is the frozen classifier of the old model applied to the new model's embedding
  ``phi_new``. ``bct_loss`` takes those logits already computed; gradients flow through them into the new
  embedding (the old head's weights must be frozen by the caller, e.g. ``trainable=False``).
* ``bct+fd``    -- both regularisers together; the trainer composes ``bct_loss`` and
  ``focal_distillation_loss`` (this module does not fix how they are mixed).

The old model's logits are always wrapped in ``tf.stop_gradient``: they are a fixed target, never trained.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import tensorflow as tf

LOSSES = ("plain", "fd_kl", "fd_lm", "fd_margin", "bct", "bct+fd")
FD_KINDS = ("fd_kl", "fd_lm", "fd_margin")


@dataclass(frozen=True)
class DistillationParams:
    """Focal-distillation settings. Defaults are the reference settings of Yan et al. (CVPR 2021).

    temperature: softmax temperature T of the KL term (> 0). Large T (100) makes KL close to logit matching.
    alpha:       weight of the distillation term on every example (>= 0).
    beta:        extra weight on examples the old model classified correctly (>= 0).
    lam:         mix between CE and distillation, total = (1 - lam) * CE + lam * FD, in [0, 1].
    margin:      extra logit margin the new model must keep over the old one in ``fd_margin`` (>= 0).
    """

    temperature: float = 100.0
    alpha: float = 1.0
    beta: float = 5.0
    lam: float = 0.9
    margin: float = 0.0

    def validate(self) -> "DistillationParams":
        """Raise ValueError naming the bad field; return self so calls can be chained."""
        for name in ("temperature", "alpha", "beta", "lam", "margin"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise ValueError(f"DistillationParams.{name} must be a number, got {value!r}")
            if not math.isfinite(value):
                raise ValueError(f"DistillationParams.{name} must be finite, got {value!r}")
        if self.temperature <= 0:
            raise ValueError(f"DistillationParams.temperature must be > 0, got {self.temperature}")
        if self.alpha < 0:
            raise ValueError(f"DistillationParams.alpha must be >= 0, got {self.alpha}")
        if self.beta < 0:
            raise ValueError(f"DistillationParams.beta must be >= 0, got {self.beta}")
        if self.alpha + self.beta == 0:
            raise ValueError("DistillationParams.alpha + beta must be > 0: with both 0 every focal weight is 0 "
                             "and the distillation term vanishes (use the 'plain' loss for that)")
        if not 0 <= self.lam <= 1:
            raise ValueError(f"DistillationParams.lam must be in [0, 1], got {self.lam}")
        if self.margin < 0:
            raise ValueError(f"DistillationParams.margin must be >= 0, got {self.margin}")
        return self


def two_class_logits(logits) -> tf.Tensor:
    """A binary logit column z [N, 1] -> [0, z] [N, 2]; any other shape is returned unchanged.

    Why [0, z]: its softmax is [1 - sigmoid(z), sigmoid(z)], so softmax cross-entropy, KL and the
    true-class margin (+z for class 1, -z for class 0) of a one-output sigmoid model are exactly
    its binary cross-entropy, Bernoulli KL and logit.
    """
    logits = tf.convert_to_tensor(logits)
    if logits.shape.rank == 2 and logits.shape[-1] == 1:
        return tf.concat([tf.zeros_like(logits), logits], axis=-1)
    return logits


def _new(logits) -> tf.Tensor:
    logits = tf.convert_to_tensor(logits)
    if not logits.dtype.is_floating:
        logits = tf.cast(logits, tf.float32)
    return two_class_logits(logits)


def _old(old_logits, like: tf.Tensor) -> tf.Tensor:
    return tf.stop_gradient(two_class_logits(tf.cast(tf.convert_to_tensor(old_logits), like.dtype)))


def _labels(labels) -> tf.Tensor:
    return tf.reshape(tf.cast(tf.convert_to_tensor(labels), tf.int64), [-1])


def _old_correct(old_logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """1[argmax(old_i) == y_i] as a bool [N]; ties go to the lowest class index (tf.argmax)."""
    return tf.equal(tf.argmax(old_logits, axis=-1, output_type=tf.int64), labels)


def cross_entropy(logits, labels) -> tf.Tensor:
    """Mean sparse softmax cross-entropy from logits (scalar)."""
    logits = _new(logits)
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=_labels(labels), logits=logits))


def focal_weights(old_logits, labels, alpha: float, beta: float) -> tf.Tensor:
    """w_i = alpha + beta * 1[argmax(old_i) == y_i], float [N], constant (no gradient)."""
    old = tf.stop_gradient(_new(old_logits))
    correct = tf.cast(_old_correct(old, _labels(labels)), old.dtype)
    return tf.stop_gradient(alpha + beta * correct)


def kl_divergence(new_logits, old_logits, temperature: float) -> tf.Tensor:
    """T^2 * KL(softmax(old_i / T) || softmax(new_i / T)) per example, float [N] in new_logits' dtype.

    Computed in float64: at the reference T = 100 the KL is a tiny difference of nearly equal log-probs, and
    float32 loses a few percent of the value before the T^2 factor scales it back up (the gradient is fine
    either way). [N, C] in float64 costs nothing next to the network.
    """
    new = _new(new_logits)
    old = _old(old_logits, new)
    log_p_old = tf.nn.log_softmax(tf.cast(old, tf.float64) / temperature, axis=-1)
    log_p_new = tf.nn.log_softmax(tf.cast(new, tf.float64) / temperature, axis=-1)
    kl = tf.reduce_sum(tf.exp(log_p_old) * (log_p_old - log_p_new), axis=-1)
    return tf.cast((temperature ** 2) * kl, new.dtype)


def logit_matching(new_logits, old_logits) -> tf.Tensor:
    """1/2 * ||new_i - old_i||^2 per example, float [N]."""
    new = _new(new_logits)
    old = _old(old_logits, new)
    return 0.5 * tf.reduce_sum(tf.square(new - old), axis=-1)


def _true_class_margin(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    """m_i = z_i[y_i] - max_{c != y_i} z_i[c], float [N]. Needs C >= 2."""
    is_true = tf.one_hot(labels, depth=tf.shape(logits)[-1], on_value=True, off_value=False, dtype=tf.bool)
    true_logit = tf.reduce_sum(tf.where(is_true, logits, tf.zeros_like(logits)), axis=-1)
    best_other = tf.reduce_max(tf.where(is_true, tf.fill(tf.shape(logits), logits.dtype.min), logits), axis=-1)
    return true_logit - best_other


def margin_shortfall(new_logits, old_logits, labels, margin: float) -> tf.Tensor:
    """1[old correct] * relu(m_old - m_new + margin) per example, float [N] (see the module docstring)."""
    new = _new(new_logits)
    old = _old(old_logits, new)
    y = _labels(labels)
    shortfall = tf.nn.relu(_true_class_margin(old, y) - _true_class_margin(new, y) + margin)
    return tf.where(_old_correct(old, y), shortfall, tf.zeros_like(shortfall))


def focal_distillation_loss(new_logits, old_logits, labels, params: DistillationParams = DistillationParams(),
                            kind: str = "fd_kl") -> tf.Tensor:
    """(1 - lam) * CE(new, y) + lam * sum_i w_i * D_i / N, scalar; kind is one of FD_KINDS."""
    params.validate()
    new = _new(new_logits)
    old = _old(old_logits, new)
    y = _labels(labels)
    if kind == "fd_kl":
        divergence = kl_divergence(new, old, params.temperature)
    elif kind == "fd_lm":
        divergence = logit_matching(new, old)
    elif kind == "fd_margin":
        divergence = margin_shortfall(new, old, y, params.margin)
    else:
        raise ValueError(f"unknown focal distillation kind {kind!r}; expected one of {FD_KINDS}")
    weights = focal_weights(old, y, params.alpha, params.beta)
    distillation = tf.reduce_mean(weights * divergence)  # = sum_i w_i D_i / N
    return (1.0 - params.lam) * cross_entropy(new, y) + params.lam * distillation


def bct_loss(new_logits, labels, old_head_logits, lambda_bct: float) -> tf.Tensor:
    """CE(new, y) + lambda_bct * CE(old_head(phi_new), y), scalar.

    ``old_head_logits`` are the frozen old classifier applied to the *new* embedding. They are deliberately
    not wrapped in stop_gradient: the point of BCT is that this term trains the new embedding to stay
    compatible with the old head. Freezing the old head's own weights is the caller's job.
    """
    if isinstance(lambda_bct, bool) or not isinstance(lambda_bct, numbers.Real) or not math.isfinite(lambda_bct) \
            or lambda_bct < 0:
        raise ValueError(f"lambda_bct must be a finite number >= 0, got {lambda_bct!r}")
    new = _new(new_logits)
    y = _labels(labels)
    return cross_entropy(new, y) + lambda_bct * cross_entropy(tf.cast(_new(old_head_logits), new.dtype), y)


def embedding_alignment(projected_new, old_embedding) -> tf.Tensor:
    """Mean cosine distance 1 - cos(P·phi_new_i, phi_old_i) over the examples, scalar in [0, 2].

    BCT's old-head term keeps the new embedding *classifiable* by the old head; retrieval against an
    old gallery (cosine nearest neighbour) also needs each new embedding to point where the old one
    did. A zero vector counts as orthogonal (distance 1).
    """
    new = tf.convert_to_tensor(projected_new, tf.float32)
    old = tf.convert_to_tensor(old_embedding, tf.float32)
    if new.shape.rank != 2 or old.shape.rank != 2 or new.shape[-1] != old.shape[-1]:
        raise ValueError(f"embeddings must be [N, D] of the same D, got {new.shape} and {old.shape}; "
                         "project the new embedding to the old size first")
    cosine = tf.reduce_sum(tf.math.l2_normalize(new, 1) * tf.math.l2_normalize(old, 1), axis=1)
    return tf.reduce_mean(1.0 - cosine)
