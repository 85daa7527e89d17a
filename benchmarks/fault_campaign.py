"""Fault campaign: kill -9 a real `graceful run` at each step, rerun, and check the promise held.

On one pipeline home (tiny Fashion-MNIST spans, lenient gates so runs get pushed), run 1 pushes a
first model. Then, for every step of the pipeline (when it starts, and for the Evaluator and Pusher
also when it ends), a run on span 2 is started as its own process and SIGKILLed at that moment, and a
normal run follows. After each pair it checks, from ML Metadata and the files only:
- the rerun was judged and distilled against the model being served (its baseline's SavedModel
  fingerprint equals the version folder served when it ran), whatever the killed run left;
- every numeric version folder in serving/ is a complete model, and no staging folder is left;
- no data was lost: the spans read back complete, every pushed model's artifact still exists;
- the rerun ended as a run should (pushed, or blocked by a gate), not failed.

    .venv/bin/python benchmarks/fault_campaign.py [--out benchmarks/results/faults.json]

Writes the per-fault rows and the totals (faults tried, wrong pushes, lost data) to JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from graceful import cli, data, history, serving  # noqa: E402

SPAN, EVAL = 600, 300
RUN = ["--model", "small", "--epochs", "3", "--span-size", str(SPAN), "--eval-size", str(EVAL),
       "--auto-approve", "--min-accuracy", "0.3", "--max-accuracy-drop", "1", "--max-nfr", "1",
       "--max-class-nfr", "1", "--max-relative-nfr", "100"]
STEPS = ["baseline_model", "BaselineGuard", "ImportExampleGen", "ImportSchemaGen", "StatisticsGen",
         "training_window", "ExampleValidator", "DataGate", "Trainer", "FlipEvaluator",
         "HumanSignOff", "Evaluator", "Pusher"]
MOMENTS = [(step, "start") for step in STEPS] + [("Evaluator", "end"), ("Pusher", "end")]


def graceful_run(home: str, span: int, kill_at: str | None = None) -> tuple[int, str]:
    """`graceful run` as its own process; SIGKILLed when it prints a line starting with kill_at."""
    process = subprocess.Popen(
        [sys.executable, "-m", "graceful.cli", "run", "--home", home, "--span", str(span), *RUN],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    printed = []
    for line in process.stdout:
        printed.append(line)
        if kill_at and line.startswith(kill_at):
            os.kill(process.pid, signal.SIGKILL)
            break
    return process.wait(), "".join(printed)


def model_uri(metadata_path: str, model_id: int) -> str:
    store = history.open_store(metadata_path)
    return store.get_artifacts_by_id([model_id])[0].uri


def fingerprint_of_model(metadata_path: str, model_id: int) -> str:
    return serving.fingerprint(os.path.join(model_uri(metadata_path, model_id), "Format-Serving"))


def data_intact(home: str, spans: list[int]) -> bool:
    import tensorflow as tf

    for span in spans:
        for split, size in (("train", SPAN), ("eval", EVAL)):
            path = data.span_dir(f"{home}/data", span) / split / "data.tfrecord.gz"
            count = sum(1 for _ in tf.data.TFRecordDataset(str(path), compression_type="GZIP"))
            if count != size:
                return False
    return True


def serving_sound(serving_dir: str, staging_allowed: bool = False) -> bool:
    """Every version a model server would load is a complete model (and, once a run has repaired
    the home, no staging folder is left)."""
    if serving.leftover_staging(serving_dir) and not staging_allowed:
        return False
    try:
        for version in serving.versions(serving_dir):
            serving.fingerprint(os.path.join(serving_dir, str(version)))
    except FileNotFoundError:
        return False
    return True


def pushed_models_exist(metadata_path: str) -> bool:
    return all(os.path.isdir(model_uri(metadata_path, r.model_id))
               for r in history.runs(metadata_path) if r.pushed)


def one_fault(home: str, step: str, moment: str) -> dict:
    metadata_path, serving_dir = f"{home}/metadata.sqlite", f"{home}/serving"
    line = f"[run] {step} ..." if moment == "start" else f"[run] {step} done"
    started = time.monotonic()
    killed_status, killed_output = graceful_run(home, 2, kill_at=line)
    killed = line in killed_output
    after_kill_sound = serving_sound(serving_dir, staging_allowed=True)
    rerun_status, rerun_output = graceful_run(home, 2)
    rerun = history.runs(metadata_path)[-1]
    versions = serving.versions(serving_dir)
    served_when_judged = versions[-2] if rerun.pushed else versions[-1]
    baseline_was_served = rerun.baseline_model_id is not None and fingerprint_of_model(
        metadata_path, rerun.baseline_model_id) == serving.fingerprint(
        os.path.join(serving_dir, str(served_when_judged)))
    row = {
        "step": step, "moment": moment, "killed": killed, "killed_exit": killed_status,
        "repairs": [l for l in rerun_output.splitlines() if l.startswith("[recover]")],
        "rerun_exit": rerun_status, "rerun_status": rerun.status,
        "rerun_baseline_model_id": rerun.baseline_model_id,
        "rerun_reference_model_id": rerun.reference_model_id,
        "baseline_was_served": baseline_was_served,
        "reference_is_baseline": rerun.reference_model_id == rerun.baseline_model_id,
        "serving_sound_after_kill": after_kill_sound, "serving_sound": serving_sound(serving_dir),
        "data_intact": data_intact(home, [1, 2]),
        "pushed_models_exist": pushed_models_exist(metadata_path),
        "seconds": round(time.monotonic() - started, 1)}
    row["wrong_push"] = bool(rerun.pushed) and not (baseline_was_served
                                                    and row["reference_is_baseline"])
    row["ok"] = (killed and after_kill_sound and rerun_status in (cli.EXIT_PUSHED, cli.EXIT_BLOCKED)
                 and baseline_was_served and row["reference_is_baseline"]
                 and row["serving_sound"] and row["data_intact"] and row["pushed_models_exist"])
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "faults.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="graceful-faults-") as tmp:
        home = f"{tmp}/home"
        status, output = graceful_run(home, 1)
        assert status == cli.EXIT_PUSHED, output
        rows = []
        for step, moment in MOMENTS:
            row = one_fault(home, step, moment)
            rows.append(row)
            print(f"kill -9 at {step} {moment}: rerun {row['rerun_status']}, baseline served "
                  f"{row['baseline_was_served']}, ok {row['ok']} ({row['seconds']}s)", flush=True)
    result = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "faults_tried": len(rows), "faults_killed_as_planned": sum(r["killed"] for r in rows),
        "wrong_pushes": sum(r["wrong_push"] for r in rows),
        "reruns_not_judged_against_the_served_model": sum(not r["baseline_was_served"]
                                                          for r in rows),
        "data_lost": sum(not (r["data_intact"] and r["pushed_models_exist"]) for r in rows),
        "serving_left_unsound": sum(not r["serving_sound"] for r in rows),
        "all_ok": all(r["ok"] for r in rows), "rows": rows}
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}, indent=1))


if __name__ == "__main__":
    main()
