"""The embedded default dataset: Fashion-MNIST, turned into TFX data spans.

Why spans: scheduled retraining is only real if new data arrives over time. The 60k training images are
cut into consecutive spans (span 1 = the first `span_size` images, span 2 = the next, ...), each a folder
of gzipped tf.Example TFRecords that ExampleGen's `{SPAN}` pattern picks up. The 10k test images are the
evaluation split of every span, so every run is measured on the same fixed data.

The files are read offline from Debian's `dataset-fashion-mnist` package (MIT licence), or from any
directory holding the four standard `*-ubyte.gz` files.
"""
from __future__ import annotations

import gzip
import os
import shutil
import struct
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
DATA_DIR_ENV = "GRACEFUL_FASHION_MNIST_DIR"
FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
SPAN_DIR_FORMAT = "span-{span}"
TRAIN_SPLIT, EVAL_SPLIT = "train", "eval"


class DatasetNotFoundError(FileNotFoundError):
    """Raised with instructions when the Fashion-MNIST files cannot be found."""


@dataclass(frozen=True)
class Dataset:
    """Images as uint8 [n, 784], labels as int64 [n], ids as the row index in the source file."""

    images: np.ndarray
    labels: np.ndarray
    ids: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, start: int, stop: int) -> "Dataset":
        return Dataset(self.images[start:stop], self.labels[start:stop], self.ids[start:stop])


def find_source_dir(explicit: str | os.PathLike | None = None) -> Path:
    """Returns the directory with the four Fashion-MNIST files, or says exactly how to get them.

    A directory the user named (--data-dir, $GRACEFUL_FASHION_MNIST_DIR) must hold them: falling
    back to Debian's copy would silently train on other data than the user pointed at.
    """
    named = explicit or os.environ.get(DATA_DIR_ENV)
    if named:
        missing = [name for name in FILES.values() if not (Path(named) / name).is_file()]
        if missing:
            raise DatasetNotFoundError(
                f"{named} does not hold the Fashion-MNIST files ({', '.join(missing)} missing); "
                "put the four *-ubyte.gz files there, or leave out --data-dir / "
                f"{DATA_DIR_ENV} to use Debian's dataset-fashion-mnist.")
        return Path(named)
    if all((DEBIAN_DIR / name).is_file() for name in FILES.values()):
        return DEBIAN_DIR
    raise DatasetNotFoundError(
        f"Fashion-MNIST files not found (looked in: {DEBIAN_DIR}). Install them with "
        "`sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or put "
        f"{', '.join(FILES.values())} in a directory and pass --data-dir DIR "
        f"or set {DATA_DIR_ENV}=DIR.")


def _read_idx(path: Path, magic: int) -> np.ndarray:
    with gzip.open(path, "rb") as handle:
        raw = handle.read()
    found_magic, count = struct.unpack(">II", raw[:8])
    if found_magic != magic:
        raise ValueError(f"{path} is not an IDX file of the expected kind (magic {found_magic}, "
                         f"expected {magic}); re-download the Fashion-MNIST files.")
    header = 16 if magic == 2051 else 8
    data = np.frombuffer(raw, dtype=np.uint8, offset=header)
    return data.reshape(count, -1) if magic == 2051 else data


def load(split: str, source_dir: str | os.PathLike | None = None) -> Dataset:
    """Loads the `train` or `test` split as a Dataset."""
    directory = find_source_dir(source_dir)
    images = _read_idx(directory / FILES[f"{split}_images"], 2051)
    labels = _read_idx(directory / FILES[f"{split}_labels"], 2049).astype(np.int64)
    if len(images) != len(labels):
        raise ValueError(f"{directory}: {len(images)} images but {len(labels)} labels in {split}.")
    return Dataset(images, labels, np.arange(len(labels), dtype=np.int64))


def serialize(images: np.ndarray, labels: np.ndarray, ids: np.ndarray,
              drop_feature: str | None = None) -> list[bytes]:
    """tf.Example bytes with `pixels` (784 ints), `label` and `example_id`.

    `drop_feature` leaves a feature out: it exists to make corrupt spans for validation tests.
    """
    import tensorflow as tf

    def int_feature(values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values))

    records = []
    for image, label, example_id in zip(images, labels, ids):
        features = {"pixels": int_feature(image.tolist()), "label": int_feature([int(label)]),
                    "example_id": int_feature([int(example_id)])}
        features.pop(drop_feature, None)
        records.append(tf.train.Example(
            features=tf.train.Features(feature=features)).SerializeToString())
    return records


def write_tfrecord(path: Path, records: list[bytes]) -> None:
    """Writes atomically (a temp file of this writer's own, then a rename) so a half-written file is
    never picked up, even when two processes write the same path at once."""
    import tensorflow as tf

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")
    with tf.io.TFRecordWriter(str(partial), options="GZIP") as writer:
        for record in records:
            writer.write(record)
    partial.rename(path)


def span_dir(data_root: str | os.PathLike, span: int) -> Path:
    return Path(data_root) / SPAN_DIR_FORMAT.format(span=span)


def existing_spans(data_root: str | os.PathLike) -> list[int]:
    """Span numbers whose folder holds both splits, in increasing order."""
    spans = []
    for child in Path(data_root).glob("span-*"):
        suffix = child.name.split("-", 1)[1]
        complete = all(any((child / s).glob("*.gz")) for s in (TRAIN_SPLIT, EVAL_SPLIT))
        if suffix.isdigit() and complete:
            spans.append(int(suffix))
    return sorted(spans)


class SpanExistsError(FileExistsError):
    """A span folder already exists: spans are immutable once written."""


def write_span(data_root: str | os.PathLike, span: int, train: Dataset, evaluation: Dataset,
               drop_feature: str | None = None) -> Path:
    """Writes one span folder: `train/` with the span's own images, `eval/` with the fixed test set.

    Atomic as a whole: both splits are written into a hidden folder of this writer's own, which is
    then renamed to `span-N`. ExampleGen's `span-{SPAN}` pattern never sees a partial span, and when
    two processes write the same span at once, one rename wins and the other's copy is discarded
    (SpanExistsError), so the span is never a mix of both.
    """
    folder = span_dir(data_root, span)
    if folder.exists():
        raise SpanExistsError(f"{folder} already exists; spans are immutable once written (remove "
                              "the folder to write it again).")
    staging = Path(data_root) / f".tmp-{folder.name}-{uuid.uuid4().hex}"
    try:
        for split, data in ((TRAIN_SPLIT, train), (EVAL_SPLIT, evaluation)):
            records = serialize(data.images, data.labels, data.ids, drop_feature=drop_feature)
            write_tfrecord(staging / split / "data.tfrecord.gz", records)
        try:
            staging.rename(folder)
        except OSError:  # another writer renamed its complete copy first
            raise SpanExistsError(f"{folder} was written by another process meanwhile; its copy "
                                  "was kept.") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def prepare_spans(data_root: str | os.PathLike, num_spans: int, span_size: int,
                  eval_size: int | None = None, source_dir: str | os.PathLike | None = None,
                  log=print) -> list[int]:
    """Writes spans 1..num_spans that do not exist yet; returns all span numbers present.

    Spans are consecutive, non-overlapping slices of the training images, so span k is "new data".
    """
    train = load("train", source_dir)
    if num_spans * span_size > len(train):
        raise ValueError(f"{num_spans} spans of {span_size} need {num_spans * span_size} training "
                         f"images; Fashion-MNIST has {len(train)}. Lower --num-spans or --span-size.")
    test = load("test", source_dir)
    evaluation = test.take(0, eval_size or len(test))
    present = set(existing_spans(data_root))
    for span in range(1, num_spans + 1):
        if span in present:
            continue
        part = train.take((span - 1) * span_size, span * span_size)
        try:
            folder = write_span(data_root, span, part, evaluation)
        except SpanExistsError as exists:
            if span in existing_spans(data_root):
                log(f"[data] span {span}: {exists}")
                continue
            raise SpanExistsError(f"{span_dir(data_root, span)} exists but lacks a train or eval "
                                  "split of *.gz files; remove it and run again.") from None
        log(f"[data] wrote span {span}: {len(part)} training + {len(evaluation)} eval examples "
            f"-> {folder}")
    return existing_spans(data_root)
