"""Benchmark: the same small pipeline with ML Metadata (and the sign-off decisions) in the embedded
SQLite store vs on a MariaDB server.

What it answers: what a team pays in run time for keeping the metadata on a central, backed-up
server. Each repeat runs, per backend, a fresh home (and, for MariaDB, a fresh database) through two
`graceful run`s as their own processes, as a user or a scheduler would: span 1 (no baseline), then
span 2 (judged and distilled against run 1's model, so the resolvers query the store). The
backends alternate which goes first in each repeat, so the machine's drift hits both alike. Then
reading the history of the two runs back (`history.runs`, in this process) is timed per backend.

MariaDB is a throwaway server from Debian's packages (tests/mariadb.py) on 127.0.0.1 with its
default durability (every commit flushed to disk), like SQLite's; both on the same disk.
Tiny Fashion-MNIST spans (600 training, 300 eval images), the small MLP, 3 epochs, auto-approved,
lenient gates (runs are pushed), as in benchmarks/fault_campaign.py.

    .venv/bin/python benchmarks/metadata_backends.py [--repeats 3]

Writes benchmarks/results/metadata_backends.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from graceful import cli, history, mlmd_store  # noqa: E402
from benchmarks.fault_campaign import EVAL, RUN, SPAN  # noqa: E402  (the same small runs)
from tests.mariadb import MariaDB  # noqa: E402

BACKENDS = ("sqlite", "mariadb")


def graceful_run(home: str, metadata: str, span: int) -> float:
    """Wall seconds of one `graceful run` process (it must push)."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "graceful.cli", "run", "--home", home, "--metadata", metadata,
         "--span", str(span), *RUN], cwd=REPO, capture_output=True, text=True)
    seconds = time.monotonic() - started
    if done.returncode != cli.EXIT_PUSHED:
        raise RuntimeError(f"graceful run --span {span} on {metadata or 'SQLite'} exited "
                           f"{done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return seconds


def one_pair(tmp: str, backend: str, repeat: int, server: MariaDB) -> dict:
    """Runs 1 and 2 on a fresh home and store; their wall times and the history read time."""
    home = os.path.join(tmp, f"{backend}-{repeat}")
    metadata = server.database(f"bench{repeat}") if backend == "mariadb" else ""
    location = metadata or os.path.join(home, "metadata.sqlite")
    first, second = (graceful_run(home, metadata, span) for span in (1, 2))
    reads = []
    for _ in range(5):
        started = time.monotonic()
        runs = history.runs(location)
        reads.append(time.monotonic() - started)
    assert [r.pushed for r in runs] == [True, True] and mlmd_store.exists(location)
    row = {"backend": backend, "repeat": repeat, "run_1_seconds": round(first, 2),
           "run_2_seconds": round(second, 2), "history_read_ms": round(
               statistics.median(reads) * 1000, 1)}
    print(json.dumps(row), flush=True)
    return row


def summary(rows: list[dict]) -> dict:
    medians = {}
    for backend in BACKENDS:
        mine = [r for r in rows if r["backend"] == backend]
        medians[backend] = {
            key: round(statistics.median(r[key] for r in mine), 2)
            for key in ("run_1_seconds", "run_2_seconds", "history_read_ms")}
        medians[backend]["two_runs_seconds"] = round(statistics.median(
            r["run_1_seconds"] + r["run_2_seconds"] for r in mine), 2)
    ratios = {key: round(medians["mariadb"][key] / medians["sqlite"][key], 3)
              for key in medians["sqlite"]}
    return {"medians": medians, "mariadb_over_sqlite": ratios}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" /
                                             "metadata_backends.json"))
    args = parser.parse_args()
    server = MariaDB().start()
    os.environ[mlmd_store.PASSWORD_ENV] = MariaDB.PASSWORD  # the runs read it from here
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="graceful-metadata-bench-") as tmp:
            for repeat in range(args.repeats):
                order = BACKENDS if repeat % 2 == 0 else BACKENDS[::-1]
                rows += [one_pair(tmp, backend, repeat, server) for backend in order]
        version = server.query("SELECT VERSION()")[0][0]
    finally:
        server.stop()
    result = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "mariadb": version},
              "pipeline": {"spans": [1, 2], "span_size": SPAN, "eval_size": EVAL,
                           "flags": RUN},
              "repeats": args.repeats, **summary(rows), "rows": rows}
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}, indent=1))


if __name__ == "__main__":
    main()
