"""Which data spans exist, read from the data contract's patterns the way TFX's ExampleGen reads them.

Why here and not in ExampleGen: the CLI must know the spans before it builds a pipeline (`run` on
the newest, `run --latest` on the newest not yet trained on, a clear error when there are none),
and it must find exactly the spans ExampleGen would ingest. A span counts once both the train and
the eval pattern match at least one file for it.

Span numbers follow TFX (tfx/components/example_gen/utils.py): `{SPAN}` is the number itself; a
date span (`{YYYY}`, `{MM}`, `{DD}`) is the number of days since 1970-01-01. `root` may be a local
folder or a URI tf.io.gfile reads (gs://, s3://, ...). TensorFlow is imported only when listing.
"""
from __future__ import annotations

import datetime
import re

from graceful import locations
from graceful.contract import DataContract

__all__ = ["SpanError", "date_of_span", "find_spans", "span_files", "span_glob", "span_of_date"]

_EPOCH = datetime.date(1970, 1, 1)
_TOKENS = re.compile(r"(\{SPAN\}|\{YYYY\}|\{MM\}|\{DD\}|\*|\?)")
_TOKEN_REGEX = {"{SPAN}": r"(?P<span>\d+)", "{YYYY}": r"(?P<year>\d{4})",
                "{MM}": r"(?P<month>\d{2})", "{DD}": r"(?P<day>\d{2})",
                "*": r"[^/]*", "?": r"[^/]"}


class SpanError(ValueError):
    """A file matches a span pattern but names no valid span (a bad date, a zero-padded number)."""


def span_of_date(date: datetime.date) -> int:
    """TFX's span number of a date span: days since the Unix epoch."""
    return (date - _EPOCH).days


def date_of_span(span: int) -> datetime.date:
    return _EPOCH + datetime.timedelta(days=span)


def find_spans(root: str, data: DataContract) -> list[int]:
    """Span numbers for which both the train and the eval pattern match files under `root`,
    in increasing order ([] when there are none or `root` does not exist)."""
    train = _spans(root, data.train_pattern)
    return sorted(train & _spans(root, data.eval_pattern))


def span_glob(root: str, pattern: str, span: int) -> str:
    """The glob of one span's files for `pattern` (a train or eval pattern), as ExampleGen fills
    it for a static range."""
    filled = pattern.replace("{SPAN}", str(span))
    if "{YYYY}" in filled:
        date = date_of_span(span)
        filled = (filled.replace("{YYYY}", f"{date.year:04d}").replace("{MM}", f"{date.month:02d}")
                  .replace("{DD}", f"{date.day:02d}"))
    return _join(root, filled)


def span_files(root: str, pattern: str, span: int) -> list[str]:
    """The files of one span that `pattern` matches."""
    import tensorflow as tf

    return sorted(tf.io.gfile.glob(span_glob(root, pattern, span)))


def _spans(root: str, pattern: str) -> set[int]:
    import tensorflow as tf

    full = _join(root, pattern)
    wildcard = _TOKENS.sub(lambda m: "?" if m.group() == "?" else "*", full)
    matcher = re.compile(_regex(full))
    spans = set()
    for path in tf.io.gfile.glob(wildcard):
        match = matcher.fullmatch(path)
        if match:
            spans.add(_span_number(match, path))
    return spans


def _regex(pattern: str) -> str:
    """A glob pattern with TFX's span placeholders -> a regex capturing the span's parts."""
    return "".join(_TOKEN_REGEX.get(part, re.escape(part)) for part in _TOKENS.split(pattern))


def _span_number(match: re.Match, path: str) -> int:
    parts = match.groupdict()
    if parts.get("span") is not None:
        token = parts["span"]
        if token != str(int(token)):
            raise SpanError(f"{path}: span number {token!r} is zero-padded; ExampleGen would not "
                            f"ingest it as span {int(token)}. Rename it to {int(token)}.")
        return int(token)
    try:
        date = datetime.date(int(parts["year"]), int(parts["month"]), int(parts["day"]))
    except ValueError as error:
        raise SpanError(f"{path}: not a valid date span ({error})") from None
    return span_of_date(date)


def _join(root: str, pattern: str) -> str:
    """Local roots are made absolute: the glob returns them so, and the regex must match that."""
    return locations.absolute(root).rstrip("/") + "/" + pattern.lstrip("/")
