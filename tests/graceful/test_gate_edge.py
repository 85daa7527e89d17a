"""The gate's edge limits (graceful.gate.edge_failures) on numbers from graceful.flips, each checked
against a numpy count of the same hand-made predictions. Milliseconds, no TensorFlow."""
import numpy as np

from graceful import flips
from graceful.gate import GateConfig, edge_failures

LABELS = np.array([0, 0, 1, 1, 2, 2, 2, 2, 1, 0])
CLOUD = np.array([0, 0, 1, 1, 2, 2, 2, 1, 1, 0])      # 9 of 10 right
EDGE = np.array([0, 1, 1, 1, 2, 0, 2, 1, 1, 0])       # flips examples 1 (0->1) and 5 (2->0)
PREVIOUS = np.array([0, 1, 1, 0, 2, 2, 2, 2, 1, 0])   # the edge model flips 5 and 7 (class 2)
CONFIDENCE = np.array([.9, .95, .8, .8, .9, .5, .9, .9, .9, .9])


def _prob(pred):
    prob = np.full((len(pred), 3), 0.0)
    prob[np.arange(len(pred)), pred] = CONFIDENCE
    prob[np.arange(len(pred)), (pred + 1) % 3] = 1 - CONFIDENCE
    return prob


def _numbers(old, new):
    return {"summary": flips.summarize(LABELS, old, new, _prob(new)).to_dict(),
            "per_class": {str(c): s.to_dict() for c, s in
                          flips.per_group(LABELS, old, new, LABELS, _prob(new)).items()}}


LOOSE = GateConfig(max_edge_nfr=1, max_edge_previous_nfr=1, max_edge_class_nfr=1,
                   max_edge_high_confidence_flips=100)


def test_the_numbers_the_gate_reads_equal_a_numpy_count():
    vs_cloud = _numbers(CLOUD, EDGE)["summary"]
    assert vs_cloud["negative_flips"] == np.sum((CLOUD == LABELS) & (EDGE != LABELS)) == 2
    assert vs_cloud["nfr"] == 0.2
    assert vs_cloud["high_confidence_flips"] == 1  # example 1 at 0.95; example 5 at 0.5
    assert _numbers(PREVIOUS, EDGE)["summary"]["nfr"] == np.mean(
        (PREVIOUS == LABELS) & (EDGE != LABELS)) == 0.2
    for old in (CLOUD, PREVIOUS):
        per_class = _numbers(old, EDGE)["per_class"]
        for c in range(3):
            rows = LABELS == c
            assert per_class[str(c)]["nfr"] == np.mean((old[rows] == c) & (EDGE[rows] != c))


def test_within_every_limit_nothing_fails_and_bounds_are_inclusive():
    assert edge_failures(LOOSE, _numbers(CLOUD, EDGE), _numbers(PREVIOUS, EDGE)) == []
    exact = GateConfig(max_edge_nfr=0.2, max_edge_previous_nfr=0.2, max_edge_class_nfr=0.5,
                       max_edge_high_confidence_flips=1)
    assert edge_failures(exact, _numbers(CLOUD, EDGE), _numbers(PREVIOUS, EDGE)) == []


def test_each_edge_limit_fails_with_a_readable_line():
    vs_cloud, vs_previous = _numbers(CLOUD, EDGE), _numbers(PREVIOUS, EDGE)
    policy = GateConfig(max_edge_nfr=0.1, max_edge_previous_nfr=0.15, max_edge_class_nfr=0.3,
                        max_edge_high_confidence_flips=0)
    assert edge_failures(policy, vs_cloud, vs_previous, class_names=["a", "b", "c"]) == [
        "edge NFR vs the cloud candidate 0.2000 > max_edge_nfr 0.1 (2 of 10 examples)",
        "edge class a (0) NFR vs the cloud candidate 0.3333 > max_edge_class_nfr 0.3",
        "edge NFR vs the previously pushed edge model 0.2000 > max_edge_previous_nfr 0.15 "
        "(2 of 10 examples)",
        "edge class c (2) NFR vs the previously pushed edge model 0.5000 > max_edge_class_nfr 0.3",
        "edge high-confidence flips vs the cloud candidate 1 > max_edge_high_confidence_flips 0"]


def test_without_a_previous_edge_model_only_the_cloud_comparison_counts():
    policy = GateConfig(max_edge_nfr=1, max_edge_previous_nfr=0, max_edge_class_nfr=1,
                        max_edge_high_confidence_flips=100)
    assert edge_failures(policy, _numbers(CLOUD, EDGE), None) == []
    assert edge_failures(policy, _numbers(CLOUD, EDGE), _numbers(PREVIOUS, EDGE))[0].startswith(
        "edge NFR vs the previously pushed edge model 0.2000 > max_edge_previous_nfr 0")


def test_the_defaults_are_stricter_than_the_cloud_limits():
    policy = GateConfig()
    assert policy.max_edge_nfr < policy.max_nfr and policy.max_edge_class_nfr < policy.max_class_nfr
