"""The push policy on negative flips and accuracy, and the check of a flip report against it.

TFX-free on purpose: the FlipEvaluator component applies it to its numbers, the pipeline turns the same
`GateConfig` into TFMA thresholds for the Evaluator, and a notebook or test can apply it to any report.
Bounds are inclusive, as in TFMA: a value equal to its limit passes.
"""
from __future__ import annotations

import dataclasses

from graceful import bootstrap, flips

# Tolerance for comparing accuracies computed from counts on the same examples.
_EPSILON = 1e-12
# How GateConfig.flip_bound compares a metric with its limit: the point value, or a bound of its
# paired bootstrap interval (graceful.bootstrap). "lower" passes what is not confidently worse than
# the limit, "upper" blocks what is not confidently better.
FLIP_BOUNDS = ("point", "lower", "upper")


@dataclasses.dataclass
class GateConfig:
    """The push policy, checked against the last blessed model (the baseline).

    Accuracy: an absolute floor, and how much it may drop vs the baseline. Negative flips (examples
    the baseline got right and the candidate gets wrong): overall NFR, NFR relative to independent
    errors, NFR within any one class or any one slice (a value of a slice feature), and
    high-confidence flips. Flip limits apply only when there is a baseline. max_relative_nfr = 0.26
    sits midway between the pipeline's default training and plain retraining as measured: the
    defaults before issue #17 (bct+fd+align, weights averaged) scored 0.21-0.22 in the training
    benchmark and in the demos, plain retraining 0.31-0.35 there and 0.30-0.33 in the demos (0.30
    once, which a limit of 0.30 let through by 0.001). Focal distillation without weight averaging
    (0.23-0.28) can fail it. The default since #17 (fd_kl, lam 0.4, 1.35x the steps) scores 0.220
    on Fashion-MNIST but 0.261 on MNIST-1D, where the old model is far weaker (36% error): a limit
    tuned on the demo's data, to set per project.

    Noise: the FlipEvaluator reports paired bootstrap intervals (`confidence`, `bootstrap_resamples`;
    graceful.bootstrap) of NFR, relative NFR, per-class NFR and the accuracy change, and
    `flip_bound` chooses what is compared with those four limits: "point" (the measured value),
    "lower" (block only when confidently over the limit: NFR lower bound > max_nfr, accuracy change
    upper bound < -max_accuracy_drop) or "upper" (block unless confidently within: NFR upper bound >
    max_nfr, accuracy change lower bound < -max_accuracy_drop). Slice NFR and confident flips are
    always point values. The default stays "point", from measurements (benchmarks/bootstrap.py ->
    benchmarks/results/bootstrap.json: 95%, 1000 resamples, six real demo runs, 10k eval examples):
    intervals are 0.005-0.008 wide for NFR, 0.050-0.060 for relative NFR, 0.011-0.013 for the
    accuracy change and ~0.015 for a class's NFR (up to 0.043). There all three modes agree: the
    default recipe (relative NFR 0.226-0.230, upper bounds 0.250-0.258 <= 0.26) passes, plain
    retraining (0.353-0.377, lower bounds 0.323-0.348 > 0.26; NFR lower bounds 0.031-0.035 > 0.03)
    is blocked. On subsets they part: at 2.5k examples "upper" blocks the default recipe and "lower"
    lets plain retraining's NFR through; at 625, "lower" passes plain retraining outright in 2 of 4
    runs. Neither bound is the better default; the point verdict is unbiased, and the intervals (in
    the report, `graceful history`/`report` and the sign-off) show when it is within noise. Choose
    "lower" to block only proven regressions (e.g. small eval sets, where point verdicts are mostly
    noise), "upper" to push only proven compatibility.
    """

    min_accuracy: float = 0.6
    max_accuracy_drop: float = 0.0
    max_nfr: float = 0.03
    max_relative_nfr: float = 0.26
    max_class_nfr: float = 0.25
    max_slice_nfr: float = 0.25
    max_high_confidence_flips: int = 1000
    # The edge (TensorFlow Lite) model, when PipelineConfig.edge is enabled: negative flips of the
    # converted model against the cloud candidate it was converted from (examples the candidate
    # gets right and the edge model wrong) and against the previously pushed edge model, overall
    # and within any one class, and confident ones (edge_failures). They gate the edge push only.
    max_edge_nfr: float = 0.01
    max_edge_previous_nfr: float = 0.03
    max_edge_class_nfr: float = 0.05
    max_edge_high_confidence_flips: int = 10
    # Noise (see above): what is compared with the NFR, relative NFR, class NFR and accuracy-drop
    # limits (FLIP_BOUNDS), and the paired bootstrap intervals' confidence and resamples.
    flip_bound: str = "point"
    confidence: float = 0.95
    bootstrap_resamples: int = 1000
    # Golden examples (graceful.golden): ids of examples that must never flip, listed here and/or
    # in a file of ids (one a line; a path or URI the FlipEvaluator reads on every run). More than
    # max_golden_flips golden negative flips block the run, and so does a golden id missing from
    # the eval data; their failure lines come first.
    golden_ids: tuple = ()
    golden_ids_file: str = ""
    # ... or a fixed set of golden tf.Examples outside the spans (a TFRecord file pattern, path or
    # URI, gzip or not), every one golden: the same models run on them in the same Beam pass.
    golden_examples: str = ""
    max_golden_flips: int = 0
    # Flips against earlier releases (graceful.releases): the candidate's NFR against each of the
    # last `history_models` pushed models (0 = off; the newest is the baseline), and examples an
    # earlier release fixed that the candidate breaks again. max_history_nfr = 1.0: informational.
    # Needs a custom resolver: not on Kubeflow v2 (PipelineConfig.cross_run_window off).
    history_models: int = 0
    max_history_nfr: float = 1.0

    def __post_init__(self):
        if self.flip_bound not in FLIP_BOUNDS:
            raise ValueError(f"GateConfig flip_bound must be one of {', '.join(FLIP_BOUNDS)}, got "
                             f"{self.flip_bound!r}")
        if not 0.0 < self.confidence < 1.0:
            raise ValueError(f"GateConfig confidence must be in (0, 1), e.g. 0.95, got "
                             f"{self.confidence}")
        if self.bootstrap_resamples < 1:
            raise ValueError(f"GateConfig bootstrap_resamples must be at least 1, got "
                             f"{self.bootstrap_resamples}")


def _judged(policy: GateConfig, point: float, interval, spec: str = ".4f",
            higher_is_worse: bool = True) -> tuple[float, str]:
    """(the value `policy.flip_bound` compares with a limit, how a failure line shows it): the point
    value, or the bound of its [lower, upper] `interval` that the mode names for a flip rate ("lower"
    gives the bound most favourable to the candidate: an NFR's lower bound, an accuracy change's
    upper bound). Without an interval (no baseline, or an older report) the point value."""
    if policy.flip_bound == "point" or interval is None:
        return point, f"{point:{spec}}"
    index = 0 if (policy.flip_bound == "lower") == higher_is_worse else 1
    return interval[index], (f"{bootstrap.with_interval(point, interval, spec)} "
                             f"{('lower', 'upper')[index]} bound")


def failures(policy: GateConfig, summary: dict, per_class: dict | None = None,
             has_baseline: bool = True, class_names=None, per_slice: dict | None = None,
             intervals: dict | None = None) -> list[str]:
    """Every way a flip report breaks `policy`, one readable line each; empty means it passes.

    `summary` and `per_class` are `graceful.flips.FlipSummary.to_dict()` results (per_class keyed by
    class id; per_slice {feature: {value: ...}}). Without a baseline only the accuracy floor applies
    (old_accuracy is meaningless). `intervals` is the report's paired bootstrap intervals
    (graceful.bootstrap.Intervals.to_dict()); with policy.flip_bound "lower" or "upper" their bounds
    are compared with the NFR, relative NFR, class NFR and accuracy-drop limits, and the failure
    line names the bound and shows the interval.
    """
    bounds = intervals or {}
    class_bounds = bounds.get("per_class", {})
    new, old = summary["new_accuracy"], summary["old_accuracy"]
    lines = []
    if new < policy.min_accuracy:
        lines.append(f"accuracy {new:.4f} < min_accuracy {policy.min_accuracy:.4g}")
    if not has_baseline:
        return lines
    change, shown = _judged(policy, new - old, bounds.get("accuracy_change"), "+.4f",
                            higher_is_worse=False)
    if change < -policy.max_accuracy_drop - _EPSILON:
        judged = (f"; max_accuracy_drop {policy.max_accuracy_drop:.4g}" if "bound" not in shown
                  else f" < -max_accuracy_drop {policy.max_accuracy_drop:.4g}")
        lines.append(f"accuracy dropped {old:.4f} -> {new:.4f} ({shown}{judged})")
    nfr, shown = _judged(policy, summary["nfr"], bounds.get("nfr"))
    if nfr > policy.max_nfr:
        lines.append(f"NFR {shown} > max_nfr {policy.max_nfr:.4g} "
                     f"({summary['negative_flips']} of {summary['examples']} examples)")
    relative, shown = _judged(policy, summary["relative_nfr"], bounds.get("relative_nfr"), ".3f")
    if relative > policy.max_relative_nfr:
        lines.append(f"relative NFR {shown} > max_relative_nfr {policy.max_relative_nfr:.4g}")
    lines += _class_failures(per_class, "max_class_nfr", policy.max_class_nfr, class_names,
                             lambda cls, nfr: _judged(policy, nfr, class_bounds.get(str(cls))))
    for feature, values in sorted((per_slice or {}).items()):
        for value, metrics in sorted(values.items(), key=lambda kv: -kv[1]["nfr"]):
            if metrics["nfr"] > policy.max_slice_nfr:
                lines.append(f"slice {feature}={value} NFR {metrics['nfr']:.4f} > max_slice_nfr "
                             f"{policy.max_slice_nfr:.4g} ({metrics['negative_flips']} of "
                             f"{metrics['examples']} examples)")
    if summary["high_confidence_flips"] > policy.max_high_confidence_flips:
        lines.append(f"high-confidence flips {summary['high_confidence_flips']} > "
                     f"max_high_confidence_flips {policy.max_high_confidence_flips}")
    return lines


def edge_failures(policy: GateConfig, vs_cloud: dict, vs_previous: dict | None = None,
                  class_names=None) -> list[str]:
    """Every way an edge model's flip numbers break `policy`'s edge limits; empty means it passes.

    `vs_cloud` and `vs_previous` are {"summary": FlipSummary.to_dict(), "per_class": {class id:
    FlipSummary.to_dict()}} of the edge model (new) against the cloud candidate it was converted
    from, and against the previously pushed edge model (None when none was pushed yet). The class
    limit applies to both comparisons; confident flips count those against the cloud candidate.
    """
    lines = []
    comparisons = [("vs the cloud candidate", vs_cloud, "max_edge_nfr", policy.max_edge_nfr)]
    if vs_previous is not None:
        comparisons.append(("vs the previously pushed edge model", vs_previous,
                            "max_edge_previous_nfr", policy.max_edge_previous_nfr))
    for against, numbers, limit_name, limit in comparisons:
        summary = numbers["summary"]
        if summary["nfr"] > limit:
            lines.append(f"edge NFR {against} {summary['nfr']:.4f} > {limit_name} {limit:.4g} "
                         f"({summary['negative_flips']} of {summary['examples']} examples)")
        lines += _class_failures(numbers.get("per_class"), "max_edge_class_nfr",
                                 policy.max_edge_class_nfr, class_names, prefix="edge class",
                                 against=f"{against} ")
    confident = vs_cloud["summary"]["high_confidence_flips"]
    if confident > policy.max_edge_high_confidence_flips:
        lines.append(f"edge high-confidence flips vs the cloud candidate {confident} > "
                     f"max_edge_high_confidence_flips {policy.max_edge_high_confidence_flips}")
    return lines


def _class_failures(per_class: dict | None, limit_name: str, limit: float, class_names,
                    judged=None, prefix: str = "class", against: str = "") -> list[str]:
    """One line per class of `per_class` ({class id: FlipSummary.to_dict()}) whose NFR, as
    `judged(class id, nfr)` gives it (value compared, how shown; default the point value), is over
    `limit`; worst class first. Shared by the cloud gate and the edge gate."""
    judged = judged or (lambda cls, nfr: (nfr, f"{nfr:.4f}"))
    lines = []
    for cls, metrics in sorted((per_class or {}).items(), key=lambda kv: -kv[1]["nfr"]):
        value, shown = judged(cls, metrics["nfr"])
        if value > limit:
            lines.append(f"{prefix} {flips.class_label(class_names, cls, with_id=True)} NFR "
                         f"{against}{shown} > {limit_name} {limit:.4g}")
    return lines
