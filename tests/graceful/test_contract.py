"""graceful.contract on plain arrays (milliseconds): every score form becomes the same probabilities
and classes, ties and thresholds follow the stated rules, and scores or labels that do not match
the contract fail, naming what to change."""
import dataclasses
import json

import numpy as np
import pytest

from graceful.contract import (DataContract, DataContractError, ModelContract, ModelOutputError,
                               from_dict)


def test_multiclass_probabilities_are_kept_and_argmaxed_ties_to_the_lowest_class():
    scores = [[0.2, 0.5, 0.3], [0.4, 0.4, 0.2]]
    predicted, probabilities = ModelContract().predict(scores)
    assert predicted.tolist() == [1, 0] and np.array_equal(probabilities, scores)


def test_multiclass_logits_become_their_softmax():
    logits = np.array([[1.0, 3.0, -2.0], [0.0, 0.0, 5.0]])
    predicted, probabilities = ModelContract(scores="logits").predict(logits)
    expected = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert predicted.tolist() == [1, 2] and np.allclose(probabilities, expected, rtol=1e-15)


@pytest.mark.parametrize("threshold, expected", [(0.5, [0, 0, 1]), (0.3, [0, 1, 1])])
def test_binary_probability_is_class_1_above_the_threshold_only(threshold, expected):
    predicted, probabilities = ModelContract(threshold=threshold).predict([[0.1], [0.5], [0.9]])
    assert predicted.tolist() == expected
    assert np.allclose(probabilities, [[0.9, 0.1], [0.5, 0.5], [0.1, 0.9]], rtol=0, atol=1e-15)


def test_binary_logit_is_its_sigmoid_and_two_columns_follow_the_threshold_too():
    predicted, probabilities = ModelContract(scores="logits").predict([[-2.0], [0.0], [3.0]])
    assert predicted.tolist() == [0, 0, 1]
    assert np.allclose(probabilities[:, 1], 1 / (1 + np.exp(-np.array([-2.0, 0.0, 3.0]))))
    two = ModelContract(threshold=0.7).predict([[0.4, 0.6], [0.2, 0.8]])[0]
    assert two.tolist() == [0, 1]  # an argmax would say [1, 1]


@pytest.mark.parametrize("scores, contract, message", [
    ([[1.5, -0.5, 0.0]], ModelContract(), "declared probabilities, but scores range from -0.5 "
                                          "to 1.5; these look like logits"),
    ([[0.2, 0.2, 0.2]], ModelContract(), "declared probabilities, but rows sum to 0.6..0.6, not 1"),
    ([[0.2, 0.8], [0.5, 0.5]], ModelContract(scores="logits"), "declared logits, but every row "
                                                                "is a probability distribution"),
    ([[np.nan, 1.0]], ModelContract(scores="logits"), "class scores hold NaN or infinite"),
    ([0.2, 0.8], ModelContract(), r"class scores of shape \[2\]"),
    ([[[0.2], [0.8]]], ModelContract(), r"class scores of shape \[1, 2, 1\]"),
])
def test_scores_that_break_the_contract_are_named(scores, contract, message):
    with pytest.raises(ModelOutputError, match=rf"^the model: {message}"):
        contract.predict(scores, "the model")


def test_few_binary_scores_in_the_unit_interval_may_be_logits():
    assert ModelContract(scores="logits").predict([[0.5]] * 31)[0].tolist() == [1] * 31


def test_output_key_is_picked_or_named():
    assert ModelContract().pick_output(["probabilities"], "m") == "probabilities"
    assert ModelContract(output_key="b").pick_output(["a", "b"], "m") == "b"
    with pytest.raises(ModelOutputError, match=r"m: the signature returns \['a', 'b'\]; set"):
        ModelContract().pick_output(["b", "a"], "m")
    with pytest.raises(ModelOutputError, match=r"m: no output 'c'; the signature returns \['a'\]"):
        ModelContract(output_key="c").pick_output(["a"], "m")


@pytest.mark.parametrize("field, value", [("scores", "margins"), ("threshold", 1.0)])
def test_a_model_contract_out_of_range_is_refused(field, value):
    with pytest.raises(ModelOutputError, match=field if field == "scores" else "threshold"):
        ModelContract(**{field: value})


def test_labels_become_class_ids_from_integers_or_the_vocabulary():
    names = DataContract(class_names=("cat", "dog"))
    assert names.class_ids(np.array([b"dog", b"cat"])).tolist() == [1, 0]
    assert names.class_ids(["cat"]).tolist() == [0]
    assert DataContract().class_ids(np.array([[3], [0]])).tolist() == [3, 0]


@pytest.mark.parametrize("contract, labels, message", [
    (DataContract(class_names=("cat", "dog")), [b"owl"], r"'owl', which is not in class_names "
                                                         r"\['cat', 'dog'\]"),
    (DataContract(), [b"owl"], "holds strings .* no class_names"),
    (DataContract(class_names=("cat", "dog")), [2], r"class id 2, outside 0..1"),
    (DataContract(), [-1], "class id -1, outside ids >= 0"),
    (DataContract(), [0.5], "has dtype float64"),
])
def test_labels_that_break_the_contract_are_named(contract, labels, message):
    with pytest.raises(DataContractError, match=rf"label 'label' .*{message}"):
        contract.class_ids(np.array(labels))


@pytest.mark.parametrize("changes, message", [
    ({"format": "parquet"}, "format 'parquet'"), ({"eval_pattern": "eval/*"}, "no {SPAN}"),
    ({"label_key": ""}, "label_key is empty"), ({"class_names": ("a", "a")}, "duplicates")])
def test_a_data_contract_that_cannot_work_is_refused(changes, message):
    with pytest.raises(DataContractError, match=message):
        DataContract(**changes)


def test_contracts_round_trip_through_json():
    data = DataContract(class_names=("a", "b"), slice_features=("s",), id_key="id")
    model = ModelContract(output_key="p", scores="logits", threshold=0.3)
    for contract in (data, model):
        values = json.loads(json.dumps(dataclasses.asdict(contract)))
        assert from_dict(type(contract), values) == contract


@pytest.mark.parametrize("examples", [1, 31, 32, 500])
def test_binary_logits_in_the_unit_interval_are_read_as_logits_whatever_the_batch(examples):
    """A weak binary model's logits may all lie in [0, 1]; they are logits as declared (z > 0 is
    class 1), in a batch of any size, as the TFMA metrics read them one example at a time."""
    classes, _ = ModelContract(scores="logits").predict([[0.3]] * examples)
    assert classes.tolist() == [1] * examples
