"""LatestEdgePushStrategy: the previously pushed edge model, for the EdgeConverter's second check.

Resolves, among the EdgePush artifacts TFX hands the resolver (LIVE ones only, on every runner),
the newest one with pushed=1: the .tflite the edge destination serves now. Rollback semantics:
`graceful rollback` restores a cloud model and withdraws newer cloud releases, but it does not touch
the edge destination, which keeps serving the last pushed .tflite; so devices still run that model,
and it remains what the next edge model is compared against. An EdgePush set to a non-LIVE state
(e.g. by hand, to withdraw an edge release) drops out, and the one before it is resolved. None
pushed yet: nothing is resolved and the check against a previous edge model is skipped.
"""
from __future__ import annotations

from typing import Dict, List, Optional

from tfx import types
from tfx.dsl.components.common import resolver

from graceful.serving import PUSHED


def latest_pushed(artifacts: List[types.Artifact]) -> List[types.Artifact]:
    """[the newest artifact (highest id) with pushed=1], or []."""
    pushed = [a for a in artifacts if a.has_custom_property(PUSHED)
              and a.get_int_custom_property(PUSHED) == 1]
    return [max(pushed, key=lambda a: a.id)] if pushed else []


class LatestEdgePushStrategy(resolver.ResolverStrategy):
    """{key: [the newest EdgePush that pushed]} for each input key (empty when none did)."""

    def resolve_artifacts(self, store, input_dict: Dict[str, List[types.Artifact]]
                          ) -> Optional[Dict[str, List[types.Artifact]]]:
        return {key: latest_pushed(artifacts) for key, artifacts in input_dict.items()}
