"""Spans are found from the data contract's patterns exactly as TFX's ExampleGen numbers them."""
import datetime

import numpy as np
import pytest

from graceful import data, spans
from graceful.contract import DataContract
from graceful.pipeline.configs import fashion_mnist_data


def csv_contract(train="span-{SPAN}/train/*.csv", evaluation="span-{SPAN}/eval/*.csv"):
    return DataContract(format="csv", train_pattern=train, eval_pattern=evaluation)


def touch(root, *paths):
    for path in paths:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text("a,label\n1,0\n")


def test_a_span_needs_files_for_both_splits(tmp_path):
    touch(tmp_path, "span-1/train/a.csv", "span-1/eval/a.csv", "span-2/train/a.csv",
          "span-3/eval/a.csv", "span-12/train/x.csv", "span-12/eval/y.csv",
          "span-4/train/notes.txt", "span-4/eval/a.csv", "spanx-5/train/a.csv")
    (tmp_path / "span-6" / "train").mkdir(parents=True)  # an empty split is no split
    touch(tmp_path, "span-6/eval/a.csv")
    assert spans.find_spans(str(tmp_path), csv_contract()) == [1, 12]


def test_no_root_or_no_files_means_no_spans(tmp_path):
    assert spans.find_spans(str(tmp_path / "missing"), csv_contract()) == []
    assert spans.find_spans(str(tmp_path), csv_contract()) == []


def test_date_spans_are_numbered_as_tfx_numbers_them(tmp_path):
    from tfx.components.example_gen import utils

    touch(tmp_path, "2024-01-05/train/a.csv", "2024-01-05/eval/a.csv",
          "2023-12-31/train/a.csv", "2023-12-31/eval/a.csv")
    contract = csv_contract("{YYYY}-{MM}-{DD}/train/*.csv", "{YYYY}-{MM}-{DD}/eval/*.csv")
    found = spans.find_spans(str(tmp_path), contract)
    assert found == [utils.date_to_span_number(2023, 12, 31), utils.date_to_span_number(2024, 1, 5)]
    assert spans.date_of_span(found[1]) == datetime.date(2024, 1, 5)
    assert spans.span_files(str(tmp_path), contract.train_pattern, found[1]) == [
        str(tmp_path / "2024-01-05" / "train" / "a.csv")]


def test_date_parts_without_separators(tmp_path):
    touch(tmp_path, "20240229/train/a.csv", "20240229/eval/a.csv")
    contract = csv_contract("{YYYY}{MM}{DD}/train/*.csv", "{YYYY}{MM}{DD}/eval/*.csv")
    assert spans.find_spans(str(tmp_path), contract) == [
        spans.span_of_date(datetime.date(2024, 2, 29))]


def test_an_impossible_date_is_named(tmp_path):
    touch(tmp_path, "2024-02-30/train/a.csv", "2024-02-30/eval/a.csv")
    contract = csv_contract("{YYYY}-{MM}-{DD}/train/*.csv", "{YYYY}-{MM}-{DD}/eval/*.csv")
    with pytest.raises(spans.SpanError, match="2024-02-30/train/a.csv: not a valid date span"):
        spans.find_spans(str(tmp_path), contract)


def test_a_zero_padded_span_is_an_error_not_a_silent_skip(tmp_path):
    touch(tmp_path, "span-01/train/a.csv", "span-01/eval/a.csv")
    with pytest.raises(spans.SpanError, match="'01' is zero-padded.*Rename it to 1"):
        spans.find_spans(str(tmp_path), csv_contract())


def test_a_relative_root_works(tmp_path, monkeypatch):
    touch(tmp_path, "data/span-3/train/a.csv", "data/span-3/eval/a.csv")
    monkeypatch.chdir(tmp_path)
    assert spans.find_spans("data", csv_contract()) == [3]
    assert spans.find_spans("./data/", csv_contract()) == [3]


def test_the_demo_spans_are_found_by_the_demo_contract(tmp_path):
    tiny = data.Dataset(np.zeros((2, 784), np.uint8), np.array([0, 1]), np.array([0, 1]))
    for span in (1, 2):
        data.write_span(tmp_path, span, tiny, tiny)
    assert spans.find_spans(str(tmp_path), fashion_mnist_data()) == data.existing_spans(tmp_path)
