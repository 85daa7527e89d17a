"""`graceful`: run the pipeline locally, read its history from ML Metadata, and show the demo.

Exit statuses (for schedulers): 0 pushed (or, for other commands, done); 1 failed, nothing pushed
(including a damaged metadata store); 2 usage error or bad input; 3 blocked by a gate (data checks,
flip gate, sign-off, Evaluator), nothing pushed; 4 nothing to do (`run --latest`: every span already
trained on; `release`: already released); 5 another run holds the pipeline home (try again later);
6 awaiting sign-off: the run ended without waiting for a person, nothing pushed yet (the decision,
`graceful approve|reject`, releases it). `approve`, `reject` and `release` end with their release's
outcome: 0 pushed, 3 not pushed (rejected, timed out, the baseline changed, the Evaluator); with
SignOffConfig.release_on="airflow" they queue the release as an Airflow DAG run instead and end
with 0 once it is queued, 4 if it was queued before, 1 if Airflow could not queue it.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import shutil
import sys
import time
import warnings
from pathlib import Path

from graceful import data, locations, project, spans
from graceful.models.params import TrainingParams
from graceful.pipeline.configs import RELEASE_AIRFLOW, GateConfig, PipelineConfig, SignOffConfig

TRAINING_HELP = {
    "architecture": "architecture: small, mlp or cnn (default %(default)s)",
    "loss": "how the last blessed model is used: plain, fd_kl, fd_lm, fd_margin, bct or bct+fd "
            "(default %(default)s)",
    "max_steps": "cap on optimizer steps (0 = none)",
    "lam": "share of the distillation term (default %(default)s)",
    "lambda_bct": "weight of the old-head loss for bct / bct+fd (default %(default)s)",
    "lambda_align": "weight of the new-to-old embedding alignment for bct / bct+fd "
                    "(default %(default)s)",
    "ema_momentum": "export the moving average of the weights with this momentum, 0 = off "
                    "(default %(default)s)",
    "reference_step_factor": "training steps of a run that distils from the served model (any "
                             "loss but plain), as a multiple of --epochs' steps (default "
                             "%(default)s)",
    "warm_start": "start from the served model's weights (same architecture only; the first run "
                  "trains from scratch)",
    "warm_start_alpha": "with --warm-start, export alpha * trained + (1 - alpha) * served weights: "
                        "'auto' chooses alpha on a held-out 10%% of the newest span's training "
                        "examples (fewest negative flips at no accuracy loss), 1 = no "
                        "interpolation (default %(default)s)",
}
GATE_HELP = {
    "min_accuracy": "absolute accuracy floor",
    "max_accuracy_drop": "allowed accuracy drop vs the baseline",
    "max_nfr": "allowed negative flip rate vs the baseline",
    "max_relative_nfr": "allowed NFR / ((1 - err_old) * err_new)",
    "max_class_nfr": "allowed NFR within any one class",
    "max_slice_nfr": "allowed NFR within any one value of a --slice-by feature",
    "max_high_confidence_flips": "allowed flips with confidence >= 0.9",
    "flip_bound": "what meets the NFR, relative/class NFR and accuracy-drop limits: point (the value), "
                  "lower (block only if confidently over) or upper (block unless confidently within)",
    "confidence": "level of the paired bootstrap intervals (flip report, --flip-bound)",
    "bootstrap_resamples": "resamples of the eval examples for those intervals",
    "golden_ids": "comma-separated ids of golden examples, which must never flip",
    "golden_ids_file": "a file (path or URI) of golden example ids, one a line",
    "golden_examples": "TFRecord files (pattern) of golden tf.Examples outside the spans",
    "max_golden_flips": "allowed negative flips of golden examples",
    "history_models": "also compare with the last N pushed models (0 = off)",
    "max_history_nfr": "allowed NFR vs any of those earlier pushed models",
}
DEMO_HOME = "graceful_demo_home"
DEMO_GRACEFUL_LOSS = TrainingParams().loss
DEMO_STEP_FACTOR = TrainingParams().reference_step_factor
DEMO_MARKER = ".graceful-demo-home"
(EXIT_PUSHED, EXIT_FAILED, EXIT_USAGE, EXIT_BLOCKED, EXIT_NOTHING_TO_DO, EXIT_BUSY,
 EXIT_AWAITING) = range(7)


class UsageError(ValueError):
    """A command-line value that cannot work; nothing was written."""


def _id_list(text: str) -> tuple:
    """A comma-separated list of example ids (--golden-ids)."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value} (spans are numbered "
                                         "from 1)")
    return value


def checked_home(home: str) -> str:
    """A pipeline home must be a directory (or not exist yet: it is created)."""
    if os.path.exists(home) and not os.path.isdir(home):
        raise UsageError(f"--home {home} is a file, not a directory; pass a directory for the "
                         "pipeline home (it is created if missing).")
    return home


def _add_project(parser: argparse.ArgumentParser, chosen: project.Project) -> None:
    parser.add_argument("--project", default=None, metavar="PATH",
                        help=f"project file ({project.PROJECT_FILE}) or its folder (default: "
                             f"./{project.PROJECT_FILE} if present, else the built-in Fashion-MNIST "
                             f"demo; in effect: {chosen.describe()})")


def _add_home(parser: argparse.ArgumentParser, chosen: project.Project) -> None:
    _add_project(parser, chosen)
    parser.add_argument("--home", default=chosen.config.home,
                        help="pipeline home: artifacts, MLMD store, serving dir (default: the "
                             "project's, %(default)s; the demo's: $GRACEFUL_HOME or "
                             "./graceful_home)")
    _add_metadata(parser, chosen.config.metadata)


def _add_metadata(parser: argparse.ArgumentParser, default: str) -> None:
    """--metadata: where ML Metadata (and, unless the project says otherwise, the sign-off
    decisions) live, for every command that reads or writes the store."""
    from graceful.mlmd_store import LOCATION_HELP

    parser.add_argument("--metadata", default=default, metavar="URL",
                        help=f"ML Metadata store: {LOCATION_HELP}, which then also holds the "
                             "sign-off decisions (default: the project's, %(default)r)")


def _add_run_options(parser: argparse.ArgumentParser, chosen: project.Project) -> None:
    """The run flags, defaulting to the project's values (so --help shows what is in effect)."""
    config = chosen.config
    _add_home(parser, chosen)
    parser.add_argument("--span", type=positive_int, default=config.span,
                        help="span to ingest, 1 or more (default: newest)")
    parser.add_argument("--latest", action="store_true",
                        help="for schedulers: the newest span on disk not yet trained on with these "
                             "training parameters (MLMD); nothing to do -> exit 4")
    parser.add_argument("--window", type=int, default=config.window_spans,
                        help="train on the newest N ingested spans (0 = all; default %(default)s)")
    for field in dataclasses.fields(TrainingParams):
        flag = "--model" if field.name == "architecture" else "--" + field.name.replace("_", "-")
        # bool(text) is True for any text, so a boolean is a --flag / --no-flag pair
        kind = ({"action": argparse.BooleanOptionalAction} if isinstance(field.default, bool)
                else {"type": type(field.default)})
        parser.add_argument(flag, dest=field.name, **kind,
                            default=getattr(config.training, field.name),
                            help=TRAINING_HELP.get(field.name, "(default %(default)s)"))
    for field in dataclasses.fields(GateConfig):
        parser.add_argument("--" + field.name.replace("_", "-"), dest=field.name,
                            type=_id_list if isinstance(field.default, tuple)
                            else type(field.default), default=getattr(config.gate, field.name),
                            help=GATE_HELP.get(field.name, "") + " (default %(default)s)")
    parser.add_argument("--slice-by", dest="slice_features", action="append", default=None,
                        metavar="FEATURE", help="an integer or string feature of the examples to "
                        "slice flip metrics and gates on (repeatable; replaces the project's "
                        f"data.slice_features, now {list(config.data.slice_features)})")
    parser.add_argument("--auto-approve", action=argparse.BooleanOptionalAction,
                        default=config.sign_off.auto_approve,
                        help="skip the human sign-off and approve (local experiments only; "
                             "recorded in MLMD as auto_approve)")
    parser.add_argument("--sign-off-timeout", type=int, default=config.sign_off.timeout_seconds,
                        help="seconds to wait for a sign-off decision before rejecting "
                             "(default %(default)s)")
    parser.add_argument("--accept-unknown-serving", default=config.accept_unknown_serving,
                        metavar="REASON",
                        help="run although serving/ holds a model ML Metadata does not know as "
                             "the baseline (a lost or replaced store); the reason is recorded")
    _add_demo_data_options(parser, config)


def _add_demo_data_options(parser: argparse.ArgumentParser, config: PipelineConfig) -> None:
    """How the demo's Fashion-MNIST spans are cut. A project's own data is only read: there the
    flags are hidden and refused by config_from_args, naming the project's data root."""
    def shown(text):
        return text if config.demo_data else argparse.SUPPRESS

    demo = config.demo_data
    parser.add_argument("--num-spans", type=positive_int, default=config.num_spans if demo else None,
                        help=shown("spans to cut from Fashion-MNIST when preparing data "
                                   "(default %(default)s)"))
    parser.add_argument("--span-size", type=positive_int,
                        default=config.span_size if demo else None, help=shown(None))
    parser.add_argument("--eval-size", type=positive_int, default=config.eval_size if demo else None,
                        help=shown("test images used as eval data (default: all 10k)"))
    parser.add_argument("--data-dir", default=config.fashion_mnist_dir if demo else None,
                        help=shown("folder with the Fashion-MNIST *-ubyte.gz files "
                                   "(default: Debian's dataset-fashion-mnist)"))


def config_from_args(args: argparse.Namespace, config: PipelineConfig) -> PipelineConfig:
    """The project's configuration with this command line's flags applied."""
    from graceful.models.training import check_params

    training = TrainingParams(**{f.name: getattr(args, f.name)
                                 for f in dataclasses.fields(TrainingParams)})
    check_params(training, builtin_model=not config.module_file)
    slices = config.data.slice_features
    if args.slice_features is not None:
        slices = tuple(args.slice_features)
    config = dataclasses.replace(
        config, home=checked_home(args.home), metadata=args.metadata, span=args.span,
        window_spans=args.window,
        training=training, data=dataclasses.replace(config.data, slice_features=slices),
        gate=GateConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(GateConfig)}),
        sign_off=dataclasses.replace(config.sign_off, auto_approve=args.auto_approve,
                                     timeout_seconds=args.sign_off_timeout),
        accept_unknown_serving=args.accept_unknown_serving)
    demo_flags = {"--num-spans": args.num_spans, "--span-size": args.span_size,
                  "--eval-size": args.eval_size, "--data-dir": args.data_dir}
    if not config.demo_data:
        given = [flag for flag, value in demo_flags.items() if value is not None]
        if given:
            raise UsageError(f"{', '.join(given)} prepare the Fashion-MNIST demo's spans; this "
                             f"project reads its own spans from {config.data_root} (data.root) "
                             "and never writes there")
        return config
    return dataclasses.replace(config, num_spans=args.num_spans, span_size=args.span_size,
                               eval_size=args.eval_size, fashion_mnist_dir=args.data_dir)


def prepare_data(config: PipelineConfig) -> None:
    """The demo only: writes the Fashion-MNIST spans the run needs (up to --span, else
    --num-spans) into <home>/data if missing. A project's data is never written to."""
    if config.demo_data:
        wanted = config.span or config.num_spans
        data.prepare_spans(config.data_root, wanted, config.span_size, config.eval_size,
                           config.fashion_mnist_dir)


def spans_on_disk(config: PipelineConfig) -> list[int]:
    """The spans the data contract's patterns find; none is an error naming root and patterns."""
    found = spans.find_spans(config.data_root, config.data)
    if not found:
        hint = (" (`graceful run --span 1` prepares them from Fashion-MNIST)"
                if config.demo_data else "")
        raise FileNotFoundError(project.no_spans_message(config) + hint)
    return found


def chosen_span(config: PipelineConfig) -> int:
    """The span this run ingests: --span (which must exist), else the newest."""
    found = spans_on_disk(config)
    if config.span is not None and config.span not in found:
        raise FileNotFoundError(f"span {config.span} is not in {config.data_root} (spans there: "
                                f"{found})")
    return config.span or found[-1]


def run_once(config: PipelineConfig, prepare: bool = True,
             release_config: PipelineConfig | None = None) -> int:
    """One pipeline run with progress lines and a summary table; returns the exit status.
    `prepare` writes missing Fashion-MNIST spans first (not for --latest: spans arrive).
    The home's run lock is held throughout: data preparation is part of the run.
    `release_config` releases other runs' decided sign-offs first (default `config`): `graceful
    run` passes the project's configuration with only --home/--metadata applied, so that this
    run's flags (gate thresholds, training, sign-off options) never judge another candidate; a
    release judges with the project's policy, as `graceful approve|release` does."""
    from graceful import history, mlmd_store
    from graceful.home_lock import home_lock
    from graceful.pipeline import local_runner

    print(f"[graceful] home: {locations.absolute(config.home)}")
    # A project's spans are checked before its home is touched (the demo's are written below).
    span = None if config.demo_data else chosen_span(config)
    with home_lock(config.home):
        mlmd_store.exists(config.metadata_uri)  # a damaged or unreachable store, named, first
        if prepare:
            prepare_data(config)
        span = span or chosen_span(config)
        model = config.module_file or config.training.architecture
        print(f"[graceful] run on span {span} with model '{model}', loss "
              f"'{config.training.loss}' (window: {config.window_spans or 'all'} spans)")
        # decisions taken since the last run, timeouts included
        release_decided(release_config or config)
        started = time.monotonic()
        failure = None
        try:
            local_runner.run(config)
        except Exception as error:  # the pipeline failed: report why, the table shows what happened
            failure = error
        print(f"[graceful] run finished in {time.monotonic() - started:.0f}s")
        records = history.runs(config.metadata_uri) if mlmd_store.exists(config.metadata_uri) else []
    if records:
        print(history.format_table(records, history.rollbacks(history.open_store(
            config.metadata_uri))))
    status = exit_status(failure, records[-1] if records else None)
    if status == EXIT_AWAITING:
        number, run = len(records), records[-1]
        print(f"\n[graceful] run {number} awaits sign-off until {run.awaiting_until} and holds "
              f"nothing meanwhile. Decide (this evaluates against baseline "
              f"{run.baseline_model_id or '(none)'} and pushes, or records the rejection):\n"
              f"  graceful approve {number} --reason '...'\n"
              f"  graceful reject {number} --reason '...'\n"
              "No decision by then rejects it (`graceful history` shows it; `graceful release` or "
              "the next `graceful run` records it).")
    if failure is not None:
        print(f"\n[graceful] the run failed, nothing was pushed:\n{type(failure).__name__}: "
              f"{failure}", file=sys.stderr)
    return status


def exit_status(failure: Exception | None, run) -> int:
    """What the run ended in, for schedulers (see the module docstring). `run` is this run's
    history record (the newest: the run lock keeps other runs out)."""
    if run is not None and run.failed_step == "DataGate":
        return EXIT_BLOCKED
    if failure is not None or run is None:
        return EXIT_FAILED
    if run.pushed:
        return EXIT_PUSHED
    if run.awaiting_until:
        return EXIT_AWAITING
    return EXIT_BLOCKED if run.blessed is False else EXIT_FAILED


def untrained_span(config: PipelineConfig) -> tuple[int | None, list[int]]:
    """(newest span on disk not yet trained on with `config.training`, all such spans), from MLMD.

    A span counts as trained on once a run ingested it and its Trainer produced a model with the
    same training parameters, whatever the gates then decided: retrying the same data with the same
    settings would only repeat that verdict.
    """
    from graceful import history, mlmd_store

    # a damaged or unreachable store, named, before anything else
    stored = mlmd_store.exists(config.metadata_uri)
    on_disk = spans_on_disk(config)
    wanted = dataclasses.asdict(config.training)
    trained = set()
    if stored:
        trained = {r.span for r in history.runs(config.metadata_uri)
                   if r.model_id is not None and r.params == wanted}
    todo = [span for span in on_disk if span not in trained]
    return (max(todo) if todo else None), todo


def cmd_run(args) -> int:
    config = config_from_args(args, args.project_config)
    if args.latest:
        if args.span is not None:
            raise ValueError("Pass either --span or --latest, not both.")
        span, todo = untrained_span(config)
        if span is None:
            print(f"[graceful] nothing to do: every span in {config.data_root} was already trained "
                  "on with these parameters")
            return EXIT_NOTHING_TO_DO
        if len(todo) > 1:
            print(f"[graceful] spans {todo} are new; training on the newest, {span} (run "
                  "`graceful run --span N` to ingest an older one)")
        config.span = span
        return run_once(config, prepare=False, release_config=_home_config(args))
    return run_once(config, release_config=_home_config(args))


def cmd_history(args) -> int:
    from graceful import history

    from graceful import serving

    config = _home_config(args)
    records = history.runs(config.metadata_uri, config.sign_off_store)
    print(history.format_table(records, history.rollbacks(history.open_store(
        config.metadata_uri))))
    served = serving.versions(config.serving_dir)
    if served and not any(r.pushed for r in records):
        from graceful import mlmd_store

        store = (config.metadata_uri if mlmd_store.mysql_server(config.metadata_uri)
                 else os.path.basename(config.metadata_uri))  # the server's URL, else the file
        print(f"[graceful] warning: {config.serving_dir} serves {len(served)} model version(s) "
              f"that this metadata store never pushed: was {store} emptied or replaced? "
              "Runs will refuse to train until it is restored.", file=sys.stderr)
    return 0


def cmd_report(args) -> int:
    """The flip report of a run (default: the newest run that has one): its path and a summary."""
    from graceful import history

    config = _home_config(args)
    runs = history.runs(config.metadata_uri)
    if args.run is not None and not 1 <= args.run <= len(runs):
        raise ValueError(f"There is no run {args.run}; `graceful history` lists runs 1..{len(runs)}.")
    chosen = [runs[args.run - 1]] if args.run else [r for r in runs if r.flip_report][-1:]
    if not chosen or not chosen[0].flip_report:
        raise ValueError("No flip report yet: a run writes one once its training step has finished.")
    run = chosen[0]
    print(f"flip report of run {runs.index(run) + 1} (model {run.model_id} vs baseline "
          f"{run.baseline_model_id}): {run.flip_report}")
    report = history.read_flip_report(run.flip_report)
    # The names the FlipEvaluator was configured with, recorded in the report (ids if none).
    print(history.format_flip_report(report, report.get("class_names") or None))
    return 0


def _home_config(args) -> PipelineConfig:
    """The project's configuration with --home and --metadata applied (commands that only read
    the home)."""
    return dataclasses.replace(args.project_config, home=checked_home(args.home),
                               metadata=args.metadata)


def _sign_off_request(store, run: str | None, metadata_path: str) -> str:
    """The request id for RUN: a run number as in `graceful history`, a request id, or (None)
    the one request still waiting."""
    from graceful import history, mlmd_store, signoff

    if run is None:
        waiting = store.pending()
        if not waiting:
            latest = store.requests()[-1:]
            closed = store.decision(latest[0].request_id) if latest else None
            if closed is not None and closed.source == signoff.ABANDONED_SOURCE:
                raise signoff.SignOffError(f"No sign-off request is waiting. The latest, "
                                           f"{latest[0].request_id}, is closed: {closed.reason}.")
        if len(waiting) != 1:
            listed = ", ".join(r.request_id for r in waiting) or "none"
            raise signoff.SignOffError(f"{len(waiting)} sign-off requests are waiting ({listed}); "
                                       "name one: graceful approve RUN")
        return waiting[0].request_id
    if run.isdigit() and mlmd_store.exists(metadata_path):
        runs = history.runs(metadata_path)
        if not 1 <= int(run) <= len(runs):
            raise signoff.SignOffError(f"There is no run {run}; `graceful history` lists runs "
                                       f"1..{len(runs)}.")
        return runs[int(run) - 1].run_id
    return run


def cli_approver() -> str:
    """Who runs an approver's command (approve, reject, rollback): their id, $GRACEFUL_APPROVER,
    else the name they are logged in as ($USER)."""
    from graceful import signoff

    approver = os.environ.get(signoff.APPROVER_ENV) or os.environ.get("USER") or ""
    if not approver:
        raise signoff.SignOffError(f"Who is deciding? Set {signoff.APPROVER_ENV} to your name.")
    return approver


def cmd_decide(args) -> int:
    """`graceful approve|reject [RUN] --reason ...`: the CLI path of the human sign-off."""
    from graceful import signoff, slack

    config = _home_config(args)
    store = signoff.Store(config.sign_off_store)
    approver = cli_approver()
    request_id = _sign_off_request(store, args.run, config.metadata_uri)
    decision = store.decide(request_id, args.decision, approver, approver, args.reason, "cli",
                            signoff.allow_list())
    slack.show_decision(store, decision)
    print(f"{request_id}: {decision.describe()}")
    if store.request(request_id).deadline_at is None:
        return 0  # a run that waits for the decision acts on it itself
    if args.no_release:
        print(release_hint(config, store.request(request_id)))
        return 0
    return release_request(config, store, request_id)


def cmd_release(args) -> int:
    """`graceful release [RUN]`: acts on a decided deferred sign-off with the release pipeline
    (pipeline/release.py): evaluates and pushes an approved candidate, records a rejection or a
    timeout. For decisions made elsewhere (Slack, `approve --no-release`) and expired requests."""
    from graceful import signoff
    from graceful.pipeline import release

    config = _home_config(args)
    store = signoff.Store(config.sign_off_store)
    if args.run is not None:
        return release_request(config, store, _sign_off_request(store, args.run,
                                                                config.metadata_uri))
    ready = release.unreleased(store, config.pipeline_name)
    if len(ready) != 1:
        listed = ", ".join(r.request_id for r in ready) or "none"
        raise signoff.SignOffError(f"{len(ready)} decided sign-offs await their release ({listed})"
                                   "; name one: graceful release RUN")
    return release_request(config, store, ready[0].request_id)


def release_request(config: PipelineConfig, store, request_id: str, log=print) -> int:
    """Releases one decided deferred request and returns the exit status of its outcome (see the
    module docstring): with the local runner, or (SignOffConfig.release_on="airflow") by queuing
    the Airflow release DAG's run for it. Refuses an undecided request (SignOffError); one
    already released is left alone (EXIT_NOTHING_TO_DO)."""
    from graceful import history, signoff
    from graceful.home_lock import HomeBusyError
    from graceful.pipeline import release

    request = store.request(request_id)  # closed as "timeout" first if past its deadline
    parameters = release.values(request, config)
    decision = store.decision(request_id)
    if request.released_at is not None:
        log(f"[graceful] {request_id} was already released: a decision releases its candidate "
            "once (`graceful history` shows the outcome); nothing to do")
        return EXIT_NOTHING_TO_DO
    if decision is None:
        raise signoff.SignOffError(
            f"Sign-off {request_id} awaits a decision (until its deadline); nothing to release "
            f"yet: graceful approve|reject {request_id} --reason '...'")
    if config.sign_off.release_on == RELEASE_AIRFLOW:
        return queue_airflow_release(config, request, log)
    log(f"[graceful] releasing {request_id}: {decision.describe()}")
    started, failure = time.monotonic(), None
    try:
        release.run(config, parameters, log=log)
    except HomeBusyError:
        log(f"[graceful] the decision is recorded; release it once the home is free: graceful "
            f"release {request_id} (the next `graceful run` releases it too)")
        raise
    except Exception as error:  # the release failed: report why; history shows what happened
        failure = error
    ran = [r for r in history.runs(config.metadata_uri)
           if (r.sign_off or {}).get("request_id") == request_id]
    status = exit_status(failure, ran[-1] if ran else None)
    log(f"[graceful] release of {request_id} finished in {time.monotonic() - started:.1f}s: "
        + (ran[-1].status if ran else "no record"))
    if failure is not None:
        print(f"[graceful] the release failed, nothing was pushed:\n{type(failure).__name__}: "
              f"{failure}", file=sys.stderr)
    return status


def queue_airflow_release(config: PipelineConfig, request, log=print) -> int:
    """The release of a decided request as a run of the Airflow release DAG (release_on="airflow"):
    EXIT_PUSHED (0) once queued, EXIT_NOTHING_TO_DO if it was queued before, EXIT_FAILED if it
    could not be (the decision stays recorded: `graceful release` queues it later)."""
    from graceful.pipeline import release

    dag_id = release.name(config.pipeline_name)
    try:
        run_id, queued = release.trigger_on_airflow(config.pipeline_name, request, config)
    except release.ReleaseNotQueued as error:
        print(f"[graceful] the decision is recorded, but its release was not queued on Airflow: "
              f"{error}\nOnce fixed: graceful release {request.request_id}", file=sys.stderr)
        return EXIT_FAILED
    if not queued:
        log(f"[graceful] the release of {request.request_id} was already queued on Airflow (DAG "
            f"{dag_id}, run {run_id}); nothing queued again (`graceful history` shows the outcome "
            "once it ran; if that run failed, clear it in Airflow to run it again)")
        return EXIT_NOTHING_TO_DO
    log(f"[graceful] queued the release of {request.request_id} on Airflow: DAG {dag_id}, run "
        f"{run_id}; its outcome shows in `graceful history` once Airflow ran it")
    return EXIT_PUSHED


def release_decided(config: PipelineConfig) -> None:
    """Before a run: releases this pipeline's deferred sign-offs that were decided, or timed out,
    but not released (a decision taken while the home was busy, elsewhere, or none in time), so
    the run is judged against what those decisions serve and the history records them."""
    from graceful import signoff
    from graceful.pipeline import release

    store = signoff.Store(config.sign_off_store)
    for request in release.unreleased(store, config.pipeline_name):
        release_request(config, store, request.request_id)


def release_hint(config: PipelineConfig, request) -> str:
    """How to release a decision recorded with --no-release: here, or as an Airflow DAG run (the
    conf and run id that SignOffConfig.release_on="airflow" queues it with)."""
    import json

    from graceful.pipeline import release

    return (f"[graceful] not released (--no-release). Release it with `graceful release "
            f"{request.request_id}`, or on Airflow: airflow dags trigger "
            f"{release.name(config.pipeline_name)} --conf '{json.dumps(release.values(request, config))}' "
            f"--run-id {release.airflow_run_id(request.request_id)}")


def cmd_slack_gate(args) -> int:
    """Serves Slack's interactivity Request URL until interrupted."""
    from graceful import signoff, slack

    config = _home_config(args)
    store = signoff.Store(config.sign_off_store)
    server = slack.SlackGateServer((args.host, args.port), store,
                                   os.environ.get(slack.SIGNING_SECRET_ENV, ""),
                                   signoff.allow_list(),
                                   on_decision=lambda decision: _start_release(args, store,
                                                                               decision))
    print(f"[slack-gate] listening on http://{args.host}:{server.server_address[1]}/ "
          f"(decisions in {config.sign_off_store}); Ctrl-C stops", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


def _start_release(args, store, decision) -> None:
    """slack-gate's on_decision: `graceful release REQUEST` in a process of its own (the Slack reply
    never waits for it; it finishes even if the gate stops), for deferred requests only (a waiting
    run acts on its decision itself). Runs in the gate's background thread: waits, logs the end."""
    import subprocess

    if store.request(decision.request_id).deadline_at is None:
        return
    command = [sys.executable, "-m", "graceful.cli", "release", decision.request_id,
               "--home", args.home]
    if args.project_path:
        command += ["--project", str(args.project_path)]
    if args.metadata:
        command += ["--metadata", args.metadata]
    process = subprocess.Popen(command, start_new_session=True)
    print(f"[slack-gate] releasing {decision.request_id}: {' '.join(command[2:])} (pid "
          f"{process.pid})", flush=True)
    print(f"[slack-gate] release of {decision.request_id} ended with status {process.wait()}",
          flush=True)


def cmd_compile(args) -> int:
    """`graceful compile kubeflow`: the KFP v2 pipeline spec (see kubeflow/runner.py)."""
    from graceful.kubeflow import runner

    config = dataclasses.replace(config_from_args(args, args.project_config),
                                 pipeline_name=args.name)
    if args.beam_arg:
        config.beam_pipeline_args = list(args.beam_arg)
    result = runner.compile_pipeline(config, args.output, args.image)
    print(f"[graceful] compiled '{config.pipeline_name}' for Kubeflow Pipelines v2 in "
          f"{result['seconds']:.1f}s (image {args.image}, home {config.home}):\n"
          f"  {result['yaml']}  (KFP PipelineSpec: kfp.Client().upload_pipeline, kubeflow/schedule.py)\n"
          f"  {result['json']}  (TFX PipelineJob: Vertex AI Pipelines)")
    return 0


def cmd_lineage(args) -> int:
    """A model's lineage from MLMD (default: the last pushed model; --run N: that run's model)."""
    from graceful import history, lineage

    config = _home_config(args)
    model_id = args.model
    if args.run is not None:
        runs = history.runs(config.metadata_uri)
        if not 1 <= args.run <= len(runs) or runs[args.run - 1].model_id is None:
            raise ValueError(f"Run {args.run} has no trained model; `graceful history` lists runs.")
        model_id = runs[args.run - 1].model_id
    print(lineage.format_lineage(lineage.lineage(config.metadata_uri, model_id)))
    return 0


def cmd_reconcile(args) -> int:
    """Repairs what a run that died mid-push left (graceful.recovery); `graceful run` does it too."""
    from graceful import recovery
    from graceful.home_lock import home_lock

    config = _home_config(args)
    with home_lock(config.home):
        abandoned = recovery.reconcile(config.metadata_uri, config.serving_dir)
    print(f"[graceful] {len(abandoned) or 'no'} unfinished push(es) found"
          + (f": blessings {abandoned} taken out of baseline resolution" if abandoned else ""))
    return EXIT_PUSHED


def cmd_rollback(args) -> int:
    """`graceful rollback [--to MODEL] --reason ...`: an earlier pushed model served again, and the
    baseline of later runs (graceful.rollback)."""
    from graceful import rollback, signoff

    config = _home_config(args)
    rollback.rollback(config.home, config.metadata_uri, config.serving_dir, config.pipeline_root,
                      reason=args.reason, approver=cli_approver(), approvers=signoff.allow_list(),
                      to=args.to)
    return EXIT_PUSHED


def cmd_init(args) -> int:
    """Scaffolds a project for a folder of CSV spans (graceful.project.init)."""
    names = tuple(name.strip() for name in args.class_names.split(",")) if args.class_names else ()
    project.init(args.directory, args.csv, args.label, id_key=args.id, class_names=names,
                 train_pattern=args.train_pattern, eval_pattern=args.eval_pattern)
    return 0


def cmd_schema(args) -> int:
    """(Re)bootstraps the project's schema from its first span with TFDV."""
    if args.project_path is None:
        raise UsageError("graceful schema bootstraps a project's schema; name the project with "
                         f"--project (or run it where {project.PROJECT_FILE} is). The demo's "
                         "schema is curated in schemas/.")
    project.bootstrap_schema(args.project_config, force=args.force)
    return 0


def cmd_check_model(args) -> int:
    """Checks a SavedModel against the project's model contract (graceful.model_check)."""
    import tensorflow as tf

    from graceful import model_check

    if not tf.io.gfile.isdir(args.model_dir):  # a local folder or a URI (gs://...)
        raise UsageError(f"{args.model_dir} is not a directory; pass a SavedModel's folder")
    config = args.project_config
    try:
        result = model_check.check_model(args.model_dir, config.model, examples=args.examples,
                                         data=config.data if args.examples else None)
    except OSError as error:  # not a SavedModel, unreadable files
        raise UsageError(f"{args.model_dir}: cannot load a SavedModel: {error}") from None
    print(format_model_check(result))
    return 0


def format_model_check(result) -> str:
    """One line per fact check_model established, for the terminal."""
    lines = [f"{result.model_dir}: fits the model contract",
             f"  signature {result.signature!r}, input {result.input_name!r} (serialized "
             f"tf.Examples), output {result.output_key!r}",
             f"  {result.form}, {result.classes or 'unknown'} classes, scores: {result.scores}"]
    if result.examples:
        lines.append(f"  ran on {result.examples} examples"
                     + ("" if result.accuracy is None else f": accuracy {result.accuracy:.4f}"))
    return "\n".join(lines)


def fresh_demo_home(home: Path) -> None:
    """Removes a previous demo home, but never a directory the demo did not create."""
    if home.exists():
        if not (home / DEMO_MARKER).exists():
            raise SystemExit(f"{home} exists and is not a graceful demo home; refusing to delete it. "
                             "Pass --home with a new directory.")
        shutil.rmtree(home)
    home.mkdir(parents=True)
    (home / DEMO_MARKER).write_text("created by `graceful demo`; deleted by the next demo\n")


def cmd_demo(args) -> int:
    """The story: run 1 (span 1, small MLP) is pushed; run 2 (spans 1+2, a CNN, naive retraining) is
    more accurate but breaks examples run 1 got right, so the flip gate blocks it; run 3 (same data,
    the pipeline's defaults: trained against run 1's model, weights averaged) passes with fewer
    flips."""
    from graceful import history, mlmd_store

    if locations.is_uri(args.home or ""):
        raise UsageError(f"--home {args.home}: the demo deletes and recreates its home with local "
                         "file operations; pass a local folder.")
    home = Path(checked_home(args.home or DEMO_HOME))
    if args.metadata and mlmd_store.exists(args.metadata):
        raise UsageError(f"The demo starts a new history, but {args.metadata} already holds ML "
                         "Metadata; pass an empty database (or none: SQLite in the demo home). "
                         "Nothing was changed.")
    fresh_demo_home(home)
    base = PipelineConfig(home=str(home), metadata=args.metadata, span_size=args.span_size,
                          eval_size=args.eval_size,
                          fashion_mnist_dir=args.data_dir,
                          # --ask: each run waits for its decision, since the next run's
                          # baseline is what the previous decision pushed
                          sign_off=SignOffConfig(auto_approve=not args.ask, wait=True))
    naive = dict(architecture="cnn", loss="plain", ema_momentum=0.0)
    steps = [("run 1: span 1, small MLP (no baseline yet)", 1, dict(architecture="small")),
             ("run 2: spans 1-2, CNN, plain retraining (no distillation, no weight averaging), "
              "judged against run 1's model", 2, naive),
             (f"run 3: spans 1-2, CNN, {DEMO_GRACEFUL_LOSS} ({DEMO_STEP_FACTOR:g}x the steps) with "
              "weight averaging (the defaults) against run 1's model", 2,
              dict(architecture="cnn"))]
    for title, span, changes in steps:
        print(f"\n=== {title} ===")
        config = dataclasses.replace(base, span=span, training=dataclasses.replace(
            base.training, epochs=args.epochs, **changes))
        run_once(config)
    runs = history.runs(base.metadata_uri)
    print("\n=== summary ===")
    for number, (title, *_), run in zip(range(1, 4), steps, runs):
        print(f"{title}: accuracy {run.accuracy:.4f}, NFR vs baseline "
              f"{'-' if run.nfr is None else f'{run.nfr:.4f}'} -> {run.status}")
    return 0


# Commands that never read a project: the demo is its own, init writes one.
PROJECTLESS_COMMANDS = ("demo", "init")


def build_parser(chosen: project.Project | None = None) -> argparse.ArgumentParser:
    """The command line, its defaults taken from `chosen` (default: the built-in demo)."""
    chosen = chosen or project.Project(PipelineConfig())
    parser = argparse.ArgumentParser(prog="graceful", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.set_defaults(project_config=chosen.config, project_path=chosen.path)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the pipeline once on a data span")
    _add_run_options(run, chosen)
    run.set_defaults(func=cmd_run)
    hist = commands.add_parser("history", help="every run, read back from ML Metadata")
    _add_home(hist, chosen)
    hist.set_defaults(func=cmd_history)
    report = commands.add_parser("report", help="a run's flip report: path and text summary")
    report.add_argument("run", nargs="?", type=int, default=None,
                        help="run number as in `graceful history` (default: the newest)")
    _add_home(report, chosen)
    report.set_defaults(func=cmd_report)
    _add_demo(commands)
    _add_project_commands(commands, chosen)
    for decision in ("approve", "reject"):
        decide = commands.add_parser(decision, help=f"{decision} a model waiting for sign-off "
                                     "(approver: $GRACEFUL_APPROVER or $USER, who must be on "
                                     "the $GRACEFUL_APPROVERS allow-list)")
        decide.add_argument("run", nargs="?", default=None,
                            help="run number (as in `graceful history`) or request id; "
                                 "default: the one waiting")
        decide.add_argument("--reason", required=True, help="why (recorded in ML Metadata)")
        decide.add_argument("--no-release", action="store_true",
                            help="only record the decision; release it elsewhere (`graceful "
                                 "release`, the Airflow release DAG)")
        _add_home(decide, chosen)
        decide.set_defaults(func=cmd_decide, decision=decision)
    release = commands.add_parser("release", help="act on a decided sign-off of a run that ended "
                                  "awaiting it: evaluate and push an approved model, or record "
                                  "the rejection or timeout (approve/reject do this themselves)")
    release.add_argument("run", nargs="?", default=None,
                         help="run number (as in `graceful history`) or request id; default: the "
                              "one decided and not yet released")
    _add_home(release, chosen)
    release.set_defaults(func=cmd_release)
    compile_ = commands.add_parser("compile", help="compile the pipeline for an orchestrator")
    compile_.add_argument("target", choices=["kubeflow"])
    _add_run_options(compile_, chosen)
    compile_.add_argument("--name", default=chosen.config.pipeline_name,
                          help="pipeline name, [a-z0-9-] (default %(default)s)")
    compile_.add_argument("--image", default="graceful-tfx:0.1.0",
                          help="the image built from kubeflow/Dockerfile (default %(default)s)")
    compile_.add_argument("--output", default="graceful.json",
                          help="output path; writes .json and .yaml (default %(default)s)")
    compile_.add_argument("--beam-arg", action="append", default=[],
                          help="a Beam pipeline argument for the Beam steps, repeatable, e.g. "
                               "--beam-arg=--runner=DataflowRunner (default: DirectRunner)")
    compile_.set_defaults(func=cmd_compile)
    lineage = commands.add_parser("lineage", help="a model's lineage from ML Metadata: data, "
                                  "schema, statistics, parameters, baseline, flips, sign-off")
    lineage.add_argument("model", nargs="?", type=int, default=None,
                         help="model id (default: the last pushed model)")
    lineage.add_argument("--run", type=int, default=None, help="the model of run N instead")
    _add_home(lineage, chosen)
    lineage.set_defaults(func=cmd_lineage)
    reconcile = commands.add_parser("reconcile", help="repair what a run killed mid-push left "
                                    "behind (`graceful run` does this itself first)")
    _add_home(reconcile, chosen)
    reconcile.set_defaults(func=cmd_reconcile)
    rollback = commands.add_parser("rollback", help="serve an earlier pushed model again; later "
                                   "runs are judged and distilled against it (approvers only: "
                                   "$GRACEFUL_APPROVER or $USER on $GRACEFUL_APPROVERS)")
    rollback.add_argument("--to", type=int, default=None, metavar="MODEL",
                          help="the pushed model's id, as in `graceful history`/`graceful "
                               "lineage` (default: the one pushed before the served one)")
    rollback.add_argument("--reason", required=True, help="why (recorded in ML Metadata)")
    _add_home(rollback, chosen)
    rollback.set_defaults(func=cmd_rollback)
    gate = commands.add_parser("slack-gate", help="serve Slack's interactivity Request URL "
                               "(SLACK_SIGNING_SECRET, GRACEFUL_APPROVERS)")
    gate.add_argument("--host", default="127.0.0.1")
    gate.add_argument("--port", type=int, default=3000)
    _add_home(gate, chosen)
    gate.set_defaults(func=cmd_slack_gate)
    return parser


def _add_demo(commands) -> None:
    demo = commands.add_parser("demo", help="three gated runs on Fashion-MNIST in a fresh home")
    demo.add_argument("--home", default=None, help=f"demo home (default ./{DEMO_HOME})")
    demo.add_argument("--epochs", type=int, default=TrainingParams().epochs)
    demo.add_argument("--span-size", type=int, default=PipelineConfig().span_size)
    demo.add_argument("--eval-size", type=int, default=None)
    demo.add_argument("--data-dir", default=None)
    demo.add_argument("--ask", action="store_true",
                      help="ask for sign-off (Slack or `graceful approve`) instead of auto-approving")
    _add_metadata(demo, "")
    demo.set_defaults(func=cmd_demo)


def _add_project_commands(commands, chosen: project.Project) -> None:
    """init, schema and check-model: a team's own project."""
    init = commands.add_parser("init", help="scaffold a project for your CSV spans: "
                               f"{project.PROJECT_FILE}, {project.MODEL_FILE}, schema/")
    init.add_argument("directory", help="the project folder to write (created if missing)")
    init.add_argument("--csv", required=True, metavar="DATA_DIR",
                      help="folder (or URI) of CSV spans: span-N/{train,eval}/*.csv, "
                           "YYYY-MM-DD/{train,eval}/*.csv, ... (only read)")
    init.add_argument("--label", required=True, metavar="COLUMN", help="the label column")
    init.add_argument("--id", default="", metavar="COLUMN",
                      help="a column naming each example (default: ids derived from the example)")
    init.add_argument("--class-names", default="", metavar="A,B,...",
                      help="class names in class-id order (default: ids 0..K-1 for integer "
                           "labels, the sorted values for string labels)")
    init.add_argument("--train-pattern", default="", metavar="GLOB",
                      help="train files under DATA_DIR with {SPAN} or {YYYY}{MM}{DD} (default: "
                           "detected); needs --eval-pattern")
    init.add_argument("--eval-pattern", default="", metavar="GLOB")
    init.set_defaults(func=cmd_init)
    schema = commands.add_parser("schema", help="bootstrap the project's schema/schema.pbtxt "
                                 "from its first span with TFDV (then curate it)")
    _add_project(schema, chosen)
    schema.add_argument("--force", action="store_true", help="replace an existing schema.pbtxt")
    schema.set_defaults(func=cmd_schema)
    check = commands.add_parser("check-model", help="check a SavedModel against the project's "
                                "model contract")
    check.add_argument("model_dir", metavar="DIR", help="the SavedModel's folder")
    check.add_argument("--examples", default=None, metavar="PATTERN",
                       help="TFRecord files of tf.Examples (.gz: gzip) to run the model on: "
                            "verifies its scores and, with labels, reports accuracy")
    _add_project(check, chosen)
    check.set_defaults(func=cmd_check_model)


def chosen_project(argv: list[str]) -> project.Project:
    """First pass over the command line: the project it names (--project), else the one here,
    else the demo; `demo` and `init` read none. Its values become the parser's defaults."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--project", default=None)
    known, _ = pre.parse_known_args(argv)
    if argv and argv[0] in PROJECTLESS_COMMANDS:
        return project.Project(PipelineConfig())
    return project.load(known.project)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TF's C++ start-up noise
    warnings.filterwarnings("ignore", category=FutureWarning)  # google-* deprecation notices
    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # TFMA readers' deprecation notices
    from graceful.home_lock import HomeBusyError
    from graceful.mlmd_store import StoreDamagedError, StoreUnreachableError

    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        chosen = chosen_project(argv)
    except project.ProjectError as error:
        print(f"graceful: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    args = build_parser(chosen).parse_args(argv)
    try:
        return args.func(args)
    except HomeBusyError as error:
        print(f"graceful: {error}", file=sys.stderr)
        return EXIT_BUSY
    except (StoreDamagedError, StoreUnreachableError) as error:
        print(f"graceful: {error}", file=sys.stderr)
        return EXIT_FAILED
    except (data.DatasetNotFoundError, FileNotFoundError, FileExistsError, ValueError) as error:
        # incl. SignOffError, UsageError, ProjectError, SpanError, ModelOutputError
        print(f"graceful: {error}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
