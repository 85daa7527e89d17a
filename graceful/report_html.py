"""The flip report as a static web page: one index.html plus PNG plots, openable offline.

Why static files: the report is an artifact in the pipeline root, so it must open from a file manager,
a bucket browser or a notebook, with no server and no network (no scripts, fonts or CDNs). `render`
returns {file name: bytes}; the caller decides where they go (local disk, GCS, ...).

Plots: the flip matrix (old class -> new class), NFR per class against its limit, the confidence of
the listed flips, and a gallery of the worst flipped images when the data contract names an image
feature (tabular data has none: the page is the same without it). Example ids are integers or
strings (an id feature, or ids derived from the examples' bytes).
"""
from __future__ import annotations

import html
import io

import numpy as np

from graceful import bootstrap

INDEX = "index.html"
REPORT_FILE = "flip_report.json"  # the same report as data, written beside the page
GALLERY_FILE = "gallery.npz"  # pixels of the gallery's flipped examples, keyed by example id
GALLERY_COLUMNS = 8
REVIEW_PNG = "review_queue.png"  # the review queue's images in one grid (also sent to Slack)


def _figure():
    import matplotlib

    matplotlib.use("Agg")  # no display on pipeline workers
    from matplotlib import pyplot

    return pyplot


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    _figure().close(figure)
    return buffer.getvalue()


def _names(report: dict) -> list[str]:
    classes = len(report["flip_matrix"]) if report.get("flip_matrix") else 0
    given = report.get("class_names") or []
    return [given[c] if c < len(given) else str(c) for c in range(classes)]


def flip_matrix_png(report: dict) -> bytes:
    plt = _figure()
    matrix = np.asarray(report["flip_matrix"])
    names = _names(report)
    figure, axes = plt.subplots(figsize=(6.5, 5.5))
    image = axes.imshow(matrix, cmap="Reds")
    axes.set_xticks(range(len(names)), names, rotation=45, ha="right")
    axes.set_yticks(range(len(names)), names)
    axes.set_xlabel("new model predicts")
    axes.set_ylabel("old model predicted (= true class)")
    axes.set_title("Negative flips: old class -> new class")
    for (row, column), count in np.ndenumerate(matrix):
        if count:
            axes.text(column, row, str(count), ha="center", va="center", fontsize=8,
                      color="white" if count > matrix.max() / 2 else "black")
    figure.colorbar(image, ax=axes, shrink=0.8)
    return _png(figure)


def class_nfr_png(report: dict, max_class_nfr: float | None) -> bytes:
    plt = _figure()
    names = _names(report)
    nfr = [report["per_class"].get(str(c), {}).get("nfr", 0.0) for c in range(len(names))]
    figure, axes = plt.subplots(figsize=(6.5, 4))
    class_bounds = (report.get("intervals") or {}).get("per_class", {})
    # Error bars: each class's bootstrap interval (graceful.bootstrap), when the report has them.
    bounds = [class_bounds.get(str(c), (v, v)) for c, v in enumerate(nfr)]
    errors = np.clip([[v - lo for v, (lo, _) in zip(nfr, bounds)],
                      [hi - v for v, (_, hi) in zip(nfr, bounds)]], 0, None)
    bars = axes.barh(names, nfr, color="#c0392b", xerr=errors if class_bounds else None,
                     error_kw={"ecolor": "#555", "capsize": 2, "linewidth": 0.8})
    axes.bar_label(bars, labels=[f"{v:.3f}" for v in nfr], fontsize=8, padding=2)
    axes.axvline(report["summary"]["nfr"], color="black", linestyle=":", label="overall NFR")
    if max_class_nfr is not None and max_class_nfr < 1:
        axes.axvline(max_class_nfr, color="#7f8c8d", linestyle="--", label="max_class_nfr")
    axes.invert_yaxis()
    axes.set_xlabel("negative flip rate within the class")
    axes.set_title("NFR per class")
    axes.legend(loc="lower right", fontsize=8)
    return _png(figure)


def evidence_plots(report: dict) -> dict[str, bytes]:
    """{file name: PNG} of the two plots an approver judges by: the flip matrix and NFR per class
    against the policy's limit. The report page shows them, and the Slack sign-off message carries
    them in its thread; aggregates only, no example. Only a report with a baseline has them."""
    return {"flip_matrix.png": flip_matrix_png(report),
            "class_nfr.png": class_nfr_png(report, report.get("policy", {}).get("max_class_nfr"))}


def confidence_png(report: dict) -> bytes:
    plt = _figure()
    confidence = [flip["confidence"] for flip in report["flips"]]
    figure, axes = plt.subplots(figsize=(6.5, 3.5))
    axes.hist(confidence, bins=np.linspace(0, 1, 21), color="#2c3e50")
    axes.axvline(report["high_confidence"], color="#c0392b", linestyle="--",
                 label=f"high confidence >= {report['high_confidence']:g}")
    axes.set_xlabel("new model's probability of its wrong class")
    axes.set_ylabel("negative flips")
    axes.set_title(f"Confidence of the {len(confidence)} listed negative flips")
    axes.legend(fontsize=8)
    return _png(figure)


def image_png(pixels) -> bytes:
    """One square grayscale image (flattened pixels, 0-255) as a PNG."""
    plt = _figure()
    flat = np.asarray(pixels, dtype=np.float64).reshape(-1)
    side = int(round(np.sqrt(flat.size)))
    if side * side != flat.size:
        raise ValueError(f"cannot show {flat.size} pixels as a square image")
    buffer = io.BytesIO()
    plt.imsave(buffer, flat.reshape(side, side), cmap="gray_r", vmin=0, vmax=255, format="png")
    return buffer.getvalue()


def _table(rows) -> str:
    cells = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return f"<table>{cells}</table>"


def _gate_section(report: dict, name: str = "Flip gate") -> str:
    gate = report.get("gate")
    if gate is None:
        return ""
    if gate["blessed"]:
        return f'<p class="pass">{name}: <b>passed</b>.</p>'
    items = "".join(f"<li>{html.escape(line)}</li>" for line in gate["failures"])
    return f'<p class="fail">{name}: <b>blocked</b></p><ul>{items}</ul>'


def _edge_section(report: dict) -> str:
    """The edge (TensorFlow Lite) model's numbers and its own verdict, which gates the edge push
    only (components/edge_converter), when the pipeline's edge branch is on."""
    edge = report.get("edge")
    if not edge:
        return ""
    cloud, previous = edge["vs_cloud"], edge.get("vs_previous")
    if cloud is None:  # the candidate could not be converted: the verdict says why
        return ("<h2>Edge model (TensorFlow Lite)</h2>"
                + _table([("model", f"{edge['quantization']} TFLite: not converted")])
                + _gate_section(edge, "Edge check (gates the edge push only)"))
    rows = [("model", f"{edge['quantization']} TFLite, {edge['size_bytes']:,} bytes"),
            ("accuracy cloud → edge", f"{edge['cloud_accuracy']:.4f} → {edge['edge_accuracy']:.4f}"),
            ("negative flips vs the cloud candidate (NFR)",
             f"{cloud['negative_flips']} ({cloud['nfr']:.4f})"),
            ("high-confidence flips vs the cloud candidate", str(cloud["high_confidence_flips"]))]
    rows.append(("negative flips vs the previously pushed edge model (NFR)",
                 f"{previous['negative_flips']} ({previous['nfr']:.4f})" if previous
                 else "none pushed yet"))
    return ("<h2>Edge model (TensorFlow Lite)</h2>" + _table(rows)
            + _gate_section(edge, "Edge check (gates the edge push only)"))


def _golden_section(report: dict) -> str:
    """Golden examples (graceful.golden), first on the page: how many were checked, every golden
    flip, and configured ids missing from the eval data."""
    section = report.get("golden")
    if not section:
        return ""
    names = list(report.get("class_names") or [])
    limit = report.get("policy", {}).get("max_golden_flips", 0)
    flipped = len(section["flipped"])
    css = "fail" if flipped > limit or section["missing"] else "pass"
    text = (f'<h2>Golden examples</h2><p class="{css}">{flipped} of {section["found"]} golden '
            f"examples flipped (max_golden_flips {limit}); {section['configured']} configured, "
            f"the candidate gets {section['wrong']} wrong.</p>")
    if section["flipped"]:
        rows = "".join(
            f"<tr><td>{html.escape(str(f['id']))}</td><td>{html.escape(_label(names, f['label']))}"
            f"</td><td>{html.escape(_label(names, f['old_pred']))}</td>"
            f"<td>{html.escape(_label(names, f['new_pred']))}</td></tr>" for f in section["flipped"])
        text += ("<table><tr><th>golden example</th><th>label</th><th>old prediction</th>"
                 f"<th>new prediction</th></tr>{rows}</table>")
    if section["missing"]:
        text += ('<p class="fail">Configured golden ids not in the eval data (not checked): '
                 + html.escape(", ".join(str(m) for m in section["missing"])) + "</p>")
    return text


def _history_section(report: dict) -> str:
    """The candidate against each of the last pushed models (graceful.releases), newest first."""
    history = report.get("history")
    if not history:
        note = report.get("history_note")
        return f"<h2>Against earlier releases</h2><p>{html.escape(note)}</p>" if note else ""
    rows = "".join(
        f"<tr><td>{h['model_id']}</td><td>{html.escape(h['uri'])}</td><td>{h['accuracy']:.4f}</td>"
        f"<td>{h['negative_flips']}</td><td>{h['nfr']:.4f}</td><td>{h['rebroken']}</td></tr>"
        for h in history)
    return ("<h2>Against earlier releases</h2><p>The candidate's negative flips against each of "
            "the last pushed models, newest (the baseline) first. Re-broken: examples that "
            "release got right, the baseline gets wrong and the candidate gets wrong too.</p>"
            "<table><tr><th>model</th><th>location</th><th>its accuracy</th>"
            f"<th>negative flips</th><th>NFR</th><th>re-broken</th></tr>{rows}</table>")


def _slices_section(report: dict) -> str:
    """One table per slice feature: each value's examples, flips and NFR, worst first."""
    parts = []
    for feature, values in sorted(report.get("per_slice", {}).items()):
        rows = "".join(
            f"<tr><td>{html.escape(value)}</td><td>{m['examples']}</td>"
            f"<td>{m['negative_flips']}</td><td>{m['nfr']:.4f}</td></tr>"
            for value, m in sorted(values.items(), key=lambda kv: -kv[1]["nfr"]))
        parts.append(f"<h2>NFR by {html.escape(feature)}</h2><table><tr><th>value</th>"
                     f"<th>examples</th><th>negative flips</th><th>NFR</th></tr>{rows}</table>")
    return "".join(parts)


def _gallery(report: dict, images: dict, names: list[str]) -> tuple[str, dict]:
    files, cells = {}, []
    for rank, flip in enumerate(report["flips"], 1):
        if flip["id"] not in images:
            continue
        name = f"flip_{rank}.png"  # ids may be any string: the file is named by the flip's rank
        files[name] = image_png(images[flip["id"]])
        caption = (f"#{flip['id']}: {names[flip['label']]} → {names[flip['new_pred']]} "
                   f"({flip['confidence']:.2f})")
        cells.append(f'<figure><img src="{name}" alt="{html.escape(caption)}">'
                     f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    if not cells:
        return "", files
    return ('<h2>Worst flipped examples</h2><div class="gallery">' + "".join(cells)
            + "</div>"), files


def _label(names: list[str], label) -> str:
    return names[label] if label is not None and label < len(names) else str(label)


def review_caption(row: dict, names: list[str]) -> str:
    """One line per review-queue example: rank, id, true class, VoG and what the candidate did."""
    if row.get("new_pred") is None:
        verdict = "not in this evaluation"
    else:
        verdict = (("FLIPPED to " if row["flipped"] else "candidate says ")
                   + f"{_label(names, row['new_pred'])} ({row['confidence']:.2f})")
    return (f"{row['rank']}. #{row['id']}: {_label(names, row['label'])}, VoG {row['vog']:.2f}"
            f" — {verdict}")


def review_queue_png(report: dict, images: dict) -> bytes | None:
    """The review queue's images (image data only) in one captioned grid, None without images."""
    rows = [row for row in report.get("review_queue", {}).get("examples", [])
            if row["id"] in images]
    if not rows:
        return None
    plt, names = _figure(), list(report.get("class_names") or [])
    columns = min(5, len(rows))
    lines = -(-len(rows) // columns)
    figure, axes = plt.subplots(lines, columns, figsize=(2.2 * columns, 2.5 * lines),
                                squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, row in zip(axes.flat, rows):
        flat = np.asarray(images[row["id"]], dtype=np.float64).reshape(-1)
        side = int(round(np.sqrt(flat.size)))
        axis.imshow(flat.reshape(side, side), cmap="gray_r", vmin=0, vmax=255)
        verdict = "flipped" if row["flipped"] else ""
        axis.set_title(f"{row['rank']}. {_label(names, row['label'])}\nVoG {row['vog']:.2f} "
                       f"{verdict}", fontsize=8, color="#c0392b" if row["flipped"] else "black")
    figure.suptitle("Review queue: highest variance of gradients (VoG)")
    return _png(figure)


def _review_section(report: dict, images: dict) -> tuple[str, dict]:
    """The Trainer's review queue (graceful.models.review): a table and, for image data, the
    images; "" when the run has none."""
    queue = report.get("review_queue")
    if not queue:
        return "", {}
    names = list(report.get("class_names") or [])
    rows = "".join(
        f"<tr><td>{r['rank']}</td><td>{html.escape(str(r['id']))}</td>"
        f"<td>{html.escape(_label(names, r['label']))}</td><td>{r['vog']:.3f}</td>"
        f"<td>{r['vog_raw']:.3g}</td><td>{'yes' if r['flipped'] else 'no'}</td>"
        f"<td>{'-' if r['new_pred'] is None else html.escape(_label(names, r['new_pred']))}"
        f"</td></tr>" for r in queue["examples"])
    files, cells = {}, []
    for r in queue["examples"]:
        if r["id"] in images:
            name = f"review_{r['rank']}.png"
            files[name] = image_png(images[r["id"]])
            caption = html.escape(review_caption(r, names))
            cells.append(f'<figure><img src="{name}" alt="{caption}">'
                         f"<figcaption>{caption}</figcaption></figure>")
    grid = review_queue_png(report, images)
    if grid is not None:
        files[REVIEW_PNG] = grid
    gallery = f'<div class="gallery">{"".join(cells)}</div>' if cells else ""
    return (f"<h2>Review queue: the {len(queue['examples'])} examples most worth a look</h2>"
            f"<p>Ranked by {html.escape(queue['score'])}, from input gradients at "
            f"{queue['checkpoints']} training checkpoints, over {queue['examples_ranked']} eval "
            "examples: atypical, ambiguous or mislabelled examples rank high.</p>"
            "<table><tr><th>rank</th><th>id</th><th>label</th><th>VoG</th><th>raw VoG</th>"
            f"<th>flipped</th><th>candidate predicts</th></tr>{rows}</table>" + gallery), files


STYLE = """body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:4px 10px;
text-align:left}th{background:#f4f4f4}.pass{color:#1e8449}.fail{color:#c0392b}
.plots img{max-width:49%;vertical-align:top}.gallery{display:flex;flex-wrap:wrap;gap:8px}
figure{margin:0;width:120px;font-size:11px}figure img{width:112px;image-rendering:pixelated;
border:1px solid #ccc}"""


def render(report: dict, images: dict | None = None, title: str = "Flip report") -> dict:
    """{file name: bytes} of the report page; `images` maps flipped example ids to their pixels."""
    head = (f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}'
            f"</title><style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>")
    if not report.get("has_baseline"):
        body = (_golden_section(report)
                + f"<p>{html.escape(report.get('reason', 'no baseline'))}</p>"
                + _table([("examples", str(report["summary"]["examples"])),
                          ("accuracy", f"{report['summary']['new_accuracy']:.4f}")])
                + _gate_section(report) + _edge_section(report))
        review, files = _review_section(report, images or {})
        return {**files, INDEX: (head + body + review + "</body></html>").encode()}

    s, names = report["summary"], _names(report)
    files = {**evidence_plots(report), "confidence.png": confidence_png(report)}
    bounds, shown = report.get("intervals"), bootstrap.shown(report)
    headline = _table([
        ("examples", str(s["examples"])),
        ("accuracy old → new", f"{s['old_accuracy']:.4f} → {s['new_accuracy']:.4f} (change "
                               f"{shown['accuracy_change']})"),
        ("negative flips (NFR)", f"{s['negative_flips']} ({shown['nfr']})"),
        ("relative NFR", shown["relative_nfr"]),
        ("NFI (flips / new errors)", f"{s['nfi']:.3f}"),
        ("high-confidence flips", f"{s['high_confidence_flips']} (>= {report['high_confidence']:g})"),
        ("positive flips (PFR)", f"{s['positive_flips']} ({s['pfr']:.4f})"),
        ("BTC / BEC", f"{s['btc']:.3f} / {s['bec']:.3f}"),
    ]) + (f"<p>Values {html.escape(bootstrap.describe(bounds, report['policy']['flip_bound']))}."
          "</p>" if bounds else "")
    gallery, images_files = _gallery(report, images or {}, names)
    files.update(images_files)
    plots = "".join(f'<img src="{name}" alt="{name[:-4].replace("_", " ")}">'
                    for name in ("flip_matrix.png", "class_nfr.png", "confidence.png"))
    review, review_files = _review_section(report, images or {})
    files.update(review_files)
    body = (_golden_section(report) + headline + _gate_section(report) + _edge_section(report)
            + _history_section(report) + f'<div class="plots">{plots}</div>'
            + _slices_section(report) + gallery + review)
    files[INDEX] = (head + body + "</body></html>").encode()
    return files
