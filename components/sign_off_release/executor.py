"""SignOffRelease's executor: check the request and the candidate, claim the release once, and record
the outcome as a SignOff artifact (see component.py for the rules and why)."""
from __future__ import annotations

import time

from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils

from graceful import signoff
from graceful.components.human_signoff.executor import (ReleaseEvidence, pipeline_name, record,
                                                        utc_iso)

MODEL_KEY, BASELINE_MODEL_KEY, SIGN_OFF_KEY = "model", "baseline_model", "sign_off"
STORE_KEY, REQUEST_ID_KEY = "store_path", "request_id"
# On the SignOff this step writes: 1 = the outcome of a release (graceful.history folds the release
# run into the run that trained the candidate by the request id).
RELEASE_PROPERTY = "release"
BASELINE_CHANGED_SOURCE = "baseline changed"


class Executor(base_executor.BaseExecutor):

    def Do(self, input_dict, output_dict, exec_properties):
        model = artifact_utils.get_single_instance(input_dict[MODEL_KEY])
        baselines = input_dict.get(BASELINE_MODEL_KEY) or []
        sign_off = artifact_utils.get_single_instance(output_dict[SIGN_OFF_KEY])
        request_id = exec_properties[REQUEST_ID_KEY]
        store = signoff.Store(exec_properties[STORE_KEY])
        request = store.request(request_id)  # closes it as "timeout" if its deadline passed
        release = ReleaseEvidence.of(request)
        # One decision store may serve several pipelines (a shared MySQL database): a request is
        # released only by its own pipeline, whose serving directory and baseline it was judged for
        asked_by, releasing = request.evidence.get("pipeline"), pipeline_name(self._context)
        if asked_by != releasing:
            raise ValueError(
                f"Sign-off {request_id} belongs to pipeline '{asked_by}', not '{releasing}': "
                f"release it with that pipeline's project (--project/--home); nothing was released.")
        # By URI: on Kubeflow artifact ids inside containers are hashes, not the MLMD ids recorded
        if model.uri.rstrip("/") != release.candidate_model_uri.rstrip("/"):
            raise ValueError(
                f"The release of {request_id} imported model artifact {model.id} from {model.uri}, "
                f"but the request judged model {release.candidate_model_id} "
                f"({release.candidate_model_uri}). Release it with the request's own values "
                f"(`graceful release {request_id}` fills them in); nothing was released.")
        # Claimed by this release run (its pipeline run id): a retry of this step in the same run
        # (an Airflow task retry) holds the claim still; any other run is refused.
        if not store.claim_release(request_id, release_run_id(self._context)):
            claimed = store.request(request_id)  # refuses an undecided request above, itself
            raise signoff.SignOffError(
                f"Sign-off {request_id} was already released (at {utc_iso(claimed.released_at)}"
                f"{f', by release run {claimed.released_by}' if claimed.released_by else ''}): a "
                "decision releases its candidate once. `graceful history` shows the outcome; "
                "nothing was done now.")
        decision = store.decision(request_id)
        baseline_now = baselines[0].id if baselines else None
        if decision.approved and not _same_baseline(baselines, release):
            decision = signoff.Decision(
                request_id, signoff.REJECT, signoff.SYSTEM_APPROVER, signoff.SYSTEM_APPROVER,
                f"{decision.describe()}; but the served model changed since this candidate was "
                f"judged (judged against model {release.baseline_model_id or '(none)'}, the "
                f"baseline now is model {baseline_now or '(none)'}); run again",
                time.time(), BASELINE_CHANGED_SOURCE)
        print(f"[release] {request_id}: "
              f"{'releasing' if decision.approved else 'not releasing'} model {model.id}: "
              f"{decision.describe()}", flush=True)
        record(sign_off, model, request_id, decision, request)
        sign_off.set_int_custom_property(RELEASE_PROPERTY, 1)



def release_run_id(context) -> str | None:
    """The release run this step runs in, as the claim's owner: the pipeline run id IR runners
    (local, Kubeflow) give the executor, else (TFX's Airflow runner gives none) the Airflow DAG
    run's id, the same for every retry of the task. None if neither is known: the claim is then
    anonymous and no retry can take it again."""
    run_id = getattr(context, "pipeline_run_id", None)
    if run_id:
        return str(run_id)
    try:
        from airflow.operators.python import get_current_context

        return f"airflow:{get_current_context()['run_id']}"
    except Exception:  # noqa: BLE001 - not in an Airflow task (or no Airflow): no run id
        return None


def _same_baseline(baselines: list, release: ReleaseEvidence) -> bool:
    """Is the baseline resolved now the one the candidate was judged against? By URI when the
    request recorded one (ids inside Kubeflow containers are hashes, see ReleaseEvidence), else by
    id; no baseline then and now counts as the same."""
    if not baselines:
        return release.baseline_model_id is None
    if release.baseline_model_uri:
        return baselines[0].uri.rstrip("/") == release.baseline_model_uri.rstrip("/")
    return baselines[0].id == release.baseline_model_id
