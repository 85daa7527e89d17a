"""The Evaluator's EvalConfig: graceful's push policy (GateConfig) as TFMA thresholds, on metrics that
read the team's labels and predictions through the data and model contracts (graceful.tfma_flips).

Why contract metrics, not TFMA's SparseCategoricalAccuracy: TFMA would argmax a binary model's single
sigmoid column (every example class 0) and cannot read string labels without a vocabulary in the
predictions; graceful.tfma_flips reads every form exactly as the FlipEvaluator does, so both gates
judge the same numbers.
"""
from __future__ import annotations

import json

import tensorflow_model_analysis as tfma

from graceful import tfma_flips
from graceful.contract import DataContract, ModelContract
from graceful.gate import GateConfig

# Accuracies are computed from counts; this keeps a drop of exactly max_accuracy_drop inside.
_DROP_TOLERANCE = 1e-10


def eval_config(gate: GateConfig, data: DataContract, model: ModelContract) -> tfma.EvalConfig:
    """The push policy as TFMA thresholds: overall, per class (slices on the label) and per value
    of each of the data contract's slice features.

    On the first run there is no baseline: the Evaluator ignores the change threshold, and the flip
    metrics, which exist only relative to a baseline, are 0.

    TFMA compares point values. With gate.flip_bound "point" it checks the same limits as the
    FlipEvaluator, a second check on the same numbers. With "lower" or "upper" the FlipEvaluator
    alone judges NFR, relative NFR, class NFR and the accuracy drop on their bootstrap bounds, and
    those four get no TFMA threshold (the metrics are still computed and shown): on points TFMA would
    block a "lower" candidate whose NFR is over the limit but not confidently (what that mode lets
    through), and adds nothing to "upper", whose bound is stricter than the point. The accuracy
    floor, slice NFR and confident flips are point values in every mode and keep their thresholds.
    """
    on_points = gate.flip_bound == "point"
    overall, per_class = tfma.SlicingSpec(), tfma.SlicingSpec(feature_keys=[data.label_key])
    per_slice = [tfma.SlicingSpec(feature_keys=[name]) for name in data.slice_features]
    # Only what the metrics read: paths and patterns stay out of the Evaluator's config.
    contracts = {"model_contract": {key: getattr(model, key)
                                    for key in ("output_key", "scores", "threshold")},
                 "data_contract": {"label_key": data.label_key,
                                   "class_names": list(data.class_names)}}
    accuracy_threshold = tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(lower_bound={"value": gate.min_accuracy}),
        change_threshold=tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.HIGHER_IS_BETTER,
            absolute={"value": -gate.max_accuracy_drop - _DROP_TOLERANCE}) if on_points else None)
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(signature_name=model.signature, label_key=data.label_key,
                                    prediction_key=model.output_key,
                                    preprocessing_function_names=[])],
        slicing_specs=[overall, per_class, *per_slice],
        metrics_specs=[tfma.MetricsSpec(metrics=[
            _metric("ContractAccuracy", contracts,
                    [tfma.PerSliceMetricThreshold(slicing_specs=[overall],
                                                  threshold=accuracy_threshold)]),
            tfma.MetricConfig(class_name="ExampleCount"),
            _flip_metric("NegativeFlipRate", contracts,
                         [*([(overall, gate.max_nfr), (per_class, gate.max_class_nfr)]
                            if on_points else []),
                          *[(spec, gate.max_slice_nfr) for spec in per_slice]]),
            _flip_metric("RelativeNegativeFlipRate", contracts,
                         [(overall, gate.max_relative_nfr)] if on_points else []),
            _flip_metric("HighConfidenceFlips", contracts,
                         [(overall, gate.max_high_confidence_flips)]),
        ])])


def _metric(class_name: str, contracts: dict, thresholds: list) -> tfma.MetricConfig:
    """A graceful.tfma_flips metric reading through the contracts (JSON `config` -> its kwargs)."""
    return tfma.MetricConfig(class_name=class_name, module=tfma_flips.MODULE,
                             config=json.dumps(contracts), per_slice_thresholds=thresholds)


def _flip_metric(class_name: str, contracts: dict, limits: list) -> tfma.MetricConfig:
    """A flip metric with an upper bound per slicing spec."""
    return _metric(class_name, contracts, [
        tfma.PerSliceMetricThreshold(slicing_specs=[spec], threshold=tfma.MetricThreshold(
            value_threshold=tfma.GenericValueThreshold(upper_bound={"value": limit})))
        for spec, limit in limits])
