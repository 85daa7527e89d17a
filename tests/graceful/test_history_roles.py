"""history reads a run by what its steps produced: graceful's gates under the user's own node ids and
component classes, and any TFMA accuracy metric. Fast: a real SQLite MLMD store written by hand, as a
runner would, and TFMA result files written as the Evaluator writes them."""
import os

import pytest
import tensorflow as tf
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2 as mlmd
from tensorflow_model_analysis.proto import metrics_for_slice_pb2, validation_result_pb2

from graceful import history, lineage, recovery, signoff

COMPLETE, FAILED = mlmd.Execution.COMPLETE, mlmd.Execution.FAILED


class Runs:
    """Writes pipeline runs into an MLMD store the way TFX's local runner records them."""

    def __init__(self, path: str, pipeline: str = "users.pipeline"):
        config = mlmd.ConnectionConfig()
        config.sqlite.filename_uri = path
        config.sqlite.connection_mode = mlmd.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
        self.store = metadata_store.MetadataStore(config)
        self.pipeline = self._context("pipeline", pipeline)
        self.run = None

    def _context(self, type_name: str, name: str):
        context = mlmd.Context(type_id=self.store.put_context_type(mlmd.ContextType(name=type_name)),
                               name=name)
        [context.id] = self.store.put_contexts([context])
        return context

    def new_run(self, name: str) -> None:
        self.run = self._context("pipeline_run", name)

    def step(self, node: str, component_class: str, consumed=(), produced=(), state=COMPLETE):
        """One execution of node `node` (a `component_class`); `produced`: (type name, custom
        properties) pairs. Returns the produced artifacts."""
        execution = mlmd.Execution(
            type_id=self.store.put_execution_type(mlmd.ExecutionType(name=component_class)),
            last_known_state=state)
        made = [self._artifact(type_name, properties) for type_name, properties in produced]
        events = [(a, mlmd.Event(type=mlmd.Event.INPUT)) for a in consumed] + [
            (a, mlmd.Event(type=mlmd.Event.OUTPUT)) for a in made]
        node_context = self.store.get_context_by_type_and_name(
            "node", f"{self.pipeline.name}.{node}") or self._context(
            "node", f"{self.pipeline.name}.{node}")
        _, ids, _ = self.store.put_execution(execution, events,
                                             [self.pipeline, self.run, node_context])
        return self.store.get_artifacts_by_id(ids[len(consumed):])

    def _artifact(self, type_name: str, properties: dict):
        artifact = mlmd.Artifact(
            type_id=self.store.put_artifact_type(mlmd.ArtifactType(name=type_name)),
            uri=f"/nowhere/{type_name}", state=mlmd.Artifact.LIVE)
        for key, value in properties.items():
            field = {int: "int_value", float: "double_value", str: "string_value"}[type(value)]
            setattr(artifact.custom_properties[key], field, value)
        return artifact


@pytest.fixture
def runs(tmp_path):
    return Runs(str(tmp_path / "metadata.sqlite"))


def _trained(runs, span: int, baseline=None):
    """ingest -> fit, under the user's ids and classes; returns (examples, model)."""
    [examples] = runs.step("ingest", "tfx.components.CsvExampleGen",
                           produced=[(history.EXAMPLES, {"span": span})])
    [model] = runs.step("fit", "users.trainer.Trainer",
                        consumed=[examples] + ([baseline] if baseline else []),
                        produced=[(history.MODEL, {})])
    return examples, model


def _flip_gate(runs, examples, model, baseline, blessed: int, failures: str = "[]"):
    """graceful's FlipEvaluator under id "flips" and a subclass's name."""
    return runs.step("flips", "users.gates.StricterFlipEvaluator",
                     consumed=[examples, model] + ([baseline] if baseline else []),
                     produced=[(history.FLIP_REPORT, {"accuracy": 0.91, "baseline_accuracy": 0.9,
                                                      "nfr": 0.02}),
                               (history.FLIP_BLESSING, {"blessed": blessed, "failures": failures})])


def test_flip_gate_and_sign_off_are_read_under_any_node_id_and_class(runs, tmp_path):
    runs.new_run("r1")
    examples, first = _trained(runs, span=1)
    report, verdict = _flip_gate(runs, examples, first, None, blessed=1)
    runs.step("review", "users.Review", consumed=[first, report, verdict],
              produced=[(history.SIGN_OFF, {"blessed": 1, "decision": "approve",
                                            "approver_name": "ann", "source": "cli"})])
    [blessing] = runs.step("release", "users.Release", consumed=[first],
                           produced=[(history.MODEL_BLESSING, {"blessed": 1})])
    runs.step("ship", "users.Ship", consumed=[first, blessing],
              produced=[(history.PUSHED_MODEL, {"pushed": 1})])

    runs.new_run("r2")
    examples, second = _trained(runs, span=2, baseline=first)
    _flip_gate(runs, examples, second, first, blessed=0, failures='["NFR 0.2 > max_nfr 0.03"]')
    runs.step("review", "users.Review", consumed=[second],
              produced=[(history.SIGN_OFF, {"blessed": 0, "source": signoff.FLIP_GATE_SOURCE})])

    one, two = history.runs(str(tmp_path / "metadata.sqlite"))
    assert (one.span, one.model_id, one.accuracy, one.baseline_model_id) == (1, first.id, 0.91, None)
    assert one.blessed and one.pushed and history.signed_off_by(one) == "ann"
    assert (two.span, two.training_spans, two.baseline_model_id) == (2, [2], first.id)
    assert (two.nfr, two.baseline_accuracy) == (0.02, 0.9)
    assert two.status == "blocked by flip gate: NFR 0.2 > max_nfr 0.03" and two.sign_off is None
    assert lineage.pushed_model_ids(runs.store) == [first.id]


def test_a_failed_step_is_named_by_its_node_id(runs, tmp_path):
    runs.new_run("r1")
    [examples] = runs.step("ingest", "tfx.components.CsvExampleGen",
                           produced=[(history.EXAMPLES, {"span": 4})])
    runs.step("fit", "users.trainer.Trainer", consumed=[examples], state=FAILED)
    [run] = history.runs(str(tmp_path / "metadata.sqlite"))
    assert run.span == 4 and run.model_id is None and run.status == "failed at fit"


def test_transformed_examples_are_not_a_second_ingestion(runs, tmp_path):
    runs.new_run("r1")
    [raw] = runs.step("ingest", "tfx.components.CsvExampleGen",
                      produced=[(history.EXAMPLES, {"span": 3})])
    runs.step("transform", "tfx.components.Transform", consumed=[raw],
              produced=[(history.EXAMPLES, {"span": 99})])
    [run] = history.runs(str(tmp_path / "metadata.sqlite"))
    assert run.span == 3


def test_an_unfinished_push_is_found_whatever_the_pusher_is_called(runs):
    runs.new_run("r1")
    _, model = _trained(runs, span=1)
    [pushed_blessing] = runs.step("judge", "users.Judge", consumed=[model],
                                  produced=[(history.MODEL_BLESSING, {"blessed": 1})])
    runs.step("ship", "users.Ship", consumed=[model, pushed_blessing],
              produced=[(history.PUSHED_MODEL, {"pushed": 1})])
    runs.new_run("r2")
    _, model = _trained(runs, span=2)
    [dead_blessing] = runs.step("judge", "users.Judge", consumed=[model],
                                produced=[(history.MODEL_BLESSING, {"blessed": 1})])
    runs.step("ship", "users.Ship", consumed=[model, dead_blessing], state=FAILED)
    assert [b.id for b in recovery.unfinished_pushes(runs.store)] == [dead_blessing.id]


def _key(name: str, model: str = "", **fields) -> metrics_for_slice_pb2.MetricKey:
    return metrics_for_slice_pb2.MetricKey(name=name, model_name=model, **fields)


def _write_evaluation(folder: str, overall: list, by_label: list) -> str:
    """TFMA's metrics and validations files as the Evaluator writes them: (MetricKey, value) pairs
    for the overall slice and for the slice label=1."""
    def record(values, slice_key):
        metrics = metrics_for_slice_pb2.MetricsForSlice(slice_key=slice_key)
        for key, value in values:
            metrics.metric_keys_and_values.add(key=key).value.double_value.value = value
        return metrics.SerializeToString()

    os.makedirs(folder)
    label_slice = metrics_for_slice_pb2.SliceKey()
    label_slice.single_slice_keys.add(column="label", int64_value=1)
    with tf.io.TFRecordWriter(os.path.join(folder, "metrics-00000-of-00001.tfrecord")) as out:
        out.write(record(overall, metrics_for_slice_pb2.SliceKey()))
        out.write(record(by_label, label_slice))
    with tf.io.TFRecordWriter(os.path.join(folder, "validations.tfrecord")) as out:
        out.write(validation_result_pb2.ValidationResult(validation_ok=True).SerializeToString())
    return folder


@pytest.mark.parametrize("metric", ["binary_accuracy", "accuracy", "sparse_categorical_accuracy"])
def test_any_accuracy_metric_is_the_unsliced_candidate_accuracy(tmp_path, metric):
    top_3 = metrics_for_slice_pb2.SubKey(top_k={"value": 3})
    uri = _write_evaluation(str(tmp_path / "evaluation"), [
        (_key(metric, "candidate"), 0.8), (_key(metric, "baseline"), 0.7),
        (_key(metric, "candidate", is_diff=True), 0.1),
        (_key(metric, "candidate", sub_key=top_3), 0.99),
        (_key("negative_flip_rate", "candidate"), 0.05)],
        by_label=[(_key(metric, "candidate"), 0.3)])
    assert history.read_evaluation(uri) == {"accuracy": 0.8, "baseline_accuracy": 0.7,
                                            "nfr": 0.05, "failures": []}


def test_graceful_contract_accuracy_is_preferred_over_tfma_argmax_accuracy(tmp_path):
    uri = _write_evaluation(str(tmp_path / "evaluation"), [
        (_key("binary_accuracy"), 0.5), (_key("graceful_accuracy"), 0.87),
        (_key("categorical_accuracy"), 0.1)], by_label=[])
    assert history.read_evaluation(uri)["accuracy"] == 0.87
