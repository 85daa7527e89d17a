"""FlipEvaluator's executor: one batched Beam pass runs both models on every eval example.

Why Beam: the pass scales with whatever runner the pipeline's beam_pipeline_args name (DirectRunner
locally, Dataflow/Flink/Spark elsewhere). Each batch of serialized tf.Examples goes through the
candidate's and the baseline's `graceful_outputs` signature once; the per-example predictions are then
summarised with graceful.flips (TFX-free maths) into a report: overall and per-class flip metrics,
the flip matrix, and the flipped examples ranked worst first.
"""
from __future__ import annotations

import json
import os

import apache_beam as beam
import numpy as np
from tfx.dsl.components.base import base_beam_executor
from tfx.types import artifact_utils
from tfx.utils import io_utils, path_utils

from graceful import flips
from models.training import OUTPUTS_SIGNATURE

REPORT_FILE = "flip_report.json"


class _PredictBoth(beam.DoFn):
    """Loads both SavedModels once per worker; per batch yields arrays
    (ids, labels, old_pred, new_pred, new_prob), parsed and predicted in TensorFlow, not per example."""

    def __init__(self, candidate_dir: str, baseline_dir: str):
        self._dirs = (candidate_dir, baseline_dir)
        self._signatures = None

    def setup(self):
        import tensorflow as tf

        self._signatures = [tf.saved_model.load(d).signatures[OUTPUTS_SIGNATURE] for d in self._dirs]
        self._keys = {key: tf.io.FixedLenFeature([1], tf.int64) for key in ("example_id", "label")}

    def process(self, batch):
        import tensorflow as tf

        serialized = tf.constant(batch)
        keys = tf.io.parse_example(serialized, self._keys)
        new_logits, old_logits = (sig(examples=serialized)["logits"] for sig in self._signatures)
        yield (keys["example_id"].numpy().reshape(-1), keys["label"].numpy().reshape(-1),
               np.argmax(old_logits.numpy(), 1), np.argmax(new_logits.numpy(), 1),
               tf.nn.softmax(new_logits).numpy())


def build_report(batches, high_confidence: float, max_listed: int) -> dict:
    """The flip report from per-batch arrays (ids, labels, old_pred, new_pred, new_prob), any order."""
    ids, labels, old_pred, new_pred, new_prob = (np.concatenate([b[i] for b in batches])
                                                 for i in range(5))
    order = np.argsort(ids, kind="stable")
    ids, labels, old_pred, new_pred, new_prob = (a[order] for a in
                                                 (ids, labels, old_pred, new_pred, new_prob))
    summary = flips.summarize(labels, old_pred, new_pred, new_prob, high_confidence)
    per_class = flips.per_group(labels, old_pred, new_pred, labels, new_prob, high_confidence)
    return {
        "has_baseline": True,
        "summary": summary.to_dict(),
        "per_class": {str(k): v.to_dict() for k, v in per_class.items()},
        "flip_matrix": flips.flip_matrix(labels, old_pred, new_pred,
                                         new_prob.shape[1]).tolist(),
        "flips": flips.ranked_flips(labels, old_pred, new_pred, new_prob, ids)[:max_listed],
    }


def _write_report(batches, path: str, high_confidence: float, max_listed: int) -> None:
    io_utils.write_string_file(path, json.dumps(build_report(batches, high_confidence, max_listed),
                                                indent=1))


class Executor(base_beam_executor.BaseBeamExecutor):

    def Do(self, input_dict, output_dict, exec_properties):
        report_artifact = artifact_utils.get_single_instance(output_dict["flip_report"])
        report_path = os.path.join(report_artifact.uri, REPORT_FILE)
        baselines = input_dict.get("baseline_model") or []
        if not baselines:
            io_utils.write_string_file(report_path, json.dumps({
                "has_baseline": False,
                "reason": "no blessed baseline model yet (first run): nothing can flip"}))
            report_artifact.set_int_custom_property("has_baseline", 0)
            return
        self._evaluate(input_dict, baselines[0], exec_properties, report_path)
        summary = json.loads(io_utils.read_string_file(report_path))["summary"]
        for key in ("nfr", "relative_nfr", "pfr", "nfi"):
            report_artifact.set_float_custom_property(key, summary[key])
        for key in ("negative_flips", "high_confidence_flips", "examples"):
            report_artifact.set_int_custom_property(key, summary[key])
        report_artifact.set_int_custom_property("baseline_model_id", baselines[0].id)
        report_artifact.set_int_custom_property("has_baseline", 1)

    def _evaluate(self, input_dict, baseline, exec_properties, report_path: str) -> None:
        """The Beam pass; the report is written by the pipeline itself, so any runner works."""
        examples = artifact_utils.get_single_instance(input_dict["examples"])
        split_uri = artifact_utils.get_split_uri([examples], exec_properties["split"])
        candidate = artifact_utils.get_single_instance(input_dict["model"])
        with self._make_beam_pipeline() as pipeline:
            add_flip_report(pipeline, os.path.join(split_uri, "*"),
                            path_utils.serving_model_path(candidate.uri),
                            path_utils.serving_model_path(baseline.uri), report_path,
                            exec_properties["high_confidence"], exec_properties["max_flips_listed"])


def add_flip_report(pipeline, file_pattern: str, candidate_dir: str, baseline_dir: str,
                    report_path: str, high_confidence: float, max_listed: int) -> None:
    """Adds the flip evaluation to a Beam pipeline: read, batch, predict with both, report."""
    _ = (pipeline
         | "Read" >> beam.io.ReadFromTFRecord(file_pattern)
         | "Batch" >> beam.BatchElements(min_batch_size=256, max_batch_size=1024)
         | "PredictBoth" >> beam.ParDo(_PredictBoth(candidate_dir, baseline_dir))
         | "Collect" >> beam.combiners.ToList()
         | "Report" >> beam.Map(_write_report, report_path, high_confidence, max_listed))
