"""`graceful rollback`: an earlier pushed model back into serving, recorded in ML Metadata, and from
then on the baseline every run is distilled from and judged against.

Why it works this way:
- Serving. The model is pushed by AtomicPusher's own executor (copied into a hidden staging folder
  in serving/, renamed to a version above every served one), so a rollback is exactly as atomic as
  a push and a model server picks it up as it picks up any push.
- Baseline. Runs take their baseline from TFX's LatestBlessedModelStrategy (the newest Model with a
  ModelBlessing blessed=1), and TFX hands resolvers LIVE artifacts only, on every runner: the local
  and Kubeflow IR runners through `channel_resolver._filter_by_artifact_query(live_only=True)`,
  TFX's Airflow runner through `Metadata.get_qualified_artifacts` (state == LIVE), and the Kubeflow
  v2 baseline query filters `state=LIVE AND metadata.blessed=1` on blessings (`step_builder.py`).
  A rollback therefore sets the blessings of every model newer than the restored one to ABANDONED
  (the lever graceful.recovery uses too; never a deletion state: their files stay, for the audit
  and for rolling forward), with the reason as a custom property. They leave baseline resolution
  everywhere; the next run resolves the restored model, BaselineGuard finds it served, and a
  withdrawn model is never offered as a baseline again. Rolling forward (`--to` a withdrawn model)
  sets its blessings LIVE again: after a rollback to model M, M is the newest model with a LIVE
  blessing, whichever way it went.
- Record. A `graceful.Rollback` execution (approver, time, reason, the models) whose inputs are the
  restored Model and the withdrawn releases (their PushedModels) and whose output is the new
  PushedModel; the blessings' states change in the same MLMD transaction that completes it. It is
  registered RUNNING first, so a rollback killed between its push and that transaction leaves a
  trace (and BaselineGuard stops the next run until the rollback is repeated).
- Who. Only an approver on the sign-off allow-list ($GRACEFUL_APPROVERS), with a reason, under the
  home's run lock, so it cannot race a run. A refusal changes nothing (beyond the repair of a run
  killed mid-push that every run makes first, graceful.recovery).

Like graceful.recovery, it reads every ModelBlessing in the store: one pipeline per store.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import os

from ml_metadata.proto import metadata_store_pb2
from tfx.utils import path_utils

from graceful import history, lineage, recovery, serving, signoff
from graceful.home_lock import home_lock
from graceful.mlmd_store import open_store

LIVE, ABANDONED = metadata_store_pb2.Artifact.LIVE, metadata_store_pb2.Artifact.ABANDONED
RUNNING, COMPLETE, FAILED = (metadata_store_pb2.Execution.RUNNING,
                             metadata_store_pb2.Execution.COMPLETE,
                             metadata_store_pb2.Execution.FAILED)
_STRING, _INT = metadata_store_pb2.STRING, metadata_store_pb2.INT
EXECUTION_TYPE = metadata_store_pb2.ExecutionType(
    name=history.ROLLBACK, properties={
        "approver": _STRING, "reason": _STRING, "rolled_back_at": _STRING, "model_id": _INT,
        "withdrawn_model_ids": _STRING})


class RollbackRefused(ValueError):
    """A rollback that cannot be done; nothing was changed. The message says why and what to do."""


@dataclasses.dataclass
class Plan:
    """What a rollback to `model` changes, worked out before anything is changed."""
    model: metadata_store_pb2.Artifact            # the model to serve again
    blessing: metadata_store_pb2.Artifact         # a blessing of `model` (the push checks it)
    withdraw: list = dataclasses.field(default_factory=list)  # LIVE blessings of newer models
    restore: list = dataclasses.field(default_factory=list)   # `model`'s withdrawn blessings
    withdrawn_pushes: list = dataclasses.field(default_factory=list)  # releases of withdrawn models

    @property
    def withdrawn_model_ids(self) -> list[int]:
        return sorted({_model_id(b) for b in self.withdraw})


def _model_id(blessing) -> int | None:
    value = history.property_value(blessing, "current_model_id")
    return None if value is None else int(value)


def check_approver(approver: str, reason: str, approvers: frozenset) -> None:
    """A rollback changes what every user gets served: approvers only, and the reason is the audit
    trail. The allow-list rule is the sign-off's (ids only, an empty list allows nobody)."""
    if not reason.strip():
        raise RollbackRefused("A rollback needs a reason (it is recorded in ML Metadata), e.g. "
                              "--reason 'model 7 misreads shirts in production'; nothing was "
                              "changed.")
    signoff.check_person(approver, approver, reason, approvers)


def plan(store, to: int | None = None) -> Plan:
    """The rollback to model `to` (default: the model the baseline would be without the served one,
    i.e. the newest pushed model below it that is not withdrawn). Raises RollbackRefused."""
    pushed = lineage.pushed_model_ids(store)
    if not pushed:
        raise RollbackRefused("No model has been pushed in this home yet, so there is nothing to "
                              "roll back to; nothing was changed.")
    served = pushed[-1]
    blessings = [b for b in store.get_artifacts_by_type(history.MODEL_BLESSING)
                 if history.property_value(b, "blessed") == 1 and _model_id(b) is not None]
    live = [b for b in blessings if b.state == LIVE]
    if to is None:
        earlier = sorted(m for m in {_model_id(b) for b in live} & set(pushed) if m < served)
        if not earlier:
            raise RollbackRefused(f"Model {served} is served and no earlier pushed model is left "
                                  "to roll back to (`graceful history` lists pushed models and "
                                  "rollbacks); nothing was changed.")
        to = earlier[-1]
    elif to not in pushed:
        known = store.get_artifacts_by_id([to])
        what = ("there is no model with that id" if not known or
                store.get_artifact_types_by_id([known[0].type_id])[0].name != history.MODEL
                else "it was never pushed, and only a model that was served can be served again")
        raise RollbackRefused(f"Cannot roll back to model {to}: {what}. Pushed models: "
                              f"{sorted(set(pushed))} (ids as in `graceful history` and `graceful "
                              "lineage`); nothing was changed.")
    elif to == served:
        raise RollbackRefused(f"Model {to} is already the served model; nothing was changed. "
                              "Pass --to with another pushed model, or leave --to out to roll "
                              "back to the one pushed before it.")
    [model] = store.get_artifacts_by_id([to])
    own = [b for b in blessings if _model_id(b) == to
           and (b.state == LIVE or history.WITHDRAWN_REASON in b.custom_properties)]
    if not own:
        raise RollbackRefused(f"Model {to} was pushed without a blessing (a ModelBlessing with "
                              "blessed=1), so baseline resolution could never pick it and later "
                              "runs would not be judged against it; nothing was changed.")
    try:
        serving.fingerprint(path_utils.serving_model_path(model.uri))
    except FileNotFoundError as missing:
        raise RollbackRefused(f"Model {to}'s files cannot be read ({missing}); restore {model.uri} "
                              "first. Nothing was changed.") from None
    withdraw = [b for b in live if _model_id(b) > to]
    withdrawn = {_model_id(b) for b in withdraw}
    graph = lineage.Graph(store)
    releases = [p for p in store.get_artifacts_by_type(history.PUSHED_MODEL)
                if history.property_value(p, "pushed") == 1
                and any(m.id in withdrawn for m in graph.artifacts(
                    graph.producer(p), lineage.INPUT, history.MODEL))]
    return Plan(model=model, blessing=own[0], withdraw=withdraw,
                restore=[b for b in own if b.state != LIVE], withdrawn_pushes=releases)


def rollback(home: str, metadata_uri: str, serving_dir: str, pipeline_root: str,
             reason: str, approver: str, approvers: frozenset, to: int | None = None,
             log=print) -> history.RollbackRecord:
    """Serves model `to` again (see the module docstring) and returns the rollback as recorded.

    Refusals (RollbackRefused, signoff.SignOffError) change nothing. Holds the home's run lock
    (HomeBusyError while a run holds it) and, like every run, first repairs what a run killed
    mid-push left behind (graceful.recovery), so that its blessing is not taken for a release.
    """
    check_approver(approver, reason, approvers)
    open_store(metadata_uri)  # FileNotFoundError naming the store when no run has happened here
    with home_lock(home, what=f"graceful rollback (by {approver})"):
        recovery.reconcile(metadata_uri, serving_dir, log=log)
        store = open_store(metadata_uri, readonly=False)
        chosen = plan(store, to)
        execution = _register(store, chosen, approver, reason)
        try:
            pushed = _push(store, chosen, serving_dir,
                           os.path.join(pipeline_root, "Rollback", "pushed_model",
                                        str(execution.id)))
        except BaseException:
            execution.last_known_state = FAILED
            store.put_executions([execution])
            raise
        _complete(store, execution, chosen, pushed)
        [record] = [r for r in history.rollbacks(store) if r.execution_id == execution.id]
    log(f"[rollback] {record.describe()}; served from {record.destination}")
    return record


def _event(kind, key: str) -> metadata_store_pb2.Event:
    event = metadata_store_pb2.Event(type=kind)
    event.path.steps.add().key = key
    return event


def _register(store, chosen: Plan, approver: str, reason: str):
    """The rollback, RUNNING, with its input: the model it restores."""
    execution = metadata_store_pb2.Execution(
        type_id=store.put_execution_type(EXECUTION_TYPE, can_add_fields=True),
        last_known_state=RUNNING)
    values = {"approver": approver, "reason": reason, "model_id": chosen.model.id,
              "rolled_back_at": datetime.datetime.now(datetime.timezone.utc).isoformat(
                  timespec="seconds"),
              "withdrawn_model_ids": json.dumps(chosen.withdrawn_model_ids)}
    for key, value in values.items():
        if isinstance(value, int):
            execution.properties[key].int_value = value
        else:
            execution.properties[key].string_value = value
    execution.id, _, _ = store.put_execution(
        execution, [(chosen.model, _event(metadata_store_pb2.Event.INPUT, "model"))], [])
    return execution


def _tfx_artifact(store, artifact):
    from tfx.types import artifact_utils

    [artifact_type] = store.get_artifact_types_by_id([artifact.type_id])
    return artifact_utils.deserialize_artifact(artifact_type, artifact)


def _push(store, chosen: Plan, serving_dir: str, archive_uri: str):
    """The model pushed into serving/ by AtomicPusher's executor (staged, renamed into place);
    returns the PushedModel it filled in (pushed, pushed_destination, pushed_version)."""
    from tfx.proto import pusher_pb2
    from tfx.types import standard_artifacts, standard_component_specs as keys
    from tfx.utils import proto_utils

    from graceful.components.atomic_pusher.executor import Executor

    pushed = standard_artifacts.PushedModel()
    pushed.uri = archive_uri
    destination = pusher_pb2.PushDestination(
        filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=serving_dir))
    Executor().Do({keys.MODEL_KEY: [_tfx_artifact(store, chosen.model)],
                   keys.MODEL_BLESSING_KEY: [_tfx_artifact(store, chosen.blessing)]},
                  {keys.PUSHED_MODEL_KEY: [pushed]},
                  {keys.PUSH_DESTINATION_KEY: proto_utils.proto_to_json(destination),
                   keys.CUSTOM_CONFIG_KEY: "null"})
    return pushed


def _complete(store, execution, chosen: Plan, pushed) -> None:
    """One MLMD transaction: the rollback COMPLETE with the new PushedModel and the withdrawn
    releases linked, the newer models' blessings out of resolution, the restored model's back."""
    pushed.type_id = store.put_artifact_type(pushed.artifact_type, can_add_fields=True,
                                             can_omit_fields=True)
    record = pushed.mlmd_artifact
    record.state = LIVE
    why = (f"rolled back to model {chosen.model.id} by "
           f"{execution.properties['approver'].string_value} at "
           f"{execution.properties['rolled_back_at'].string_value}: "
           f"{execution.properties['reason'].string_value}")
    for blessing in chosen.withdraw:
        blessing.state = ABANDONED
        blessing.custom_properties[history.WITHDRAWN_REASON].string_value = why
    for blessing in chosen.restore:
        blessing.state = LIVE
        del blessing.custom_properties[history.WITHDRAWN_REASON]
    execution.last_known_state = COMPLETE
    store.put_execution(execution, [
        (record, _event(metadata_store_pb2.Event.OUTPUT, "pushed_model")),
        *((p, _event(metadata_store_pb2.Event.INPUT, "withdrawn_pushed_model"))
          for p in chosen.withdrawn_pushes),
        *((b, None) for b in chosen.withdraw + chosen.restore)], [])
