"""GracefulTrainer in the real pipeline: run 2 trains against run 1's blessed model, found in MLMD."""

import json

import pytest
from ml_metadata.proto import metadata_store_pb2

from graceful import history
from tests.conftest import run_span, with_training

pytestmark = pytest.mark.slow


def _trainer_execution_and_model(store, model_id):
    [event] = [e for e in store.get_events_by_artifact_ids([model_id])
               if e.type == metadata_store_pb2.Event.OUTPUT]
    [execution] = store.get_executions_by_id([event.execution_id])
    [model] = store.get_artifacts_by_id([model_id])
    return execution, model


def test_second_run_distils_from_the_first_runs_model_with_bct(tiny_config):
    config = with_training(tiny_config, loss="bct+fd", temperature=2.0, alpha=0.0, beta=1.0,
                           lam=0.3, lambda_bct=0.5)
    run_span(config, span=1)
    run_span(with_training(config, architecture="cnn"), span=2)
    first, second = history.runs(config.metadata_uri)
    store = history.open_store(config.metadata_uri)

    execution, model = _trainer_execution_and_model(store, first.model_id)
    assert first.loss == "plain", "no blessed model yet: the first run trains plainly"
    assert model.custom_properties["reference_note"].string_value.startswith("no blessed model")
    assert history.property_value(execution, "loss") == "bct+fd"

    execution, model = _trainer_execution_and_model(store, second.model_id)
    inputs = [e for e in store.get_events_by_execution_ids([execution.id])
              if e.type == metadata_store_pb2.Event.INPUT and e.path.steps[0].key == "base_model"]
    assert [e.artifact_id for e in inputs] == [first.model_id]
    assert second.loss == "bct+fd" and second.reference_model_id == first.model_id
    params = {k: history.property_value(execution, k)
              for k in ("temperature", "alpha", "beta", "lam", "lambda_bct")}
    assert params == {
        "temperature": 2.0, "alpha": 0.0, "beta": 1.0, "lam": 0.3, "lambda_bct": 0.5}
    assert history.property_value(execution, "architecture") == "cnn"
    # The contracts the run read predictions by are recorded with it.
    recorded = json.loads(history.property_value(execution, "model_contract"))
    assert recorded["embedding_layer"] == config.model.embedding_layer == "embedding"
    assert json.loads(history.property_value(execution, "data_contract"))["label_key"] == "label"
    # The BCT compatibility criterion, computed on the eval split, is recorded on the model.
    new_old = model.custom_properties["compat_new_old_top1"].double_value
    old_old = model.custom_properties["compat_old_old_top1"].double_value
    assert 0.0 < new_old <= 1.0 and 0.0 < old_old <= 1.0
    assert model.custom_properties["compatible"].int_value == int(new_old > old_old)
