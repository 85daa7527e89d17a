"""Which spans the training window picks."""
from graceful.components.span_window.strategy import window_spans


def test_all_spans_when_window_is_zero():
    assert window_spans([3, 1, 2], last_span=None, num_spans=0) == {1, 2, 3}


def test_newest_n_spans_up_to_the_requested_span():
    assert window_spans([1, 2, 3, 4], last_span=3, num_spans=2) == {2, 3}


def test_window_larger_than_history_takes_what_exists():
    assert window_spans([2], last_span=None, num_spans=5) == {2}


def test_spans_after_the_requested_one_are_never_used():
    assert window_spans([1, 5], last_span=2, num_spans=0) == {1}


# The strategy against a real ML Metadata store (SQLite): which spans DataGate accepted.
import json  # noqa: E402

import pytest  # noqa: E402
from ml_metadata import metadata_store  # noqa: E402
from ml_metadata.proto import metadata_store_pb2 as mlmd  # noqa: E402
from tfx.types import artifact_utils  # noqa: E402

from graceful.components.span_window.strategy import SpanWindowStrategy  # noqa: E402

GATE_TYPE = "graceful.components.data_gate.component.DataGate"
GEN_TYPE = "tfx.components.example_gen.import_example_gen.component.ImportExampleGen"


class Store:
    """A SQLite MLMD store in which each `ingest` is one pipeline run: ExampleGen outputs a span,
    then DataGate ends in `gate_state` (None = the run stopped before DataGate)."""

    def __init__(self, path, run_type="pipeline_run"):
        config = mlmd.ConnectionConfig()
        config.sqlite.filename_uri = str(path)
        config.sqlite.connection_mode = mlmd.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
        self.store = metadata_store.MetadataStore(config)
        self.examples_type = mlmd.ArtifactType(name="Examples")
        self.examples_type.id = self.store.put_artifact_type(self.examples_type)
        self.gen, self.gate = (self.store.put_execution_type(mlmd.ExecutionType(name=name))
                               for name in (GEN_TYPE, GATE_TYPE))
        self.run_type = self.store.put_context_type(mlmd.ContextType(name=run_type))
        self.artifacts = []

    def ingest(self, span, gate_state=mlmd.Execution.COMPLETE, reason=None):
        run = mlmd.Context(type_id=self.run_type, name=f"run-{len(self.artifacts) + 1}")
        artifact = mlmd.Artifact(type_id=self.examples_type.id, uri=f"/examples/{span}",
                                 state=mlmd.Artifact.LIVE)
        artifact.custom_properties["span"].int_value = span
        gen = mlmd.Execution(type_id=self.gen, last_known_state=mlmd.Execution.COMPLETE)
        _, [artifact.id], [run.id] = self.store.put_execution(
            gen, [(artifact, mlmd.Event(type=mlmd.Event.OUTPUT))], [run])
        if gate_state is not None:
            gate = mlmd.Execution(type_id=self.gate, last_known_state=gate_state)
            if reason:
                gate.custom_properties["__execution_result__"].string_value = json.dumps(
                    {"code": 2, "resultMessage": reason})
            self.store.put_execution(gate, [(artifact, mlmd.Event(type=mlmd.Event.INPUT))], [run])
        self.artifacts.append(artifact_utils.deserialize_artifact(self.examples_type, artifact))
        return self

    def resolve(self, **config):
        result = SpanWindowStrategy(**config).resolve_artifacts(
            self.store, {"examples": list(self.artifacts)})
        return None if result is None else [a.get_int_custom_property("span")
                                            for a in result["examples"]]


def test_spans_data_gate_rejected_are_skipped_and_said_why(tmp_path, capsys):
    store = Store(tmp_path / "m.sqlite").ingest(1).ingest(
        2, mlmd.Execution.FAILED, "DataAnomaliesError: span 2 breaks the schema\n  details").ingest(3)
    assert store.resolve() == [3, 1]
    out = capsys.readouterr().out
    assert ("[window] skipping span 2: rejected by the data checks in run run-2: "
            "DataAnomaliesError: span 2 breaks the schema\n") in out


def test_fail_closed_without_a_successful_data_gate(tmp_path, capsys):
    store = Store(tmp_path / "m.sqlite").ingest(1).ingest(2, gate_state=None).ingest(
        3, mlmd.Execution.FAILED)
    assert store.resolve(last_span=3) == [1]
    out = capsys.readouterr().out
    assert "skipping span 2: never passed the data checks: DataGate did not complete in run run-2" in out
    assert "skipping span 3: rejected by the data checks in run run-3: its DataGate failed (no " \
           "reason recorded" in out


def test_cached_gate_counts_and_airflow_run_contexts_are_read(tmp_path):
    store = Store(tmp_path / "m.sqlite", run_type="run").ingest(1, mlmd.Execution.CACHED).ingest(2)
    assert store.resolve() == [2, 1]


def test_window_size_counts_accepted_spans_and_newest_copy_decides(tmp_path, capsys):
    store = Store(tmp_path / "m.sqlite").ingest(1).ingest(2).ingest(3, mlmd.Execution.FAILED)
    assert store.resolve(num_spans=2) == [2, 1]
    store.ingest(2, mlmd.Execution.FAILED)  # span 2 ingested again and rejected this time
    assert store.resolve(num_spans=2) == [1]
    capsys.readouterr()
    assert store.resolve(num_spans=2, last_span=1) == [1]
    assert capsys.readouterr().out == "", "spans after last_span are not the window's business"


def test_nothing_accepted_resolves_nothing(tmp_path):
    assert Store(tmp_path / "m.sqlite").ingest(1, mlmd.Execution.FAILED).resolve() is None


def test_an_interrupted_re_ingest_neither_admits_nor_disqualifies_a_span(tmp_path, capsys):
    store = Store(tmp_path / "m.sqlite").ingest(1).ingest(2)
    store.ingest(2, gate_state=None)  # a re-run on span 2 killed before its DataGate
    assert store.resolve() == [2, 1], "the accepted copy still trains"
    resolved = SpanWindowStrategy().resolve_artifacts(store.store,
                                                      {"examples": list(store.artifacts)})
    assert [a.id for a in resolved["examples"]] == [store.artifacts[1].id, store.artifacts[0].id]

    store.ingest(3, mlmd.Execution.FAILED).ingest(3, gate_state=None)
    assert store.resolve() == [2, 1], "a rejected span stays rejected until a copy passes"
    assert "skipping span 3: rejected by the data checks in run run-4" in capsys.readouterr().out
