"""graceful.gate: the flip policy on hand-written report numbers (bounds inclusive, like TFMA)."""
import dataclasses

import pytest

from graceful.gate import GateConfig, edge_failures, failures

POLICY = GateConfig(min_accuracy=0.6, max_accuracy_drop=0.0, max_nfr=0.03, max_relative_nfr=0.3,
                    max_class_nfr=0.25, max_high_confidence_flips=2)


def _summary(**changes):
    summary = {"examples": 100, "old_accuracy": 0.8, "new_accuracy": 0.85, "negative_flips": 3,
               "nfr": 0.03, "relative_nfr": 0.3, "high_confidence_flips": 2}
    summary.update(changes)
    return summary


def test_values_at_their_limits_pass():
    assert failures(POLICY, _summary(), {"0": {"nfr": 0.25}}) == []


def test_each_limit_is_named_with_value_and_bound():
    lines = failures(POLICY, _summary(new_accuracy=0.55, nfr=0.031, negative_flips=31,
                                      relative_nfr=0.5, high_confidence_flips=3),
                     {"0": {"nfr": 0.1}, "6": {"nfr": 0.4}}, class_names=[str(i) for i in range(5)]
                     + ["Sandal", "Shirt"])
    assert lines == [
        "accuracy 0.5500 < min_accuracy 0.6",
        "accuracy dropped 0.8000 -> 0.5500 (-0.2500; max_accuracy_drop 0)",
        "NFR 0.0310 > max_nfr 0.03 (31 of 100 examples)",
        "relative NFR 0.500 > max_relative_nfr 0.3",
        "class Shirt (6) NFR 0.4000 > max_class_nfr 0.25",
        "high-confidence flips 3 > max_high_confidence_flips 2",
    ]


def test_equal_accuracy_is_not_a_drop_but_any_drop_beyond_the_allowance_is():
    assert failures(POLICY, _summary(new_accuracy=0.8)) == []
    allowed = dataclasses.replace(POLICY, max_accuracy_drop=0.01)  # only the drop allowance differs
    assert failures(allowed, _summary(new_accuracy=0.79)) == []
    assert failures(allowed, _summary(new_accuracy=0.789))[0].startswith("accuracy dropped")


def test_without_a_baseline_only_the_accuracy_floor_applies():
    bad_flips = _summary(nfr=0.5, relative_nfr=9.0, high_confidence_flips=50, old_accuracy=0.99)
    assert failures(POLICY, bad_flips, {"0": {"nfr": 0.9}}, has_baseline=False) == []
    assert failures(POLICY, _summary(new_accuracy=0.5), has_baseline=False) == [
        "accuracy 0.5000 < min_accuracy 0.6"]


def test_worst_class_is_listed_first():
    lines = failures(POLICY, _summary(), {"1": {"nfr": 0.3}, "2": {"nfr": 0.5}})
    assert [line.split()[1] for line in lines] == ["2", "1"]


def test_every_slice_value_is_held_to_max_slice_nfr_worst_first():
    per_slice = {"device": {"phone": {"nfr": 0.5, "negative_flips": 2, "examples": 4},
                            "web": {"nfr": 0.25, "negative_flips": 1, "examples": 4},
                            "tv": {"nfr": 0.75, "negative_flips": 3, "examples": 4}}}
    assert failures(POLICY, _summary(), per_slice=per_slice) == [
        "slice device=tv NFR 0.7500 > max_slice_nfr 0.25 (3 of 4 examples)",
        "slice device=phone NFR 0.5000 > max_slice_nfr 0.25 (2 of 4 examples)"]
    assert failures(POLICY, _summary(), per_slice=per_slice, has_baseline=False) == []


# flip_bound: which value of each interval-gated metric meets its limit. The same report in all three
# modes: NFR 0.032 over max_nfr 0.03 but not confidently; relative NFR 0.28 under 0.3 but not
# confidently; class 6 confidently over; the accuracy change -0.005 under the allowed 0.
INTERVALS = {"level": 0.95, "resamples": 1000, "seed": 0, "nfr": [0.029, 0.0351],
             "relative_nfr": [0.25, 0.31], "accuracy_change": [-0.009, 0.001],
             "per_class": {"6": [0.26, 0.5], "0": [0.05, 0.15]}}
BOUNDED = dataclasses.replace(POLICY, max_high_confidence_flips=100)


def _bounded(mode):
    return failures(dataclasses.replace(BOUNDED, flip_bound=mode),
                    _summary(nfr=0.032, negative_flips=32, relative_nfr=0.28, new_accuracy=0.795),
                    {"0": {"nfr": 0.1}, "6": {"nfr": 0.4}}, class_names=None, intervals=INTERVALS)


def test_point_mode_ignores_the_intervals():
    assert _bounded("point") == [
        "accuracy dropped 0.8000 -> 0.7950 (-0.0050; max_accuracy_drop 0)",
        "NFR 0.0320 > max_nfr 0.03 (32 of 100 examples)",
        "class 6 NFR 0.4000 > max_class_nfr 0.25"]


def test_lower_mode_blocks_only_what_is_confidently_over_a_limit():
    assert _bounded("lower") == [
        "class 6 NFR 0.4000 [0.2600, 0.5000] lower bound > max_class_nfr 0.25"]


def test_upper_mode_blocks_unless_confidently_within_each_limit():
    assert _bounded("upper") == [
        "accuracy dropped 0.8000 -> 0.7950 (-0.0050 [-0.0090, +0.0010] lower bound < "
        "-max_accuracy_drop 0)",
        "NFR 0.0320 [0.0290, 0.0351] upper bound > max_nfr 0.03 (32 of 100 examples)",
        "relative NFR 0.280 [0.250, 0.310] upper bound > max_relative_nfr 0.3",
        "class 6 NFR 0.4000 [0.2600, 0.5000] upper bound > max_class_nfr 0.25"]


def test_bounds_are_inclusive_and_points_stand_in_for_missing_intervals():
    at_limit = {**INTERVALS, "nfr": [0.03, 0.03], "relative_nfr": [0.3, 0.3],
                "accuracy_change": [0.0, 0.0], "per_class": {}}
    for mode in ("lower", "upper"):
        policy = dataclasses.replace(BOUNDED, flip_bound=mode)
        assert failures(policy, _summary(nfr=0.04), intervals=at_limit) == []
        # no intervals (an older report) or a class without one: the point value is judged
        assert failures(policy, _summary(nfr=0.04, negative_flips=4)) == [
            "NFR 0.0400 > max_nfr 0.03 (4 of 100 examples)"]
        assert failures(policy, _summary(), {"2": {"nfr": 0.3}}, intervals=at_limit) == [
            "class 2 NFR 0.3000 > max_class_nfr 0.25"]


def test_an_unknown_bound_or_confidence_is_refused_by_name():
    with pytest.raises(ValueError, match="flip_bound must be one of point, lower, upper, got 'low'"):
        GateConfig(flip_bound="low")
    with pytest.raises(ValueError, match="confidence must be in"):
        GateConfig(confidence=95)
    with pytest.raises(ValueError, match="bootstrap_resamples must be at least 1"):
        GateConfig(bootstrap_resamples=0)


def test_class_label_is_the_one_naming_of_a_class_everywhere():
    """graceful.flips.class_label: name, name with id, the id for no names or an id beyond them
    (str report keys too); the cloud and edge gate lines share one per-class loop."""
    from graceful import flips
    assert flips.class_label(("cat", "dog"), "1") == "dog"
    assert flips.class_label(("cat", "dog"), 1, with_id=True) == "dog (1)"
    assert flips.class_label(("cat", "dog"), 7, with_id=True) == "7"
    assert flips.class_label(None, 0) == "0" and flips.class_label((), "3", with_id=True) == "3"
    summary = {"new_accuracy": 0.9, "old_accuracy": 0.9, "nfr": 0.0, "relative_nfr": 0.0,
               "high_confidence_flips": 0, "negative_flips": 0, "examples": 10}
    per_class = {"1": {"nfr": 0.5}, "7": {"nfr": 0.4}}
    policy = GateConfig(max_class_nfr=0.1)
    assert [line.split(" NFR")[0] for line in failures(policy, summary, per_class,
                                                       class_names=("cat", "dog"))] == [
        "class dog (1)", "class 7"]  # an id beyond the names no longer raises IndexError
    assert [line.split(" NFR")[0] for line in edge_failures(
        GateConfig(max_edge_class_nfr=0.1), {"summary": summary, "per_class": per_class},
        class_names=("cat", "dog"))] == ["edge class dog (1)", "edge class 7"]
