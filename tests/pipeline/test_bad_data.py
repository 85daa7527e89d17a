"""End to end: bad spans are stopped before the Trainer with a message saying what and where, and a
span DataGate rejected never trains in a later run. Real LocalDagRunner runs on tiny spans."""
import dataclasses
import os
import re

import numpy as np
import pytest

from graceful.components.data_gate.component import DataAnomaliesError, DataChecksError
from graceful.components.span_reader.executor import UnreadableSpanFileError
from graceful import data, history
from graceful.pipeline import local_runner
from tests.conftest import run_span

pytestmark = pytest.mark.slow


def _pushed_versions(config):
    return sorted(os.listdir(config.serving_dir)) if os.path.isdir(config.serving_dir) else []


def _run(config, span):
    local_runner.run(dataclasses.replace(config, span=span), log=lambda _: None)


def _assert_nothing_trained(config, pushed_before):
    last = history.runs(config.metadata_uri)[-1]
    assert last.model_id is None and not last.pushed
    assert _pushed_versions(config) == pushed_before


def _write(config, span, train, evaluation):
    return data.write_span(config.data_root, span, train, evaluation)


def test_rejected_span_never_trains_in_a_later_run(tiny_config):
    run_span(tiny_config, span=1)
    pushed = _pushed_versions(tiny_config)
    test = data.load("test").take(0, 300)
    images = test.images.astype(np.int64)
    images[0, 0] = 300  # outside the schema's pixel domain 0..255
    _write(tiny_config, 2, data.Dataset(images, test.labels, test.ids), test)
    with pytest.raises(DataAnomaliesError, match="feature 'pixels'"):
        _run(tiny_config, 2)
    _assert_nothing_trained(tiny_config, pushed)

    run_span(tiny_config, span=3)
    third = history.runs(tiny_config.metadata_uri)[2]
    assert third.span == 3 and third.training_spans == [1, 3]
    assert third.pushed and len(_pushed_versions(tiny_config)) == 2


def test_unreadable_span_files_are_named(tiny_config):
    run_span(tiny_config, span=1)
    pushed = _pushed_versions(tiny_config)
    test = data.load("test").take(0, 300)
    truncated = _write(tiny_config, 2, test, test) / "train" / "data.tfrecord.gz"
    truncated.write_bytes(truncated.read_bytes()[:truncated.stat().st_size // 2])
    garbled = _write(tiny_config, 3, test, test) / "eval" / "data.tfrecord.gz"
    garbled.write_bytes(np.random.default_rng(0).bytes(5000))
    for span, path, problem in ((2, truncated, "truncated: not a complete GZIP stream"),
                                (3, garbled, "not a GZIP file")):
        with pytest.raises(UnreadableSpanFileError) as error:
            _run(tiny_config, span)
        message = str(error.value)
        assert str(path) in message and problem in message and "remove the span folder" in message
        assert history.runs(tiny_config.metadata_uri)[-1].failed_step == "ImportExampleGen"
        _assert_nothing_trained(tiny_config, pushed)


def test_small_empty_and_one_class_spans_are_stopped(tiny_config):
    run_span(tiny_config, span=1)
    pushed = _pushed_versions(tiny_config)
    full = data.load("test")
    test = full.take(0, 300)
    one_class = np.flatnonzero(full.labels == 0)[:100]
    cases = {
        2: ((test.take(0, 0), test), "span 2, split 'train': 0 examples, fewer than the minimum 50"),
        3: ((test.take(0, 3), test), "span 3, split 'train': 3 examples, fewer than the minimum 50"),
        4: ((test, data.Dataset(full.images[one_class], full.labels[one_class],
                                full.ids[one_class])),
            "span 4, split 'eval': no examples of label class(es) 1, 2, 3, 4, 5, 6, 7, 8, 9"),
    }
    for span, ((train, evaluation), expected) in cases.items():
        _write(tiny_config, span, train, evaluation)
        with pytest.raises(DataChecksError, match=re.escape(expected)):
            _run(tiny_config, span)
        assert history.runs(tiny_config.metadata_uri)[-1].failed_step == "DataGate"
        _assert_nothing_trained(tiny_config, pushed)
