"""FlipEvaluator's executor: one batched Beam pass runs both models on every eval example.

Why Beam: the pass scales with whatever runner the pipeline's beam_pipeline_args name (DirectRunner
locally, Dataflow/Flink/Spark elsewhere); files are spread over workers. Each file is read in batches
of serialized tf.Examples by tf.data (in C++, one batch ahead of the models), and each batch goes
through the candidate's and the baseline's contract signature (ModelContract.signature, default
`serving_default`) once, both in one TensorFlow call. Raw scores become predicted classes and
probabilities in numpy, per batch, by graceful.contract (binary [N, 1] by threshold, logits by
softmax, every form verified); labels, ids and slice values are parsed in one more call, typed from
the file's first example (DataContract: integer or string labels and ids; without an id feature, a
stable id hashed from the example's bytes). Each file's per-example results (ids, labels, both
predictions, the candidate's probabilities, slice values, pixels of its most confident flips) are
written as one shard, named after the file, so a retried bundle overwrites its own shard.

The pass is a single Beam stage: the reduce — summarising the shards with graceful.flips (TFX-free
maths) into the report (flip metrics overall, per class and per slice, their paired bootstrap
intervals from graceful.bootstrap, the flip matrix, the flipped examples ranked worst first, the gate
verdict from graceful.gate) — runs in the executor after it.
A collecting GroupByKey would add a second stage (~0.1 s of fixed cost on the DirectRunner, ~10% of
a pass over the 10k test images) and move the same data to one worker anyway. The static web page
(graceful.report_html) is drawn from the report files afterwards too.
"""
from __future__ import annotations

import atexit
import dataclasses
import io
import json
import os
import weakref

import apache_beam as beam
import numpy as np
import tensorflow as tf
from apache_beam.utils import shared
from tfx.dsl.components.base import base_beam_executor
from tfx.dsl.io import fileio
from tfx.types import artifact_utils
from tfx.utils import path_utils

from graceful import bootstrap, flips, gate, golden, model_check, releases, report_html
from graceful.models import review
from graceful.components.edge_converter import executor as edge_converter
from graceful.components.report_settings import ReportSettings, settings_from
from graceful.contract import DataContract, DataContractError, ModelContract
from graceful.report_html import GALLERY_FILE, REPORT_FILE

NO_BASELINE_REASON = "no blessed baseline model yet (first run): nothing can flip"
EDGE_MODEL_KEY = "edge_model"  # the optional input with the EdgeConverter's model and verdict
MODEL_RUN_KEY = "model_run"  # the optional input with the Trainer's review queue
HISTORY_MODELS_KEY = "history_models"  # optional: the last N pushed models (graceful.releases)
HISTORY_COLUMN = "history_pred"  # shards: [N, H] predicted classes of the H earlier releases
PREDICTIONS_DIR = "predictions"  # per-file shards of per-example results, beside the report
GOLDEN_PREDICTIONS_DIR = "golden_predictions"  # the same, of GateConfig.golden_examples' files
_COLUMNS = ("ids", "labels", "old_pred", "new_pred", "new_prob")
# One copy of the loaded models per worker process, shared by every DoFn instance, bundle and thread
# of that process (what Beam's RunInference does); holds only the most recently used pair.
_LOADED_MODELS = shared.Shared()


class _Predictor:
    """Both models in one tf.function: serialized examples -> both models' raw class scores. Inlined
    into one graph, the two signatures are optimised by TensorFlow as a whole (the CNN ran ~2x
    faster than when its loaded signature is called directly). The signatures are checked against
    the model contract at load (graceful.model_check), so a model of the wrong form fails before any
    example is read. A class so Beam can share it.
    """

    def __init__(self, candidate_dir: str, baseline_dir: str, model: ModelContract,
                 history_dirs: tuple = ()):
        dirs = (candidate_dir, baseline_dir, *history_dirs)  # earlier releases: graceful.releases
        # Held by the instance: a loaded function whose model object is gone has lost its variables.
        # Each distinct model once (first run: the candidate stands in for the baseline; the
        # baseline is also the newest earlier release).
        self._loaded = {d: tf.saved_model.load(d) for d in dict.fromkeys(dirs)}
        signatures = {d: model_check.contract_signature(self._loaded[d], d, model)
                      for d in self._loaded}
        self.where = tuple(signatures[d].where for d in dirs)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def predict(serialized):
            scores = {d: signature.scores(serialized) for d, signature in signatures.items()}
            return tuple(scores[d] for d in dirs)

        self.predict = predict
        atexit.register(_unload_at_exit, weakref.ref(self))


def _unload_at_exit(predictor_ref) -> None:
    """Frees a predictor Beam still holds while TensorFlow is intact: freed during interpreter
    shutdown, its tf.function prints a TypeError traceback (TF's function table is gone by then)."""
    predictor = predictor_ref()
    if predictor is not None:
        predictor.predict = predictor._loaded = None


class _EvaluateFile(beam.DoFn):
    """(index, path) of an eval file -> the shard `<index>.npz` in `shard_dir`: per example its id,
    label, both predictions, the candidate's probabilities and slice values, plus the pixels of the
    file's most confident negative flips. Both models run in TensorFlow (loaded once per worker
    process); their scores are read through the model contract in numpy, per batch.

    Without a baseline (first run) the candidate stands in for it, so nothing flips and the
    accuracy floor can still be checked.
    """

    def __init__(self, candidate_dir: str, baseline_dir: str | None, shard_dir: str,
                 settings: ReportSettings, history_dirs: tuple = ()):
        self._dirs = (candidate_dir, baseline_dir or candidate_dir, *history_dirs)
        self._shard_dir = shard_dir
        self._settings = settings
        self._predictor = None

    def setup(self):
        self._predictor = _LOADED_MODELS.acquire(
            lambda: _Predictor(*self._dirs[:2], self._settings.model, self._dirs[2:]),
            tag="\n".join(self._dirs))

    def process(self, indexed_path):
        index, path = indexed_path
        columns, slices, candidates, history, spec = [], [], [], [], None
        for serialized in model_check.read_batches(path, self._settings.batch_size):
            spec = spec or _specs(serialized[0].numpy(), self._settings.data, path)
            features = model_check.parse_examples(serialized, spec[0], path)
            *predictions, history_pred = (
                model_check.example_ids(serialized, features, self._settings.data),
                *self._predict(serialized, features, path))
            columns.append(predictions)
            history.append(history_pred)
            slices.append({name: model_check.text_values(features[name].numpy())
                           for name in self._settings.data.slice_features})
            candidates.append(self._gallery_candidates(serialized, *predictions))
        if columns:  # an empty file has nothing to report
            arrays = {name: np.concatenate(column) for name, column in zip(_COLUMNS, zip(*columns))}
            arrays.update({f"slice:{name}": np.concatenate([s[name] for s in slices])
                           for name in self._settings.data.slice_features})
            arrays.update(self._gallery(candidates, spec[1]))
            if len(self._dirs) > 2:
                arrays[HISTORY_COLUMN] = np.concatenate(history)
            shard = io.BytesIO()
            np.savez(shard, **arrays)
            _write_files(self._shard_dir, {f"{index:05d}.npz": shard.getvalue()})

    def _predict(self, serialized, features, path) -> tuple:
        """(labels, old predictions, new predictions, new probabilities, [N, H] predictions of
        the H earlier releases) of one batch."""
        data, model = self._settings.data, self._settings.model
        try:
            labels = data.class_ids(model_check.text_values(features[data.label_key].numpy()))
        except DataContractError as error:
            raise DataContractError(f"{path}: {error}") from error
        new_scores, old_scores, *history_scores = (t.numpy()
                                                   for t in self._predictor.predict(serialized))
        new_where, old_where, *history_where = self._predictor.where
        new_pred, new_prob = model.predict(new_scores, new_where)
        first_run = self._dirs[0] == self._dirs[1]  # the candidate stands in for the baseline
        old_pred = new_pred if first_run else model.predict(old_scores, old_where)[0]
        model_check.check_classes(data, new_prob.shape[1], new_where)
        if labels.max() >= new_prob.shape[1]:
            raise DataContractError(f"{path}: label {data.label_key!r} has class id "
                                    f"{labels.max()}, but {new_where} scores "
                                    f"{new_prob.shape[1]} classes")
        history_pred = np.zeros((len(labels), len(history_scores)), np.int64)
        for column, (scores, where) in enumerate(zip(history_scores, history_where)):
            history_pred[:, column] = model.predict(scores, where)[0]
        return labels, old_pred, new_pred, new_prob, history_pred

    def _gallery_candidates(self, serialized, ids, labels, old_pred, new_pred, new_prob):
        """(ids, confidences, serialized records) of this batch's `gallery_size` most confident
        negative flips: the report's worst flips are among the union of every batch's worst."""
        if not self._settings.data.image_feature:
            return None
        flipped = flips.negative_flip_mask(labels, old_pred, new_pred)
        if not flipped.any():
            return None
        rows = np.flatnonzero(flipped)
        confidence = new_prob[rows, new_pred[rows]]
        best = _worst_first(ids[rows], confidence, self._settings.gallery_size)
        return ids[rows][best], confidence[best], tf.gather(serialized, rows[best])

    def _gallery(self, candidates, image_spec: dict) -> dict:
        """Pixels of the file's `gallery_size` most confident flips, parsed once per file."""
        candidates = [c for c in candidates if c is not None]
        if not candidates:
            return {}
        ids, confidence = (np.concatenate([c[i] for c in candidates]) for i in (0, 1))
        best = _worst_first(ids, confidence, self._settings.gallery_size)
        records = tf.gather(tf.concat([c[2] for c in candidates], 0), best)
        image_feature = self._settings.data.image_feature
        parsed = tf.io.parse_example(records, image_spec)
        return {"gallery_ids": ids[best],
                "gallery_pixels": tf.sparse.to_dense(parsed[image_feature]).numpy()}


def _specs(first_record: bytes, data: DataContract, path: str) -> tuple[dict, dict]:
    """Parsing specs typed from a file's first example: (label, id and slices of every batch,
    the image feature of the file's worst flips only)."""
    return (model_check.example_spec(first_record, data, path),
            model_check.image_spec(first_record, data, path))


def _worst_first(ids: np.ndarray, confidence: np.ndarray, count: int) -> np.ndarray:
    """Positions of the `count` most confident flips, ties by id: the order of the report's ranked
    flips, so per-batch and per-file picks keep every image the gallery will show."""
    return np.lexsort((ids, -confidence))[:count]


def read_predictions(shard_dir: str) -> list[tuple]:
    """The shards the Beam pass wrote, one batch (as build_report takes it) per file: the columns,
    gallery images, slice values and the earlier releases' predictions ([N, H], H may be 0)."""
    batches = []
    for path in sorted(tf.io.gfile.glob(os.path.join(shard_dir, "*.npz"))):
        with tf.io.gfile.GFile(path, "rb") as handle:
            with np.load(io.BytesIO(handle.read())) as shard:
                columns = tuple(shard[name] for name in _COLUMNS)
                images = ({} if "gallery_ids" not in shard.files else
                          dict(zip(shard["gallery_ids"].tolist(), shard["gallery_pixels"])))
                slices = {key.split(":", 1)[1]: shard[key] for key in shard.files
                          if key.startswith("slice:")}
                history = (shard[HISTORY_COLUMN] if HISTORY_COLUMN in shard.files
                           else np.zeros((len(columns[0]), 0), np.int64))
        batches.append((*columns, images, slices, history))
    return batches


def build_report(batches, settings: ReportSettings, has_baseline: bool = True,
                 queue: tuple[dict | None, dict] = (None, {}),
                 history_models: tuple = (), golden_batches=()) -> tuple[dict, dict]:
    """(report, {id: pixels} of the gallery and the review queue) from per-batch predictions, in
    any order; `queue` is the Trainer's review queue and its pixels (review.read_queue);
    `history_models` ({"model_id", "uri"} of the earlier releases, newest first) name the
    batches' history columns (graceful.releases); `golden_batches`, the golden examples' own
    files (GateConfig.golden_examples), are every one golden and count in nothing else."""
    data = settings.data
    _same_id_type([(f"eval split (batch {i})", b[0]) for i, b in enumerate(batches)]
                  + [(f"golden examples {settings.policy.golden_examples} (batch {i})", b[0])
                     for i, b in enumerate(golden_batches)])
    ids, labels, old_pred, new_pred, new_prob = (np.concatenate([b[i] for b in batches])
                                                 for i in range(5))
    order = np.argsort(ids, kind="stable")
    ids, labels, old_pred, new_pred, new_prob = (a[order] for a in
                                                 (ids, labels, old_pred, new_pred, new_prob))
    ids = model_check.unique_ids(ids, data.id_key)
    summary = flips.summarize(labels, old_pred, new_pred, new_prob,
                              settings.high_confidence).to_dict()
    policy = settings.policy
    # Golden examples first (graceful.golden): the report's first key, the first failure lines.
    report = {"golden": _golden_section(policy, (ids, labels, old_pred, new_pred), golden_batches,
                                        data.id_key)
              } if policy.golden_ids or policy.golden_ids_file or golden_batches else {}
    report.update({"has_baseline": has_baseline, "summary": summary,
              "high_confidence": settings.high_confidence,
              "class_names": list(data.class_names), "id_key": data.id_key,
              # as JSON holds it (golden ids a list), so the report equals its file
              "policy": {**dataclasses.asdict(policy), "golden_ids": list(policy.golden_ids)}})
    if history_models:
        history = np.concatenate([b[7] for b in batches])[order]
        report["history"] = [releases.compare(release, ids, labels, old_pred, new_pred,
                                              history[:, column])
                             for column, release in enumerate(history_models)]
    elif policy.history_models:  # asked for, but nothing resolved: say so rather than show nothing
        report["history_note"] = releases.NONE_RESOLVED
    images = {}
    if has_baseline:
        per_class = flips.per_group(labels, old_pred, new_pred, labels, new_prob,
                                    settings.high_confidence)
        report["per_slice"] = {
            name: {str(k): v.to_dict() for k, v in flips.per_group(
                labels, old_pred, new_pred, np.concatenate([b[6][name] for b in batches])[order],
                new_prob, settings.high_confidence).items()}
            for name in data.slice_features}
        report.update({
            "per_class": {str(k): v.to_dict() for k, v in per_class.items()},
            # Paired bootstrap over the eval examples: how much of each number is noise.
            "intervals": bootstrap.intervals(labels, old_pred, new_pred,
                                             settings.policy.confidence,
                                             settings.policy.bootstrap_resamples).to_dict(),
            "flip_matrix": flips.flip_matrix(labels, old_pred, new_pred,
                                             new_prob.shape[1]).tolist(),
            "flips": flips.ranked_flips(labels, old_pred, new_pred, new_prob,
                                        ids)[:settings.max_listed]})
        all_images = {k: v for b in batches for k, v in b[5].items()}
        images = {f["id"]: all_images[f["id"]]
                  for f in report["flips"][:settings.gallery_size] if f["id"] in all_images}
    else:
        report["reason"] = NO_BASELINE_REASON
    if queue[0] is not None:
        report["review_queue"], review_images = review_section(
            queue, ids, labels, old_pred if has_baseline else new_pred, new_pred, new_prob)
        images.update(review_images)
    failures = (golden.failures(report.get("golden"), policy.max_golden_flips, data.class_names)
                + gate.failures(settings.policy, summary, report.get("per_class"), has_baseline,
                                data.class_names, report.get("per_slice"),
                                report.get("intervals"))
                + releases.failures(report.get("history"), policy.max_history_nfr))
    report["gate"] = {"blessed": not failures, "failures": failures}
    return report, images


def _golden_section(policy: gate.GateConfig, evaluated: tuple, golden_batches,
                    id_key: str = "") -> dict:
    """graceful.golden's check of the golden ids among the `evaluated` (ids, labels, old and new
    predictions; ids sorted, each once) and of every example of the golden examples' files
    (`golden_batches`). The files' ids get the eval split's checks (one id type, no repeated id
    feature value); an id in both with different labels is a DataContractError, since the golden
    example would otherwise be silently replaced by the eval row."""
    if not golden_batches:
        return golden.check(policy.golden_ids, *evaluated)
    source = f"GateConfig.golden_examples {policy.golden_examples}"
    columns = [np.concatenate([b[i] for b in golden_batches]) for i in range(4)]
    order = np.argsort(columns[0], kind="stable")
    ids, labels, old_pred, new_pred = (a[order] for a in columns)
    ids = model_check.unique_ids(ids, id_key, source)
    _same_labels(evaluated[:2], (ids, labels), source)
    section = golden.check([*policy.golden_ids, *ids],
                           *(np.concatenate([e, g]) for e, g in
                             zip(evaluated, (ids, labels, old_pred, new_pred))))
    section["golden_examples"] = {"pattern": policy.golden_examples, "examples": int(len(ids))}
    return section


def _same_id_type(sources: list[tuple[str, np.ndarray]]) -> None:
    """Every batch's ids integers, or every batch's strings: concatenated, integers would silently
    become strings (and never equal the other source's ids)."""
    kinds = {}
    for name, ids in sources:
        if len(ids):
            kinds.setdefault("integers" if ids.dtype.kind in "iu" else "strings", name)
    if len(kinds) > 1:
        raise DataContractError(f"example ids of two types: integers in {kinds['integers']}, "
                                f"strings in {kinds['strings']}; the id feature must have one "
                                "type (int64_list or bytes_list) in every eval and golden file")


def _same_labels(evaluated: tuple, golden_rows: tuple, source: str) -> None:
    """An id both in the eval split and the golden files must name one example, with one label."""
    common, in_eval, in_golden = np.intersect1d(evaluated[0], golden_rows[0],
                                                return_indices=True)
    differ = np.flatnonzero(evaluated[1][in_eval] != golden_rows[1][in_golden])
    if differ.size:
        first = differ[0]
        raise DataContractError(
            f"id {common[first].item()!r} has label {int(evaluated[1][in_eval[first]])} in the "
            f"eval split but label {int(golden_rows[1][in_golden[first]])} in {source}"
            f"{f' ({differ.size} such ids)' if differ.size > 1 else ''}; an id must name one "
            "example: fix the wrong label, or give the golden example an id of its own")


def review_section(queue: tuple[dict, dict], ids, labels, old_pred, new_pred,
                   new_prob) -> tuple[dict, dict]:
    """The report's "review_queue" (the Trainer's top-k by VoG, graceful.models.review) with, per
    example, whether the candidate flipped it and its prediction (from this evaluation: `ids`
    sorted, as build_report holds them; without a baseline `old_pred` is `new_pred`: nothing
    flips), and {id: pixels} of its images. An example this
    evaluation did not see (a different eval split) keeps its VoG, with no prediction."""
    document, pixels = queue
    rows = []
    for row in document["queue"]:
        at = np.searchsorted(ids, row["id"])
        seen = at < len(ids) and ids[at] == row["id"]
        rows.append({**row, "evaluated": bool(seen),
                     "flipped": bool(seen and flips.negative_flip_mask(
                         labels[at:at + 1], old_pred[at:at + 1], new_pred[at:at + 1])[0]),
                     "new_pred": int(new_pred[at]) if seen else None,
                     "confidence": float(new_prob[at, new_pred[at]]) if seen else None})
    section = {"score": document["score"], "checkpoints": document["checkpoints"],
               "examples_ranked": document["examples"], "seconds": document["seconds"],
               "examples": rows}
    return section, {row["id"]: pixels[row["rank"]] for row in rows if row["rank"] in pixels}


def _write_files(out_dir: str, files: dict) -> None:
    tf.io.gfile.makedirs(out_dir)
    for name, content in files.items():
        with tf.io.gfile.GFile(os.path.join(out_dir, name), "wb") as handle:
            handle.write(content)


def write_report(batches, out_dir: str, settings: ReportSettings, has_baseline: bool,
                 queue: tuple[dict | None, dict] = (None, {}), history_models: tuple = (),
                 golden_batches=()) -> dict:
    """flip_report.json and the gallery's pixels (gallery.npz) into `out_dir` (any tf.io.gfile
    path); returns the report."""
    report, images = build_report(batches, settings, has_baseline, queue, history_models,
                                  golden_batches)
    gallery = io.BytesIO()
    np.savez(gallery, **{str(example_id): pixels for example_id, pixels in images.items()})
    # Compact: json's C encoder runs only without indent (indented, it took ~3% of a 10k pass);
    # people read the page or `graceful report`.
    _write_files(out_dir, {REPORT_FILE: json.dumps(report, separators=(",", ":")).encode(),
                           GALLERY_FILE: gallery.getvalue()})
    return report


def write_page(out_dir: str) -> None:
    """The web page (index.html + PNGs) beside the report and gallery that write_report wrote."""
    with tf.io.gfile.GFile(os.path.join(out_dir, REPORT_FILE)) as handle:
        report = json.load(handle)
    with tf.io.gfile.GFile(os.path.join(out_dir, GALLERY_FILE), "rb") as handle:
        with np.load(io.BytesIO(handle.read())) as gallery:
            shown = report.get("flips", []) + report.get("review_queue", {}).get("examples", [])
            images = {row["id"]: gallery[str(row["id"])] for row in shown
                      if str(row["id"]) in gallery.files}
    _write_files(out_dir, report_html.render(report, images))


def add_edge_section(out_dir: str, edge_model_uri: str) -> None:
    """The edge model's numbers and verdict (edge_converter.report_section) into the report in
    `out_dir` as its "edge" key, for the page and the sign-off; the flip gate ignores them."""
    path = os.path.join(out_dir, REPORT_FILE)
    with tf.io.gfile.GFile(path) as handle:
        report = json.load(handle)
    report["edge"] = edge_converter.report_section(edge_model_uri)
    _write_files(out_dir, {REPORT_FILE: json.dumps(report, separators=(",", ":")).encode()})


def add_predictions(pipeline, file_pattern: str, candidate_dir: str, baseline_dir: str | None,
                    shard_dir: str, settings: ReportSettings, history_dirs: tuple = (),
                    label: str = "") -> None:
    """Adds the model pass to a Beam pipeline: each file read in batches, both models (and the
    earlier releases in `history_dirs`), one shard. `label` prefixes the steps' names (a second
    pass in the same pipeline: the golden examples)."""
    paths = sorted(tf.io.gfile.glob(file_pattern))
    if not paths:
        raise ValueError(f"No example files match {file_pattern}: check the ExampleGen output and "
                         "the split the FlipEvaluator reads" + (
                             ", and GateConfig.golden_examples" if label else "") + ".")
    # Several files are reshuffled to spread them over the workers; with one, that costs time only.
    _ = (pipeline
         | f"{label}Files" >> beam.Create(list(enumerate(paths)), reshuffle=len(paths) > 1)
         | f"{label}PredictBoth" >> beam.ParDo(_EvaluateFile(candidate_dir, baseline_dir, shard_dir,
                                                     settings, tuple(history_dirs))))


def evaluate(make_pipeline, file_pattern: str, candidate_dir: str, baseline_dir: str | None,
             out_dir: str, settings: ReportSettings,
             queue: tuple[dict | None, dict] = (None, {}), history: tuple = ()) -> dict:
    """The Beam pass (`make_pipeline()` gives the pipeline), then the report from its shards into
    `out_dir` (with the Trainer's review queue, if given; with the candidate's flips against the
    earlier releases in `history`, ({"model_id", "uri"}, serving model dir) newest first); returns
    the report. write_page draws the page from it afterwards."""
    shard_dir, golden_dir = (os.path.join(out_dir, name)
                             for name in (PREDICTIONS_DIR, GOLDEN_PREDICTIONS_DIR))
    for directory in (shard_dir, golden_dir):
        if tf.io.gfile.exists(directory):  # a rerun into the same folder must not count old shards
            tf.io.gfile.rmtree(directory)
    history_dirs = tuple(model_dir for _, model_dir in history)
    golden_examples = settings.policy.golden_examples
    with make_pipeline() as pipeline:
        add_predictions(pipeline, file_pattern, candidate_dir, baseline_dir, shard_dir, settings,
                        history_dirs)
        if golden_examples:  # the same models (shared, loaded once) on the golden examples' files
            add_predictions(pipeline, golden_examples, candidate_dir, baseline_dir, golden_dir,
                            settings, history_dirs, label="Golden")
    golden_batches = read_predictions(golden_dir) if golden_examples else []
    if golden_examples and not golden_batches:
        raise ValueError(f"GateConfig.golden_examples {golden_examples} holds no examples; put the "
                         "golden tf.Examples there or set it to \"\".")
    batches = read_predictions(shard_dir)
    if not batches:
        raise ValueError(f"No examples in {file_pattern}: the split is empty, so there is nothing "
                         "to compare the models on. Check the span's data and the ExampleGen "
                         "split that the FlipEvaluator reads.")
    return write_report(batches, out_dir, settings, baseline_dir is not None, queue,
                        tuple(release for release, _ in history), golden_batches)


def with_golden_file(settings: ReportSettings) -> ReportSettings:
    """`settings` whose policy's golden_ids also hold the ids in its golden_ids_file (read now,
    through TFX's fileio: a path or a gs:// URI), so the report shows every id it checked."""
    policy = settings.policy
    if not policy.golden_ids_file:
        return settings
    if not fileio.exists(policy.golden_ids_file):
        raise FileNotFoundError(f"GateConfig.golden_ids_file {policy.golden_ids_file!r} does not "
                                "exist; write the golden example ids there (one a line) or set "
                                'golden_ids_file to "".')
    with fileio.open(policy.golden_ids_file, "r") as handle:
        from_file = golden.parse_ids(handle.read())
    return dataclasses.replace(settings, policy=dataclasses.replace(
        policy, golden_ids=tuple(policy.golden_ids) + tuple(from_file)))


class Executor(base_beam_executor.BaseBeamExecutor):

    def Do(self, input_dict, output_dict, exec_properties):
        report_artifact = artifact_utils.get_single_instance(output_dict["flip_report"])
        blessing = artifact_utils.get_single_instance(output_dict["blessing"])
        candidate = artifact_utils.get_single_instance(input_dict["model"])
        baselines = input_dict.get("baseline_model") or []
        runs = input_dict.get(MODEL_RUN_KEY) or []  # the Trainer's model_run: its review queue
        examples = artifact_utils.get_single_instance(input_dict["examples"])
        split_uri = artifact_utils.get_split_uri([examples], exec_properties["split"])
        # The last N pushed models (components/release_history), newest first by MLMD id.
        history = tuple(({"model_id": m.id, "uri": m.uri}, path_utils.serving_model_path(m.uri))
                        for m in sorted(input_dict.get(HISTORY_MODELS_KEY) or [],
                                        key=lambda m: m.id, reverse=True))
        report = evaluate(self._make_beam_pipeline, os.path.join(split_uri, "*"),
                          path_utils.serving_model_path(candidate.uri),
                          path_utils.serving_model_path(baselines[0].uri) if baselines else None,
                          report_artifact.uri, with_golden_file(settings_from(exec_properties)),
                          review.read_queue(runs[0].uri) if runs else (None, {}), history)
        edge_models = input_dict.get(EDGE_MODEL_KEY) or []
        if edge_models:
            add_edge_section(report_artifact.uri, edge_models[0].uri)
        write_page(report_artifact.uri)
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
        # The NFR's paired bootstrap interval (level: the policy's confidence, in the report).
        for key, bound in zip(("nfr_lower", "nfr_upper"), report["intervals"]["nfr"]):
            report_artifact.set_float_custom_property(key, bound)
        for key in ("negative_flips", "high_confidence_flips", "examples"):
            report_artifact.set_int_custom_property(key, summary[key])
        report_artifact.set_float_custom_property("baseline_accuracy", summary["old_accuracy"])
        report_artifact.set_int_custom_property("baseline_model_id", baseline.id)
        report_artifact.set_string_custom_property("baseline_model_uri", baseline.uri)
        blessing.set_int_custom_property("baseline_model_id", baseline.id)
    blessing.set_int_custom_property("blessed", int(verdict["blessed"]))
    blessing.set_int_custom_property("current_model_id", candidate.id)
    # What the verdict is about, in a form every orchestrator preserves: on Kubeflow the ids are
    # hashes that reach the next step as JSON doubles, losing their low digits
    blessing.set_string_custom_property("current_model", candidate.uri)
    blessing.set_string_custom_property("failures", json.dumps(verdict["failures"]))
    blessing.set_string_custom_property("reason", report.get("reason", "; ".join(verdict["failures"])
                                                            or "within the flip policy"))
    marker = "BLESSED" if verdict["blessed"] else "NOT_BLESSED"
    # Not every orchestrator creates output folders first (TFX's Kubeflow v2 entrypoint does not).
    tf.io.gfile.makedirs(blessing.uri)
    with tf.io.gfile.GFile(os.path.join(blessing.uri, marker), "w") as handle:
        handle.write("")
