"""ImportExampleGen's executor, naming the unreadable file when a span cannot be ingested.

Why: a truncated or garbled `.gz` span file makes Beam's TFRecord reader fail deep inside a worker
with kilobytes of hex and no file name, so whoever has to fix the data cannot tell which file.
When ingestion fails, this executor reads each input file of the span to its end (gzip, then the
TFRecord framing) and raises UnreadableSpanFileError naming the first bad file, why, and what to
do; if every file reads, the original error is re-raised. Checking only after a failure costs the
happy path nothing (an up-front check would read every span twice).
"""
from __future__ import annotations

import gzip
import os
import zlib

from tfx.components.example_gen.import_example_gen import executor as import_executor
from tfx.dsl.io import fileio
from tfx.proto import example_gen_pb2
from tfx.types import standard_component_specs
from tfx.utils import proto_utils

GZIP_MAGIC = b"\x1f\x8b"
CHUNK = 1 << 20


class UnreadableSpanFileError(RuntimeError):
    """A file of the span being ingested is not a readable gzipped TFRecord file."""


def gzip_problem(path: str) -> str | None:
    """Why `path` is not a complete GZIP stream, or None when it decompresses to its end."""
    with fileio.open(path, "rb") as raw:
        if raw.read(2) != GZIP_MAGIC:
            return "not a GZIP file (it does not start with the GZIP magic bytes)"
    try:
        with gzip.open(fileio.open(path, "rb"), "rb") as handle:
            while handle.read(CHUNK):
                pass
    except EOFError:
        return "truncated: not a complete GZIP stream"
    except (OSError, zlib.error) as error:
        return f"corrupt GZIP data ({error})"
    return None


def record_problem(path: str) -> str | None:
    """Why the decompressed `path` is not a sequence of TFRecords, or None if it reads to the end."""
    import tensorflow as tf

    try:
        for _ in tf.data.TFRecordDataset(path, compression_type="GZIP"):
            pass
    except tf.errors.OpError as error:
        return f"not a valid TFRecord file ({error.message.splitlines()[0]})"
    return None


def file_problem(path: str) -> str | None:
    return gzip_problem(path) or record_problem(path)


def split_files(exec_properties: dict) -> list[tuple[str, str]]:
    """(split name, file path) of every input file, from the driver's span-resolved patterns."""
    input_config = example_gen_pb2.Input()
    proto_utils.json_to_proto(exec_properties[standard_component_specs.INPUT_CONFIG_KEY],
                              input_config)
    base = exec_properties[standard_component_specs.INPUT_BASE_KEY]
    return [(split.name, path) for split in input_config.splits
            for path in sorted(fileio.glob(os.path.join(base, split.pattern)))]


def find_unreadable(exec_properties: dict) -> str | None:
    """The message for the first unreadable input file of the span, or None if all read."""
    span = exec_properties.get("span", "?")
    for split, path in split_files(exec_properties):
        problem = file_problem(path)
        if problem:
            return (f"span {span}, split '{split}': cannot read {path}: {problem}. Nothing was "
                    "ingested or trained. Replace the file with a complete gzipped TFRecord "
                    "file, or remove the span folder.")
    return None


class Executor(import_executor.Executor):
    """ImportExampleGen's executor; on failure, names the unreadable input file if there is one."""

    def Do(self, input_dict, output_dict, exec_properties) -> None:
        try:
            super().Do(input_dict, output_dict, exec_properties)
        except Exception as error:  # Beam wraps reader errors in its own types
            message = find_unreadable(exec_properties)
            if message is None:
                raise
            raise UnreadableSpanFileError(message) from error
