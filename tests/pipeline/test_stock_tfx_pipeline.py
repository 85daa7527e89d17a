"""graceful's components dropped into a team's own, stock TFX pipeline.

CsvExampleGen -> StatisticsGen -> SchemaGen -> stock Trainer (the team's run_fn: a binary model with
one sigmoid output) -> LatestBlessed resolver -> graceful FlipEvaluator -> HumanSignOff -> stock
Evaluator (graceful's flip metrics) -> stock Pusher, imported by their public names, run with
LocalDagRunner on the breast-cancer table. Every number the gates use is checked against a numpy count
on the same two SavedModels' predictions, and the verdicts against the policy.
"""
import dataclasses
import glob
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from ml_metadata import metadata_store
from tfx import v1 as tfx

from graceful.components import FlipEvaluator, HumanSignOff
from graceful.components.report_settings import ReportSettings
from graceful.contract import DataContract, ModelContract
from graceful.gate import GateConfig
from graceful.pipeline.evaluation import eval_config
from tests import tabular

pytestmark = pytest.mark.slow

MODULE = os.path.join(os.path.dirname(__file__), "stock_user_module.py")
MODEL = ModelContract(output_key="probability", scores="probabilities")


def _pipeline(home: str, span: int, steps: int, seed: int, policy: GateConfig,
              class_names) -> tfx.dsl.Pipeline:
    data = DataContract(format="csv", label_key=tabular.LABEL, id_key=tabular.ID,
                        class_names=class_names)
    ingest = tfx.components.CsvExampleGen(
        input_base=os.path.join(home, "data"),
        input_config=tfx.proto.Input(splits=[
            tfx.proto.Input.Split(name="train", pattern="span-{SPAN}/train/*"),
            tfx.proto.Input.Split(name="eval", pattern="span-{SPAN}/eval/*")]),
        range_config=tfx.proto.RangeConfig(static_range=tfx.proto.StaticRange(
            start_span_number=span, end_span_number=span)))
    statistics = tfx.components.StatisticsGen(examples=ingest.outputs["examples"])
    schema = tfx.components.SchemaGen(statistics=statistics.outputs["statistics"])
    trainer = tfx.components.Trainer(
        module_file=MODULE, examples=ingest.outputs["examples"], schema=schema.outputs["schema"],
        train_args=tfx.proto.TrainArgs(num_steps=steps), eval_args=tfx.proto.EvalArgs(num_steps=1),
        custom_config={"steps": steps, "seed": seed})
    baseline = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id("latest_blessed")
    flips = FlipEvaluator(examples=ingest.outputs["examples"], model=trainer.outputs["model"],
                          baseline_model=baseline.outputs["model"],
                          settings=ReportSettings(policy=policy, data=data, model=MODEL))
    sign_off = HumanSignOff(model=trainer.outputs["model"],
                            flip_report=flips.outputs["flip_report"],
                            flip_blessing=flips.outputs["blessing"],
                            store_path=os.path.join(home, "decisions.sqlite"),
                            timeout_seconds=60, auto_approve=True)
    with tfx.dsl.Cond(sign_off.outputs["sign_off"].future()[0].custom_property("blessed") == 1):
        evaluator = tfx.components.Evaluator(
            examples=ingest.outputs["examples"], model=trainer.outputs["model"],
            baseline_model=baseline.outputs["model"],
            eval_config=eval_config(policy, data, MODEL), example_splits=["eval"])
        pusher = tfx.components.Pusher(
            model=trainer.outputs["model"], model_blessing=evaluator.outputs["blessing"],
            push_destination=tfx.proto.PushDestination(filesystem=tfx.proto.PushDestination
                                                       .Filesystem(base_directory=os.path.join(
                                                           home, "serving"))))
    return tfx.dsl.Pipeline(
        pipeline_name="team-pipeline", pipeline_root=os.path.join(home, "root"),
        components=[ingest, statistics, schema, trainer, baseline, flips, sign_off, evaluator,
                    pusher],
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            os.path.join(home, "metadata.sqlite")))


def _latest(store, type_name):
    artifacts = store.get_artifacts_by_type(type_name)
    return max(artifacts, key=lambda a: a.id) if artifacts else None


def _predictions(model_dir: str, records: list[bytes]) -> np.ndarray:
    serve = tf.saved_model.load(model_dir).signatures["serving_default"]
    return serve(examples=tf.constant(records))["probability"].numpy().reshape(-1)


def _numpy_count(store, candidate, baseline) -> dict:
    """NFR, accuracies and flips of `candidate` vs `baseline` on the eval split, counted in numpy
    from their serving signatures' sigmoid outputs (class 1 when P > 0.5)."""
    examples = _latest(store, "Examples")
    files = sorted(glob.glob(os.path.join(examples.uri, "Split-eval", "*")))
    records = [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]
    labels = np.array([tf.train.Example.FromString(r).features.feature[tabular.LABEL]
                       .int64_list.value[0] for r in records])
    new, old = (_predictions(os.path.join(m.uri, "Format-Serving"), records) > 0.5
                for m in (candidate, baseline))
    flipped = (old == labels) & (new != labels)
    return {"examples": len(labels), "negative_flips": int(flipped.sum()),
            "nfr": flipped.mean(), "new_accuracy": (new == labels).mean(),
            "old_accuracy": (old == labels).mean()}


def _tfma_metrics(evaluation_uri: str) -> dict:
    import tensorflow_model_analysis as tfma

    result = tfma.load_eval_result(evaluation_uri)
    overall = [m for key, m in result.slicing_metrics if key == ()][0]
    return {name: value["doubleValue"] for name, value in overall[""][""].items()
            if "doubleValue" in value}


def _flip_report(store) -> dict:
    with open(os.path.join(_latest(store, "graceful.FlipReport").uri, "flip_report.json")) as f:
        return json.load(f)


def _assert_same_numbers(summary: dict, expected: dict) -> None:
    for key in ("examples", "negative_flips"):
        assert summary[key] == expected[key], key
    for key in ("nfr", "new_accuracy", "old_accuracy"):
        assert summary[key] == pytest.approx(expected[key], abs=1e-12), key


def _pushed(store) -> int:
    return sum(p.custom_properties["pushed"].int_value == 1
               for p in store.get_artifacts_by_type("PushedModel"))


def test_graceful_components_gate_a_stock_tfx_pipeline(tmp_path):
    home = str(tmp_path)
    class_names = tabular.write_spans("breast_cancer", os.path.join(home, "data"), num_spans=2)
    lenient = GateConfig(min_accuracy=0.3, max_accuracy_drop=1.0, max_nfr=1.0,
                         max_class_nfr=1.0, max_relative_nfr=1000.0, max_slice_nfr=1.0)
    runner = tfx.orchestration.LocalDagRunner()
    store = metadata_store.MetadataStore(
        tfx.orchestration.metadata.sqlite_metadata_connection_config(
            os.path.join(home, "metadata.sqlite")))

    runner.run(_pipeline(home, 1, steps=40, seed=0, policy=lenient, class_names=class_names))
    assert _pushed(store) == 1

    # Run 2: a barely trained model on span 2 passes the lenient policy, so the stock Evaluator
    # judges it against run 1's model with graceful's metrics: TFMA, the FlipEvaluator and numpy
    # agree on every number.
    runner.run(_pipeline(home, 2, steps=3, seed=3, policy=lenient, class_names=class_names))
    models = sorted(store.get_artifacts_by_type("Model"), key=lambda a: a.id)
    expected = _numpy_count(store, models[-1], models[-2])
    assert expected["negative_flips"] > 0, "the barely trained model should flip examples"
    _assert_same_numbers(_flip_report(store)["summary"], expected)
    metrics = _tfma_metrics(_latest(store, "ModelEvaluation").uri)
    assert metrics["negative_flip_rate"] == pytest.approx(expected["nfr"], abs=1e-9)
    accuracy = [value for name, value in metrics.items() if name.endswith("accuracy")]
    assert accuracy and accuracy[0] == pytest.approx(expected["new_accuracy"], abs=1e-9)
    assert _pushed(store) == 2

    # Run 3: another barely trained model under a policy that allows no flips: blocked by the
    # FlipEvaluator with the numbers numpy counts, and nothing is pushed.
    strict = dataclasses.replace(lenient, max_nfr=0.0)
    runner.run(_pipeline(home, 2, steps=2, seed=7, policy=strict, class_names=class_names))
    models = sorted(store.get_artifacts_by_type("Model"), key=lambda a: a.id)
    expected = _numpy_count(store, models[-1], models[-2])
    assert expected["negative_flips"] > 0
    report = _flip_report(store)
    _assert_same_numbers(report["summary"], expected)
    assert not report["gate"]["blessed"]
    assert report["gate"]["failures"][0].startswith("NFR")
    assert _pushed(store) == 2
