"""End to end (real TFX runs on tiny spans): golden examples block a run and are named first, and
the flip report measures the candidate against each of the last pushed models. Every number is
checked against an independent numpy count on the SavedModels' own predictions."""
import dataclasses
import json
import os

import numpy as np
import pytest

from graceful import data, history
from tests.conftest import run_span

pytestmark = pytest.mark.slow


def _predictions(config, model_id: int, test) -> np.ndarray:
    """The predicted classes of the model `model_id` on the eval images, loaded as a SavedModel."""
    import tensorflow as tf

    store = history.open_store(config.metadata_uri)
    [model] = [m for m in store.get_artifacts_by_type("Model") if m.id == model_id]
    loaded = tf.saved_model.load(os.path.join(model.uri, "Format-Serving"))
    return loaded.signatures["serving_default"](examples=tf.constant(data.serialize(
        test.images, test.labels, test.ids)))["probabilities"].numpy().argmax(1)


def test_golden_flip_blocks_first_and_history_nfr_matches_numpy(tiny_config, monkeypatch, capsys):
    from graceful import cli
    from tests.planted_flips import PLANTED_IDS_ENV

    lenient = dataclasses.replace(tiny_config, gate=dataclasses.replace(
        tiny_config.gate, max_accuracy_drop=1.0, history_models=2))
    run_span(lenient, span=1)
    run_span(lenient, span=2)
    first, second = history.runs(tiny_config.metadata_uri)
    assert first.pushed and second.pushed, "both earlier runs must be releases"
    with open(second.flip_report) as handle:
        assert [h["model_id"] for h in json.load(handle)["history"]] == [first.model_id]

    # Run 3 breaks planted examples the served model gets right; two of them are golden, and one
    # golden id names no eval example.
    test = data.load("test").take(0, tiny_config.eval_size)
    served = _predictions(tiny_config, second.model_id, test)
    planted = [int(i) for i in test.ids[served == test.labels][::25][:6]]
    golden_ids = (planted[1], planted[4], 987654321)
    monkeypatch.setenv(PLANTED_IDS_ENV, json.dumps(planted))
    strict = dataclasses.replace(lenient, run_fn="tests.planted_flips.run_fn",
                                 gate=dataclasses.replace(lenient.gate, golden_ids=golden_ids))
    run_span(strict, span=3)
    third = history.runs(tiny_config.metadata_uri)[2]
    assert third.blessed is False and not third.pushed and third.blocked_by == "flip gate"
    assert len(os.listdir(tiny_config.serving_dir)) == 2, "nothing new pushed"

    with open(third.flip_report) as handle:
        report = json.load(handle)
    candidate = _predictions(tiny_config, third.model_id, test)
    labels, ids = test.labels, test.ids
    is_golden = np.isin(ids, golden_ids)
    expected = sorted(int(i) for i in ids[is_golden & (served == labels) & (candidate != labels)])
    assert expected == sorted(golden_ids[:2])  # planted: the served model right, the candidate not
    assert next(iter(report)) == "golden"
    section = report["golden"]
    assert [f["id"] for f in section["flipped"]] == expected
    assert section["missing"] == [987654321] and section["found"] == 2
    names = report["class_names"]
    # Planted: the served model right (old = label), the candidate wrong; named from numpy.
    named = [f"golden example {i} ({names[labels[ids == i][0]]}) flipped: old "
             f"{names[served[ids == i][0]]} → new {names[candidate[ids == i][0]]}" for i in expected]
    assert third.failures[0] == "; ".join(named) + "; 2 golden flips > max_golden_flips 0"
    assert third.failures[1].startswith("1 of 3 golden ids not in the evaluated examples: "
                                        "987654321")

    # Against each earlier release, newest first: NFR and re-broken from numpy on the models.
    older = _predictions(tiny_config, first.model_id, test)
    assert [h["model_id"] for h in report["history"]] == [second.model_id, first.model_id]
    for entry, release in zip(report["history"], (served, older)):
        negative = (release == labels) & (candidate != labels)
        rebroken = (release == labels) & (served != labels) & (candidate != labels)
        assert entry["negative_flips"] == int(negative.sum())
        assert entry["nfr"] == pytest.approx(negative.mean())
        assert entry["rebroken"] == int(rebroken.sum())
    assert report["history"][0]["nfr"] == report["summary"]["nfr"]

    page = open(os.path.join(os.path.dirname(third.flip_report), "index.html")).read()
    assert page.index("Golden examples") < page.index("negative flips (NFR)")
    assert "Against earlier releases" in page
    capsys.readouterr()  # the runs' log lines
    assert cli.main(["report", "--home", tiny_config.home]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0].startswith("flip report of run 3")
    assert text.splitlines()[1] == ("golden examples: 2 of 2 flipped (max_golden_flips 0); "
                                    "candidate wrong on 2; 1 configured ids missing from the "
                                    "eval data"), text[:300]
    assert f"model {first.model_id}: accuracy" in text


def test_a_rolled_back_release_leaves_the_history(tiny_config, monkeypatch, capsys):
    """`graceful rollback` sets the withdrawn model's blessing ABANDONED: resolvers see LIVE
    artifacts only, so the next run compares with the restored model alone."""
    from graceful import cli, signoff

    config = dataclasses.replace(tiny_config, gate=dataclasses.replace(
        tiny_config.gate, max_accuracy_drop=1.0, history_models=3))
    run_span(config, span=1)
    run_span(config, span=2)
    first, second = history.runs(config.metadata_uri)
    assert first.pushed and second.pushed
    monkeypatch.chdir(config.home.rsplit("/", 1)[0])  # no project file: the CLI's demo layout
    monkeypatch.setenv(signoff.APPROVERS_ENV, "alice")
    monkeypatch.setenv(signoff.APPROVER_ENV, "alice")
    assert cli.main(["rollback", "--reason", "run 2 misreads sandals", "--home", config.home]) == 0
    run_span(config, span=3)
    third = history.runs(config.metadata_uri)[2]
    with open(third.flip_report) as handle:
        report = json.load(handle)
    assert third.baseline_model_id == first.model_id
    assert [h["model_id"] for h in report["history"]] == [first.model_id]
