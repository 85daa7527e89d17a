"""The graceful pipeline: a list of TFX components and how they connect.

  baseline resolver     finds the last blessed model in ML Metadata
  BaselineGuard         stops the run unless that model is the one being served (a lost store, a
                        push that never completed, deleted model files); runs before anything else
  ExampleGen            ingests one data span (the newest, or the one asked for): CSV files through
                        CsvExampleGen, tf.Example TFRecords through ImportExampleGen
  StatisticsGen         computes statistics of that span
  ImportSchemaGen       brings in the curated schema from schemas/
  ExampleValidator      compares the statistics with the schema
  DataGate              stops the run when the span has anomalies, too few examples per split or
                        a label class missing
  training window       resolves the newest `window_spans` spans from ML Metadata that DataGate
                        accepted (rejected spans never train; the run says which it skipped)
                        (on Kubeflow v2, which cannot compile it: the span just ingested)
  Transform             only with `transform_module`: TFX's Transform fits your preprocessing_fn's
                        analyzers on the window's train splits (the graph only; no transformed copy)
  GracefulTrainer       trains on the window, with the baseline as frozen reference (FD / BCT);
                        with Transform, on the transformed features, and exports the model with
                        the transform graph inside, so the served model takes raw examples
  -- only with EdgeConfig.enabled (off by default): --
  previous edge model   the last EdgePush that pushed, from ML Metadata (LatestEdgePushStrategy;
                        like the training window, not on Kubeflow v2)
  EdgeConverter         converts the candidate to TensorFlow Lite (float, or int8 calibrated on the
                        training window) and checks its negative flips against the cloud candidate
                        and the previous edge model (GateConfig.max_edge_*): its own verdict
  --
  release history       only with GateConfig.history_models: the last N blessed (pushed, not
                        rolled back) models (LatestBlessedModelsStrategy; not on Kubeflow v2)
  FlipEvaluator         lists, in one Beam pass over both models, the examples the candidate broke,
                        writes the flip report (JSON + web page, with the edge model's numbers
                        when the edge branch is on) and the flip gate's verdict; golden examples
                        (GateConfig.golden_ids) first, and the NFR against each earlier release
  HumanSignOff          if the flip gate passed, a person approves or rejects (Slack or
                        `graceful approve|reject`); otherwise it records that nobody was asked.
                        By default the run does not wait: it ends awaiting sign-off, and the
                        decision releases the candidate through the release pipeline
                        (pipeline/release.py: the same Evaluator and Pusher, run then)
  -- only if a person approved: --
  Evaluator (TFMA)      judges the candidate vs the baseline: accuracy, and negative flips
                        (graceful.tfma_flips: NFR overall and per class, relative NFR, confident flips)
  AtomicPusher          copies the model to the serving directory, only if blessed: TFX's Pusher,
                        staged and renamed into place so no partial model is ever served
  EdgePusher            only with EdgeConfig.enabled: the .tflite to the edge destination, only if
                        the cloud model was pushed and the edge check passed (a failed edge check
                        never blocks the cloud push); also in the release pipeline

Why the condition: the Evaluator's ModelBlessing is what LatestBlessedModelStrategy trusts when it
picks the next baseline, so it exists only for candidates every earlier gate passed.

Every runner (local, Kubeflow, Airflow) builds its pipeline with `create_pipeline(config)`.
"""
from __future__ import annotations

import dataclasses
import json

from tfx import v1 as tfx
from tfx.dsl.components.base import executor_spec

from graceful.components.atomic_pusher.component import AtomicPusher
from graceful.components.baseline_guard.component import BaselineGuard
from graceful.components.data_gate.component import DataGate
from graceful.components.edge_converter.component import EdgeConverter, EdgePush
from graceful.components.edge_pusher.component import EdgePusher
from graceful.components.edge_pusher.strategy import LatestEdgePushStrategy
from graceful.components.flip_evaluator.component import FlipEvaluator
from graceful.components.graceful_trainer.component import GracefulTrainer
from graceful.components.human_signoff.component import HumanSignOff
from graceful.components.release_history.strategy import LatestBlessedModelsStrategy
from graceful.components.report_settings import ReportSettings
from graceful.components.span_reader import executor as span_reader
from graceful.components.span_window.strategy import SpanWindowStrategy
from graceful.pipeline.configs import PipelineConfig
from graceful.pipeline.evaluation import eval_config


def example_gen(config: PipelineConfig):
    """Ingests one span (`config.span`, or the newest when it is None) in the data contract's format
    from the files its patterns match: CsvExampleGen for CSV, ImportExampleGen for tf.Examples.

    The TFRecord reader (components/span_reader) names the unreadable file when a span cannot be read.
    """
    data = config.data
    input_config = tfx.proto.Input(splits=[
        tfx.proto.Input.Split(name="train", pattern=data.train_pattern),
        tfx.proto.Input.Split(name="eval", pattern=data.eval_pattern),
    ])
    range_config = None
    if config.span is not None:
        range_config = tfx.proto.RangeConfig(static_range=tfx.proto.StaticRange(
            start_span_number=config.span, end_span_number=config.span))
    if data.format == "csv":
        return tfx.components.CsvExampleGen(
            input_base=config.data_root, input_config=input_config, range_config=range_config)
    gen = tfx.components.ImportExampleGen(
        input_base=config.data_root, input_config=input_config, range_config=range_config)
    # ImportExampleGen takes no custom_executor_spec; setting it keeps the component's type and id.
    gen.executor_spec = executor_spec.BeamExecutorSpec(span_reader.Executor)
    return gen


def training_window(data_gate_node, config: PipelineConfig) -> tfx.dsl.Resolver:
    """The newest `window_spans` accepted spans ingested so far (all if 0), the newest copy of each.

    Accepted = DataGate passed them (SpanWindowStrategy reads that from ML Metadata); the resolver
    runs after this run's DataGate, so the span just ingested counts once it passed.

    Resolved from ML Metadata across runs (a plain Examples channel, not bound to this run), so a run
    on span N trains on spans N-w+1..N although ExampleGen ingested only span N now. The channel is
    not filtered by producer either: TFX's Airflow runner records producers differently from the
    local and Kubeflow runners, and ImportExampleGen is this pipeline's only Examples producer.
    """
    resolver = tfx.dsl.Resolver(
        strategy_class=SpanWindowStrategy,
        config={"num_spans": config.window_spans, "last_span": config.span},
        examples=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Examples),
    ).with_id("training_window")
    resolver.add_upstream_node(data_gate_node)  # this run's span judged first (channel is unbound)
    return resolver


def transform(config: PipelineConfig, training_examples, schema,
              data_gate_node) -> tfx.components.Transform | None:
    """TFX's Transform with the preprocessing_fn of `config.transform_module`, fitted on the
    training window (its analyzers see every span the Trainer trains on); None without a module.

    Takes the window's several Examples artifacts (one per span) as they are. materialize=False
    is required, not only cheaper: the Trainer reads the raw examples (the reference, the served
    model, must score the same ones) and applies the graph itself, and materialized transformed
    examples are Examples artifacts too, which the next run's window (resolved by type, not by
    producer) would take for raw spans. disable_statistics: nothing reads Transform's pre/post
    statistics (DataGate judges StatisticsGen's); they cost ~5 s of a ~40 s run on the wine test.
    """
    if not config.transform_module:
        return None
    node = tfx.components.Transform(examples=training_examples, schema=schema,
                                    module_file=config.transform_module, materialize=False,
                                    disable_statistics=True)
    node.add_upstream_node(data_gate_node)  # never fitted on a span DataGate rejects
    return node


def baseline_resolver() -> tfx.dsl.Resolver:
    """The last blessed model in ML Metadata (LatestBlessedModelStrategy): the baseline a candidate
    is trained, judged and evaluated against. The release pipeline (pipeline/release.py) resolves
    it the same way, so a release sees the baseline of now, not of when the candidate was judged."""
    return tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id("baseline_model")


def release_history(config: PipelineConfig) -> tfx.dsl.Resolver | None:
    """The last `config.gate.history_models` blessed (so pushed, not rolled back) models, newest
    first, for the FlipEvaluator's flips against earlier releases; None when that is off (0) or
    where `cross_run_window` is off (Kubeflow v2, which cannot compile a custom strategy)."""
    if not config.gate.history_models or not config.cross_run_window:
        return None
    return tfx.dsl.Resolver(
        strategy_class=LatestBlessedModelsStrategy,
        config={"num_models": config.gate.history_models},
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id("release_history")


def edge_branch(config: PipelineConfig, model, examples, training_examples) -> list:
    """[previous edge model resolver, EdgeConverter] when EdgeConfig.enabled, else []: the
    candidate `model` as a .tflite model, checked on the eval split of `examples` against itself
    and against the last pushed edge model (calibrated, for int8, on `training_examples`).

    The resolver is a custom strategy, which Kubeflow v2's compiler cannot compile (as the
    training window's): where `cross_run_window` is off, the edge model is checked against the
    cloud candidate only."""
    if not config.edge.enabled:
        return []
    previous = None
    if config.cross_run_window:
        previous = tfx.dsl.Resolver(
            strategy_class=LatestEdgePushStrategy,
            edge_push=tfx.dsl.Channel(type=EdgePush)).with_id("previous_edge_model")
    converter = EdgeConverter(
        model=model, examples=examples, training_examples=training_examples,
        previous_edge=previous.outputs["edge_push"] if previous else None,
        settings=ReportSettings(policy=config.gate, data=config.data, model=config.model),
        quantization=config.edge.quantization,
        representative_examples=config.edge.representative_examples)
    return [*([previous] if previous else []), converter]


def evaluate_and_push(config: PipelineConfig, sign_off, examples, model, baseline_model,
                      edge_model=None) -> list:
    """[Evaluator, Pusher] (+ EdgePusher with an `edge_model` channel), all run only when
    `sign_off` (a SignOff channel) is blessed: the Evaluator judges `model` against
    `baseline_model` on the eval split of `examples`, the AtomicPusher pushes it only on the
    Evaluator's blessing, and the EdgePusher pushes the edge model only when that push happened and
    the edge check passed. Shared by this pipeline and the release pipeline, so a released
    candidate passes exactly the gates a waited-for one does."""
    approved = sign_off.future()[0].custom_property("blessed") == 1
    with tfx.dsl.Cond(approved):
        evaluator = tfx.components.Evaluator(
            examples=examples, model=model, baseline_model=baseline_model,
            eval_config=eval_config(config.gate, config.data, config.model),
            example_splits=["eval"])
        pusher = AtomicPusher(
            model=model,
            model_blessing=evaluator.outputs["blessing"],
            push_destination=tfx.proto.PushDestination(
                filesystem=tfx.proto.PushDestination.Filesystem(
                    base_directory=config.serving_dir))).with_id("Pusher")
        nodes = [evaluator, pusher]
        if edge_model is not None:
            nodes.append(EdgePusher(model=model, edge_model=edge_model,
                                    pushed_model=pusher.outputs["pushed_model"],
                                    destination=config.edge_serving_dir))
    return nodes


def create_pipeline(config: PipelineConfig,
                    metadata_connection_config=None) -> tfx.dsl.Pipeline:
    examples_gen = example_gen(config)
    schema_importer = tfx.components.ImportSchemaGen(
        schema_file=f"{config.schema_dir}/schema.pbtxt")
    # With the curated schema, TFDV counts the categorical label's values exactly (DataGate's checks).
    statistics_gen = tfx.components.StatisticsGen(examples=examples_gen.outputs["examples"],
                                                  schema=schema_importer.outputs["schema"])
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"],
        schema=schema_importer.outputs["schema"])
    data_gate = DataGate(anomalies=example_validator.outputs["anomalies"],
                         statistics=statistics_gen.outputs["statistics"],
                         schema=schema_importer.outputs["schema"],
                         examples=examples_gen.outputs["examples"],
                         label_key=config.data.label_key,
                         class_names=json.dumps(list(config.data.class_names)),
                         **dataclasses.asdict(config.data_checks))

    if config.cross_run_window:
        training_spans = training_window(data_gate, config)
        training_examples, window_nodes = training_spans.outputs["examples"], [training_spans]
    else:
        training_examples, window_nodes = examples_gen.outputs["examples"], []
    transformer = transform(config, training_examples, schema_importer.outputs["schema"],
                            data_gate)
    baseline_model = baseline_resolver()
    baseline_guard = BaselineGuard(baseline_model=baseline_model.outputs["model"],
                                   serving_dir=config.serving_dir,
                                   unknown_serving_reason=config.accept_unknown_serving)
    examples_gen.add_upstream_node(baseline_guard)  # nothing is ingested unless the baseline holds

    trainer = GracefulTrainer(
        examples=training_examples,
        schema=schema_importer.outputs["schema"],
        reference_model=baseline_model.outputs["model"],
        params=config.training, data=config.data, model=config.model,
        module_file=config.module_file or None, run_fn=config.run_fn,
        transform_graph=transformer.outputs["transform_graph"] if transformer else None,
    ).with_id("Trainer")
    trainer.add_upstream_node(data_gate)

    edge_nodes = edge_branch(config, trainer.outputs["model"], examples_gen.outputs["examples"],
                             training_examples)
    edge_model = edge_nodes[-1].outputs["edge_model"] if edge_nodes else None

    releases = release_history(config)
    flip_evaluator = FlipEvaluator(
        examples=examples_gen.outputs["examples"],
        model=trainer.outputs["model"],
        baseline_model=baseline_model.outputs["model"], model_run=trainer.outputs["model_run"],
        settings=ReportSettings(policy=config.gate, data=config.data, model=config.model),
        edge_model=edge_model,
        history_models=releases.outputs["model"] if releases else None)

    sign_off = HumanSignOff(
        model=trainer.outputs["model"],
        flip_report=flip_evaluator.outputs["flip_report"],
        flip_blessing=flip_evaluator.outputs["blessing"],
        examples=examples_gen.outputs["examples"],
        store_path=config.sign_off_store,  # SignOffConfig.store, or its default location
        auto_approve=config.sign_off.auto_approve, wait=config.sign_off.wait,
        timeout_seconds=config.sign_off.timeout_seconds,
        slack_channel=config.sign_off.slack_channel,
        max_poll_seconds=config.sign_off.max_poll_seconds,
        edge_model=edge_model)

    release_nodes = evaluate_and_push(
        config, sign_off.outputs["sign_off"], examples=examples_gen.outputs["examples"],
        model=trainer.outputs["model"], baseline_model=baseline_model.outputs["model"],
        edge_model=edge_model)

    return tfx.dsl.Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=config.pipeline_root,
        components=[examples_gen, statistics_gen, schema_importer, example_validator, data_gate,
                    *window_nodes, *([transformer] if transformer else []), baseline_model,
                    baseline_guard, trainer, *edge_nodes, *([releases] if releases else []),
                    flip_evaluator, sign_off,
                    *release_nodes],
        enable_cache=config.enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=config.beam_pipeline_args)
