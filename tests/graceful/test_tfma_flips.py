"""The TFMA flip metrics, computed by the real Evaluator, equal a plain-numpy count on the same
predictions: overall and per class (slice), to the last bit."""
import dataclasses
import json
import os

import pytest
import tensorflow as tf
import tensorflow_model_analysis as tfma
from ml_metadata.proto import metadata_store_pb2

from graceful import cli, data, flips, history
from tests.conftest import run_span, with_training

pytestmark = pytest.mark.slow


def _predict(model_uri, serialized):
    model = tf.saved_model.load(os.path.join(model_uri, "Format-Serving"))
    return model.signatures["serving_default"](examples=tf.constant(serialized))["probabilities"].numpy()


def _output_uri(store, run, component, key):
    """URI of `component`'s output `key` in `run`, found through MLMD lineage."""
    [context] = [c for c in store.get_contexts_by_type("pipeline_run") if c.name == run.run_id]
    [execution] = [e for e in store.get_executions_by_context(context.id)
                   if store.get_execution_types_by_id([e.type_id])[0].name.rsplit(".", 1)[-1] == component]
    [event] = [e for e in store.get_events_by_execution_ids([execution.id])
               if e.type == metadata_store_pb2.Event.OUTPUT and e.path.steps[0].key == key]
    return store.get_artifacts_by_id([event.artifact_id])[0].uri


def test_evaluator_nfr_matches_numpy_and_gates_the_push(tiny_config, capsys, tmp_path):
    config = tiny_config
    run_span(config, 1)
    run_span(with_training(config, architecture="mlp", epochs=2, seed=3), 2)
    first, second = history.runs(config.metadata_uri)
    store = history.open_store(config.metadata_uri)
    models = {a.id: a.uri for a in store.get_artifacts_by_type("Model")}

    test = data.load("test").take(0, config.eval_size)
    serialized = data.serialize(test.images, test.labels, test.ids)
    old = _predict(models[first.model_id], serialized)
    new = _predict(models[second.model_id], serialized)
    expected = flips.summarize(test.labels, old.argmax(1), new.argmax(1), new)
    assert expected.negative_flips > 0, "the check needs some flips to be meaningful"
    assert second.nfr == expected.nfr
    assert second.relative_nfr == pytest.approx(expected.relative_nfr, rel=1e-12)
    assert second.high_confidence_flips == expected.high_confidence_flips

    # The FlipEvaluator's Beam pass agrees with both, and lists the same flips worst first.
    report_path = os.path.join(_output_uri(store, second, "FlipEvaluator", "flip_report"),
                               "flip_report.json")
    with open(report_path) as handle:
        report = json.load(handle)
    assert report["summary"] == expected.to_dict()
    ranked = flips.ranked_flips(test.labels, old.argmax(1), new.argmax(1), new, test.ids)
    assert [f["id"] for f in report["flips"]] == [f["id"] for f in ranked]

    # `graceful report 2` prints where the report is and what it says.
    assert cli.main(["report", "2", "--home", config.home]) == 0
    printed = capsys.readouterr().out
    assert report_path in printed
    assert f"negative flips {expected.negative_flips} (NFR {expected.nfr:.4f}" in printed

    per_class = flips.per_group(test.labels, old.argmax(1), new.argmax(1), test.labels)
    evaluation_uri = _output_uri(store, second, "Evaluator", "evaluation")
    seen = {}
    for metrics in tfma.load_metrics(evaluation_uri):
        keys = metrics.slice_key.single_slice_keys
        for kv in metrics.metric_keys_and_values:
            if keys and kv.key.name == "negative_flip_rate":
                seen[keys[0].int64_value] = kv.value.double_value.value
    assert seen == {label: summary.nfr for label, summary in per_class.items()}

    # The Evaluator's thresholds are the same policy: TFMA itself, given both models and a
    # zero-flip policy (accuracy may drop freely), fails the candidate on negative_flip_rate only.
    strict = dataclasses.replace(config, gate=dataclasses.replace(
        config.gate, max_nfr=0.0, max_accuracy_drop=1.0))
    eval_split = os.path.join(_output_uri(store, second, "ImportExampleGen", "examples"),
                              "Split-eval", "*")
    validation = _tfma_validation(strict, models[second.model_id], models[first.model_id],
                                  eval_split, str(tmp_path / "tfma"))
    assert not validation.validation_ok
    failed = {f.metric_key.name for s in validation.metric_validations_per_slice
              for f in s.failures}
    assert failed == {"negative_flip_rate"}
    assert _tfma_validation(config, models[second.model_id], models[first.model_id], eval_split,
                            str(tmp_path / "tfma_loose")).validation_ok


def _tfma_validation(config, candidate_uri, baseline_uri, data_pattern, output_path):
    """TFMA's own model validation of candidate vs baseline under the pipeline's eval config."""
    from graceful.pipeline.evaluation import eval_config

    tfma_config = tfma.utils.update_eval_config_with_defaults(
        eval_config(config.gate, config.data, config.model), has_baseline=True)
    models = [tfma.default_eval_shared_model(
        eval_saved_model_path=os.path.join(baseline_uri if spec.is_baseline else candidate_uri,
                                           "Format-Serving"),
        model_name=spec.name, eval_config=tfma_config) for spec in tfma_config.model_specs]
    tfma.run_model_analysis(eval_shared_model=models, eval_config=tfma_config,
                            data_location=data_pattern, output_path=output_path)
    return tfma.load_validation_result(output_path)
