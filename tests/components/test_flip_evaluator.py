"""FlipEvaluator: the report built by the executor's own functions from hand-made predictions, rendered
to a static page and (when Chromium is installed) drawn by a real headless browser, offline; tabular
reports (string ids, no images); the file reader; and one real Beam pass whose gallery holds the
pixels of exactly the worst flips. The exact numbers of every model form, against numpy and TFMA,
are tests/graceful/test_evaluation.py's."""
import dataclasses
import json
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest

from graceful.components.flip_evaluator.executor import (REPORT_FILE, build_report, write_page,
                                                         write_report)
from graceful.components.report_settings import ReportSettings
from graceful import bootstrap, report_html
from graceful.contract import DataContract, DataContractError
from graceful.gate import GateConfig
from graceful.history import format_flip_report
from graceful.model_check import read_batches

CLASSES = ("cat", "dog", "fox")


def _batch(rows, images=None, slices=None):
    """rows: (id, label, old, new, confidence of new) -> one batch as _PredictBoth yields it."""
    probs = []
    for _, _, _, new, confidence in rows:
        prob = np.full(3, (1 - confidence) / 2)
        prob[new] = confidence
        probs.append(prob)
    columns = [np.array([row[i] for row in rows]) for i in range(4)]
    return (*columns, np.array(probs), images or {}, slices or {})


def _image(value):
    return np.full(16, value)  # a 4x4 image


ROWS = [(1, 0, 0, 1, 0.95), (2, 0, 0, 0, 0.8), (3, 1, 1, 1, 0.9), (4, 2, 2, 0, 0.6),
        (5, 2, 1, 2, 0.7)]
SETTINGS = ReportSettings(high_confidence=0.9, max_listed=10, data=DataContract(class_names=CLASSES),
                          policy=GateConfig(min_accuracy=0.5, max_accuracy_drop=0.5, max_nfr=0.3,
                                            max_high_confidence_flips=0))


def _report():
    return build_report([_batch(ROWS[:2], {1: _image(10)}), _batch(ROWS[2:], {4: _image(200)})],
                        SETTINGS)


def test_report_ranks_flips_and_applies_the_policy():
    report, images = _report()
    assert [f["id"] for f in report["flips"]] == [1, 4]
    assert report["summary"]["negative_flips"] == 2 and report["summary"]["nfr"] == 2 / 5
    assert report["flip_matrix"][0][1] == 1 and report["flip_matrix"][2][0] == 1
    assert report["gate"] == {"blessed": False, "failures": [
        "NFR 0.4000 > max_nfr 0.3 (2 of 5 examples)",
        "relative NFR 1.250 > max_relative_nfr 0.26",
        "class cat (0) NFR 0.5000 > max_class_nfr 0.25",
        "class fox (2) NFR 0.5000 > max_class_nfr 0.25",
        "high-confidence flips 1 > max_high_confidence_flips 0"]}
    assert sorted(images) == [1, 4]


def test_slices_get_their_own_flip_metrics_and_limit():
    """Per-slice numbers equal graceful.flips on that slice's rows alone; the batches arrive in any
    order (the report sorts by id, slice values travel with their rows)."""
    sources = ["web", "app", "web", "app", "web"]  # for ids 1..5
    batches = [_batch(ROWS[2:], slices={"source": np.array(sources[2:])}),
               _batch(ROWS[:2], slices={"source": np.array(sources[:2])})]
    settings = ReportSettings(high_confidence=0.9, max_listed=10,
                              data=DataContract(class_names=CLASSES, slice_features=("source",)),
                              policy=GateConfig(max_nfr=1, max_relative_nfr=10, max_class_nfr=1,
                                                min_accuracy=0, max_accuracy_drop=1,
                                                max_slice_nfr=0.4))
    report, _ = build_report(batches, settings)
    labels, old, new = (np.array([row[i] for row in ROWS]) for i in (1, 2, 3))
    for source in ("web", "app"):
        rows = np.array(sources) == source
        expected = int(np.sum((old == labels) & (new != labels) & rows))
        assert report["per_slice"]["source"][source]["negative_flips"] == expected
        assert report["per_slice"]["source"][source]["nfr"] == expected / rows.sum()
    assert report["gate"]["failures"] == [
        "slice source=app NFR 0.5000 > max_slice_nfr 0.4 (1 of 2 examples)"]
    assert "NFR by source" in report_html.render(report)[report_html.INDEX].decode()


def test_report_data_round_trips_into_the_page(tmp_path):
    """The Beam pass writes the report and the gallery's pixels; the page drawn from those files
    afterwards is the page drawn from the in-memory report."""
    batches = [_batch(ROWS[:2], {1: _image(10)}), _batch(ROWS[2:], {4: _image(200)})]
    write_report(batches, str(tmp_path), SETTINGS, has_baseline=True)
    with np.load(tmp_path / report_html.GALLERY_FILE) as gallery:
        assert sorted(gallery.files) == ["1", "4"] and (gallery["4"] == 200).all()
    write_page(str(tmp_path))
    expected = report_html.render(*_report())
    for name, content in expected.items():
        assert (tmp_path / name).read_bytes() == content, name


def test_eval_files_are_read_in_batches_gzip_or_not(tmp_path):
    import tensorflow as tf

    records = [f"record {i}".encode() for i in range(2500)]
    for name, options in (("part.gz", "GZIP"), ("part.tfrecord", "")):
        with tf.io.TFRecordWriter(str(tmp_path / name), options=options) as writer:
            for record in records:
                writer.write(record)
        batches = list(read_batches(str(tmp_path / name), batch_size=1024))
        assert [len(b) for b in batches] == [1024, 1024, 452]
        assert [r for b in batches for r in b.numpy().tolist()] == records
    (tmp_path / "part.bz2").write_bytes(b"")
    with pytest.raises(ValueError, match="only uncompressed or gzip"):
        list(read_batches(str(tmp_path / "part.bz2"), batch_size=1024))


@pytest.mark.parametrize("batch_size", [0, -256])
def test_a_batch_size_below_one_is_refused_by_name(batch_size):
    with pytest.raises(ValueError, match=f"batch_size must be a positive number .* got {batch_size}"):
        ReportSettings(batch_size=batch_size)


def test_first_run_has_no_flips_but_still_checks_the_accuracy_floor():
    same = [(i, label, label, label, 0.9) for i, label in enumerate([0, 1, 2, 0])]
    wrong = [(9, 0, 1, 1, 0.9)]
    report, images = build_report([_batch(same + wrong)], SETTINGS, has_baseline=False)
    assert not report["has_baseline"] and "first run" in report["reason"]
    assert report["gate"]["blessed"] and images == {}
    strict = ReportSettings(policy=GateConfig(min_accuracy=0.9))
    assert build_report([_batch(same + wrong)], strict, has_baseline=False)[0]["gate"] == {
        "blessed": False, "failures": ["accuracy 0.8000 < min_accuracy 0.9"]}


def test_text_summary_names_worst_class_flips_and_verdict():
    text = format_flip_report(_report()[0], classes=CLASSES)
    assert "negative flips 2 (NFR 0.4000" in text and "high-confidence 1" in text
    lines = text.splitlines()
    assert lines[lines.index("worst flips (of 2 listed):") + 1] == (
        "  example 1: cat was right, now dog with confidence 0.950")
    assert "  cat: NFR 0.5000 [0.0000, 1.0000] (1 of 2)" in lines  # 95% bootstrap interval
    assert lines[-1].startswith("flip gate: blocked: NFR 0.4000 > max_nfr 0.3 (2 of 5 examples); ")


def _check_intervals(report, labels, old_pred, new_pred):
    """The report's bootstrap intervals hold its point values and equal an independent
    recomputation with the same seed from the examples' labels and predictions in id order."""
    got = report["intervals"]
    assert got == bootstrap.intervals(labels, old_pred, new_pred, got["level"], got["resamples"],
                                      got["seed"]).to_dict()
    summary = report["summary"]
    for key, point in (("nfr", summary["nfr"]), ("relative_nfr", summary["relative_nfr"]),
                       ("accuracy_change", summary["new_accuracy"] - summary["old_accuracy"])):
        assert got[key][0] <= point <= got[key][1], key
    for cls, metrics in report["per_class"].items():
        assert got["per_class"][cls][0] <= metrics["nfr"] <= got["per_class"][cls][1], cls


def test_report_intervals_are_the_bootstrap_of_its_examples_in_id_order():
    report, _ = build_report([_batch(ROWS[2:]), _batch(ROWS[:2])], SETTINGS)  # any batch order
    labels, old, new = (np.array([row[i] for row in ROWS]) for i in (1, 2, 3))  # ids 1..5
    _check_intervals(report, labels, old, new)
    assert (report["intervals"]["level"], report["intervals"]["resamples"]) == (0.95, 1000)


def test_page_text_report_sign_off_and_history_show_the_intervals(tmp_path):
    from graceful import bootstrap, signoff, slack
    from graceful.components.human_signoff.executor import evidence
    from graceful.history import RunRecord, format_table

    report, images = _report()
    bounds = report["intervals"]
    nfr = bootstrap.with_interval(0.4, bounds["nfr"])
    assert nfr == f"0.4000 [{bounds['nfr'][0]:.4f}, {bounds['nfr'][1]:.4f}]"
    caption = "95% paired bootstrap intervals over the eval examples (1000 resamples); the gate " \
              "judges point values"
    text = format_flip_report(report, classes=CLASSES)
    assert f"(NFR {nfr}, relative NFR 1.250 [" in text and caption in text
    write_report([_batch(ROWS)], str(tmp_path), SETTINGS, has_baseline=True)
    write_page(str(tmp_path))
    page = (tmp_path / report_html.INDEX).read_text()
    assert f"2 ({nfr})" in page and caption in page
    found = evidence(report, "/reports/7", "graceful", 2, 5)
    assert found["worst_classes"][0].startswith("cat: NFR 0.5000 [")
    message = json.dumps(slack.message_blocks(signoff.Request("run-1", 9, found, 0.0)))
    assert f"*NFR*\\n{nfr}" in message and "*Accuracy change*\\n-0.2000 [" in message
    assert caption in message
    row = RunRecord("run", 0.0, nfr=0.4, nfr_interval=bounds["nfr"])
    assert nfr in format_table([row])


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.captions, self._in_caption = [], [], False

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        self._in_caption = tag == "figcaption"

    def handle_data(self, data):
        if self._in_caption:
            self.captions.append(data)
            self._in_caption = False


def _files():
    report, images = _report()
    return report_html.render(report, images)


def test_page_references_only_its_own_png_files():
    files = _files()
    page = _Page()
    page.feed(files[report_html.INDEX].decode())
    assert page.images == ["flip_matrix.png", "class_nfr.png", "confidence.png", "flip_1.png",
                           "flip_2.png"]  # named by rank: ids may be any string
    for name in page.images:
        assert files[name].startswith(b"\x89PNG\r\n\x1a\n"), name
    assert page.captions == ["#1: cat → dog (0.95)", "#4: fox → cat (0.60)"]
    assert b"http" not in files[report_html.INDEX], "the page must open offline"
    assert "max_nfr" in files[report_html.INDEX].decode()


def _screenshot(chromium, page_dir, out_png):
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                    "--disable-background-networking", "--no-first-run", "--hide-scrollbars",
                    "--window-size=1100,1400", f"--screenshot={out_png}",
                    (page_dir / report_html.INDEX).as_uri()],
                   check=True, capture_output=True, timeout=120)
    from PIL import Image

    return np.asarray(Image.open(out_png).convert("RGB")).astype(int)


def _red_share(pixels):
    """Share of clearly red pixels: the flip matrix and NFR bars are drawn in reds."""
    r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    return float(((r > 150) & (g < 110) & (b < 110)).mean())


@pytest.mark.skipif(not shutil.which("chromium"), reason="chromium is not installed "
                    "(scripts/setup.sh installs it with apt when run as root)")
def test_page_renders_with_its_plots_in_headless_chromium(tmp_path):
    files = _files()
    with_plots, without_plots = tmp_path / "full", tmp_path / "broken"
    for folder, keep_png in ((with_plots, True), (without_plots, False)):
        folder.mkdir()
        for name, content in files.items():
            if keep_png or not name.endswith(".png"):
                (folder / name).write_bytes(content)
    full = _screenshot(shutil.which("chromium"), with_plots, tmp_path / "full.png")
    broken = _screenshot(shutil.which("chromium"), without_plots, tmp_path / "broken.png")
    assert full.shape[:2] == (1400, 1100)
    assert _red_share(full) > 0.01, "the plots did not render"
    assert _red_share(broken) < _red_share(full) / 10


def test_first_run_text_summary_says_why_there_are_no_flips():
    report, _ = build_report([_batch([(1, 0, 0, 0, 0.9)])], SETTINGS, has_baseline=False)
    assert format_flip_report(report).splitlines() == [
        "no flips to report: no blessed baseline model yet (first run): nothing can flip",
        "flip gate: passed"]


def test_tabular_report_with_string_ids_and_no_images_renders(tmp_path):
    """Tabular data: ids from a string feature (or hashed), no image feature; flips still listed,
    the page and the text summary drawn without a gallery."""
    batch = list(_batch(ROWS))
    batch[0] = np.array([f"row-{i}" for i in batch[0]])
    write_report([tuple(batch)], str(tmp_path), SETTINGS, has_baseline=True)
    write_page(str(tmp_path))
    report = json.loads((tmp_path / REPORT_FILE).read_text())
    assert [f["id"] for f in report["flips"]] == ["row-1", "row-4"]
    page = _Page()
    page.feed((tmp_path / report_html.INDEX).read_text())
    assert page.images == ["flip_matrix.png", "class_nfr.png", "confidence.png"]
    assert "example row-1: cat was right, now dog" in format_flip_report(report, classes=CLASSES)


@pytest.mark.slow
def test_beam_pass_gallery_holds_the_worst_flips_pixels(tmp_path):
    """The real Beam pass over two tiny real models, two files of several batches: the gallery
    holds the pixels (here the 4 features as a 2x2 image) of exactly the worst flips, one shard per
    file; a missing slice feature and an empty split are named."""
    import apache_beam as beam
    import tensorflow as tf

    from graceful.components.flip_evaluator.executor import GALLERY_FILE, PREDICTIONS_DIR, evaluate
    from tests.graceful.test_evaluation import Case, build_case, numpy_classes, scores_of

    old, new, records, labels, _, pattern, data, model = build_case(
        tmp_path, Case("multiclass_probabilities", "int", "int"))
    settings = ReportSettings(data=dataclasses.replace(data, image_feature="x"), model=model,
                              gallery_size=5, batch_size=64)
    report = evaluate(beam.Pipeline, pattern, new, old, str(tmp_path / "report"), settings)
    # ids i * 7 + 3 follow the records' order: numpy's predictions of the same models, in id order
    _check_intervals(report, labels, *(numpy_classes(scores_of(d, records), model.threshold)[0]
                                       for d in (old, new)))
    assert report == json.loads((tmp_path / "report" / REPORT_FILE).read_text())
    assert sorted(p.name for p in (tmp_path / "report" / PREDICTIONS_DIR).iterdir()) == [
        "00000.npz", "00001.npz"]
    pixels = {tf.train.Example.FromString(r).features.feature["example_id"].int64_list.value[0]:
              tf.train.Example.FromString(r).features.feature["x"].float_list.value
              for r in records}
    worst = [f["id"] for f in report["flips"][:5]]
    with np.load(tmp_path / "report" / GALLERY_FILE) as gallery:
        assert sorted(gallery.files) == sorted(str(i) for i in worst)
        for example_id in worst:
            assert np.array_equal(gallery[str(example_id)], np.float32(pixels[example_id]))
    write_page(str(tmp_path / "report"))
    assert (tmp_path / "report" / "flip_5.png").exists()

    missing = dataclasses.replace(settings, data=dataclasses.replace(data, slice_features=("device",)))
    with pytest.raises(DataContractError, match="slice feature 'device' must be an integer or "
                                                "string"):
        evaluate(beam.Pipeline, pattern, new, old, str(tmp_path / "report2"), missing)
    tf.io.TFRecordWriter(str(tmp_path / "empty.gz"), options="GZIP").close()
    with pytest.raises(ValueError, match="No examples in .*empty.gz: the split is empty"):
        evaluate(beam.Pipeline, str(tmp_path / "empty.gz"), new, old, str(tmp_path / "report3"),
                 settings)
