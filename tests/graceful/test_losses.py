"""The positive-congruent training losses, on tiny tensors against hand values and a numpy reference.

The numpy reference below is written independently of graceful.losses (float64, straight from the formulas)
so the tests do not check the module against itself.
"""
import math

import numpy as np
import pytest
import tensorflow as tf

from graceful import losses
from graceful.losses import DistillationParams


# ---------------------------------------------------------------- independent numpy reference (float64)
def np_log_softmax(z):
    z = np.asarray(z, np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def np_ce(logits, labels):
    return float(-np.mean(np_log_softmax(logits)[np.arange(len(labels)), labels]))


def np_kl(new, old, t):
    log_p_old, log_p_new = np_log_softmax(np.asarray(old) / t), np_log_softmax(np.asarray(new) / t)
    return t * t * (np.exp(log_p_old) * (log_p_old - log_p_new)).sum(axis=-1)


def np_lm(new, old):
    return 0.5 * ((np.asarray(new, np.float64) - np.asarray(old, np.float64)) ** 2).sum(axis=-1)


def np_margin(z, y):
    z = np.asarray(z, np.float64)
    out = []
    for row, label in zip(z, y):
        others = np.delete(row, label)
        out.append(row[label] - others.max())
    return np.array(out)


def np_shortfall(new, old, y, margin):
    old_correct = np.argmax(old, axis=-1) == y
    return np.where(old_correct, np.maximum(np_margin(old, y) - np_margin(new, y) + margin, 0.0), 0.0)


def np_weights(old, y, alpha, beta):
    return alpha + beta * (np.argmax(old, axis=-1) == y).astype(np.float64)


def np_fd(new, old, y, p, kind):
    d = {"fd_kl": lambda: np_kl(new, old, p.temperature),
         "fd_lm": lambda: np_lm(new, old),
         "fd_margin": lambda: np_shortfall(new, old, y, p.margin)}[kind]()
    return (1 - p.lam) * np_ce(new, y) + p.lam * float(np.mean(np_weights(old, y, p.alpha, p.beta) * d))


# ---------------------------------------------------------------- fixtures: a tiny batch, N = 4, C = 3
# old model: rows 0, 2, 3 correct (argmax 0, 2, 1 == labels 0, 2, 1), row 1 wrong (argmax 1, label 0).
OLD = np.array([[2.0, 1.0, 0.0],
                [0.0, 2.0, 1.0],
                [0.0, 0.0, 5.0],
                [1.0, 3.0, 0.0]], np.float32)
NEW = np.array([[1.0, 1.5, 0.0],
                [2.0, 0.0, 0.5],
                [0.5, -1.0, 4.0],
                [0.0, 2.0, 2.5]], np.float32)
LABELS = np.array([0, 0, 2, 1], np.int64)


def _scalar(t):
    return float(t.numpy())


# ---------------------------------------------------------------- params
def test_loss_names_and_reference_defaults():
    assert losses.LOSSES == ("plain", "fd_kl", "fd_lm", "fd_margin", "bct", "bct+fd")
    p = DistillationParams()
    assert (p.temperature, p.alpha, p.beta, p.lam, p.margin) == (100.0, 1.0, 5.0, 0.9, 0.0)
    assert p.validate() is p


@pytest.mark.parametrize("changes, message", [
    (dict(temperature=0.0), "temperature must be > 0"),
    (dict(temperature=-1.0), "temperature must be > 0"),
    (dict(alpha=-0.1), "alpha must be >= 0"),
    (dict(beta=-1.0), "beta must be >= 0"),
    (dict(alpha=0.0, beta=0.0), r"alpha \+ beta must be > 0"),
    (dict(lam=-0.01), r"lam must be in \[0, 1\]"),
    (dict(lam=1.5), r"lam must be in \[0, 1\]"),
    (dict(margin=-1.0), "margin must be >= 0"),
    (dict(lam=float("nan")), "lam must be finite"),
    (dict(temperature="100"), "temperature must be a number"),
])
def test_validate_rejects_bad_params(changes, message):
    with pytest.raises(ValueError, match=message):
        DistillationParams(**changes).validate()


def test_loss_validates_params_and_kind():
    with pytest.raises(ValueError, match="lam must be in"):
        losses.focal_distillation_loss(NEW, OLD, LABELS, DistillationParams(lam=2.0))
    with pytest.raises(ValueError, match="unknown focal distillation kind 'bct'"):
        losses.focal_distillation_loss(NEW, OLD, LABELS, DistillationParams(), kind="bct")
    with pytest.raises(ValueError, match="lambda_bct"):
        losses.bct_loss(NEW, LABELS, OLD, -1.0)


# ---------------------------------------------------------------- per-example terms
def test_kl_of_identical_logits_is_zero():
    for t in (1.0, 100.0):
        np.testing.assert_array_equal(losses.kl_divergence(OLD, OLD, t).numpy(), np.zeros(4, np.float32))


def test_kl_two_class_by_hand():
    # old [0, 0] -> p_old = (1/2, 1/2); new [ln 3, 0] -> p_new = (3/4, 1/4), T = 1:
    # KL = 1/2 ln((1/2)/(3/4)) + 1/2 ln((1/2)/(1/4)) = 1/2 ln(2/3 * 2) = 1/2 ln(4/3) = 0.1438410...
    kl = losses.kl_divergence([[math.log(3.0), 0.0]], [[0.0, 0.0]], 1.0).numpy()
    np.testing.assert_allclose(kl, [0.5 * math.log(4 / 3)], rtol=1e-6)


def test_kl_is_scaled_by_t_squared():
    # new [2 ln 3, 0] at T = 2 gives the same softmax as above, so the value is T^2 * 1/2 ln(4/3) = 2 ln(4/3).
    kl = losses.kl_divergence([[2 * math.log(3.0), 0.0]], [[0.0, 0.0]], 2.0).numpy()
    np.testing.assert_allclose(kl, [2 * math.log(4 / 3)], rtol=1e-6)


def test_kl_matches_reference_at_reference_temperature():
    # T = 100: the float32 pitfall case (tiny KL times 10^4); must still agree with float64 numpy closely.
    rng = np.random.default_rng(0)
    old = rng.normal(size=(8, 10)).astype(np.float32)
    new = (old + 0.5 * rng.normal(size=(8, 10))).astype(np.float32)
    got = losses.kl_divergence(new, old, 100.0)
    assert got.dtype == tf.float32 and got.shape == (8,)
    np.testing.assert_allclose(got.numpy(), np_kl(new, old, 100.0), rtol=1e-5)


def test_logit_matching_is_half_squared_distance():
    # row 0: d = (1, 2, 2), 1/2 * 9 = 4.5; row 1: identical -> 0.
    lm = losses.logit_matching([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]], [[0.0, 0.0, 1.0], [1.0, 1.0, 1.0]])
    np.testing.assert_array_equal(lm.numpy(), [4.5, 0.0])


@pytest.mark.parametrize("alpha, beta, expected", [
    (1.0, 0.0, [1.0, 1.0, 1.0, 1.0]),   # plain distillation, no focus
    (0.0, 1.0, [1.0, 0.0, 1.0, 1.0]),   # indicator of old correct
    (1.0, 5.0, [6.0, 1.0, 6.0, 6.0]),   # reference setting
])
def test_focal_weights(alpha, beta, expected):
    np.testing.assert_array_equal(losses.focal_weights(OLD, LABELS, alpha, beta).numpy(), expected)


def test_labels_as_a_column_are_accepted():
    np.testing.assert_array_equal(losses.focal_weights(OLD, LABELS[:, None], 0.0, 1.0).numpy(), [1, 0, 1, 1])


# ---------------------------------------------------------------- margin variant
# labels all 0, C = 3; m = z[0] - max(z[1], z[2])
M_OLD = np.array([[0.0, 1.0, 0.0],    # old wrong (m_old = -1)
                  [2.0, 1.0, 0.0],    # old right, m_old = 1
                  [3.0, 0.0, 1.0],    # old right, m_old = 2
                  [2.0, 1.0, 0.0]],   # old right, m_old = 1
                 np.float32)
M_NEW = np.array([[-5.0, 5.0, 0.0],   # m_new = -10: a big drop, but old was wrong -> 0
                  [3.0, 0.0, 1.0],    # m_new = 2 >= m_old + 0.5 -> 0
                  [1.0, 0.5, 0.0],    # m_new = 0.5 -> relu(2 - 0.5 + 0.5) = 2
                  [1.0, 0.0, -1.0]],  # m_new = 1 = m_old -> relu(0 + 0.5) = 0.5
                 np.float32)
M_LABELS = np.zeros(4, np.int64)


def test_margin_shortfall_by_hand():
    np.testing.assert_allclose(losses.margin_shortfall(M_NEW, M_OLD, M_LABELS, 0.5).numpy(), [0.0, 0.0, 2.0, 0.5])
    # margin 0: row 3 has equal margins -> exactly 0; row 2 -> 2 - 0.5 = 1.5.
    np.testing.assert_allclose(losses.margin_shortfall(M_NEW, M_OLD, M_LABELS, 0.0).numpy(), [0.0, 0.0, 1.5, 0.0])


def test_fd_margin_loss_by_hand():
    # lam = 1, alpha = 1, beta = 5: weights (1, 6, 6, 6), D = (0, 0, 2, 0.5) -> (12 + 3) / 4 = 3.75.
    p = DistillationParams(lam=1.0, margin=0.5)
    assert _scalar(losses.focal_distillation_loss(M_NEW, M_OLD, M_LABELS, p, kind="fd_margin")) == pytest.approx(3.75)


# ---------------------------------------------------------------- full losses
@pytest.mark.parametrize("kind", losses.FD_KINDS)
def test_focal_distillation_matches_reference(kind):
    for p in (DistillationParams(), DistillationParams(temperature=2.0, alpha=0.5, beta=2.0, lam=0.3, margin=1.0)):
        got = _scalar(losses.focal_distillation_loss(NEW, OLD, LABELS, p, kind=kind))
        assert got == pytest.approx(np_fd(NEW, OLD, LABELS, p, kind), rel=1e-5)


@pytest.mark.parametrize("kind", losses.FD_KINDS)
def test_lam_zero_is_plain_cross_entropy(kind):
    got = losses.focal_distillation_loss(NEW, OLD, LABELS, DistillationParams(lam=0.0, margin=1.0), kind=kind)
    assert _scalar(got) == pytest.approx(np_ce(NEW, LABELS), rel=1e-6)
    assert _scalar(got) == _scalar(losses.cross_entropy(NEW, LABELS))


def test_lam_one_is_pure_distillation():
    p = DistillationParams(temperature=2.0, lam=1.0)
    w = np.array([6.0, 1.0, 6.0, 6.0])
    kl = _scalar(losses.focal_distillation_loss(NEW, OLD, LABELS, p, kind="fd_kl"))
    assert kl == pytest.approx(float(np.mean(w * np_kl(NEW, OLD, 2.0))), rel=1e-5)
    lm = _scalar(losses.focal_distillation_loss(NEW, OLD, LABELS, p, kind="fd_lm"))
    assert lm == pytest.approx(float(np.mean(w * np_lm(NEW, OLD))), rel=1e-6)
    # identical logits: nothing to distil, and no CE is mixed in.
    assert _scalar(losses.focal_distillation_loss(OLD, OLD, LABELS, p, kind="fd_kl")) == 0.0


def test_bct_loss():
    head = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]], np.float32)
    assert _scalar(losses.bct_loss(NEW, LABELS, head, 0.0)) == pytest.approx(np_ce(NEW, LABELS), rel=1e-6)
    expected = np_ce(NEW, LABELS) + 0.5 * np_ce(head, LABELS)
    assert _scalar(losses.bct_loss(NEW, LABELS, head, 0.5)) == pytest.approx(expected, rel=1e-6)


# ---------------------------------------------------------------- gradients
@pytest.mark.parametrize("kind", losses.FD_KINDS)
def test_gradients_flow_to_new_logits_only(kind):
    new, old = tf.Variable(NEW), tf.Variable(OLD)
    with tf.GradientTape() as tape:
        loss = losses.focal_distillation_loss(new, old, LABELS, DistillationParams(margin=1.0), kind=kind)
    d_new, d_old = tape.gradient(loss, [new, old])
    assert d_new is not None and np.all(np.isfinite(d_new.numpy())) and np.any(d_new.numpy() != 0)
    assert d_old is None  # the old model is a constant target


def test_per_example_terms_are_differentiable():
    new, old = tf.Variable(NEW), tf.Variable(OLD)
    for fn in (lambda: losses.kl_divergence(new, old, 100.0), lambda: losses.logit_matching(new, old),
               lambda: losses.margin_shortfall(new, old, LABELS, 1.0)):
        with tf.GradientTape() as tape:
            value = tf.reduce_sum(fn())
        d_new, d_old = tape.gradient(value, [new, old])
        assert d_new is not None and np.all(np.isfinite(d_new.numpy()))
        assert d_old is None


def test_kl_gradient_is_t_times_probability_gap():
    # d/dz_new of T^2 KL = T (softmax(new/T) - softmax(old/T)): checks the T^2 scaling reaches the gradient.
    new, t = tf.Variable(NEW), 4.0
    with tf.GradientTape() as tape:
        value = tf.reduce_sum(losses.kl_divergence(new, OLD, t))
    expected = t * (np.exp(np_log_softmax(NEW / t)) - np.exp(np_log_softmax(OLD / t)))
    np.testing.assert_allclose(tape.gradient(value, new).numpy(), expected, atol=1e-6)


def test_fd_margin_gradient_only_where_there_is_a_shortfall():
    new = tf.Variable(M_NEW)
    with tf.GradientTape() as tape:
        value = tf.reduce_sum(losses.margin_shortfall(new, M_OLD, M_LABELS, 0.5))
    grad = tape.gradient(value, new).numpy()
    np.testing.assert_array_equal(grad[:2], 0.0)  # old wrong / margin already kept
    # rows 2, 3: d/dz of -(z[0] - max other) -> -1 on the true class, +1 on the runner-up.
    np.testing.assert_array_equal(grad[2:], [[-1.0, 1.0, 0.0], [-1.0, 1.0, 0.0]])


def test_bct_gradient_flows_through_the_old_head_logits():
    new, head = tf.Variable(NEW), tf.Variable(OLD)
    with tf.GradientTape() as tape:
        loss = losses.bct_loss(new, LABELS, head, 1.0)
    d_new, d_head = tape.gradient(loss, [new, head])
    assert d_new is not None and np.all(np.isfinite(d_new.numpy()))
    # the head's weights are frozen by the caller, but its logits must pass gradient on to the new embedding.
    assert d_head is not None and np.all(np.isfinite(d_head.numpy())) and np.any(d_head.numpy() != 0)


def test_embedding_alignment_is_the_mean_cosine_distance():
    old = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0]], np.float32)
    same_direction = np.array([[5.0, 0.0], [0.0, 0.5], [1.0, 0.0]], np.float32)
    assert float(losses.embedding_alignment(same_direction, old)) == pytest.approx(0.0, abs=1e-7)
    # opposite (2), orthogonal (1), identical (0) -> mean 1
    mixed = np.array([[-1.0, 0.0], [1.0, 0.0], [3.0, 0.0]], np.float32)
    assert float(losses.embedding_alignment(mixed, old)) == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match="same D"):
        losses.embedding_alignment(np.zeros((3, 3)), old)


# Binary models: one logit column z [N, 1] is read as the two-class logits [0, z].
Z_OLD = math.log(3.0)  # sigmoid = 0.75


def test_binary_logit_column_is_read_as_zero_and_z():
    np.testing.assert_allclose(losses.two_class_logits([[Z_OLD], [-1.0]]).numpy(),
                               [[0.0, Z_OLD], [0.0, -1.0]])
    unchanged = [[1.0, 2.0, 3.0]]
    np.testing.assert_allclose(losses.two_class_logits(unchanged).numpy(), unchanged)


def test_binary_cross_entropy_by_hand():
    # P(class 1) = 0.75: label 1 costs -ln 0.75 = 0.287682, label 0 costs -ln 0.25 = 1.386294.
    assert _scalar(losses.cross_entropy([[Z_OLD]], [1])) == pytest.approx(0.287682, abs=1e-6)
    assert _scalar(losses.cross_entropy([[Z_OLD]], [0])) == pytest.approx(1.386294, abs=1e-6)


def test_binary_kl_by_hand_and_same_as_two_columns():
    # old p = (0.25, 0.75), new p = (0.5, 0.5): KL = .25 ln(.25/.5) + .75 ln(.75/.5) = 0.130812.
    kl = losses.kl_divergence([[0.0]], [[Z_OLD]], temperature=1.0).numpy()
    np.testing.assert_allclose(kl, [0.130812], atol=1e-6)
    two_columns = losses.kl_divergence([[0.0, 0.0]], [[0.0, Z_OLD]], temperature=1.0).numpy()
    np.testing.assert_allclose(kl, two_columns, atol=1e-7)
    mixed = losses.kl_divergence([[0.0]], [[0.0, Z_OLD]], temperature=1.0).numpy()
    np.testing.assert_allclose(kl, mixed, atol=1e-7)


def test_binary_logit_matching_and_margin_by_hand():
    # [0, 2] vs [0, -1]: 1/2 * 3^2 = 4.5. Margins of [0, z]: +z for class 1, -z for class 0.
    np.testing.assert_allclose(losses.logit_matching([[2.0]], [[-1.0]]).numpy(), [4.5])
    # old z = 3 (right for label 1, margin 3), new z = 1 (margin 1): shortfall 3 - 1 + 0.5 = 2.5;
    # label 0: the old model (z = 3 says class 1) is wrong there, so no term.
    shortfall = losses.margin_shortfall([[1.0], [1.0]], [[3.0], [3.0]], [1, 0], margin=0.5)
    np.testing.assert_allclose(shortfall.numpy(), [2.5, 0.0])


def test_binary_focal_distillation_by_hand():
    # lam 0.5, alpha 0, beta 1, T 1; new z = 0, old z = ln 3, label 1 (old right: weight 1):
    # 0.5 * ln 2 + 0.5 * 0.130812 = 0.412980.
    params = DistillationParams(temperature=1.0, alpha=0.0, beta=1.0, lam=0.5)
    value = losses.focal_distillation_loss([[0.0]], [[Z_OLD]], [1], params, "fd_kl")
    assert _scalar(value) == pytest.approx(0.5 * math.log(2) + 0.5 * 0.130812, abs=1e-6)
    # label 0: the old model is wrong there, so only cross-entropy: 0.5 * ln 2.
    value = losses.focal_distillation_loss([[0.0]], [[Z_OLD]], [0], params, "fd_kl")
    assert _scalar(value) == pytest.approx(0.5 * math.log(2), abs=1e-6)
