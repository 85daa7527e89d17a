"""BaselineGuard: stops the run unless the baseline resolved from ML Metadata is the served model.

Why: every gate compares the candidate with a baseline that a resolver takes from ML Metadata (the
last blessed model). The promise is about the model being *served*. The two part ways when
- a run blessed a model and died before (or during) its push: the store has a blessed model that was
  never served (`graceful run` repairs this itself before it starts, see graceful.recovery; on other
  runners this guard stops the run and says how to repair it);
- the store was emptied, replaced or restored from an old backup: the serving directory holds a model
  the store does not know, and a run would train without a reference and push without comparing;
- the baseline's own files were deleted, or the serving directory was emptied.
In each case the run stops here, before training, with a message saying what disagrees and how to
recover. `unknown_serving_reason` is the explicit override: a non-empty reason lets the run go on
and is recorded in ML Metadata as this step's execution property.

`graceful rollback` moves both together: it serves the restored model and takes the newer models'
blessings out of resolution (graceful.rollback), so the baseline is again the served model.

A node of its own (not a check inside the Trainer) so that it works on every runner and shows up as
the failed step in `graceful history` and in lineage.
"""
from tfx import v1 as tfx
from tfx.utils import path_utils

from graceful import serving

OVERRIDE_HINT = ("If you know what serving/ holds and want to go on anyway, run again with "
                 "--accept-unknown-serving \"<why>\" (recorded in ML Metadata).")


class BaselineMismatchError(RuntimeError):
    """The model being served is not the baseline the run would be judged against."""


def baseline_problem(serving_dir: str, baseline_uri: str | None, baseline_id: int | None
                     ) -> str | None:
    """Why the served model and the resolved baseline disagree, or None when they agree."""
    served = serving.served_version_dir(serving_dir)
    if baseline_uri is None:
        if served is None:
            return None  # the first model: nothing served, nothing to compare with
        return (f"{served} is being served, but ML Metadata knows no pushed model: the metadata "
                "store was emptied, replaced or lost. Restore the store from a backup (the run "
                "would otherwise train without the served model as reference and push without "
                "comparing against it).")
    baseline_dir = path_utils.serving_model_path(baseline_uri)
    try:
        baseline_print = serving.fingerprint(baseline_dir)
    except FileNotFoundError as missing:
        return (f"the baseline model {baseline_id} (the last blessed model in ML Metadata) cannot be "
                f"read: {missing}. Its files were deleted or moved; restore {baseline_uri}.")
    if served is None:
        return (f"ML Metadata's baseline is model {baseline_id}, but {serving_dir} serves nothing: "
                "the served model was removed. Restore the serving directory.")
    try:
        served_print = serving.fingerprint(served)
    except FileNotFoundError as missing:
        return f"the served folder is not a complete model: {missing}."
    if served_print != baseline_print:
        return (f"{served} is not the baseline ML Metadata resolved (model {baseline_id}, "
                f"{baseline_uri}). Either a run blessed model {baseline_id} and stopped before its "
                "push completed (`graceful run` and `graceful reconcile` repair that), or a "
                "`graceful rollback` was stopped between its push and its record in ML Metadata "
                "(run the same rollback again), or the metadata store is not the one this serving "
                "directory was pushed from (restore it).")
    return None


@tfx.dsl.components.component
def BaselineGuard(serving_dir: tfx.dsl.components.Parameter[str],
                  unknown_serving_reason: tfx.dsl.components.Parameter[str] = "",
                  baseline_model: tfx.dsl.components.InputArtifact[
                      tfx.types.standard_artifacts.Model] = None) -> None:
    """Raises BaselineMismatchError unless the baseline is what `serving_dir` serves."""
    problem = baseline_problem(serving_dir, baseline_model.uri if baseline_model else None,
                               baseline_model.id if baseline_model else None)
    if problem is None:
        shown = f"model {baseline_model.id}" if baseline_model else "none (first model)"
        print(f"[baseline] the baseline is the served model: {shown}", flush=True)
    elif unknown_serving_reason.strip():
        print(f"[baseline] WARNING, overridden ({unknown_serving_reason}): {problem}", flush=True)
    else:
        raise BaselineMismatchError(f"The served model and ML Metadata disagree: {problem} "
                                    f"Nothing was trained or pushed. {OVERRIDE_HINT}")
