"""Releases whose request and release pipeline disagree on the edge branch (pipeline/release.py):
values() sends edge_model_uri exactly when the release declares it, a release compiled with the
edge branch for a request without an edge model imports "" and its EdgePusher pushes nothing
without failing, and a local release builds its edge nodes only for a request with an edge model."""
import dataclasses
import os

from tfx import v1 as tfx
from tfx.orchestration import metadata

from graceful import history, serving, signoff
from graceful.components.edge_converter.component import EdgeModel
from graceful.components.edge_pusher.component import EdgePusher
from graceful.components.edge_pusher.executor import NO_EDGE_MODEL
from graceful.components.human_signoff.executor import RELEASE_EVIDENCE, ReleaseEvidence
from graceful.pipeline import release
from graceful.pipeline.configs import EdgeConfig, PipelineConfig


def _request(edge_model_uri=None):
    evidence = ReleaseEvidence(7, "/runs/model/7", "/runs/examples/3", None, None, edge_model_uri)
    return signoff.Request("run-1", 7, {RELEASE_EVIDENCE: dataclasses.asdict(evidence)}, 0.0,
                           deadline_at=1.0)


def _config(tmp_path, edge: bool):
    return PipelineConfig(home=str(tmp_path / "home"), edge=EdgeConfig(enabled=edge))


def test_values_send_the_edge_model_uri_exactly_when_the_release_declares_it(tmp_path):
    on, off = _config(tmp_path, True), _config(tmp_path, False)
    base = {release.REQUEST_ID: "run-1", release.CANDIDATE_MODEL_URI: "/runs/model/7",
            release.EVAL_EXAMPLES_URI: "/runs/examples/3"}
    assert release.values(_request("/runs/edge/9"), on) == {**base,
                                                           release.EDGE_MODEL_URI: "/runs/edge/9"}
    # compiled with the edge branch, a request without one: its parameter, empty
    assert release.values(_request(None), on) == {**base, release.EDGE_MODEL_URI: ""}
    # compiled without it: no such parameter (Kubeflow refuses an unknown one), edge model or not
    assert release.values(_request("/runs/edge/9"), off) == base
    assert release.values(_request("/runs/edge/9")) == base
    for config in (on, off):  # the keys are the release's declared parameters
        for request in (_request("/runs/edge/9"), _request(None)):
            assert set(release.values(request, config)) == set(release.runtime_parameters(config))


def test_a_local_release_has_edge_nodes_only_for_a_request_with_an_edge_model(tmp_path):
    def ids(config, request):
        pipeline = release.create_release_pipeline(config, release.values(request, config))
        return {node.id for node in pipeline.components}

    on, off = _config(tmp_path, True), _config(tmp_path, False)
    assert {"edge_model", "EdgePusher"} <= ids(on, _request("/runs/edge/9"))
    assert not {"edge_model", "EdgePusher"} & ids(on, _request(None))
    assert not {"edge_model", "EdgePusher"} & ids(off, _request("/runs/edge/9"))
    # compiled for Airflow/Kubeflow with the edge branch: the nodes are there for every request
    assert {"edge_model", "EdgePusher"} <= {node.id for node in release.create_release_pipeline(
        on, release.runtime_parameters(on)).components}


def test_an_edge_model_uri_left_empty_is_imported_and_pushes_nothing_without_failing(tmp_path):
    """What the release compiled with the edge branch runs for a request without an edge model:
    TFX's Importer of "" (the parameter's value) feeding the EdgePusher after a cloud push."""
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    pushed_dir = tmp_path / "pushed"
    pushed_dir.mkdir()
    candidate = release._Importer(source_uri=str(model_dir), reimport=False,
                                  artifact_type=tfx.types.standard_artifacts.Model
                                  ).with_id("candidate_model")
    pushed = release._Importer(source_uri=str(pushed_dir),
                               artifact_type=tfx.types.standard_artifacts.PushedModel,
                               custom_properties={serving.PUSHED: 1,
                                                  serving.PUSHED_VERSION: "4"}).with_id("pushed")
    edge = release._Importer(source_uri="", artifact_type=EdgeModel,
                             reimport=False).with_id("edge_model")
    pusher = EdgePusher(model=candidate.outputs["result"], edge_model=edge.outputs["result"],
                        pushed_model=pushed.outputs["result"],
                        destination=str(tmp_path / "edge_serving"))
    store_path = str(tmp_path / "metadata.sqlite")
    tfx.orchestration.LocalDagRunner().run(tfx.dsl.Pipeline(
        pipeline_name="edge_release", pipeline_root=str(tmp_path / "root"),
        components=[candidate, pushed, edge, pusher], enable_cache=False,
        metadata_connection_config=metadata.sqlite_metadata_connection_config(store_path)))
    [edge_push] = history.open_store(store_path).get_artifacts_by_type("graceful.EdgePush")
    assert edge_push.custom_properties[serving.PUSHED].int_value == 0
    assert edge_push.custom_properties["reason"].string_value == NO_EDGE_MODEL
    assert not os.path.exists(tmp_path / "edge_serving")
