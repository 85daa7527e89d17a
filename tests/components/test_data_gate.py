"""DataGate's data checks on real TFDV statistics of tiny spans."""
import numpy as np
import pandas as pd
import pytest
import tensorflow_data_validation as tfdv

from graceful.components.data_gate import checks
from graceful.components.data_gate.component import gate_message
from graceful.pipeline.configs import SCHEMA_DIR

SCHEMA = tfdv.load_schema_text(str(SCHEMA_DIR / "schema.pbtxt"))
CLASSES = checks.label_classes(SCHEMA, "label")


def _stats(labels, schema=None, column="label"):
    values = np.asarray(labels, dtype=object if labels and isinstance(labels[0], str) else np.int64)
    frame = pd.DataFrame({column: values})
    options = tfdv.StatsOptions(schema=schema) if schema else tfdv.StatsOptions()
    return tfdv.generate_statistics_from_dataframe(frame, stats_options=options)


def _check(splits, min_examples=5, classes=CLASSES, label_key="label"):
    return checks.check_statistics(splits, 4, min_examples, label_key, classes)


def test_label_classes_come_from_the_schemas_categorical_domain():
    assert CLASSES == [str(c) for c in range(10)]
    assert checks.label_classes(SCHEMA, "pixels") == []  # not categorical: no class check


def test_label_classes_come_from_the_data_contracts_class_names():
    schema = tfdv.infer_schema(_stats(["a", "b"], column="species"))
    assert checks.label_classes(schema, "species", ("Adelie", "Gentoo")) == ["Adelie", "Gentoo"]
    assert checks.label_classes(SCHEMA, "label", ("no", "yes")) == ["0", "1"]  # integer ids


def test_missing_string_label_classes_are_listed_by_name():
    classes = ["Adelie", "Chinstrap", "Gentoo"]
    [problem] = _check({"train": _stats(["Adelie", "Gentoo"] * 5, column="species")},
                       classes=classes, label_key="species")
    assert "no examples of label class(es) Chinstrap of 'species'" in problem


def test_a_complete_span_passes():
    every_class = list(range(10)) * 3
    assert _check({"train": _stats(every_class), "eval": _stats(every_class)}) == []


def test_too_few_and_zero_examples_are_named_with_span_split_and_setting():
    problems = _check({"train": _stats([1, 2, 3]), "eval": _stats([])})
    assert problems == [
        "span 4, split 'train': 3 examples, fewer than the minimum 5 (data_checks.min_examples); "
        "add data to the span or lower the minimum",
        "span 4, split 'eval': 0 examples, fewer than the minimum 5 (data_checks.min_examples); "
        "add data to the span or lower the minimum"]


@pytest.mark.parametrize("schema", [None, SCHEMA], ids=["numeric stats", "categorical stats"])
@pytest.mark.parametrize("labels, missing", [
    ([3] * 20, "0, 1, 2, 4, 5, 6, 7, 8, 9"),           # one class
    ([0, 1, 2, 3, 5, 6, 7, 8, 9] * 5, "4"),            # a class inside the range
    ([0, 1, 2, 3, 4, 5, 6, 7, 8] * 5, "9"),            # the top class
])
def test_missing_label_classes_are_listed(schema, labels, missing):
    [problem] = _check({"train": _stats(labels, schema)})
    assert problem.startswith(f"span 4, split 'train': no examples of label class(es) {missing} "
                              "of 'label' (its classes: 0, 1, 2, 3, 4, 5, 6, 7, 8, 9; "
                              "data_checks.require_all_classes)")


def test_a_single_example_of_a_class_is_enough():
    assert _check({"train": _stats(list(range(9)) * 3 + [9])}) == []


def test_class_check_off_when_no_classes_are_asked_for():
    assert _check({"train": _stats([3] * 20)}, classes=[]) == []


def test_message_says_what_failed_and_what_to_do():
    message = gate_message(["train: feature 'pixels': Out-of-range values (...)"],
                           ["span 4, split 'train': 3 examples, fewer than the minimum 50 (...)"])
    assert message.startswith("The new data span breaks the schema in schemas/ and fails the data "
                              "checks; nothing was trained or pushed.\n  span 4, split 'train'")
    assert "update schemas/schema.pbtxt" in message and "PipelineConfig.data_checks" in message
