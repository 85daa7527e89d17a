"""Label-aware negative-flip metrics and accuracy for TFMA, read through graceful's contracts, so the
standard Evaluator gates on the same numbers as the FlipEvaluator for every model form.

Why not TFMA's own: its flip metrics (BooleanFlipRates, SymmetricFlipRate) are binary and ignore
labels (they measure churn), and its accuracy metrics read predictions their own way (an argmax over
a single sigmoid column calls every example class 0; string labels need a vocabulary in the
predictions). These metrics read each example's raw label and raw class scores and convert them
with graceful.contract: `DataContract.class_ids` (integer ids, or strings of `class_names`) and
`ModelContract.predict` (multiclass probabilities or logits [K], binary [1] probability or logit by
`threshold`, [2] binary probabilities), exactly as the FlipEvaluator does.

Like TFMA's flip metrics they compare each candidate with the EvalConfig's baseline, per slice.
Unlike them they are keyed as ordinary candidate metrics (`is_diff=False`): TFMA matches value
thresholds only against such keys, and a threshold whose metric is missing fails validation. For the
same reason, without a baseline (first run) they are 0: with no old model there is nothing to flip.
`ContractAccuracy` is computed for every model, the baseline too, so TFMA derives its diff (the
change threshold on accuracy drop). An EvalConfig names them with `module="graceful.tfma_flips"` and
the contracts as JSON in `config` (graceful.pipeline.evaluation builds it):

    config='{"model_contract": {...asdict(ModelContract)}, "data_contract": {...}}'

  NegativeFlipRate          NFR = #(baseline right, candidate wrong) / #examples
  RelativeNegativeFlipRate  NFR / ((1 - err_baseline) * err_candidate)
  HighConfidenceFlips       #negative flips where the candidate's probability of its wrong class
                            is >= `high_confidence` (default 0.9)
  ContractAccuracy          "graceful_accuracy": #(right) / #examples, for every model
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from collections.abc import Mapping

import apache_beam as beam
import numpy as np
from tensorflow_model_analysis.metrics import metric_types
from tensorflow_model_analysis.utils import model_util

from graceful import flips
from graceful.contract import (DataContract, DataContractError, ModelContract, ModelOutputError,
                               from_dict)

MODULE = __name__
ACCURACY = "graceful_accuracy"


@dataclasses.dataclass
class FlipCounts:
    """Accumulator: weighted counts from which every metric is derived."""

    examples: float = 0.0
    old_right: float = 0.0
    new_right: float = 0.0
    negative_flips: float = 0.0
    high_confidence_flips: float = 0.0

    def merge(self, other: "FlipCounts") -> None:
        for field in dataclasses.fields(self):
            setattr(self, field.name, getattr(self, field.name) + getattr(other, field.name))


@dataclasses.dataclass(frozen=True)
class _Reader:
    """Reads one example's label, class scores and weight for one model, through the contracts."""

    data: DataContract
    model: ModelContract
    prediction_key: str  # the ModelSpec's, else the model contract's output key, else ""

    def label(self, inputs, model_name: str, output_name: str) -> int:
        label = _lookup(inputs.label, [self.data.label_key, model_name, output_name])
        values = np.asarray(label).reshape(-1) if label is not None else np.array([])
        if values.size != 1:
            raise DataContractError(
                f"label {self.data.label_key!r}: expected one value per example, got "
                f"{values.tolist()}; set the EvalConfig's label_key (the data contract's) to a "
                "feature every example has once")
        return int(self.data.class_ids(values)[0])

    def predict(self, inputs, model_name: str, output_name: str) -> tuple[int, np.ndarray]:
        """(predicted class, class probabilities [K >= 2]) of `model_name` on one example."""
        where = f"model {model_name or 'default'!r}, output {output_name or 'default'!r}"
        scores = _lookup(inputs.prediction, [model_name, output_name])
        if isinstance(scores, Mapping):
            if self.prediction_key not in scores:
                raise ModelOutputError(f"{where}: the model returns {sorted(scores)}; set the model "
                                       "contract's output_key (the EvalConfig's prediction_key) "
                                       "to the one holding class scores")
            scores = scores[self.prediction_key]
        scores = np.asarray(scores, dtype=np.float64)
        if scores.ndim != 1:  # one example's scores: [K], or [1] for binary
            raise ModelOutputError(
                f"{where}: one example's class scores have shape {list(scores.shape)}; the model "
                "contract expects [examples, classes] or [examples, 1] (binary) from the model")
        predicted, probabilities = self.model.predict(scores.reshape(1, -1), where)
        return int(predicted[0]), probabilities[0]


def _lookup(value, keys):
    """TFMA's lookups of labels and predictions: a dict is keyed by model, output or label key."""
    for key in keys:
        if key and isinstance(value, Mapping) and key in value:
            value = value[key]
    return value


class _FlipCountsCombiner(beam.CombineFn):
    """Counts one model's right answers and, with a baseline, its negative flips against it."""

    def __init__(self, key, reader: _Reader, baseline_model_name: str | None, model_name: str,
                 output_name: str, high_confidence: float, example_weighted: bool):
        self._key = key
        self._reader = reader
        self._baseline = baseline_model_name
        self._model = model_name
        self._output = output_name
        self._high_confidence = high_confidence
        self._example_weighted = example_weighted

    def create_accumulator(self) -> FlipCounts:
        return FlipCounts()

    def add_input(self, counts: FlipCounts, inputs) -> FlipCounts:
        label = self._reader.label(inputs, self._model, self._output)
        new_class, new_prob = self._reader.predict(inputs, self._model, self._output)
        weight = self._weight(inputs)
        counts.examples += weight
        counts.new_right += weight * (new_class == label)
        if self._baseline is not None:
            old_class, _ = self._reader.predict(inputs, self._baseline, self._output)
            flipped = old_class == label and new_class != label
            counts.old_right += weight * (old_class == label)
            counts.negative_flips += weight * flipped
            counts.high_confidence_flips += weight * (
                flipped and new_prob[new_class] >= self._high_confidence)
        return counts

    def _weight(self, inputs) -> float:
        if not self._example_weighted or inputs.example_weight is None:
            return 1.0
        weight = _lookup(inputs.example_weight, [self._model, self._output])
        return float(np.asarray(weight).reshape(-1)[0])

    def merge_accumulators(self, accumulators) -> FlipCounts:
        accumulators = iter(accumulators)
        result = next(accumulators)
        for counts in accumulators:
            result.merge(counts)
        return result

    def extract_output(self, counts: FlipCounts):
        return {self._key: counts}


def _rates(counts: FlipCounts) -> dict:
    """graceful.flips' definitions of the ratios, from the weighted counts."""
    return flips.rates(counts.examples, counts.old_right, counts.new_right, counts.negative_flips)


def nfr(counts: FlipCounts) -> float:
    return _rates(counts)["nfr"]


def relative_nfr(counts: FlipCounts) -> float:
    """Same convention as graceful.flips: 0 when the old model is never right or the new never wrong."""
    return _rates(counts)["relative_nfr"]


def high_confidence_flips(counts: FlipCounts) -> float:
    return counts.high_confidence_flips


def accuracy(counts: FlipCounts) -> float:
    return counts.new_right / counts.examples if counts.examples else 0.0


class _ContractMetric(metric_types.Metric):
    """Shared wiring: one counts computation per model, one derived metric from it.

    `model_contract` / `data_contract` are the contracts as dicts (dataclasses.asdict), since TFMA
    passes a MetricConfig's JSON `config` as keyword arguments; defaults are the contracts'.
    """

    RESULT = staticmethod(nfr)
    DEFAULT_NAME = ""
    # Flip metrics exist only against a baseline; accuracy is computed for every model, the
    # baseline too (so TFMA derives its diff for a change threshold).
    NEEDS_BASELINE = True

    def __init__(self, name: str | None = None,
                 high_confidence: float = flips.DEFAULT_HIGH_CONFIDENCE,
                 model_contract: dict | None = None, data_contract: dict | None = None):
        super().__init__(self._computations, name=name or self.DEFAULT_NAME,
                         high_confidence=high_confidence, model_contract=model_contract or {},
                         data_contract=data_contract or {})

    def _computations(self, name, high_confidence, model_contract, data_contract,
                      eval_config=None, model_names=("",), output_names=("",), sub_keys=None,
                      example_weighted=False):
        baseline_spec = model_util.get_baseline_model_spec(eval_config)
        baseline = baseline_spec.name if baseline_spec is not None else None
        digest = hashlib.sha1(json.dumps([model_contract, data_contract],
                                         sort_keys=True).encode()).hexdigest()[:10]
        computations = []
        for model_name in model_names:
            is_baseline = baseline is not None and model_name == baseline
            if is_baseline and self.NEEDS_BASELINE:
                continue
            reader = _Reader(from_dict(DataContract, data_contract),
                             from_dict(ModelContract, model_contract),
                             _prediction_key(eval_config, model_name, model_contract))
            for output_name in output_names or ("",):
                metric_key = metric_types.MetricKey(
                    name=name, model_name=model_name, output_name=output_name,
                    example_weighted=example_weighted)
                if baseline is None and self.NEEDS_BASELINE:
                    computations.append(metric_types.DerivedMetricComputation(
                        keys=[metric_key], result=functools.partial(_no_baseline, metric_key)))
                    continue
                # One counts computation per model and contract, shared by every metric (TFMA
                # de-duplicates computations by combiner class and keys).
                counts_key = metric_types.MetricKey(
                    name=f"_graceful_counts_{high_confidence}_{digest}", model_name=model_name,
                    output_name=output_name, example_weighted=example_weighted)
                computations.append(metric_types.MetricComputation(
                    keys=[counts_key], preprocessors=None, combiner=_FlipCountsCombiner(
                        counts_key, reader, None if is_baseline else baseline, model_name,
                        output_name, high_confidence, example_weighted)))
                computations.append(metric_types.DerivedMetricComputation(
                    keys=[metric_key], result=functools.partial(
                        _derive, counts_key=counts_key, metric_key=metric_key,
                        result=type(self).RESULT)))
        return computations


def _prediction_key(eval_config, model_name: str, model_contract: dict) -> str:
    """The ModelSpec's prediction_key (keyed by name when several models), else the contract's."""
    specs = list(eval_config.model_specs) if eval_config is not None else []
    for spec in specs:
        if (spec.name if len(specs) > 1 else "") == model_name and spec.prediction_key:
            return spec.prediction_key
    return model_contract.get("output_key", "")


def _no_baseline(metric_key, metrics):
    del metrics
    return {metric_key: 0.0}


def _derive(metrics, counts_key, metric_key, result):
    return {metric_key: result(metrics[counts_key])}


class NegativeFlipRate(_ContractMetric):
    RESULT = staticmethod(nfr)
    DEFAULT_NAME = "negative_flip_rate"


class RelativeNegativeFlipRate(_ContractMetric):
    RESULT = staticmethod(relative_nfr)
    DEFAULT_NAME = "relative_negative_flip_rate"


class HighConfidenceFlips(_ContractMetric):
    RESULT = staticmethod(high_confidence_flips)
    DEFAULT_NAME = "high_confidence_flips"


class ContractAccuracy(_ContractMetric):
    RESULT = staticmethod(accuracy)
    DEFAULT_NAME = ACCURACY
    NEEDS_BASELINE = False


metric_types.register_metric(NegativeFlipRate)
metric_types.register_metric(RelativeNegativeFlipRate)
metric_types.register_metric(HighConfidenceFlips)
metric_types.register_metric(ContractAccuracy)
