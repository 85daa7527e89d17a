"""Class scores the flip metrics cannot read correctly fail loudly, never as wrong numbers: a binary
model's single [N, 1] column would be argmaxed to class 0 for every example. Two-column binary
scores ([N, 2]) are counted exactly as numpy counts them."""
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.metrics import metric_types

from graceful import flips, tfma_flips

EVAL_CONFIG = tfma.EvalConfig(model_specs=[tfma.ModelSpec(name="candidate"),
                                           tfma.ModelSpec(name="baseline", is_baseline=True)])


def _combiner():
    return tfma_flips._FlipCountsCombiner(key="counts", eval_config=EVAL_CONFIG,
                                          baseline_model_name="baseline", model_name="candidate",
                                          output_name="", high_confidence=0.9)


def _inputs(label, new_scores, old_scores):
    return metric_types.StandardMetricInputs(
        labels=np.array([label]), example_weights=np.array([1.0]),
        predictions={"candidate": np.asarray(new_scores), "baseline": np.asarray(old_scores)})


@pytest.mark.parametrize("shape", [[None, 10], [7, 2], (None, 3)])
def test_one_score_per_class_is_accepted(shape):
    flips.check_class_scores(shape, "model")


@pytest.mark.parametrize("shape", [[None, 1], [7, 1], [None], [None, 4, 2], []])
def test_other_shapes_are_refused_naming_where_and_the_shape(shape):
    with pytest.raises(flips.ModelOutputError, match=rf"^the model: class scores of shape "
                                                     rf"{list(shape)!r}".replace("[", r"\[")):
        flips.check_class_scores(shape, "the model")


def test_the_tfma_metric_refuses_a_single_sigmoid_column():
    combiner = _combiner()
    with pytest.raises(flips.ModelOutputError, match="model 'candidate', output 'default': class "
                                                     r"scores of shape \[None, 1\]"):
        combiner.add_input(combiner.create_accumulator(), _inputs(1, [0.8], [0.2, 0.8]))


def test_the_tfma_metric_counts_two_column_binary_scores_as_numpy_does():
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 2, 200)
    new_p1, old_p1 = rng.random(200), rng.random(200)
    combiner, counts = _combiner(), _combiner().create_accumulator()
    for y, new, old in zip(labels, new_p1, old_p1):
        counts = combiner.add_input(counts, _inputs(y, [1 - new, new], [1 - old, old]))
    expected = flips.summarize(labels, (old_p1 > 0.5).astype(int), (new_p1 > 0.5).astype(int))
    assert counts.examples == 200
    assert counts.negative_flips == expected.negative_flips
    assert tfma_flips.nfr(counts) == expected.nfr
    assert counts.new_right / counts.examples == expected.new_accuracy


def test_the_flip_evaluator_refuses_a_model_with_one_logit_column(tmp_path):
    from graceful.components.flip_evaluator.executor import _Predictor
    from graceful.models.training import OUTPUTS_SIGNATURE

    class OneLogit(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def outputs(self, examples):
            return {"logits": tf.zeros([tf.shape(examples)[0], 1])}

    module = OneLogit()
    tf.saved_model.save(module, str(tmp_path / "binary"),
                        signatures={OUTPUTS_SIGNATURE: module.outputs})
    with pytest.raises(flips.ModelOutputError, match=rf"{tmp_path}/binary: signature "
                                                     rf"'{OUTPUTS_SIGNATURE}', output 'logits': "
                                                     r"class scores of shape \[None, 1\]"):
        _Predictor(str(tmp_path / "binary"), str(tmp_path / "binary"))
