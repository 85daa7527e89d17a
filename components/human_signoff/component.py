"""HumanSignOff: a person approves or rejects the candidate before anything is pushed.

Inputs: the candidate model, the FlipEvaluator's report and verdict (the evidence) and the eval
examples the flip gate judged on. When the flip gate blocked the model nobody is asked: the artifact
records that (source "flip gate"). It always writes its artifact, because the pipeline's condition on
the Evaluator reads it. Otherwise it opens a sign-off request in the shared decision store
(graceful.signoff) and posts a Slack message with the evidence and Approve / Reject buttons when
Slack is configured (graceful.slack); decisions come from Slack (`graceful slack-gate`) or the CLI
(`graceful approve|reject`). Then, by `wait`:

  deferred (wait=0, the default)  the request gets a deadline (now + `timeout_seconds`) and, in its
        evidence, what the release needs (executor.ReleaseEvidence: candidate URI and id, eval
        examples URI, the baseline it was judged against). The step records decision "pending"
        (blessed=0) and returns: the run ends awaiting sign-off, its Evaluator and Pusher skipped,
        nothing held. The decision later releases the candidate through the release pipeline
        (pipeline/release.py, components/sign_off_release); no decision by the deadline rejects it.
  waiting (wait=1)  polls with backoff for the first valid decision, up to `timeout_seconds`, and
        records it; the run then evaluates and pushes itself. While it waits it refreshes its
        request's heartbeat on every poll: if this step dies (kill -9, a lost pod), the request is
        closed as "abandoned" the next time anything looks at it, so nobody can approve a run that
        can no longer push.

Output: a `graceful.SignOff` artifact recording decision, approver id and name, time, reason, source
and the Slack message ts; `blessed=1` and `current_model_id` only when a person approved. It is
deliberately not a ModelBlessing: the Evaluator, the pipeline's one ModelBlessing producer, runs only
after an approval, so a rejected model can never be resolved as a baseline.

Fails closed: no Slack token → says how to configure it and waits for the CLI; Slack errors (after
slack_sdk's retries) → rejected with the error as reason; no decision in time → rejected, "timeout".
`auto_approve` (explicit, for local demos and tests) approves at once and records that it did.
"""
from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from graceful.components.edge_converter.component import EdgeModel
from graceful.components.flip_evaluator.component import FlipBlessing, FlipReport
from graceful.components.human_signoff.executor import Executor


class SignOff(types.Artifact):
    """A person's decision on a candidate model (custom properties: decision, blessed, approver...)."""

    TYPE_NAME = "graceful.SignOff"


class HumanSignOffSpec(ComponentSpec):
    PARAMETERS = {
        "store_path": ExecutionParameter(type=str),       # the shared decision store (SQLite)
        "timeout_seconds": ExecutionParameter(type=int),
        "auto_approve": ExecutionParameter(type=int),     # 1 = approve without asking (demos)
        "slack_channel": ExecutionParameter(type=str),    # "" = $GRACEFUL_SLACK_CHANNEL
        "max_poll_seconds": ExecutionParameter(type=int),
        "wait": ExecutionParameter(type=int),             # 1 = wait for the decision in this step
    }
    INPUTS = {
        "model": ChannelParameter(type=standard_artifacts.Model),
        "flip_report": ChannelParameter(type=FlipReport),
        "flip_blessing": ChannelParameter(type=FlipBlessing),
        # the eval examples the flip gate judged on; the release evaluates on them (not for wait=1)
        "examples": ChannelParameter(type=standard_artifacts.Examples, optional=True),
        # the EdgeConverter's output when the edge branch is on: its URI goes into the release
        # evidence (the release pushes it too) and its verdict into what the approver sees
        "edge_model": ChannelParameter(type=EdgeModel, optional=True),
    }
    OUTPUTS = {"sign_off": ChannelParameter(type=SignOff)}


class HumanSignOff(base_component.BaseComponent):
    SPEC_CLASS = HumanSignOffSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, model: types.BaseChannel, flip_report: types.BaseChannel,
                 flip_blessing: types.BaseChannel, store_path: str, timeout_seconds: int,
                 auto_approve: bool = False, slack_channel: str = "", max_poll_seconds: int = 15,
                 wait: bool = False, examples: types.BaseChannel | None = None,
                 edge_model: types.BaseChannel | None = None):
        if not (wait or auto_approve) and examples is None:
            raise ValueError("HumanSignOff defers the decision (wait=False) and needs `examples`, "
                             "the eval examples the flip gate judged on, for the release to "
                             "evaluate on: pass examples=... (or wait=True to hold the step until "
                             "someone decides).")
        super().__init__(spec=HumanSignOffSpec(
            model=model, flip_report=flip_report, flip_blessing=flip_blessing, examples=examples,
            edge_model=edge_model,
            store_path=store_path, timeout_seconds=timeout_seconds,
            auto_approve=int(auto_approve), slack_channel=slack_channel,
            max_poll_seconds=max_poll_seconds, wait=int(wait),
            sign_off=types.Channel(type=SignOff)))
