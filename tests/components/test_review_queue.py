"""The review queue (graceful.models.review) from the Trainer to the approver: joined with the
FlipEvaluator's predictions in the flip report, drawn on the page (images for image data), named in
the Slack sign-off message with its images in the thread; and end to end in a real tiny TFX run,
where the exported model is the same with or without the queue."""
import glob
import json
import os

import numpy as np
import pytest

from graceful import report_html, slack
from graceful.components.flip_evaluator.executor import (REPORT_FILE, build_report, write_page,
                                                         write_report)
from graceful.components.human_signoff.executor import evidence
from graceful.models import review
from tests.components.test_flip_evaluator import ROWS, SETTINGS, _batch, _image
from tests.graceful.test_slack_gate import slack_api, store  # noqa: F401 (fixtures)

# ROWS: ids 1..5; id 1 flipped cat -> dog (0.95), id 4 flipped fox -> cat (0.60), id 3 right.
QUEUE = {"score": "VoG, class-normalised", "checkpoints": 4, "examples": 5, "seconds": 0.5,
         "queue": [{"rank": 1, "id": 4, "label": 2, "vog": 2.5, "vog_raw": 0.01},
                   {"rank": 2, "id": 3, "label": 1, "vog": 1.5, "vog_raw": 0.02},
                   {"rank": 3, "id": 99, "label": 0, "vog": 0.5, "vog_raw": 0.03}]}
PIXELS = {1: _image(40), 2: _image(90), 3: _image(150)}


def _queued_report():
    return build_report([_batch(ROWS[:2], {1: _image(10)}), _batch(ROWS[2:], {4: _image(200)})],
                        SETTINGS, queue=(QUEUE, PIXELS))


def test_the_report_lists_the_queue_with_what_the_candidate_did():
    report, images = _queued_report()
    section = report["review_queue"]
    assert (section["checkpoints"], section["examples_ranked"]) == (4, 5)
    assert [(r["rank"], r["id"], r["flipped"], r["new_pred"], r["evaluated"])
            for r in section["examples"]] == [(1, 4, True, 0, True), (2, 3, False, 1, True),
                                              (3, 99, False, None, False)]
    assert section["examples"][0]["confidence"] == pytest.approx(0.6)
    # the queue's pixels are keyed by id like the gallery's (id 4 is both: the same example)
    assert sorted(images) == [1, 3, 4, 99] and (images[3] == 90).all()


def test_the_page_shows_the_queue_and_its_images(tmp_path):
    batches = [_batch(ROWS[:2], {1: _image(10)}), _batch(ROWS[2:], {4: _image(200)})]
    write_report(batches, str(tmp_path), SETTINGS, has_baseline=True, queue=(QUEUE, PIXELS))
    write_page(str(tmp_path))
    page = (tmp_path / report_html.INDEX).read_text()
    assert "Review queue" in page and "FLIPPED to cat (0.60)" in page
    assert "not in this evaluation" in page
    for rank in (1, 2, 3):
        assert f'src="review_{rank}.png"' in page
        assert (tmp_path / f"review_{rank}.png").read_bytes().startswith(b"\x89PNG")
    assert (tmp_path / report_html.REVIEW_PNG).read_bytes().startswith(b"\x89PNG")
    # a first run (no baseline) still shows the queue
    report, images = build_report([_batch(ROWS)], SETTINGS, has_baseline=False,
                                  queue=(QUEUE, PIXELS))
    assert not any(r["flipped"] for r in report["review_queue"]["examples"])
    assert "review_1.png" in report_html.render(report, images)


def test_tabular_queue_has_no_images():
    report, images = build_report([_batch(ROWS)], SETTINGS, queue=(QUEUE, {}))
    files = report_html.render(report, images)
    assert report_html.REVIEW_PNG not in files and "review_1.png" not in files
    assert "Review queue" in files[report_html.INDEX].decode()


def test_the_slack_message_names_the_queue_and_its_images_go_in_the_thread(store, slack_api):  # noqa: F811
    report, images = _queued_report()
    shown = evidence(report, "/r", "tiny", 1, 3)
    assert shown["review_queue"][0] == "1. #4: fox, VoG 2.50 — FLIPPED to cat (0.60)"
    store.open_request("run-2", 8, shown)
    png = report_html.review_queue_png(report, images)
    ts = slack.post_request(store.request("run-2"), "C1", report, review_png=png)
    [post] = slack_api.called("chat.postMessage")
    text = json.dumps(post["body"]["blocks"], ensure_ascii=False)
    assert "*Review queue*" in text and "#4: fox, VoG 2.50" in text
    assert slack.REVIEW_FOLLOWS in text and slack.PLOTS_FOLLOW in text
    uploads = slack_api.shared
    assert [u["filename"] for u in uploads] == ["flip_matrix.png", "class_nfr.png",
                                                report_html.REVIEW_PNG]
    assert uploads[2]["data"] == png and uploads[2]["thread_ts"] == ts


# --- a real tiny TFX run --------------------------------------------------------------------


def _eval_examples(config):
    import tensorflow as tf

    from graceful import history

    store = history.open_store(config.metadata_uri)
    [examples] = [a for a in store.get_artifacts_by_type("Examples")]
    records = tf.data.TFRecordDataset(glob.glob(os.path.join(examples.uri, "Split-eval", "*")),
                                      "GZIP")
    out = {}
    for record in records.as_numpy_iterator():
        features = tf.train.Example.FromString(record).features.feature
        out[features["example_id"].int64_list.value[0]] = features["label"].int64_list.value[0]
    return out


def _exported_weights(config):
    import tensorflow as tf

    [model_dir] = glob.glob(os.path.join(config.home, "**", "Format-Serving"), recursive=True)
    loaded = tf.saved_model.load(model_dir)
    return {v.name: v.numpy() for v in loaded.variables}, model_dir


@pytest.mark.slow
def test_a_run_lists_k_real_eval_examples_and_exports_the_same_model(tmp_path):
    import tensorflow as tf

    from tests.conftest import make_tiny_config, run_span, with_training

    tf.config.experimental.enable_op_determinism()  # the two runs must train alike
    on = with_training(make_tiny_config(tmp_path / "on"), review_checkpoints=4, review_top_k=7)
    off = with_training(make_tiny_config(tmp_path / "off"), review_checkpoints=0)
    run_span(on, span=1)
    run_span(off, span=1)

    [queue_file] = glob.glob(os.path.join(on.home, "**", "review_queue.json"), recursive=True)
    document = json.loads(open(queue_file).read())
    [report_file] = glob.glob(os.path.join(on.home, "**", REPORT_FILE), recursive=True)
    section = json.loads(open(report_file).read())["review_queue"]
    rows = section["examples"]
    assert [r["rank"] for r in rows] == list(range(1, 8))
    assert [r["vog"] for r in rows] == sorted((r["vog"] for r in rows), reverse=True)
    assert document["checkpoints"] == section["checkpoints"] == 4
    assert len(document["checkpoint_steps"]) == 4 and document["checkpoint_steps"][-1] == "exported"
    eval_labels = _eval_examples(on)
    assert document["examples_read"] == len(eval_labels)  # every distinct eval example was read
    # ... and ranked in batches until the budget (10% of the training loop) was spent
    assert min(len(eval_labels), review.BATCH) <= document["examples"] <= len(eval_labels)
    assert document["budget_seconds"] > 0
    for row in rows:  # named by the FlipEvaluator's ids, with the eval set's labels
        assert row["evaluated"] and eval_labels[row["id"]] == row["label"]
    assert os.path.exists(os.path.join(os.path.dirname(report_file), report_html.REVIEW_PNG))
    assert not glob.glob(os.path.join(off.home, "**", "review_queue.json"), recursive=True)
    assert "review_queue" not in json.loads(open(glob.glob(os.path.join(
        off.home, "**", REPORT_FILE), recursive=True)[0]).read())

    with_queue, model_dir = _exported_weights(on)
    without_queue, _ = _exported_weights(off)
    assert sorted(with_queue) == sorted(without_queue)
    for name, value in with_queue.items():
        np.testing.assert_array_equal(value, without_queue[name], err_msg=name)
    assert not [p for p in glob.glob(os.path.join(model_dir, "**"), recursive=True)
                if "review" in os.path.basename(p)], "nothing of the queue in the pushed model"
