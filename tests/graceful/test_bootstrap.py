"""graceful.bootstrap: paired bootstrap intervals of the flip metrics, checked against an explicit
resample-by-index loop over graceful.flips, a binomial known answer, degenerate cases, seeding, and
the paired-vs-unpaired width of the accuracy change (milliseconds; no TFX)."""
import numpy as np
import pytest
from scipy import stats

from graceful import bootstrap, flips


def _models(n=2000, seed=1, classes=5, old_acc=0.8, new_acc=0.85, agreement=0.9):
    """Labels and two correlated models' predictions: where `agreement` holds the new model repeats
    the old one's answer, elsewhere each is right with its own accuracy."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    wrong = lambda: (y + rng.integers(1, classes, n)) % classes  # noqa: E731
    o = np.where(rng.random(n) < old_acc, y, wrong())
    fresh = np.where(rng.random(n) < new_acc, y, wrong())
    return y, o, np.where(rng.random(n) < agreement, o, fresh)


def test_every_resample_equals_flips_on_the_explicitly_resampled_rows():
    """The multinomial-counts trick against the definition: draw the same indices, take those rows,
    and summarise them with graceful.flips (overall and per class)."""
    y, o, n = _models(n=300)
    values = bootstrap.resampled(y, o, n, resamples=40, seed=7)
    rows = np.random.default_rng(7).integers(0, len(y), size=(40, len(y)))
    for b, idx in enumerate(rows):
        summary = flips.summarize(y[idx], o[idx], n[idx])
        assert values["nfr"][b] == pytest.approx(summary.nfr, abs=1e-12)
        assert values["relative_nfr"][b] == pytest.approx(summary.relative_nfr, abs=1e-12)
        assert values["accuracy_change"][b] == pytest.approx(
            summary.new_accuracy - summary.old_accuracy, abs=1e-12)
        per_class = flips.per_group(y[idx], o[idx], n[idx], y[idx])
        for cls, class_values in values["per_class"].items():
            if cls in per_class:
                assert class_values[b] == pytest.approx(per_class[cls].nfr, abs=1e-12)
            else:  # absent from this resample: no NFR, left out of the interval
                assert np.isnan(class_values[b])


def test_nfr_of_k_flips_in_n_is_binomial():
    """Known answer: with k negative flips among n examples, a resample's flip count is
    Binomial(n, k/n), so the resampled NFR has mean k/n and the binomial's quantiles."""
    n, k, resamples = 400, 12, 4000
    y = np.zeros(n, dtype=int)
    o = np.zeros(n, dtype=int)
    new = np.where(np.arange(n) < k, 1, 0)
    values = bootstrap.resampled(y, o, new, resamples=resamples, seed=3)["nfr"]
    p = k / n
    assert values.mean() == pytest.approx(p, abs=4 * np.sqrt(p * (1 - p) / n / resamples))
    assert values.std() == pytest.approx(np.sqrt(p * (1 - p) / n), rel=0.05)
    interval = bootstrap.intervals(y, o, new, 0.9, resamples, seed=3).nfr
    expected = stats.binom.ppf([0.05, 0.95], n, p) / n
    assert np.abs(np.array(interval) - expected).max() <= 1 / n + 1e-12


def test_all_or_nothing_flips_give_degenerate_intervals():
    y = np.array([0, 1, 2, 1, 0])
    everything = bootstrap.intervals(y, y, (y + 1) % 3, resamples=50)
    assert everything.nfr == (1.0, 1.0) and everything.accuracy_change == (-1.0, -1.0)
    assert everything.relative_nfr == (1.0, 1.0)  # old always right, new always wrong
    assert everything.per_class == {0: (1.0, 1.0), 1: (1.0, 1.0), 2: (1.0, 1.0)}
    nothing = bootstrap.intervals(y, y, y, resamples=50)
    assert nothing.nfr == nothing.relative_nfr == nothing.accuracy_change == (0.0, 0.0)


def test_the_result_does_not_depend_on_how_resamples_are_chunked(monkeypatch):
    y, o, n = _models(n=500)
    whole = bootstrap.resampled(y, o, n, resamples=30, seed=4)
    monkeypatch.setattr(bootstrap, "_CHUNK_DRAWS", 7 * 500)  # 7 resamples per matrix product
    chunked = bootstrap.resampled(y, o, n, resamples=30, seed=4)
    for key in ("nfr", "relative_nfr", "accuracy_change"):
        assert np.array_equal(whole[key], chunked[key])


def test_seeded_and_reported_as_plain_json():
    y, o, n = _models(n=500)
    first, again = (bootstrap.intervals(y, o, n, resamples=200, seed=5) for _ in range(2))
    assert first == again
    assert bootstrap.intervals(y, o, n, resamples=200, seed=6) != first
    as_dict = first.to_dict()
    assert as_dict["level"] == 0.95 and as_dict["resamples"] == 200 and as_dict["seed"] == 5
    assert as_dict["nfr"] == list(first.nfr) and set(as_dict["per_class"]) == {"0", "1", "2", "3",
                                                                               "4"}


def test_intervals_contain_the_point_values_and_narrow_with_the_level():
    y, o, n = _models(n=2000, seed=2)
    summary = flips.summarize(y, o, n)
    wide = bootstrap.intervals(y, o, n, level=0.95, resamples=400)
    narrow = bootstrap.intervals(y, o, n, level=0.5, resamples=400)
    for name, point in (("nfr", summary.nfr), ("relative_nfr", summary.relative_nfr),
                        ("accuracy_change", summary.new_accuracy - summary.old_accuracy)):
        lo, hi = getattr(wide, name)
        assert lo <= point <= hi, name
        assert lo <= getattr(narrow, name)[0] <= getattr(narrow, name)[1] <= hi
    for cls, per_class in flips.per_group(y, o, n, y).items():
        assert wide.per_class[cls][0] <= per_class.nfr <= wide.per_class[cls][1]


def test_paired_interval_of_the_accuracy_change_is_narrower_than_unpaired():
    """Correlated models: resampling both models on the same rows cancels the examples both get
    right or wrong; resampling each model's accuracy independently does not."""
    y, o, n = _models(n=1000, agreement=0.95)
    paired = np.diff(bootstrap.intervals(y, o, n, resamples=400).accuracy_change)[0]
    rng = np.random.default_rng(0)
    draws = [rng.integers(0, len(y), size=(400, len(y))) for _ in range(2)]
    unpaired = (n[draws[1]] == y[draws[1]]).mean(1) - (o[draws[0]] == y[draws[0]]).mean(1)
    assert paired < 0.5 * np.diff(np.quantile(unpaired, [0.025, 0.975]))[0]


def test_bad_level_or_resamples_are_refused_by_name():
    y = np.array([0, 1])
    with pytest.raises(ValueError, match="level must be a confidence in"):
        bootstrap.intervals(y, y, y, level=95)
    with pytest.raises(ValueError, match="resamples must be at least 1"):
        bootstrap.intervals(y, y, y, resamples=0)
    with pytest.raises(ValueError, match="labels has 2 entries but old_pred has 1"):
        bootstrap.intervals(y, y[:1], y)


def test_rates_from_counts_match_summarize_and_work_elementwise():
    y, o, n = _models(n=200)
    summary = flips.summarize(y, o, n)
    old_right, new_right = int((o == y).sum()), int((n == y).sum())
    scalar = flips.rates(len(y), old_right, new_right, summary.negative_flips)
    assert scalar == {"nfr": summary.nfr, "relative_nfr": summary.relative_nfr,
                      "accuracy_change": pytest.approx(summary.new_accuracy - summary.old_accuracy)}
    arrays = flips.rates(np.array([len(y), 0, 4]), np.array([old_right, 0, 4]),
                         np.array([new_right, 0, 4]), np.array([summary.negative_flips, 0, 0]))
    assert arrays["nfr"].tolist() == [summary.nfr, 0.0, 0.0]
    assert arrays["relative_nfr"].tolist() == [summary.relative_nfr, 0.0, 0.0]


def test_many_classes_with_gaps_equal_the_explicit_resamples():
    """Class ids that are neither contiguous nor in order of first appearance (the per-class sums
    are segment sums over the examples sorted by class): every resample against graceful.flips."""
    y, o, n = (7 * a + 3 for a in _models(n=400, seed=3, classes=60))
    values = bootstrap.resampled(y, o, n, resamples=15, seed=2)
    assert sorted(values["per_class"]) == np.unique(y).tolist()
    rows = np.random.default_rng(2).integers(0, len(y), size=(15, len(y)))
    for b, idx in enumerate(rows):
        per_class = flips.per_group(y[idx], o[idx], n[idx], y[idx])
        for cls, class_values in values["per_class"].items():
            expected = per_class[cls].nfr if cls in per_class else np.nan
            np.testing.assert_allclose(class_values[b], expected, atol=1e-12)


def test_memory_does_not_grow_with_examples_times_classes():
    """20k examples x 1000 classes: a dense [N, 3 + 2C] float64 indicator alone would be ~320 MB;
    the peak stays at the chunks and per-example arrays (tracemalloc sees numpy's buffers)."""
    import tracemalloc
    y, o, n = _models(n=20_000, seed=4, classes=1000)
    tracemalloc.start()
    try:
        values = bootstrap.resampled(y, o, n, resamples=20)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(values["per_class"]) == 1000
    assert peak < 40e6, f"peak {peak / 1e6:.0f} MB"
