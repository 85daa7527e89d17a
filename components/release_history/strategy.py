"""LatestBlessedModelsStrategy: the last N released models, for flips against earlier releases.

TFX's LatestBlessedModelStrategy resolves the one newest Model that a ModelBlessing (blessed=1)
names: the baseline. This strategy is the same resolution keeping the newest `num_models` of them,
newest first, so the FlipEvaluator can measure the candidate against each (graceful.releases).
In this pipeline a blessing exists only for a model the Evaluator passed after the flip gate and
sign-off, and the AtomicPusher pushes exactly those: the blessed models are the pushed ones.
Rolled-back releases drop out: `graceful rollback` sets their blessings ABANDONED and TFX hands
resolvers LIVE artifacts only, on every runner.

A custom strategy, which TFX's Kubeflow v2 compiler cannot compile (it knows only Latest /
LatestBlessed): there, like the training window, the pipeline leaves it out (the report then has no
"history" section).
"""
from __future__ import annotations

from tfx.dsl.input_resolution.strategies import latest_blessed_model_strategy

_CURRENT_MODEL_ID = latest_blessed_model_strategy._CURRENT_MODEL_ID  # "current_model_id"
_BLESSED = latest_blessed_model_strategy._BLESSED  # "blessed"


class LatestBlessedModelsStrategy(latest_blessed_model_strategy.LatestBlessedModelStrategy):
    """{model key: the newest `num_models` blessed Models, newest first (by MLMD id), blessing
    key: their ModelBlessings}; both empty when no model is blessed yet."""

    def __init__(self, num_models: int = 1):
        if num_models < 1:
            raise ValueError(f"LatestBlessedModelsStrategy num_models must be 1 or more, got "
                             f"{num_models} (GateConfig.history_models)")
        self._num_models = num_models

    def _resolve(self, input_dict, model_channel_key: str, model_blessing_channel_key: str):
        blessings = {b.get_int_custom_property(_CURRENT_MODEL_ID): b
                     for b in sorted(input_dict[model_blessing_channel_key], key=lambda b: b.id)
                     if b.get_int_custom_property(_BLESSED) == 1}  # a model's newest blessing
        models = [m for m in sorted(input_dict[model_channel_key], key=lambda m: m.id,
                                    reverse=True) if m.id in blessings][:self._num_models]
        return {model_channel_key: models,
                model_blessing_channel_key: [blessings[m.id] for m in models]}
