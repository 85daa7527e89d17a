"""graceful: model updates that do not break what the old model got right."""

# graceful's artifact types, importable as graceful.<Type>. On Kubeflow, the container entrypoint
# rebuilds an artifact of a custom type by importing its type name as a class path
# (tfx/orchestration/kubeflow/v2/container/kubeflow_v2_entrypoint_utils.py), and TFX's compiler allows
# only "<package>.<Class>" there (a KFP schema title): "graceful.FlipReport" must import. Loaded on
# first use, so that `import graceful.flips` stays free of TFX.
_ARTIFACT_TYPES = {"FlipReport": "graceful.components.flip_evaluator.component",
                   "FlipBlessing": "graceful.components.flip_evaluator.component",
                   "SignOff": "graceful.components.human_signoff.component",
                   "EdgeModel": "graceful.components.edge_converter.component",
                   "EdgePush": "graceful.components.edge_converter.component"}


def __getattr__(name: str):
    if name in _ARTIFACT_TYPES:
        import importlib

        return getattr(importlib.import_module(_ARTIFACT_TYPES[name]), name)
    raise AttributeError(f"module 'graceful' has no attribute {name!r}")
