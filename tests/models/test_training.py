"""models.training: the exported model is the weight average the parameters ask for."""
import numpy as np
import pytest

from graceful.models import architectures, training
from graceful.models.params import TrainingParams


def _data(n=256, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, architectures.IMAGE_PIXELS), np.float32), rng.integers(0, 10, n)


def _weights(model):
    return [w.numpy().copy() for w in model.trainable_variables]


def test_weight_average_with_warm_up_is_what_gets_exported():
    """One step: TF's warm-up momentum min(m, (1 + t) / (10 + t)) is 2/11 at t = 1, so the exported
    weights are 2/11 of the initial weights plus 9/11 of the trained ones."""
    inputs, labels = _data()
    initial = _weights(architectures.build("small", seed=4))
    step = dict(architecture="small", seed=4, max_steps=1, loss="plain")
    trained, _, _ = training.train(TrainingParams(**step, ema_momentum=0.0), inputs, labels,
                                   log=lambda _: None)
    averaged, _, _ = training.train(TrainingParams(**step, ema_momentum=0.99), inputs, labels,
                                    log=lambda _: None)
    for w0, w1, exported in zip(initial, _weights(trained), _weights(averaged)):
        assert not np.allclose(w0, w1)
        np.testing.assert_allclose(exported, 2 / 11 * w0 + 9 / 11 * w1, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("momentum", [-0.1, 1.0, 1.5])
def test_momentum_outside_zero_to_one_is_refused(momentum):
    with pytest.raises(ValueError, match="ema_momentum must be in"):
        training.check_params(TrainingParams(ema_momentum=momentum))
