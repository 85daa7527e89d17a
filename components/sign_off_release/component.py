"""SignOffRelease: turns a person's decision on a deferred sign-off request into the SignOff artifact
that lets (or does not let) the release pipeline evaluate and push the candidate.

Why a component: the run that trained the candidate ended "awaiting sign-off" (HumanSignOff with
`wait=False`), holding nothing. The decision arrives later, from Slack or the CLI, and must then be
acted on in ML Metadata the same way the waiting path would have: a `graceful.SignOff` with
`blessed=1` only for an approval, which the release pipeline's `tfx.dsl.Cond` on the Evaluator and
Pusher reads (pipeline/release.py).

Inputs: `model`, the candidate (imported by URI with `Importer(reimport=False)`, so it is the
Trainer's very artifact, and this component checks that it is), and `baseline_model`, the last
blessed model resolved now (optional: none before the first push). Parameters: the sign-off store's
location and the request id (a RuntimeParameter on Airflow and Kubeflow).

It checks, in order, and fails the run without claiming anything when one does not hold:
  * the request exists, was opened for a release, and names this candidate;
  * it is decided (a person, or its deadline passed: the store then closes it as "timeout");
and then claims the release for this release run (`Store.claim_release` with the pipeline run id):
once per request, however many releases start (a double click, a second DAG run); a later release
fails saying it was released. A retry of this step within the same release run (an Airflow task
retry) holds the claim still and goes on. A local release run that fails before its push completed
gives the claim back (pipeline/release.py's `run`), so `graceful release` can run it again.
The claimed outcome:
  * approved and the baseline resolved now is the one the candidate was judged against → blessed=1;
  * approved, but the served model changed since (another release, a rollback) → blessed=0,
    "the served model changed since this candidate was judged; run again": its flip numbers were
    measured against a model that is no longer the baseline;
  * rejected, timed out → blessed=0 with the reason. Rejections and timeouts are recorded alike.
"""
from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from graceful.components.human_signoff.component import SignOff
from graceful.components.sign_off_release.executor import (BASELINE_MODEL_KEY, MODEL_KEY,
                                                           REQUEST_ID_KEY, SIGN_OFF_KEY, STORE_KEY,
                                                           Executor)


class SignOffReleaseSpec(ComponentSpec):
    PARAMETERS = {
        STORE_KEY: ExecutionParameter(type=str),       # graceful.signoff.Store location
        REQUEST_ID_KEY: ExecutionParameter(type=str),  # the deferred request to release
    }
    INPUTS = {
        MODEL_KEY: ChannelParameter(type=standard_artifacts.Model),
        BASELINE_MODEL_KEY: ChannelParameter(type=standard_artifacts.Model, optional=True),
    }
    OUTPUTS = {SIGN_OFF_KEY: ChannelParameter(type=SignOff)}


class SignOffRelease(base_component.BaseComponent):
    SPEC_CLASS = SignOffReleaseSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, model: types.BaseChannel, baseline_model: types.BaseChannel,
                 store_path: str, request_id):
        """`request_id`: a str, or a RuntimeParameter (str) filled in when the run starts."""
        super().__init__(spec=SignOffReleaseSpec(**{
            MODEL_KEY: model, BASELINE_MODEL_KEY: baseline_model, STORE_KEY: store_path,
            REQUEST_ID_KEY: request_id, SIGN_OFF_KEY: types.Channel(type=SignOff)}))
