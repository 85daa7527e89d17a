"""`graceful history` and `graceful lineage` read a run from what its steps produced in ML Metadata,
so they describe a pipeline built from stock TFX components under the user's own node ids."""
import os
import random

import pytest
import tensorflow_model_analysis as tfma
from tfx import v1 as tfx

from graceful import cli, history, lineage

pytestmark = pytest.mark.slow



def _write_span(data_root, span: int, rows: int = 300) -> None:
    """A linearly separable binary table: label = x1 + x2 > 1."""
    rng = random.Random(span)
    folder = os.path.join(data_root, f"span-{span}")
    os.makedirs(folder)
    with open(os.path.join(folder, "data.csv"), "w") as handle:
        handle.write("x1,x2,label\n")
        for _ in range(rows):
            x1, x2 = rng.random(), rng.random()
            handle.write(f"{x1:.4f},{x2:.4f},{int(x1 + x2 > 1)}\n")


def _stock_pipeline(home: str, span: int) -> tfx.dsl.Pipeline:
    """CsvExampleGen "ingest" -> Trainer "fit" -> Evaluator "judge" (against the resolver
    "last_good"'s model) -> Pusher "ship"."""
    ingest = tfx.components.CsvExampleGen(
        input_base=os.path.join(home, "data"),
        input_config=tfx.proto.Input(splits=[
            tfx.proto.Input.Split(name="single", pattern="span-{SPAN}/*")]),
        range_config=tfx.proto.RangeConfig(static_range=tfx.proto.StaticRange(
            start_span_number=span, end_span_number=span))).with_id("ingest")
    last_good = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id("last_good")
    fit = tfx.components.Trainer(
        run_fn="tests.graceful.stock_pipeline_module.run_fn", examples=ingest.outputs["examples"],
        train_args=tfx.proto.TrainArgs(num_steps=20),
        eval_args=tfx.proto.EvalArgs(num_steps=1)).with_id("fit")
    accuracy = tfma.MetricConfig(class_name="BinaryAccuracy", threshold=tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(lower_bound={"value": 0.5})))
    judge = tfx.components.Evaluator(
        examples=ingest.outputs["examples"], model=fit.outputs["model"],
        baseline_model=last_good.outputs["model"],
        eval_config=tfma.EvalConfig(
            model_specs=[tfma.ModelSpec(label_key="label", signature_name="serving_default",
                                        preprocessing_function_names=[])],
            slicing_specs=[tfma.SlicingSpec()],
            metrics_specs=[tfma.MetricsSpec(metrics=[accuracy])])).with_id("judge")
    ship = tfx.components.Pusher(
        model=fit.outputs["model"], model_blessing=judge.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(filesystem=tfx.proto.PushDestination.Filesystem(
            base_directory=os.path.join(home, "serving")))).with_id("ship")
    return tfx.dsl.Pipeline(
        pipeline_name="users_own", pipeline_root=os.path.join(home, "pipeline_root"),
        components=[ingest, last_good, fit, judge, ship],
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            os.path.join(home, "metadata.sqlite")))


@pytest.fixture(scope="module")
def stock_home(tmp_path_factory) -> str:
    """Two real runs of the stock pipeline, on spans 1 and 2 of a tiny CSV table."""
    home = str(tmp_path_factory.mktemp("stock") / "home")
    for span in (1, 2):
        _write_span(os.path.join(home, "data"), span)
        tfx.orchestration.LocalDagRunner().run(_stock_pipeline(home, span))
    return home


def test_history_reads_spans_models_and_accuracy_from_stock_components(stock_home, capsys):
    first, second = history.runs(os.path.join(stock_home, "metadata.sqlite"))
    assert (first.span, first.training_spans, second.span, second.training_spans) == (1, [1], 2, [2])
    assert first.model_id is not None and first.baseline_model_id is None
    assert second.baseline_model_id == first.model_id != second.model_id
    assert 0.5 <= first.accuracy <= 1.0 and 0.5 <= second.accuracy <= 1.0
    assert second.baseline_accuracy is not None
    assert first.pushed and first.status == second.status == "pushed"
    assert first.blessed and second.blessed

    assert cli.main(["history", "--home", stock_home]) == 0
    row = capsys.readouterr().out.splitlines()[-1].split()
    assert row[:3] == ["2", "2", "2"] and str(second.model_id) in row
    assert f"{second.accuracy:.4f}" in row and str(first.model_id) in row


def test_lineage_follows_the_stock_chain(stock_home, capsys):
    metadata_path = os.path.join(stock_home, "metadata.sqlite")
    _, second = history.runs(metadata_path)
    info = lineage.lineage(metadata_path)
    assert info["model"]["id"] == second.model_id
    assert [span["span"] for span in info["data"]] == [2]
    assert info["baseline_model"] == [second.baseline_model_id]
    assert info["evaluation"]["accuracy"] == pytest.approx(second.accuracy)
    assert info["pushed"].startswith(os.path.join(stock_home, "serving"))

    assert cli.main(["lineage", "--home", stock_home]) == 0
    text = capsys.readouterr().out
    assert "span 2:" in text and f"accuracy {second.accuracy:.4f}" in text
    assert f"baseline model: [{second.baseline_model_id}]" in text
