"""Multiclass, label-aware negative-flip metrics for TFMA, so the standard Evaluator gates on them.

TFMA's own flip metrics (BooleanFlipRates, SymmetricFlipRate) are binary and ignore labels: they
measure churn. These count regressions: examples the baseline got right and the candidate gets wrong.
Like TFMA's flip metrics they compare each candidate with the EvalConfig's baseline, per slice. Unlike
them they are keyed as ordinary candidate metrics (`is_diff=False`): TFMA matches value thresholds only
against such keys, and a threshold whose metric is missing fails validation. For the same reason,
without a baseline (first run) they are 0: with no old model there is nothing to flip. An EvalConfig
names them with `module="graceful.tfma_flips"`.

  NegativeFlipRate          NFR = #(baseline right, candidate wrong) / #examples
  RelativeNegativeFlipRate  NFR / ((1 - err_baseline) * err_candidate)
  HighConfidenceFlips       #negative flips where the candidate's probability of its wrong class
                            is >= `high_confidence` (default 0.9)
"""
from __future__ import annotations

import dataclasses
import functools

import apache_beam as beam
import numpy as np
from tensorflow_model_analysis.metrics import metric_types, metric_util
from tensorflow_model_analysis.utils import model_util

from graceful import flips

MODULE = __name__


@dataclasses.dataclass
class FlipCounts:
    """Accumulator: weighted counts from which every flip metric is derived."""

    examples: float = 0.0
    old_right: float = 0.0
    new_right: float = 0.0
    negative_flips: float = 0.0
    high_confidence_flips: float = 0.0

    def merge(self, other: "FlipCounts") -> None:
        for field in dataclasses.fields(self):
            setattr(self, field.name, getattr(self, field.name) + getattr(other, field.name))


def _class_and_probabilities(inputs, model_name, output_name, eval_config):
    label, prediction, weight = next(metric_util.to_label_prediction_example_weight(
        inputs, eval_config=eval_config, model_name=model_name, output_name=output_name,
        flatten=False, squeeze=False, allow_none=True))
    label = np.asarray(label).reshape(-1)
    probabilities = np.asarray(prediction, dtype=np.float64).reshape(-1)
    flips.check_class_scores([None, probabilities.size],
                             f"model '{model_name}', output '{output_name or 'default'}'")
    # TFMA may have turned a sparse label into a one-hot vector of the prediction's size.
    true_class = int(np.argmax(label)) if label.size == probabilities.size > 1 else int(label[0])
    return true_class, probabilities, float(np.asarray(weight).reshape(-1)[0])


class _FlipCountsCombiner(beam.CombineFn):
    def __init__(self, key, eval_config, baseline_model_name, model_name, output_name,
                 high_confidence):
        self._key = key
        self._eval_config = eval_config
        self._baseline = baseline_model_name
        self._model = model_name
        self._output = output_name
        self._high_confidence = high_confidence

    def create_accumulator(self) -> FlipCounts:
        return FlipCounts()

    def add_input(self, counts: FlipCounts, inputs) -> FlipCounts:
        label, new_prob, weight = _class_and_probabilities(inputs, self._model, self._output,
                                                           self._eval_config)
        _, old_prob, _ = _class_and_probabilities(inputs, self._baseline, self._output,
                                                  self._eval_config)
        new_class, old_class = int(np.argmax(new_prob)), int(np.argmax(old_prob))
        flipped = old_class == label and new_class != label
        counts.examples += weight
        counts.old_right += weight * (old_class == label)
        counts.new_right += weight * (new_class == label)
        counts.negative_flips += weight * flipped
        counts.high_confidence_flips += weight * (flipped and
                                                  new_prob[new_class] >= self._high_confidence)
        return counts

    def merge_accumulators(self, accumulators) -> FlipCounts:
        accumulators = iter(accumulators)
        result = next(accumulators)
        for counts in accumulators:
            result.merge(counts)
        return result

    def extract_output(self, counts: FlipCounts):
        return {self._key: counts}


def nfr(counts: FlipCounts) -> float:
    return counts.negative_flips / counts.examples if counts.examples else 0.0


def relative_nfr(counts: FlipCounts) -> float:
    """Same convention as graceful.flips: 0 when the old model is never right or the new never wrong."""
    new_wrong = counts.examples - counts.new_right
    denominator = counts.old_right * new_wrong
    return counts.negative_flips * counts.examples / denominator if denominator else 0.0


def high_confidence_flips(counts: FlipCounts) -> float:
    return counts.high_confidence_flips


class _FlipMetric(metric_types.Metric):
    """Shared wiring: one counts computation per candidate, one derived diff metric from it."""

    RESULT = staticmethod(nfr)
    DEFAULT_NAME = ""

    def __init__(self, name: str | None = None,
                 high_confidence: float = flips.DEFAULT_HIGH_CONFIDENCE):
        super().__init__(self._computations, name=name or self.DEFAULT_NAME,
                         high_confidence=high_confidence)

    def _computations(self, name, high_confidence, eval_config=None, model_names=("",),
                      output_names=("",), sub_keys=None, example_weighted=False):
        baseline_spec = model_util.get_baseline_model_spec(eval_config)
        computations = []
        for model_name in model_names:
            if baseline_spec is not None and model_name == baseline_spec.name:
                continue
            for output_name in output_names or ("",):
                counts_key = metric_types.MetricKey(
                    name=f"_graceful_flip_counts_{high_confidence}", model_name=model_name,
                    output_name=output_name, example_weighted=example_weighted)
                metric_key = metric_types.MetricKey(
                    name=name, model_name=model_name, output_name=output_name,
                    example_weighted=example_weighted)
                if baseline_spec is None:
                    computations.append(metric_types.DerivedMetricComputation(
                        keys=[metric_key], result=functools.partial(_no_baseline, metric_key)))
                    continue
                computations.append(metric_types.MetricComputation(
                    keys=[counts_key], preprocessors=None, combiner=_FlipCountsCombiner(
                        counts_key, eval_config, baseline_spec.name, model_name, output_name,
                        high_confidence)))
                computations.append(metric_types.DerivedMetricComputation(
                    keys=[metric_key], result=functools.partial(
                        _derive, counts_key=counts_key, metric_key=metric_key,
                        result=type(self).RESULT)))
        return computations


def _no_baseline(metric_key, metrics):
    del metrics
    return {metric_key: 0.0}


def _derive(metrics, counts_key, metric_key, result):
    return {metric_key: result(metrics[counts_key])}


class NegativeFlipRate(_FlipMetric):
    RESULT = staticmethod(nfr)
    DEFAULT_NAME = "negative_flip_rate"


class RelativeNegativeFlipRate(_FlipMetric):
    RESULT = staticmethod(relative_nfr)
    DEFAULT_NAME = "relative_negative_flip_rate"


class HighConfidenceFlips(_FlipMetric):
    RESULT = staticmethod(high_confidence_flips)
    DEFAULT_NAME = "high_confidence_flips"


metric_types.register_metric(NegativeFlipRate)
metric_types.register_metric(RelativeNegativeFlipRate)
metric_types.register_metric(HighConfidenceFlips)
