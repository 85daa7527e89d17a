"""graceful.gate: the flip policy on hand-written report numbers (bounds inclusive, like TFMA)."""
import dataclasses

from graceful.gate import GateConfig, failures

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
