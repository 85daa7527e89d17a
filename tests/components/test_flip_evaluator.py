"""FlipEvaluator's report: built by the executor's own functions from hand-made predictions, rendered
to a static page, and (when Chromium is installed) drawn by a real headless browser, offline."""
import io
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest

from components.flip_evaluator.executor import REPORT_FILE, ReportSettings, build_report
from graceful import report_html
from graceful.gate import GateConfig
from graceful.history import format_flip_report

CLASSES = ("cat", "dog", "fox")


def _batch(rows, images=None):
    """rows: (id, label, old, new, confidence of new) -> one batch as _PredictBoth yields it."""
    probs = []
    for _, _, _, new, confidence in rows:
        prob = np.full(3, (1 - confidence) / 2)
        prob[new] = confidence
        probs.append(prob)
    columns = [np.array([row[i] for row in rows]) for i in range(4)]
    return (*columns, np.array(probs), images or {})


def _image(value):
    return np.full(16, value)  # a 4x4 image


ROWS = [(1, 0, 0, 1, 0.95), (2, 0, 0, 0, 0.8), (3, 1, 1, 1, 0.9), (4, 2, 2, 0, 0.6),
        (5, 2, 1, 2, 0.7)]
SETTINGS = ReportSettings(high_confidence=0.9, max_listed=10, class_names=CLASSES,
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
        "relative NFR 1.250 > max_relative_nfr 0.3",
        "class cat (0) NFR 0.5000 > max_class_nfr 0.25",
        "class fox (2) NFR 0.5000 > max_class_nfr 0.25",
        "high-confidence flips 1 > max_high_confidence_flips 0"]}
    assert sorted(images) == [1, 4]


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
    assert "  cat: NFR 0.5000 (1 of 2)" in lines
    assert lines[-1].startswith("flip gate: blocked: NFR 0.4000 > max_nfr 0.3 (2 of 5 examples); ")


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
                           "flip_4.png"]
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
