"""Custom TFX components of the graceful pipeline, one folder each (spec, executor, component).

Public names, for graceful's pipeline and for any other TFX pipeline:
    from graceful.components import FlipEvaluator, HumanSignOff, GracefulTrainer, DataGate
    from graceful.components import SignOffRelease  # acts on a deferred sign-off's decision
    from graceful.components import EdgeConverter, EdgePusher  # the edge (TFLite) branch

Loaded on first use (PEP 562), so importing one component does not import them all.
"""
import importlib

_PUBLIC = {
    "AtomicPusher": "atomic_pusher.component",
    "BaselineGuard": "baseline_guard.component",
    "DataGate": "data_gate.component",
    "EdgeConverter": "edge_converter.component",
    "EdgePusher": "edge_pusher.component",
    "FlipEvaluator": "flip_evaluator.component",
    "GracefulTrainer": "graceful_trainer.component",
    "HumanSignOff": "human_signoff.component",
    "LatestEdgePushStrategy": "edge_pusher.strategy",
    "SignOffRelease": "sign_off_release.component",
    "SpanWindowStrategy": "span_window.strategy",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_PUBLIC[name]}"), name)
