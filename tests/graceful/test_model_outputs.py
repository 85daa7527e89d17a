"""The TFMA metrics' per-example reader on hand-made inputs as TFMA hands them over: every score
form and string labels are counted as numpy counts them, and per-example scores of the wrong shape
or a missing output key fail naming the model and output instead of giving wrong numbers. (The same
on real models and real TFMA runs: tests/graceful/test_evaluation.py.)"""
import numpy as np
import pytest
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.metrics import metric_types

from graceful import flips, tfma_flips
from graceful.contract import DataContract, DataContractError, ModelContract, ModelOutputError

EVAL_CONFIG = tfma.EvalConfig(model_specs=[tfma.ModelSpec(name="candidate"),
                                           tfma.ModelSpec(name="baseline", is_baseline=True)])


def _combiner(model=ModelContract(), data=DataContract(), baseline="baseline", prediction_key=""):
    return tfma_flips._FlipCountsCombiner(
        key="counts", reader=tfma_flips._Reader(data, model, prediction_key),
        baseline_model_name=baseline, model_name="candidate", output_name="",
        high_confidence=0.9, example_weighted=False)


def _inputs(label, new_scores, old_scores):
    return metric_types.StandardMetricInputs(
        labels={"candidate": np.array([label]), "baseline": np.array([label])},
        example_weights=np.array([1.0]),
        predictions={"candidate": new_scores, "baseline": old_scores})


def _count(combiner, labels, new, old):
    counts = combiner.create_accumulator()
    for y, new_scores, old_scores in zip(labels, new, old):
        counts = combiner.add_input(counts, _inputs(y, new_scores, old_scores))
    return counts


@pytest.mark.parametrize("model, to_scores", [
    (ModelContract(threshold=0.3), lambda p: [p]),                               # sigmoid [1]
    (ModelContract(scores="logits", threshold=0.3), lambda p: [np.log(p / (1 - p))]),  # logit [1]
    (ModelContract(threshold=0.3), lambda p: [1 - p, p]),                        # softmax [2]
])
def test_binary_forms_are_counted_by_threshold_as_numpy_does(model, to_scores):
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 2, 200)
    new_p1, old_p1 = rng.uniform(0.01, 0.99, 200), rng.uniform(0.01, 0.99, 200)
    counts = _count(_combiner(model), labels, [np.array(to_scores(p)) for p in new_p1],
                    [np.array(to_scores(p)) for p in old_p1])
    new_pred, old_pred = (new_p1 > 0.3).astype(int), (old_p1 > 0.3).astype(int)
    expected = flips.summarize(labels, old_pred, new_pred)
    assert counts.examples == 200 and counts.negative_flips == expected.negative_flips
    assert tfma_flips.nfr(counts) == expected.nfr
    assert tfma_flips.accuracy(counts) == expected.new_accuracy


def test_string_labels_are_read_through_the_vocabulary():
    data = DataContract(class_names=("cat", "dog", "fox"))
    counts = _count(_combiner(data=data), [b"dog", b"fox", b"cat"],
                    [np.array([0.1, 0.8, 0.1])] * 3, [np.array([0.1, 0.1, 0.8])] * 3)
    assert (counts.new_right, counts.old_right, counts.negative_flips) == (1, 1, 1)
    with pytest.raises(DataContractError, match=r"'owl', which is not in class_names"):
        _count(_combiner(data=data), [b"owl"], [np.array([0.1, 0.8, 0.1])],
               [np.array([0.1, 0.8, 0.1])])


def test_the_baseline_alone_counts_its_accuracy():
    counts = _count(_combiner(baseline=None), [1, 0], [np.array([0.2, 0.8])] * 2, [None, None])
    assert (counts.examples, counts.new_right, counts.negative_flips) == (2, 1, 0)


@pytest.mark.parametrize("scores, message", [
    (np.float32(0.8), r"one example's class scores have shape \[\]"),
    (np.array([[0.2], [0.8]]), r"one example's class scores have shape \[2, 1\]"),
    ({"embedding": np.zeros(3), "logits": np.zeros(3)},
     r"the model returns \['embedding', 'logits'\]; set the model contract's output_key"),
])
def test_scores_the_contract_cannot_read_are_named(scores, message):
    combiner = _combiner()
    with pytest.raises(ModelOutputError, match=rf"model 'candidate', output 'default': {message}"):
        combiner.add_input(combiner.create_accumulator(), _inputs(1, scores, np.array([0.2, 0.8])))


def test_a_prediction_key_picks_the_scores_from_several_outputs():
    combiner = _combiner(model=ModelContract(scores="logits"), prediction_key="logits")
    outputs = {"embedding": np.zeros(3), "logits": np.array([0.0, 2.0, 1.0])}
    counts = combiner.add_input(combiner.create_accumulator(), _inputs(1, outputs, outputs))
    assert (counts.new_right, counts.old_right) == (1, 1)
