"""The ceiling of any Beam pass's throughput relative to the work inside it.

A one-stage pass (Create -> ParDo, the FlipEvaluator's shape) whose only element runs a given
callable — in benchmarks/flip_eval.py the raw floor itself. Its time minus the callable's is what the
runner adds per pass (start-up, translation, the bundle's end), so raw / (raw in Beam) is the best
ratio a Beam pass doing that work could reach on this runner and machine.

In-process runners only (the DirectRunner's in_memory mode): the callable is looked up in this
module's registry, not pickled, so the pass carries no data the real one would not.
"""
from __future__ import annotations

import time

import apache_beam as beam

_REGISTERED = {}


class _RunRegistered(beam.DoFn):
    def __init__(self, key: int):
        self._key = key

    def process(self, _):
        _REGISTERED[self._key]()


def seconds_in_beam(make_pipeline, work) -> float:
    """Wall time of a one-stage Beam pass (`make_pipeline()`) whose single element calls `work()`."""
    key = id(work)
    _REGISTERED[key] = work
    try:
        started = time.perf_counter()
        with make_pipeline() as pipeline:
            _ = (pipeline | "Work" >> beam.Create([key], reshuffle=False)
                 | "Run" >> beam.ParDo(_RunRegistered(key)))
        return time.perf_counter() - started
    finally:
        del _REGISTERED[key]
