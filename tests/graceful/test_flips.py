"""Unit tests for graceful.flips: tiny hand-made arrays whose answers are counted by hand.

Ratios are compared with `==` against the same fraction written as `a / b`: Python's int division
is correctly rounded, so both sides are the identical float.
"""
import dataclasses
import json

import numpy as np
import pytest

from graceful import flips

# Ten examples, three classes. Per index:
#   0,1,2,8,9  both right                      -> 5 both right
#   3          old right (0), new wrong (2)    -> negative flip 0 -> 2
#   4          old right (1), new wrong (0)    -> negative flip 1 -> 0
#   5          old wrong (0), new right (2)    -> positive flip
#   6          both wrong, same class (1)      -> both wrong
#   7          both wrong, different (2 vs 0)  -> both wrong
# old right = 7, old wrong = 3; new right = 6, new wrong = 4.
Y = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
O = np.array([0, 1, 2, 0, 1, 0, 1, 2, 2, 0])
N = np.array([0, 1, 2, 2, 0, 2, 1, 0, 2, 0])


def _probs():
    """New-model probabilities: 0.8 on the predicted class, except the two flips."""
    p = np.full((10, 3), 0.1)
    p[np.arange(10), N] = 0.8
    p[3] = [0.025, 0.025, 0.95]  # flip at index 3: confident (>= 0.9)
    p[4] = [0.6, 0.3, 0.1]       # flip at index 4: not confident
    return p


def test_summary_of_hand_counted_example():
    s = flips.summarize(Y, O, N, new_prob=_probs())
    assert s.examples == 10
    assert s.old_accuracy == 7 / 10
    assert s.new_accuracy == 6 / 10
    assert s.negative_flips == 2
    assert s.positive_flips == 1
    assert s.nfr == 2 / 10
    assert s.pfr == 1 / 10
    assert s.nfi == 2 / 4            # 2 flips among the new model's 4 errors
    # 0.2 / (0.7 * 0.4) = 20 / 28 = 5 / 7
    assert s.relative_nfr == pytest.approx(5 / 7)
    assert s.btc == 5 / 7            # 5 both right of 7 old right
    assert s.bec == 2 / 3            # 2 both wrong of 3 old wrong
    assert s.high_confidence_flips == 1  # only index 3 (0.95); index 4 is 0.6


def test_high_confidence_threshold_is_inclusive_and_optional():
    p = _probs()
    assert flips.summarize(Y, O, N, new_prob=p, high_confidence=0.6).high_confidence_flips == 2
    assert flips.summarize(Y, O, N, new_prob=p, high_confidence=0.96).high_confidence_flips == 0
    assert flips.summarize(Y, O, N).high_confidence_flips == 0  # no probabilities given


def test_accepts_lists_and_integral_floats():
    s = flips.summarize(Y.tolist(), O.astype(float), N.astype(np.int32))
    assert s == flips.summarize(Y, O, N)


def test_negative_flip_mask():
    expected = np.zeros(10, dtype=bool)
    expected[[3, 4]] = True
    mask = flips.negative_flip_mask(Y, O, N)
    assert mask.dtype == bool
    np.testing.assert_array_equal(mask, expected)


def test_flip_confidence_is_prob_of_new_prediction_for_every_example():
    conf = flips.flip_confidence(_probs(), N)
    assert conf.shape == (10,)
    assert conf[3] == 0.95 and conf[4] == 0.6
    np.testing.assert_array_equal(conf[[0, 1, 2, 5, 6, 7, 8, 9]], np.full(8, 0.8))


def test_identical_models_have_no_flips():
    # old == new; 2 of 5 wrong.
    y = np.array([0, 1, 2, 1, 0])
    p = np.array([0, 1, 2, 0, 2])
    s = flips.summarize(y, p, p)
    assert (s.negative_flips, s.positive_flips) == (0, 0)
    assert (s.nfr, s.pfr, s.nfi, s.relative_nfr) == (0.0, 0.0, 0.0, 0.0)
    assert s.btc == 1.0 and s.bec == 1.0  # keeps every right answer and every error
    assert s.old_accuracy == s.new_accuracy == 3 / 5


def test_no_errors_anywhere_uses_documented_conventions():
    y = np.array([0, 1, 2])
    s = flips.summarize(y, y, y)
    assert s.old_accuracy == s.new_accuracy == 1.0
    assert s.nfi == 0.0            # new model has no errors
    assert s.relative_nfr == 0.0   # err_new == 0
    assert s.btc == 1.0
    assert s.bec == 0.0            # old model has no errors


def test_perfect_old_model_every_new_error_is_a_flip():
    y = np.array([0, 1, 2, 0])
    new = np.array([0, 2, 2, 1])   # wrong on indices 1 and 3
    s = flips.summarize(y, y, new)
    assert s.negative_flips == 2 and s.positive_flips == 0
    assert s.nfr == 2 / 4
    assert s.nfi == 1.0
    assert s.relative_nfr == 1.0   # 0.5 / (1.0 * 0.5)
    assert s.btc == 2 / 4
    assert s.bec == 0.0


def test_all_examples_flip():
    y = np.array([0, 1, 2])
    new = np.array([1, 2, 0])
    s = flips.summarize(y, y, new)
    assert s.negative_flips == 3
    assert (s.nfr, s.nfi, s.relative_nfr, s.btc, s.pfr) == (1.0, 1.0, 1.0, 0.0, 0.0)
    # and the reverse direction is all positive flips
    r = flips.summarize(y, new, y)
    assert (r.negative_flips, r.positive_flips, r.pfr, r.nfr) == (0, 3, 1.0, 0.0)
    assert r.btc == 1.0            # old model right nowhere: nothing to break
    assert r.bec == 0.0            # 0 of 3 old errors repeated
    assert r.relative_nfr == 0.0   # old accuracy 0 -> denominator 0


def test_to_dict_is_plain_and_json_round_trips():
    s = flips.summarize(Y, O, N, new_prob=_probs())
    d = s.to_dict()
    assert set(d) == {f.name for f in dataclasses.fields(flips.FlipSummary)}
    assert type(d["negative_flips"]) is int and type(d["high_confidence_flips"]) is int
    assert type(d["nfr"]) is float and type(d["examples"]) is int
    assert json.loads(json.dumps(d)) == d
    assert flips.FlipSummary(**d) == s
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.nfr = 0.0


def test_per_class_groups_match_hand_counts_and_subset_summaries():
    p = _probs()
    result = flips.per_group(Y, O, N, groups=Y, new_prob=p)
    assert list(result) == [0, 1, 2]
    assert all(type(k) is int for k in result)
    # class 0 = indices 0,3,6,9: right/right, flip 0->2 (conf 0.95), wrong/wrong, right/right
    c0 = result[0]
    assert (c0.examples, c0.negative_flips, c0.positive_flips) == (4, 1, 0)
    assert c0.old_accuracy == 3 / 4 and c0.new_accuracy == 2 / 4
    assert c0.high_confidence_flips == 1
    # class 2 = indices 2,5,8: one positive flip, no negatives
    assert (result[2].negative_flips, result[2].positive_flips) == (0, 1)
    for cls, summary in result.items():
        keep = Y == cls
        assert summary == flips.summarize(Y[keep], O[keep], N[keep], new_prob=p[keep])
    assert sum(s.negative_flips for s in result.values()) == 2
    assert sum(s.examples for s in result.values()) == 10


def test_per_group_with_string_slice_feature():
    device = np.array(["phone"] * 5 + ["web"] * 5)
    result = flips.per_group(Y, O, N, groups=device)
    assert list(result) == ["phone", "web"]
    assert all(type(k) is str for k in result)
    # phone = indices 0-4 (both flips), web = 5-9 (the positive flip)
    assert (result["phone"].negative_flips, result["phone"].positive_flips) == (2, 0)
    assert (result["web"].negative_flips, result["web"].positive_flips) == (0, 1)
    assert result["web"] == flips.summarize(Y[5:], O[5:], N[5:])


def test_flip_matrix():
    m = flips.flip_matrix(Y, O, N, num_classes=3)
    expected = np.zeros((3, 3), dtype=int)
    expected[0, 2] = 1   # index 3: old 0 -> new 2
    expected[1, 0] = 1   # index 4: old 1 -> new 0
    np.testing.assert_array_equal(m, expected)
    assert m.sum() == flips.summarize(Y, O, N).negative_flips
    assert np.issubdtype(m.dtype, np.integer)
    # extra classes just add empty rows/columns
    m5 = flips.flip_matrix(Y, O, N, num_classes=5)
    assert m5.shape == (5, 5) and m5.sum() == 2 and m5[0, 2] == 1


def test_flip_matrix_counts_repeated_cells():
    y = np.array([1, 1, 1, 0])
    new = np.array([0, 0, 2, 0])
    m = flips.flip_matrix(y, y, new, num_classes=3)
    assert m[1, 0] == 2 and m[1, 2] == 1 and m.sum() == 3
    assert np.trace(m) == 0


def test_ranked_flips_order_and_contents():
    # indices 0-3 are negative flips (old right, new wrong); index 4 is a non-flip with the
    # highest confidence and must not appear.
    y = np.array([0, 0, 0, 0, 1])
    old = np.array([0, 0, 0, 0, 1])
    new = np.array([1, 2, 1, 2, 1])
    p = np.array([
        [0.25, 0.75, 0.0],   # id 30, conf 0.75
        [0.25, 0.25, 0.5],   # id 10, conf 0.5
        [0.25, 0.75, 0.0],   # id 20, conf 0.75 (ties id 30 -> id 20 first)
        [0.5, 0.25, 0.25],   # id 40, conf 0.25
        [0.0, 1.0, 0.0],     # id 5, right both times
    ])
    ids = np.array([30, 10, 20, 40, 5])
    ranked = flips.ranked_flips(y, old, new, p, ids)
    assert [r["id"] for r in ranked] == [20, 30, 10, 40]
    assert [r["confidence"] for r in ranked] == [0.75, 0.75, 0.5, 0.25]
    assert ranked[0] == {"id": 20, "label": 0, "old_pred": 0, "new_pred": 1, "confidence": 0.75}
    assert ranked[3]["new_pred"] == 2
    json.dumps(ranked)  # plain Python types


def test_ranked_flips_string_ids_and_empty_result():
    ranked = flips.ranked_flips(Y, O, N, _probs(), [f"ex{i}" for i in range(10)])
    assert [r["id"] for r in ranked] == ["ex3", "ex4"]   # 0.95 before 0.6
    assert flips.ranked_flips(Y, O, O, _probs(), np.arange(10)) == []


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: flips.summarize([0, 1, 2, 0, 1], [0, 1, 2, 0, 1], [0, 1, 2, 0]),
         "labels has 5 entries but new_pred has 4; pass new_pred for the same examples"),
        (lambda: flips.summarize([0, 1], [0, 1, 1], [0, 1]), "labels has 2 entries but old_pred has 3"),
        (lambda: flips.summarize([], [], []), "labels is empty"),
        (lambda: flips.summarize([[0, 1]], [[0, 1]], [[0, 1]]), "labels must be 1-D"),
        (lambda: flips.summarize([0, 1], [0, 1], [0.2, 0.8]), "new_pred holds non-integer values"),
        (lambda: flips.summarize([0, -1], [0, 1], [0, 1]), "labels has negative class ids"),
        (lambda: flips.summarize(["a", "b"], [0, 1], [0, 1]), "labels must hold integer class ids"),
        (lambda: flips.summarize([0, 1], [True, False], [0, 1]), "old_pred must hold integer class ids"),
        (lambda: flips.summarize([0, 1], [0, 1], [0, 1], new_prob=[[1.0, 0.0]]),
         "new_pred has 2 entries but new_prob has 1 rows"),
        (lambda: flips.summarize([0, 1], [0, 1], [0, 1], new_prob=[1.0, 0.0]), "new_prob must be 2-D"),
        (lambda: flips.summarize([0, 1], [0, 1], [0, 1], new_prob=[[2.0, -1.0], [0.0, 1.0]]),
         "apply softmax to logits"),
        (lambda: flips.summarize([0, 2], [0, 2], [0, 2], new_prob=[[1.0, 0.0], [0.0, 1.0]]),
         "new_pred has class id 2 but new_prob has only 2 columns"),
        (lambda: flips.summarize([0], [0], [0], high_confidence=90), "high_confidence must be"),
        (lambda: flips.flip_confidence([[1.0, 0.0]], [0, 1]), "new_pred has 2 entries but new_prob has 1"),
        (lambda: flips.per_group([0, 1], [0, 1], [0, 1], groups=[0]), "labels has 2 entries but groups has 1"),
        (lambda: flips.flip_matrix([0, 3], [0, 1], [0, 1], num_classes=3),
         "labels has class id 3 but num_classes is 3"),
        (lambda: flips.flip_matrix([0], [0], [0], num_classes=0), "num_classes must be positive"),
        (lambda: flips.ranked_flips([0, 0], [0, 0], [1, 1], [[0, 1], [0, 1]], ids=[7, 7]),
         "ids has duplicates"),
        (lambda: flips.ranked_flips([0, 0], [0, 0], [1, 1], [[0, 1], [0, 1]], ids=[7]),
         "labels has 2 entries but ids has 1"),
    ],
)
def test_validation_errors_name_the_problem(call, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call()
