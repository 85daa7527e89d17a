"""SpanWindowStrategy: a Resolver strategy that picks the training window of data spans from MLMD.

Why our own: ExampleGen ingests one span per run and records `span` as a custom property, which TFX's
span resolver functions read as 0 (so they collapse every span into one), and TFX's SpanRangeStrategy
keeps every re-ingested copy of a span. This strategy reads the custom property, keeps the newest
artifact of each span, and returns the spans of the window.
"""
from __future__ import annotations

from typing import Dict, List, Optional

from tfx import types
from tfx.dsl.components.common import resolver

SPAN = "span"


def span_of(artifact: types.Artifact) -> int:
    """ExampleGen records the span as a custom property; other producers may use the property."""
    if artifact.has_custom_property(SPAN):
        return artifact.get_int_custom_property(SPAN)
    return int(getattr(artifact, SPAN))


def window_spans(spans: list[int], last_span: int | None, num_spans: int) -> set[int]:
    """The spans of the window: the `num_spans` newest spans <= last_span (all spans if 0).

    `last_span=None` means the newest span present.
    """
    candidates = sorted({s for s in spans if last_span is None or s <= last_span})
    return set(candidates[-num_spans:] if num_spans > 0 else candidates)


class SpanWindowStrategy(resolver.ResolverStrategy):
    """Resolves the newest artifact of each span in the window, newest span first."""

    def __init__(self, num_spans: int = 0, last_span: Optional[int] = None):
        self._num_spans = num_spans
        self._last_span = last_span

    def resolve_artifacts(self, store, input_dict: Dict[str, List[types.Artifact]]
                          ) -> Optional[Dict[str, List[types.Artifact]]]:
        del store  # everything needed is on the artifacts
        result = {}
        for key, artifacts in input_dict.items():
            newest_per_span = {}
            for artifact in sorted(artifacts, key=lambda a: a.id):
                newest_per_span[span_of(artifact)] = artifact
            chosen = window_spans(list(newest_per_span), self._last_span, self._num_spans)
            result[key] = [newest_per_span[s] for s in sorted(chosen, reverse=True)]
        return result if all(result.values()) else None
