"""The README's path for a team's own CSV data and model, end to end, on two tables that are not
Fashion-MNIST: scikit-learn's wine (3 classes; the scaffolded model's logits) and breast-cancer
(binary; the model edited, as a team would, to one sigmoid output, P(class 1) [N, 1]).

`graceful init` -> `graceful run --span 1` (pushed: no baseline yet) -> `graceful run --latest`
(span 2, trained with graceful's default method against the served model, judged by the flip gate,
pushed or blocked) -> history, report, check-model. Every number the flip gate used is recounted in
numpy from the two SavedModels' own outputs, and the data folder is never written to.
"""
import glob
import json
import os
import re

import numpy as np
import pytest
import tensorflow as tf

from graceful import cli, history
from graceful.models.params import TrainingParams
from tests import tabular

pytestmark = pytest.mark.slow

QUICK = ["--auto-approve", "--epochs", "40", "--batch-size", "16", "--learning-rate", "0.01"]


def _tree(folder: str) -> dict:
    """{relative path: bytes} of every file under `folder`."""
    files = {}
    for path in glob.glob(os.path.join(folder, "**", "*"), recursive=True):
        if os.path.isfile(path):
            with open(path, "rb") as handle:
                files[os.path.relpath(path, folder)] = handle.read()
    return files


def _make_sigmoid_model(project: str) -> None:
    """What a team does to serve probabilities: a sigmoid on the single output, and the model
    contract saying so."""
    model_file, project_file = (os.path.join(project, name)
                                for name in ("model.py", "graceful_project.py"))
    with open(model_file) as handle:
        source = handle.read()
    source = source.replace('keras.layers.Dense(outputs, name="logits")',
                            'keras.layers.Dense(outputs, activation="sigmoid", name="probability")')
    with open(model_file, "w") as handle:
        handle.write(source)
    with open(project_file) as handle:
        source = handle.read()
    source = source.replace('ModelContract(scores="logits"', 'ModelContract(scores="probabilities"')
    with open(project_file, "w") as handle:
        handle.write(source)
    assert 'activation="sigmoid"' in open(model_file).read()


def _predicted_classes(model_dir: str, records: list[bytes], binary: bool) -> np.ndarray:
    """Class ids from the SavedModel's serving signature, independently of graceful.contract:
    binary sigmoid -> P(class 1) > 0.5, multiclass logits -> argmax."""
    serve = tf.saved_model.load(model_dir).signatures["serving_default"]
    [scores] = serve(examples=tf.constant(records)).values()
    scores = scores.numpy()
    if binary:
        assert scores.shape == (len(records), 1) and 0 <= scores.min() and scores.max() <= 1
        return (scores[:, 0] > 0.5).astype(int)
    assert scores.shape == (len(records), 3)
    return scores.argmax(axis=1)


def _numpy_count(run: history.RunRecord, home: str, binary: bool) -> dict:
    store = history.open_store(os.path.join(home, "metadata.sqlite"))
    models = {m.id: m for m in store.get_artifacts_by_type("Model")}
    [examples] = [e for e in store.get_artifacts_by_type("Examples")
                  if e.custom_properties["span"].int_value == run.span][-1:]
    files = sorted(glob.glob(os.path.join(examples.uri, "Split-eval", "*")))
    records = [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]
    labels = np.array([tf.train.Example.FromString(r).features.feature[tabular.LABEL]
                       .int64_list.value[0] for r in records])
    new, old = (_predicted_classes(os.path.join(models[i].uri, "Format-Serving"), records, binary)
                for i in (run.model_id, run.baseline_model_id))
    flipped = (old == labels) & (new != labels)
    return {"examples": len(labels), "negative_flips": int(flipped.sum()), "nfr": flipped.mean(),
            "new_accuracy": (new == labels).mean(), "old_accuracy": (old == labels).mean()}


@pytest.mark.parametrize("table, binary", [("wine", False), ("breast_cancer", True)])
def test_a_teams_csv_data_and_model_are_gated_end_to_end(table, binary, tmp_path, monkeypatch,
                                                         capsys):
    data_dir, project = str(tmp_path / "data"), str(tmp_path / table)
    class_names = tabular.write_spans(table, data_dir, num_spans=2)
    before = _tree(data_dir)
    assert cli.main(["init", project, "--csv", data_dir, "--label", tabular.LABEL,
                     "--id", tabular.ID, "--class-names", ",".join(class_names)]) == 0
    if binary:
        _make_sigmoid_model(project)
    monkeypatch.chdir(project)  # every command finds ./graceful_project.py

    assert cli.main(["run", "--span", "1", *QUICK]) == cli.EXIT_PUSHED
    status = cli.main(["run", "--latest", *QUICK])
    assert status in (cli.EXIT_PUSHED, cli.EXIT_BLOCKED)

    home = os.path.join(project, "graceful_home")
    first, second = history.runs(os.path.join(home, "metadata.sqlite"))
    assert (first.span, second.span) == (1, 2) and first.pushed
    # Trained against the served model with graceful's default method.
    assert second.baseline_model_id == first.model_id
    assert second.loss == TrainingParams().loss and second.reference_model_id == first.model_id
    with open(second.flip_report) as handle:
        report = json.load(handle)
    expected = _numpy_count(second, home, binary)
    summary = report["summary"]
    for key in ("examples", "negative_flips"):
        assert summary[key] == expected[key], key
    for key in ("nfr", "new_accuracy", "old_accuracy"):
        assert summary[key] == pytest.approx(expected[key], abs=1e-12), key
    # Push or block, as the flip gate (and, when it passed, the Evaluator) decided.
    assert bool(second.pushed) == (status == cli.EXIT_PUSHED)
    if not report["gate"]["blessed"]:
        assert status == cli.EXIT_BLOCKED
    # Each flipped example is named by the team's id column.
    assert len(report["flips"]) == expected["negative_flips"]
    assert all(isinstance(flip["id"], int) for flip in report["flips"])

    capsys.readouterr()
    assert cli.main(["history"]) == 0
    rows = capsys.readouterr().out.splitlines()[-2:]
    assert all(" model.py " in row for row in rows), rows  # the team's module, not an architecture
    assert cli.main(["report"]) == 0
    text = capsys.readouterr().out
    assert f"examples {expected['examples']}:" in text and class_names[0] in text, text
    served = sorted(os.listdir(os.path.join(home, "serving")))[-1]
    assert cli.main(["check-model", os.path.join(home, "serving", served)]) == 0
    form = "binary" if binary else "multiclass, 3 classes"
    assert re.search(form, capsys.readouterr().out)
    assert _tree(data_dir) == before
