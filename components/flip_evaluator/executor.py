"""FlipEvaluator's executor: one batched Beam pass runs both models on every eval example.

Why Beam: the pass scales with whatever runner the pipeline's beam_pipeline_args name (DirectRunner
locally, Dataflow/Flink/Spark elsewhere). Each batch of serialized tf.Examples goes through the
candidate's and the baseline's `graceful_outputs` signature once; the per-example predictions are then
summarised with graceful.flips (TFX-free maths) into the report — overall and per-class flip metrics,
the flip matrix, the flipped examples ranked worst first, the gate verdict (graceful.gate) — written
as flip_report.json and as a static web page (graceful.report_html).
"""
from __future__ import annotations

import dataclasses
import json
import os

import apache_beam as beam
import numpy as np
import tensorflow as tf
from tfx.dsl.components.base import base_beam_executor
from tfx.types import artifact_utils
from tfx.utils import path_utils

from graceful import flips, gate, report_html
from graceful.report_html import REPORT_FILE
from models.training import OUTPUTS_SIGNATURE

NO_BASELINE_REASON = "no blessed baseline model yet (first run): nothing can flip"


@dataclasses.dataclass(frozen=True)
class ReportSettings:
    high_confidence: float = flips.DEFAULT_HIGH_CONFIDENCE
    max_listed: int = 1000
    policy: gate.GateConfig = dataclasses.field(default_factory=gate.GateConfig)
    class_names: tuple = ()
    image_feature: str = ""        # flattened square grayscale pixels; "" = no gallery
    gallery_size: int = 24


class _PredictBoth(beam.DoFn):
    """Loads the SavedModels once per worker; per batch yields arrays (ids, labels, old_pred,
    new_pred, new_prob, {id: pixels} of the negative flips), parsed and predicted in TensorFlow.

    Without a baseline (first run) the candidate stands in for it, so nothing flips and the
    accuracy floor can still be checked.
    """

    def __init__(self, candidate_dir: str, baseline_dir: str | None, image_feature: str,
                 gallery_size: int):
        self._dirs = (candidate_dir, baseline_dir or candidate_dir)
        self._image_feature = image_feature
        self._gallery_size = gallery_size
        self._signatures = None

    def setup(self):
        loaded = {d: tf.saved_model.load(d).signatures[OUTPUTS_SIGNATURE] for d in set(self._dirs)}
        self._signatures = [loaded[d] for d in self._dirs]
        self._keys = {key: tf.io.FixedLenFeature([1], tf.int64) for key in ("example_id", "label")}

    def process(self, batch):
        serialized = tf.constant(batch)
        keys = tf.io.parse_example(serialized, self._keys)
        new_logits, old_logits = (sig(examples=serialized)["logits"] for sig in self._signatures)
        ids, labels = (keys[k].numpy().reshape(-1) for k in ("example_id", "label"))
        old_pred, new_pred = np.argmax(old_logits.numpy(), 1), np.argmax(new_logits.numpy(), 1)
        new_prob = tf.nn.softmax(new_logits).numpy()
        flipped = flips.negative_flip_mask(labels, old_pred, new_pred)
        confidence = new_prob[np.arange(len(ids)), new_pred]
        yield (ids, labels, old_pred, new_pred, new_prob,
               self._flipped_images(serialized, ids, flipped, confidence))

    def _flipped_images(self, serialized, ids, flipped, confidence) -> dict:
        """Pixels of this batch's most confident negative flips, for the report's gallery: the
        report's worst `gallery_size` flips are among the union of every batch's worst."""
        if not self._image_feature or not flipped.any():
            return {}
        rows = np.flatnonzero(flipped)
        rows = rows[np.lexsort((ids[rows], -confidence[rows]))][:self._gallery_size]
        parsed = tf.io.parse_example(tf.gather(serialized, rows),
                                     {self._image_feature: tf.io.VarLenFeature(tf.int64)})
        pixels = tf.sparse.to_dense(parsed[self._image_feature]).numpy()
        return {int(ids[row]): pixels[i] for i, row in enumerate(rows)}


def build_report(batches, settings: ReportSettings, has_baseline: bool = True) -> tuple[dict, dict]:
    """(report, {id: pixels} of the gallery) from per-batch predictions, in any order."""
    ids, labels, old_pred, new_pred, new_prob = (np.concatenate([b[i] for b in batches])
                                                 for i in range(5))
    order = np.argsort(ids, kind="stable")
    ids, labels, old_pred, new_pred, new_prob = (a[order] for a in
                                                 (ids, labels, old_pred, new_pred, new_prob))
    summary = flips.summarize(labels, old_pred, new_pred, new_prob,
                              settings.high_confidence).to_dict()
    report = {"has_baseline": has_baseline, "summary": summary,
              "high_confidence": settings.high_confidence,
              "class_names": list(settings.class_names),
              "policy": dataclasses.asdict(settings.policy)}
    images = {}
    if has_baseline:
        per_class = flips.per_group(labels, old_pred, new_pred, labels, new_prob,
                                    settings.high_confidence)
        report.update({
            "per_class": {str(k): v.to_dict() for k, v in per_class.items()},
            "flip_matrix": flips.flip_matrix(labels, old_pred, new_pred,
                                             new_prob.shape[1]).tolist(),
            "flips": flips.ranked_flips(labels, old_pred, new_pred, new_prob,
                                        ids)[:settings.max_listed]})
        all_images = {k: v for b in batches for k, v in b[5].items()}
        images = {f["id"]: all_images[f["id"]]
                  for f in report["flips"][:settings.gallery_size] if f["id"] in all_images}
    else:
        report["reason"] = NO_BASELINE_REASON
    failures = gate.failures(settings.policy, summary, report.get("per_class"), has_baseline,
                             settings.class_names)
    report["gate"] = {"blessed": not failures, "failures": failures}
    return report, images


def write_report(batches, out_dir: str, settings: ReportSettings, has_baseline: bool) -> None:
    """flip_report.json and the web page (index.html + PNGs) into `out_dir` (any tf.io.gfile path)."""
    report, images = build_report(batches, settings, has_baseline)
    files = report_html.render(report, images)
    files[REPORT_FILE] = json.dumps(report, indent=1).encode()
    tf.io.gfile.makedirs(out_dir)
    for name, content in files.items():
        with tf.io.gfile.GFile(os.path.join(out_dir, name), "wb") as handle:
            handle.write(content)


def add_flip_report(pipeline, file_pattern: str, candidate_dir: str, baseline_dir: str | None,
                    out_dir: str, settings: ReportSettings) -> None:
    """Adds the flip evaluation to a Beam pipeline: read, batch, predict with both, report."""
    _ = (pipeline
         | "Read" >> beam.io.ReadFromTFRecord(file_pattern)
         | "Batch" >> beam.BatchElements(min_batch_size=256, max_batch_size=1024)
         | "PredictBoth" >> beam.ParDo(_PredictBoth(candidate_dir, baseline_dir,
                                                    settings.image_feature, settings.gallery_size))
         | "Collect" >> beam.combiners.ToList()
         | "Report" >> beam.Map(write_report, out_dir, settings, baseline_dir is not None))


def settings_from(exec_properties: dict) -> ReportSettings:
    return ReportSettings(
        high_confidence=exec_properties["high_confidence"],
        max_listed=exec_properties["max_flips_listed"],
        policy=gate.GateConfig(**json.loads(exec_properties["policy"])),
        class_names=tuple(json.loads(exec_properties["class_names"])),
        image_feature=exec_properties["image_feature"],
        gallery_size=exec_properties["gallery_size"])


class Executor(base_beam_executor.BaseBeamExecutor):

    def Do(self, input_dict, output_dict, exec_properties):
        report_artifact = artifact_utils.get_single_instance(output_dict["flip_report"])
        blessing = artifact_utils.get_single_instance(output_dict["blessing"])
        candidate = artifact_utils.get_single_instance(input_dict["model"])
        baselines = input_dict.get("baseline_model") or []
        examples = artifact_utils.get_single_instance(input_dict["examples"])
        split_uri = artifact_utils.get_split_uri([examples], exec_properties["split"])
        with self._make_beam_pipeline() as pipeline:
            add_flip_report(pipeline, os.path.join(split_uri, "*"),
                            path_utils.serving_model_path(candidate.uri),
                            path_utils.serving_model_path(baselines[0].uri) if baselines else None,
                            report_artifact.uri, settings_from(exec_properties))
        with tf.io.gfile.GFile(os.path.join(report_artifact.uri, REPORT_FILE)) as handle:
            report = json.load(handle)
        report_artifact.set_int_custom_property("span", examples.get_int_custom_property("span"))
        _record(report, report_artifact, blessing, candidate, baselines[0] if baselines else None)


def _record(report: dict, report_artifact, blessing, candidate, baseline) -> None:
    """Headline numbers on the report artifact; the verdict on the blessing (for MLMD queries,
    `graceful history` and the pipeline's condition on the Evaluator and Pusher)."""
    summary, verdict = report["summary"], report["gate"]
    report_artifact.set_int_custom_property("has_baseline", int(report["has_baseline"]))
    report_artifact.set_float_custom_property("accuracy", summary["new_accuracy"])
    if baseline is not None:
        for key in ("nfr", "relative_nfr", "pfr", "nfi"):
            report_artifact.set_float_custom_property(key, summary[key])
        for key in ("negative_flips", "high_confidence_flips", "examples"):
            report_artifact.set_int_custom_property(key, summary[key])
        report_artifact.set_float_custom_property("baseline_accuracy", summary["old_accuracy"])
        report_artifact.set_int_custom_property("baseline_model_id", baseline.id)
        blessing.set_int_custom_property("baseline_model_id", baseline.id)
    blessing.set_int_custom_property("blessed", int(verdict["blessed"]))
    blessing.set_int_custom_property("current_model_id", candidate.id)
    blessing.set_string_custom_property("failures", json.dumps(verdict["failures"]))
    blessing.set_string_custom_property("reason", report.get("reason", "; ".join(verdict["failures"])
                                                            or "within the flip policy"))
    marker = "BLESSED" if verdict["blessed"] else "NOT_BLESSED"
    with tf.io.gfile.GFile(os.path.join(blessing.uri, marker), "w") as handle:
        handle.write("")
