"""The Fashion-MNIST loader and span writer, on the real files from Debian's package."""
import numpy as np
import pytest
import tensorflow as tf

from graceful import data


def _read(path):
    return [tf.train.Example.FromString(r.numpy())
            for r in tf.data.TFRecordDataset(str(path), compression_type="GZIP")]


def test_load_reads_the_standard_files():
    test = data.load("test")
    assert test.images.shape == (10000, 784) and test.images.dtype == np.uint8
    assert set(np.unique(test.labels)) == set(range(10))
    assert test.ids[0] == 0 and test.ids[-1] == 9999


def test_prepare_spans_cuts_consecutive_slices(tmp_path):
    spans = data.prepare_spans(tmp_path, num_spans=2, span_size=50, eval_size=20, log=lambda _: None)
    assert spans == [1, 2]
    train = data.load("train")
    span2 = _read(tmp_path / "span-2" / "train" / "data.tfrecord.gz")
    ids = [e.features.feature["example_id"].int64_list.value[0] for e in span2]
    assert ids == list(range(50, 100))
    first = span2[0].features.feature
    assert list(first["pixels"].int64_list.value) == train.images[50].tolist()
    assert first["label"].int64_list.value[0] == train.labels[50]
    assert len(_read(tmp_path / "span-1" / "eval" / "data.tfrecord.gz")) == 20


def test_prepare_spans_keeps_existing_spans(tmp_path):
    data.prepare_spans(tmp_path, num_spans=1, span_size=10, eval_size=5, log=lambda _: None)
    before = (tmp_path / "span-1" / "train" / "data.tfrecord.gz").stat().st_mtime_ns
    written = []
    data.prepare_spans(tmp_path, num_spans=2, span_size=10, eval_size=5, log=written.append)
    assert (tmp_path / "span-1" / "train" / "data.tfrecord.gz").stat().st_mtime_ns == before
    assert len(written) == 1 and "span 2" in written[0]


def test_drop_feature_makes_a_corrupt_span(tmp_path):
    test = data.load("test").take(0, 3)
    data.write_span(tmp_path, 7, test, test, drop_feature="pixels")
    example = _read(tmp_path / "span-7" / "train" / "data.tfrecord.gz")[0]
    assert "pixels" not in example.features.feature and "label" in example.features.feature


def test_missing_files_say_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "nowhere")
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    with pytest.raises(data.DatasetNotFoundError, match="apt-get install dataset-fashion-mnist"):
        data.find_source_dir()


def test_a_named_folder_without_the_files_is_an_error_not_a_fallback(tmp_path, monkeypatch):
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    assert data.find_source_dir() == data.DEBIAN_DIR  # the embedded default is installed
    with pytest.raises(data.DatasetNotFoundError, match=f"{tmp_path} does not hold the "
                                                        "Fashion-MNIST files"):
        data.find_source_dir(tmp_path)
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path))
    with pytest.raises(data.DatasetNotFoundError, match="does not hold"):
        data.find_source_dir()


def test_too_many_spans_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="Lower --num-spans or --span-size"):
        data.prepare_spans(tmp_path, num_spans=4, span_size=20000, log=lambda _: None)


def test_incomplete_span_folders_are_ignored(tmp_path):
    (tmp_path / "span-3" / "train").mkdir(parents=True)
    assert data.existing_spans(tmp_path) == []


def _write_span_1(data_root, size):
    """Run in another process: prepares span 1 of `size` examples (what `graceful run` does)."""
    data.prepare_spans(data_root, num_spans=1, span_size=size, eval_size=size // 2,
                       log=lambda _: None)


def test_two_processes_writing_the_same_span_leave_one_complete_copy(tmp_path):
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_write_span_1, args=(str(tmp_path), 3000)) for _ in range(2)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(120)
    assert [w.exitcode for w in writers] == [0, 0]
    assert data.existing_spans(tmp_path) == [1]
    train = _read(tmp_path / "span-1" / "train" / "data.tfrecord.gz")
    evaluation = _read(tmp_path / "span-1" / "eval" / "data.tfrecord.gz")
    assert len(train) == 3000 and len(evaluation) == 1500
    assert [e.features.feature["example_id"].int64_list.value[0] for e in train] == list(range(3000))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["span-1"], "no staging folder is left"
    assert sorted(p.name for p in (tmp_path / "span-1" / "train").iterdir()) == ["data.tfrecord.gz"]


def test_a_written_span_is_never_overwritten(tmp_path):
    test = data.load("test").take(0, 20)
    data.write_span(tmp_path, 3, test, test)
    before = (tmp_path / "span-3" / "train" / "data.tfrecord.gz").read_bytes()
    with pytest.raises(data.SpanExistsError, match="span-3 already exists; spans are immutable"):
        data.write_span(tmp_path, 3, test.take(0, 5), test.take(0, 5))
    assert (tmp_path / "span-3" / "train" / "data.tfrecord.gz").read_bytes() == before
