"""benchmarks/training.py's bookkeeping: the row it calls the pipeline default is TrainingParams()'s
recipe, and time ratios come from one timing session (the VM's speed drifts between sessions)."""

import dataclasses

import pytest

from benchmarks import training as bench
from graceful.models.params import TrainingParams

RECIPE = ("loss", "temperature", "alpha", "beta", "lam", "margin", "lambda_bct", "lambda_align",
          "ema_momentum", "reference_step_factor")


def test_the_benchmarks_default_row_is_the_pipelines_default_recipe():
    benchmarked = dataclasses.replace(TrainingParams(reference_step_factor=1.0),
                                      **bench.METHODS[bench.DEFAULT])
    default = TrainingParams()
    assert {f: getattr(benchmarked, f) for f in RECIPE} == {f: getattr(default, f) for f in RECIPE}


def test_time_ratio_uses_the_newest_session_that_timed_both_and_same_cost_twins():
    timing = [{bench.PLAIN: [10.0, 12.0, 11.0], "fd_kl +ema": [13.0, 11.0, 12.0]},
              {bench.PLAIN: [20.0, 22.0, 30.0], bench.PLAIN_EMA_MORE_STEPS: [30.0]}]
    assert bench.time_ratio(timing, "fd_kl +ema") == pytest.approx(12.0 / 11.0)
    assert bench.time_ratio(timing, bench.PLAIN_EMA_MORE_STEPS) == pytest.approx(30.0 / 22.0)
    # fd_kl at lam 0.2 does fd_kl's work: it takes fd_kl's time, not plain's
    assert bench.time_ratio(timing, "fd_kl lam0.2 +ema") == pytest.approx(12.0 / 11.0)
    assert bench.time_ratio(timing, "fd_margin +ema") is None
