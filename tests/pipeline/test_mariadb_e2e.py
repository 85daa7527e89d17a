"""ML Metadata and the sign-off decisions on a real MariaDB server (tests/mariadb.py), end to end:
a team's CSV project runs through the CLI with `--metadata mysql://...`, history, report, lineage
and approve/reject read and write the same database, and nothing lands in SQLite files in the home;
the Airflow DAG runs its TFX pipeline into the same kind of store.

Every assertion reads the server (graceful's own readers, or SQL past graceful's code) or the home.
"""
import dataclasses
import os
import subprocess

import pytest

from graceful import cli, history, mlmd_store, signoff
from tests import tabular
from tests.pipeline.test_airflow_dag import airflow_home  # noqa: F401  (autouse: an Airflow DB)

pytestmark = pytest.mark.slow

QUICK = ["--epochs", "40", "--batch-size", "16", "--learning-rate", "0.01"]
# Tiny wine models flip many examples: the flip gate must pass for run 2 to ask for sign-off.
ANY_FLIPS = ["--max-nfr", "1", "--max-class-nfr", "1", "--max-relative-nfr", "100",
             "--min-accuracy", "0", "--max-accuracy-drop", "1"]


def _sql(server, location: str, query: str, args: tuple = ()) -> list[tuple]:
    """Rows of `query`, with {db} the location's database, run on the server as its root."""
    return server.query(query.format(db=f"`{location.rsplit('/', 1)[1]}`"), args)


def test_runs_history_lineage_and_sign_off_on_mariadb(tmp_path, monkeypatch, capsys, mariadb,
                                                      mariadb_server):
    data_dir, project = str(tmp_path / "data"), str(tmp_path / "wine")
    class_names = tabular.write_spans("wine", data_dir, num_spans=2)
    assert cli.main(["init", project, "--csv", data_dir, "--label", tabular.LABEL,
                     "--id", tabular.ID, "--class-names", ",".join(class_names)]) == 0
    monkeypatch.chdir(project)
    monkeypatch.setenv(signoff.APPROVERS_ENV, "alice")
    monkeypatch.setenv(signoff.APPROVER_ENV, "alice")
    on_server = ["--metadata", mariadb]

    assert cli.main(["run", "--span", "1", "--auto-approve", *QUICK, *on_server]) == cli.EXIT_PUSHED
    assert cli.main(["run", "--span", "2", *QUICK, *ANY_FLIPS, *on_server]) == cli.EXIT_AWAITING
    [waiting] = signoff.Store(mariadb).pending()  # HumanSignOff opened it on the server

    capsys.readouterr()
    reason = "wine span 2 shifts the class balance; keep the served model"
    assert cli.main(["reject", "2", "--reason", reason, *on_server]) == cli.EXIT_BLOCKED
    assert cli.main(["approve", "2", "--reason", "changed my mind", *on_server]) == cli.EXIT_USAGE
    assert "was already rejected by alice (cli)" in capsys.readouterr().err

    # The decisions are rows of the metadata's database (run 1's auto-approval, run 2's rejection).
    rows = _sql(mariadb_server, mariadb, "SELECT request_id, decision, approver_id, reason, source"
                " FROM {db}.graceful_signoff_decisions ORDER BY decided_at")
    assert [row[1:] for row in rows] == [
        ("approve", "auto_approve", "auto_approve is set in the pipeline config", "auto"),
        ("reject", "alice", reason, "cli")]
    assert rows[1][0] == waiting.request_id
    assert _sql(mariadb_server, mariadb, "SELECT released_at IS NOT NULL FROM "
                "{db}.graceful_signoff_requests WHERE request_id = %s",
                (waiting.request_id,)) == [(1,)]
    home = os.path.join(project, "graceful_home")
    assert not {"metadata.sqlite", "sign_off.sqlite"} & set(os.listdir(home))

    # ML Metadata on the server: both runs, run 2 judged against run 1's model and rejected.
    first, second = history.runs(mariadb)
    assert first.pushed and second.baseline_model_id == first.model_id
    assert second.blocked_by == "sign-off" and second.sign_off["reason"] == reason
    assert not second.pushed and len(os.listdir(os.path.join(home, "serving"))) == 1
    (model_runs,) = _sql(mariadb_server, mariadb, "SELECT COUNT(*) FROM {db}.Artifact a JOIN "
                         "{db}.Type t ON a.type_id = t.id WHERE t.name = 'Model'")
    assert model_runs == (2,)

    capsys.readouterr()
    assert cli.main(["history", *on_server]) == 0
    table = capsys.readouterr().out
    assert "rejected: alice" in table and "pushed" in table
    assert cli.main(["report", "2", *on_server]) == 0
    assert f"model {second.model_id} vs baseline {first.model_id}" in capsys.readouterr().out
    assert cli.main(["lineage", *on_server]) == 0
    assert f"model {first.model_id}" in capsys.readouterr().out
    assert cli.main(["lineage", "--run", "2", *on_server]) == 0
    assert capsys.readouterr().out.startswith(f"model {second.model_id} ")

    # Without --metadata the project's home store is used: it has no runs.
    assert cli.main(["history"]) == cli.EXIT_USAGE
    assert "No ML Metadata store at" in capsys.readouterr().err

    # The README's backup: one dump of the database holds the runs and the decisions; restored
    # into an empty database, history and the sign-off store read the same.
    restored = _dump_and_restore(mariadb, mariadb_server, tmp_path / "graceful.sql")
    assert [(r.run_id, r.model_id, r.status) for r in history.runs(restored)] == [
        (r.run_id, r.model_id, r.status) for r in (first, second)]
    assert signoff.Store(restored).decision(waiting.request_id).reason == reason


def _dump_and_restore(location: str, server, dump) -> str:
    """`mariadb-dump --single-transaction` of the location's database as its user (password from
    the environment, as in the README), restored with `mariadb` into a new empty database."""
    target = server.database("restored")
    password = {**os.environ, "MYSQL_PWD": os.environ[mlmd_store.PASSWORD_ENV]}

    def client(command: str, url: str, *flags: str, **redirect) -> None:
        db = mlmd_store.mysql_server(url)
        subprocess.run([command, *flags, "-h", db.host, "-P", str(db.port), "-u", db.user,
                        db.database], env=password, check=True, timeout=120, **redirect)

    with open(dump, "w") as backup:
        client("mariadb-dump", location, "--single-transaction", stdout=backup)
    with open(dump) as backup:
        client("mariadb", target, stdin=backup)
    return target


def test_the_airflow_dag_runs_into_mariadb(tiny_config, mariadb):
    """The DAG's TFX tasks get the MySQL connection (password from the environment, in no task
    argument Airflow shows), its guard and reconcile tasks the location; `dag.test()` records the
    run on the server."""
    from graceful.cli import prepare_data
    from graceful.pipeline.airflow_dag import GUARD_TASK, RECONCILE_TASK, build_dag
    from graceful.pipeline.local_runner import own_argv
    from tests.mariadb import MariaDB

    config = dataclasses.replace(tiny_config, num_spans=1, metadata=mariadb)
    prepare_data(config)
    dag = build_dag(config)
    connection = dag.get_task("Trainer").python_callable.keywords["metadata_connection_config"]
    server = mlmd_store.mysql_server(mariadb)
    assert (connection.mysql.host, connection.mysql.port, connection.mysql.database) == (
        server.host, server.port, server.database)
    for task_id in (GUARD_TASK, RECONCILE_TASK):
        arguments = dag.get_task(task_id).op_kwargs
        assert arguments["metadata_path"] == mariadb
        assert MariaDB.PASSWORD not in repr(arguments)
    with own_argv():  # the Beam executors would parse pytest's flags (-v ...) as absl flags
        dag.test()

    [run] = history.runs(mariadb)
    assert run.span == 1 and run.pushed and run.sign_off["source"] == "auto"
    assert not os.path.exists(os.path.join(config.home, "metadata.sqlite"))
