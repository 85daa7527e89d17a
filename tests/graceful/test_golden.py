"""Golden examples and flips against earlier releases: the TFX-free checks (graceful.golden,
graceful.releases) against independent numpy counts, and their place in the FlipEvaluator's report
(first key, first failure lines)."""
import numpy as np
import pytest

from graceful import golden, releases
from graceful.components.flip_evaluator.executor import build_report
from graceful.components.report_settings import ReportSettings
from graceful.contract import DataContract, DataContractError
from graceful.gate import GateConfig

CLASSES = ("cat", "dog", "fox")
IDS = np.array([10, 11, 12, 13, 14, 15])
LABELS = np.array([0, 1, 2, 0, 1, 2])
OLD = np.array([0, 1, 2, 1, 1, 0])     # right on 10, 11, 12, 14
NEW = np.array([1, 1, 0, 1, 2, 2])     # negative flips: 10, 12, 14


def test_golden_flips_are_the_negative_flips_among_the_golden_ids():
    section = golden.check([12, "11", 13, 99, 12], IDS, LABELS, OLD, NEW)
    flipped = IDS[np.isin(IDS, [11, 12, 13]) & (OLD == LABELS) & (NEW != LABELS)]
    assert [f["id"] for f in section["flipped"]] == flipped.tolist() == [12]
    assert section["flipped"] == [{"id": 12, "label": 2, "old_pred": 2, "new_pred": 0}]
    assert section["configured"] == 4 and section["found"] == 3 and section["missing"] == [99]
    assert section["wrong"] == int(np.sum(np.isin(IDS, [11, 12, 13]) & (NEW != LABELS))) == 2


def test_golden_failures_name_the_examples_and_the_missing_ids():
    section = golden.check([12, 99], IDS, LABELS, OLD, NEW)
    assert golden.failures(section, 0, CLASSES) == [
        "golden example 12 (fox) flipped: old fox → new cat; 1 golden flip > max_golden_flips 0",
        "1 of 2 golden ids not in the evaluated examples: 99; they cannot be checked. Fix "
        "GateConfig.golden_ids / golden_ids_file, or add those examples to the eval split"]
    assert golden.failures(golden.check([12], IDS, LABELS, OLD, NEW), 1, CLASSES) == []
    assert golden.failures(None, 0) == []


def test_string_ids_and_a_golden_file():
    ids = np.array(["a", "b", "c", "d", "e", "f"])
    assert golden.parse_ids("# golden\na\n\n c  # the demo image\n") == ["a", "c"]
    section = golden.check(golden.parse_ids("a\nc\n"), ids, LABELS, OLD, NEW)
    assert [f["id"] for f in section["flipped"]] == ["a", "c"] and section["missing"] == []
    with pytest.raises(ValueError, match="ids are integers, but a golden id is not"):
        golden.check(["x7"], IDS, LABELS, OLD, NEW)


def test_history_nfr_and_rebroken_against_numpy():
    older = np.array([0, 0, 2, 0, 1, 2])  # right on 10, 12, 13, 14, 15
    entry = releases.compare({"model_id": 3, "uri": "/m/3"}, IDS, LABELS, OLD, NEW, older)
    negative = (older == LABELS) & (NEW != LABELS)
    rebroken = (older == LABELS) & (OLD != LABELS) & (NEW != LABELS)
    assert entry["negative_flips"] == int(negative.sum()) == 4
    assert entry["nfr"] == negative.mean()
    assert entry["rebroken"] == int(rebroken.sum()) == 1 and entry["rebroken_ids"] == [13]
    assert entry["accuracy"] == np.mean(older == LABELS)
    assert releases.failures([entry], 0.5) == [
        "NFR vs earlier release 3 (1 back) 0.6667 > max_history_nfr 0.5 "
        "(4 of 6 examples; 1 re-broken)"]
    assert releases.failures([entry], 1.0) == []


def _batch(history=None):
    prob = np.eye(3)[NEW]
    return (IDS, LABELS, OLD, NEW, prob, {}, {},
            np.zeros((6, 0), np.int64) if history is None else history)


def test_report_lists_golden_first_and_its_failure_first():
    settings = ReportSettings(data=DataContract(class_names=CLASSES), policy=GateConfig(
        golden_ids=(14,), max_nfr=0.1, min_accuracy=0, max_accuracy_drop=1,
        max_relative_nfr=100, max_class_nfr=1, max_history_nfr=0.5))
    older = np.array([0, 0, 2, 0, 1, 2])
    report, _ = build_report([_batch(np.stack([OLD, older], 1))], settings, history_models=(
        {"model_id": 5, "uri": "/m/5"}, {"model_id": 3, "uri": "/m/3"}))
    assert next(iter(report)) == "golden"
    assert report["golden"]["flipped"] == [{"id": 14, "label": 1, "old_pred": 1, "new_pred": 2}]
    failures = report["gate"]["failures"]
    assert failures[0] == ("golden example 14 (dog) flipped: old dog → new fox; 1 golden flip > "
                           "max_golden_flips 0")
    assert failures[1].startswith("NFR 0.5000 > max_nfr")
    assert failures[-1].startswith("NFR vs earlier release 3 (2 back) 0.6667")
    baseline, older_entry = report["history"]
    assert baseline["nfr"] == report["summary"]["nfr"] and baseline["rebroken"] == 0
    assert older_entry["model_id"] == 3 and older_entry["negative_flips"] == 4


def test_no_golden_ids_no_section():
    report, _ = build_report([_batch()], ReportSettings(data=DataContract(class_names=CLASSES)))
    assert "golden" not in report and "history" not in report


def test_release_history_strategy_keeps_the_newest_blessed_models_newest_first():
    from tfx.types import standard_artifacts

    from graceful.components.release_history.strategy import LatestBlessedModelsStrategy

    models, blessings = [], []
    for model_id, blessed in ((1, 1), (2, 0), (3, 1), (4, 1), (5, None)):
        model = standard_artifacts.Model()
        model.id = model_id
        models.append(model)
        if blessed is not None:
            blessing = standard_artifacts.ModelBlessing()
            blessing.id = 100 + model_id
            blessing.set_int_custom_property("current_model_id", model_id)
            blessing.set_int_custom_property("blessed", blessed)
            blessings.append(blessing)
    resolved = LatestBlessedModelsStrategy(num_models=2).resolve_artifacts(
        None, {"model": list(models), "model_blessing": list(blessings)})
    assert [m.id for m in resolved["model"]] == [4, 3]
    assert [b.id for b in resolved["model_blessing"]] == [104, 103]
    every = LatestBlessedModelsStrategy(num_models=9).resolve_artifacts(
        None, {"model": list(models), "model_blessing": list(blessings)})
    assert [m.id for m in every["model"]] == [4, 3, 1]
    with pytest.raises(ValueError, match="num_models must be 1 or more"):
        LatestBlessedModelsStrategy(num_models=0)


def test_sign_off_message_and_text_report_put_golden_examples_first():
    from graceful import signoff, slack
    from graceful.components.human_signoff.executor import evidence
    from graceful.history import format_flip_report

    settings = ReportSettings(data=DataContract(class_names=CLASSES), policy=GateConfig(
        golden_ids=(11, 14), max_nfr=1, min_accuracy=0, max_accuracy_drop=1,
        max_relative_nfr=100, max_class_nfr=1))
    report, _ = build_report([_batch(np.stack([OLD], 1))], settings,
                             history_models=({"model_id": 5, "uri": "/m/5"},))
    found = evidence(report, "/reports/7", "graceful", 2, 5)
    assert found["golden"] == ("golden examples: 1 of 2 flipped (max_golden_flips 0); candidate "
                               "wrong on 1")
    blocks = slack.message_blocks(signoff.Request("run-1", 9, {**found, "report": "/r"}, 0.0))
    assert blocks[1]["text"]["text"] == f"*Golden examples*: {found['golden']}"
    assert any("*Against earlier releases*" in b.get("text", {}).get("text", "") for b in blocks)
    lines = format_flip_report(report, classes=CLASSES).splitlines()
    assert lines[:2] == [found["golden"], "  golden example 14: dog was right, now fox"]
    assert lines[-2].startswith("  model 5: accuracy 0.6667, NFR 0.5000 (3 of 6), re-broken 0")
    assert lines[-1].startswith("flip gate: blocked: golden example 14 (dog) flipped")


@pytest.mark.parametrize("cross_run_window", [True, False])
def test_release_history_is_wired_only_where_custom_resolvers_compile(tmp_path, cross_run_window):
    import dataclasses

    from graceful.pipeline.pipeline import create_pipeline
    from tests.conftest import make_tiny_config

    config = make_tiny_config(tmp_path)
    config = dataclasses.replace(config, cross_run_window=cross_run_window,
                                 gate=dataclasses.replace(config.gate, history_models=2))
    nodes = {node.id: node for node in create_pipeline(config).components}
    assert ("release_history" in nodes) == cross_run_window
    inputs = nodes["FlipEvaluator"].inputs
    assert (inputs.get("history_models") is not None) == cross_run_window
    off = create_pipeline(make_tiny_config(tmp_path)).components
    assert "release_history" not in {node.id for node in off}


def test_golden_ids_file_is_read_at_run_time_and_a_missing_one_is_named(tmp_path):
    import dataclasses

    from graceful.components.flip_evaluator.executor import with_golden_file

    ids_file = tmp_path / "golden.txt"
    ids_file.write_text("# must never flip\n12\n13  # a customer's case\n")
    settings = ReportSettings(policy=GateConfig(golden_ids=(10,), golden_ids_file=str(ids_file)))
    assert with_golden_file(settings).policy.golden_ids == (10, "12", "13")
    report, _ = build_report([_batch()], dataclasses.replace(
        with_golden_file(settings), data=DataContract(class_names=CLASSES)))
    assert [f["id"] for f in report["golden"]["flipped"]] == [10, 12]
    assert report["golden"]["configured"] == 3 and report["golden"]["missing"] == []
    gone = ReportSettings(policy=GateConfig(golden_ids_file=str(tmp_path / "nope.txt")))
    with pytest.raises(FileNotFoundError, match="golden_ids_file .*nope.txt' does not exist"):
        with_golden_file(gone)


def test_history_asked_for_but_not_resolved_is_said():
    from graceful import report_html
    from graceful.history import format_flip_report

    settings = ReportSettings(data=DataContract(class_names=CLASSES),
                              policy=GateConfig(history_models=3))
    report, _ = build_report([_batch()], settings)
    assert "history" not in report and report["history_note"] == releases.NONE_RESOLVED
    assert f"against earlier releases: {releases.NONE_RESOLVED}" in format_flip_report(report)
    assert "Kubeflow v2" in report_html.render(report)[report_html.INDEX].decode()


@pytest.mark.slow
def test_golden_examples_files_are_scored_in_the_same_pass_and_count_nowhere_else(tmp_path):
    """GateConfig.golden_examples: golden tf.Examples outside the eval split, through the real
    Beam pass over two tiny real models. Every one of them is golden; flips among them equal a
    numpy count on the models' own scores; the eval numbers are those of the eval split alone."""
    import dataclasses

    from tests.graceful.test_evaluation import (LOOSE, Case, build_case, numpy_classes,
                                                run_flip_evaluator, scores_of, write_files)

    old, new, records, labels, *_, pattern, data, model = build_case(
        tmp_path, Case("multiclass_probabilities", "int", "int"))
    eval_records, golden_records = records[:160], records[160:]
    eval_pattern = write_files(tmp_path / "eval", eval_records)
    golden_pattern = write_files(tmp_path / "golden", golden_records, parts=1)
    policy = dataclasses.replace(LOOSE, golden_examples=golden_pattern, golden_ids=(3,))
    report = run_flip_evaluator(eval_pattern, new, old, tmp_path / "report", data, model, policy)
    plain = run_flip_evaluator(eval_pattern, new, old, tmp_path / "plain", data, model, LOOSE)
    assert report["summary"] == plain["summary"], "golden files count in no other number"

    old_pred, new_pred = (numpy_classes(scores_of(d, golden_records), 0.5)[0] for d in (old, new))
    y = labels[160:]
    ids = np.arange(160, len(records)) * 7 + 3
    expected = ids[(old_pred == y) & (new_pred != y)]
    section = report["golden"]
    eval_flip = [3] if 3 in [f["id"] for f in plain["flips"]] else []  # golden id 3: evaluated
    assert expected.size
    assert [f["id"] for f in section["flipped"]] == sorted(eval_flip + expected.tolist())
    assert section["configured"] == len(golden_records) + 1 and section["missing"] == []
    assert section["golden_examples"] == {"pattern": golden_pattern, "examples": 80}


def _golden_files_report(ids, labels, id_key="id"):
    """build_report on the eval batch (IDS) and one golden-examples batch of `ids`, `labels`."""
    settings = ReportSettings(data=DataContract(class_names=CLASSES, id_key=id_key),
                              policy=GateConfig(golden_examples="/golden/*.gz"))
    ids, labels = np.asarray(ids), np.asarray(labels)
    golden_batch = (ids, labels, labels, labels, np.eye(3)[labels], {}, {},
                    np.zeros((len(ids), 0), np.int64))
    return build_report([_batch()], settings, golden_batches=[golden_batch])


def test_golden_file_id_with_another_label_than_the_eval_split_is_named():
    with pytest.raises(DataContractError) as error:
        _golden_files_report([12, 99, 14], [1, 0, 1])   # 12 is fox (2) in the eval split
    message = str(error.value)
    assert "id 12 has label 2 in the eval split but label 1 in GateConfig.golden_examples " \
           "/golden/*.gz" in message and "fix the wrong label" in message
    # the same ids with the eval split's labels count once, as the eval rows
    report, _ = _golden_files_report([12, 99, 14], [2, 0, 1])
    assert report["golden"]["found"] == 3 and report["golden"]["golden_examples"]["examples"] == 3
    assert [f["id"] for f in report["golden"]["flipped"]] == [12, 14]


def test_golden_file_ids_get_the_eval_splits_repeated_id_check():
    with pytest.raises(DataContractError, match="GateConfig.golden_examples /golden/.*: id "
                                                "feature 'id' has the value 99 more than once"):
        _golden_files_report([99, 98, 99], [0, 1, 0])
    # derived (hashed) ids: repeats are identical examples, kept apart as for the eval split
    report, _ = _golden_files_report([990, 500, 990], [0, 1, 0], id_key="")
    assert report["golden"]["configured"] == 3 and report["golden"]["missing"] == []


def test_golden_file_ids_of_another_type_than_the_eval_splits_are_refused():
    with pytest.raises(DataContractError, match="integers in eval split .*strings in "
                                                "golden examples /golden/"):
        _golden_files_report(["12", "99"], [2, 0])
