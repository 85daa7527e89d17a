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

REPORT_FILE = "flip_report.json"
OUTPUTS_SIGNATURE = "graceful_outputs"


class _PredictBoth(beam.DoFn):
    """Loads both SavedModels once per worker; yields (id, label, old_pred, new_pred, new_prob)."""

    def __init__(self, candidate_dir: str, baseline_dir: str):
        self._dirs = (candidate_dir, baseline_dir)
        self._signatures = None

    def setup(self):
        import tensorflow as tf

        self._signatures = [tf.saved_model.load(d).signatures[OUTPUTS_SIGNATURE] for d in self._dirs]

    def process(self, batch):
        import tensorflow as tf

        examples = [tf.train.Example.FromString(record) for record in batch]
        serialized = tf.constant(batch)
        new_logits, old_logits = (sig(examples=serialized)["logits"].numpy()
                                  for sig in self._signatures)
        new_prob = tf.nn.softmax(new_logits).numpy()
        for i, example in enumerate(examples):
            feature = example.features.feature
            yield (int(feature["example_id"].int64_list.value[0]),
                   int(feature["label"].int64_list.value[0]),
                   int(np.argmax(old_logits[i])), int(np.argmax(new_logits[i])), new_prob[i])


def build_report(rows, high_confidence: float, max_listed: int) -> dict:
    """The flip report from (id, label, old_pred, new_pred, new_prob) rows (any order)."""
    rows = sorted(rows, key=lambda row: row[0])
    ids, labels, old_pred, new_pred = (np.array([r[i] for r in rows]) for i in range(4))
    new_prob = np.stack([r[4] for r in rows])
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


def _write_report(rows, path: str, high_confidence: float, max_listed: int) -> None:
    io_utils.write_string_file(path, json.dumps(build_report(rows, high_confidence, max_listed),
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
            _ = (pipeline
                 | "Read" >> beam.io.ReadFromTFRecord(os.path.join(split_uri, "*"))
                 | "Batch" >> beam.BatchElements(min_batch_size=256, max_batch_size=1024)
                 | "PredictBoth" >> beam.ParDo(_PredictBoth(
                     path_utils.serving_model_path(candidate.uri),
                     path_utils.serving_model_path(baseline.uri)))
                 | "Collect" >> beam.combiners.ToList()
                 | "Report" >> beam.Map(_write_report, report_path,
                                        exec_properties["high_confidence"],
                                        exec_properties["max_flips_listed"]))
