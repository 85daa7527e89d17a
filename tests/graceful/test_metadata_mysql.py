"""ML Metadata's location: SQLite path or mysql:// URL, the password only from the environment, and
what every command says when the server is down, refuses the user or lacks the database. Against
the real MariaDB server of tests/mariadb.py and a port where nothing listens; the pipeline and the
CLI end to end on MariaDB: tests/pipeline/test_mariadb_e2e.py."""
import pytest
from ml_metadata.proto import metadata_store_pb2

from graceful import cli, mlmd_store, signoff
from graceful.pipeline.configs import PipelineConfig, SignOffConfig
from tests.mariadb import MariaDB, free_port


def test_a_mysql_location_is_parsed_and_printed_without_a_password():
    server = mlmd_store.mysql_server("mysql://ml%40ops@db.internal:3307/graceful")
    assert server == mlmd_store.MySQLServer("ml@ops", "db.internal", 3307, "graceful")
    assert str(mlmd_store.mysql_server("mysql://ops@db/graceful")) == "mysql://ops@db:3306/graceful"
    for path in ("", "home/metadata.sqlite", "/abs/metadata.sqlite"):
        assert mlmd_store.mysql_server(path) is None


@pytest.mark.parametrize("url", ["mysql://ops:hunter2@db:3306/graceful",
                                 "mysql://ops:hunter2@db/graceful", "mysql://ops:@db/graceful"])
def test_a_location_carrying_a_password_is_refused_without_repeating_it(url):
    with pytest.raises(ValueError) as refused:
        mlmd_store.mysql_server(url)
    message = str(refused.value)
    assert "carries a password" in message and "$GRACEFUL_METADATA_PASSWORD" in message
    assert "hunter2" not in message and "mysql://ops@db" in message
    with pytest.raises(ValueError, match="carries a password"):
        PipelineConfig(metadata=url)
    with pytest.raises(ValueError, match="carries a password"):
        PipelineConfig(sign_off=SignOffConfig(store=url))


@pytest.mark.parametrize("url, problem", [
    ("postgresql://ops@db/graceful", "postgresql://...: unsupported"),
    ("gs://bucket/metadata.sqlite", "gs://...: unsupported"),
    ("mysql://db:3306/graceful", "is not mysql://user@host:port/database"),
    ("mysql://ops@db:3306/", "is not mysql://user@host:port/database"),
    ("mysql://ops@db:3306/a/b", "is not mysql://user@host:port/database"),
    ("mysql://ops@db:port/graceful", "is not mysql://user@host:port/database"),
    ("mysql://ops@db/graceful?ssl=1", "is not mysql://user@host:port/database")])
def test_a_location_graceful_cannot_use_is_refused_naming_the_forms_it_can(url, problem):
    with pytest.raises(ValueError) as refused:
        mlmd_store.mysql_server(url)
    assert problem in str(refused.value) and "mysql://user@host:port/database" in str(refused.value)


def test_the_sign_off_store_follows_the_metadata_unless_set(tmp_path):
    home = str(tmp_path / "home")
    url = "mysql://ops@db:3306/graceful"
    embedded = PipelineConfig(home=home)
    assert embedded.metadata_uri == f"{home}/metadata.sqlite"
    assert embedded.sign_off_store == f"{home}/sign_off.sqlite"
    on_server = PipelineConfig(home=home, metadata=url)
    assert on_server.metadata_uri == on_server.sign_off_store == url
    elsewhere = PipelineConfig(home=home, metadata=url,
                               sign_off=SignOffConfig(store="mysql://ops@other/decisions"))
    assert elsewhere.sign_off_store == "mysql://ops@other/decisions"


def test_connection_configs_for_sqlite_and_mysql(monkeypatch):
    monkeypatch.setenv(mlmd_store.PASSWORD_ENV, "s3cret")
    mysql = mlmd_store.connection_config("mysql://ops@db:3307/graceful").mysql
    assert (mysql.host, mysql.port, mysql.database, mysql.user, mysql.password) == (
        "db", 3307, "graceful", "ops", "s3cret")
    assert not mysql.skip_db_creation
    assert mlmd_store.connection_config("mysql://ops@db/graceful", readonly=True).mysql \
        .skip_db_creation
    sqlite = mlmd_store.connection_config("home/metadata.sqlite", readonly=True).sqlite
    assert sqlite.filename_uri == "home/metadata.sqlite"
    assert sqlite.connection_mode == metadata_store_pb2.SqliteMetadataSourceConfig.READONLY


def test_a_server_that_is_down_is_named_with_what_to_do(capsys, tmp_path):
    port = free_port()
    url = f"mysql://graceful@127.0.0.1:{port}/graceful"
    with pytest.raises(mlmd_store.StoreUnreachableError) as down:
        mlmd_store.exists(url)
    assert str(down.value).startswith(f"cannot reach MySQL at 127.0.0.1:{port} (")
    assert "start it or fix --metadata" in str(down.value)
    assert "GRACEFUL_METADATA_PASSWORD" in str(down.value)
    with pytest.raises(mlmd_store.StoreUnreachableError, match="cannot reach MySQL"):
        signoff.Store(url)
    for command in (["history"], ["lineage"], ["report"], ["reconcile"],
                    ["approve", "--reason", "fine"]):
        assert cli.main([*command, "--home", str(tmp_path / "home"), "--metadata", url]) == cli.EXIT_FAILED
        err = capsys.readouterr().err
        assert err.startswith(f"graceful: cannot reach MySQL at 127.0.0.1:{port} ("), (command, err)
        assert "Traceback" not in err


def test_the_cli_refuses_a_password_in_metadata_and_never_prints_it(capsys):
    assert cli.main(["history", "--metadata", "mysql://ops:hunter2@db/graceful"]) == cli.EXIT_USAGE
    out, err = capsys.readouterr()
    assert "carries a password" in err and "hunter2" not in out + err


def test_a_wrong_password_and_a_missing_database_say_what_to_fix(mariadb, monkeypatch):
    monkeypatch.setenv(mlmd_store.PASSWORD_ENV, "not-the-password")
    with pytest.raises(mlmd_store.StoreUnreachableError) as refused:
        mlmd_store.exists(mariadb)
    assert f"refused user '{MariaDB.USER}'" in str(refused.value)
    assert "set GRACEFUL_METADATA_PASSWORD to its password" in str(refused.value)
    assert "not-the-password" not in str(refused.value)

    monkeypatch.setenv(mlmd_store.PASSWORD_ENV, MariaDB.PASSWORD)
    missing = mariadb.rsplit("/", 1)[0] + "/no_such_database"
    with pytest.raises(mlmd_store.StoreUnreachableError) as missing_database:
        signoff.Store(missing)
    assert (f"has no database 'no_such_database' that user '{MariaDB.USER}' may use"
            in str(missing_database.value))
    assert "create it and grant the user all privileges on it" in str(missing_database.value)


def test_ml_metadata_and_sign_off_share_one_database_on_the_server(mariadb, mariadb_server,
                                                                   capsys, tmp_path):
    """A fresh database has no store yet (read-only use says so and creates nothing); a writer
    creates ml-metadata's tables; the sign-off tables sit beside them without colliding."""
    assert not mlmd_store.exists(mariadb)
    with pytest.raises(FileNotFoundError, match=f"No ML Metadata store in {mariadb}: no run"):
        mlmd_store.open_store(mariadb)
    assert cli.main(["history", "--home", str(tmp_path / "home"), "--metadata", mariadb]) == cli.EXIT_USAGE
    assert "No ML Metadata store in mysql://" in capsys.readouterr().err
    assert not mlmd_store.exists(mariadb), "reading created nothing"

    store = mlmd_store.open_store(mariadb, readonly=False)
    assert mlmd_store.exists(mariadb)
    store.put_artifact_type(metadata_store_pb2.ArtifactType(name="Probe"))
    signoff.Store(mariadb).open_request("run-1", 7, {"accuracy": 0.9})
    database = mariadb.rsplit("/", 1)[1]
    tables = {name for (name,) in mariadb_server.query(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (database,))}
    assert {"MLMDEnv", "Artifact", "Execution", "graceful_signoff_requests",
            "graceful_signoff_decisions"} <= tables
    assert [t.name for t in mlmd_store.open_store(mariadb).get_artifact_types()] == ["Probe"]


def test_localhost_means_the_same_server_to_ml_metadata_as_to_graceful(mariadb):
    """MySQL's client library (inside ml-metadata) reads host "localhost" as its default Unix
    socket; graceful connects over TCP. Both must reach the location's host:port."""
    local = mariadb.replace("@127.0.0.1:", "@localhost:")
    mlmd_store.open_store(local, readonly=False).put_artifact_type(
        metadata_store_pb2.ArtifactType(name="Probe"))
    assert mlmd_store.exists(mariadb)
    assert [t.name for t in mlmd_store.open_store(local).get_artifact_types()] == ["Probe"]


def test_without_mariadb_installed_the_server_fixture_says_how_to_install_it(monkeypatch):
    """tests/mariadb.py's fixture turns this into a failure of every test that needs the server
    (pytest.fail, never a skip)."""
    from tests import mariadb as fixture_module

    monkeypatch.setattr(fixture_module, "_binary", lambda name: None)
    with pytest.raises(FileNotFoundError, match="bash scripts/setup.sh` as root .* apt-get "
                                                "install mariadb-server"):
        MariaDB()


@pytest.mark.parametrize("url, secret", [("mysql://u:pa/ss@h/db", "pa/ss"),
                                         ("mysql://u:pa?ss@h/db", "pa?ss"),
                                         ("mysql://u@h/db?password=s3cret", "s3cret"),
                                         ("mysql://u@h/db#s3cret", "s3cret"),
                                         ("mysql://u:s3cret/db", "s3cret")])
def test_a_malformed_location_never_repeats_what_may_be_a_password(url, secret):
    """A password with '/' or '?' makes urlsplit cut the URL inside it (and find no password); a
    query string may carry one. The message (also in Airflow's import errors) must not echo it."""
    with pytest.raises(ValueError) as refused:
        mlmd_store.mysql_server(url)
    message = str(refused.value)
    assert secret not in message and "mysql://u" in message, message
    assert "password" in message


def test_a_server_that_is_not_strict_still_cuts_or_clamps_nothing(mariadb, mariadb_server):
    """With the server's sql_mode empty (MySQL before 5.7, or an operator's choice), a value that
    does not fit is still refused: the store's sessions are strict, and only a duplicate key is
    absorbed (no INSERT IGNORE, which turns any error into a warning)."""
    [(mode,)] = mariadb_server.query("SELECT @@GLOBAL.sql_mode")
    mariadb_server.query("SET GLOBAL sql_mode = ''")
    try:
        store = signoff.Store(mariadb)
        store.open_request("run-1", 7, {"accuracy": 0.9})
        with pytest.raises(Exception, match="[Oo]ut of range"):
            store.open_request("run-2", 2 ** 63, {"accuracy": 0.9})  # BIGINT holds 2**63 - 1
        assert [r.request_id for r in store.requests()] == ["run-1"]
        assert store.open_request("run-1", 8, {}).model_id == 7  # a duplicate: the first stands
    finally:
        mariadb_server.query("SET GLOBAL sql_mode = %s", (mode,))


def test_a_connection_lost_during_a_statement_says_what_to_do(mariadb, mariadb_server):
    store = signoff.Store(mariadb)
    with store._db() as db:
        with db.cursor() as cursor:
            cursor.execute("SELECT CONNECTION_ID() AS id")
            mariadb_server.query(f"KILL {cursor.fetchone()['id']}")
        with pytest.raises(mlmd_store.StoreUnreachableError,
                           match="cannot reach MySQL at 127.0.0.1:.*start it or fix --metadata"):
            store._execute(db, "SELECT * FROM {requests}")


@pytest.mark.parametrize("code", [1213, 1205], ids=["deadlock", "lock wait timeout"])
def test_a_deadlock_or_lock_wait_timeout_is_retried(mariadb, monkeypatch, code):
    import pymysql

    store = signoff.Store(mariadb)
    real, failures = pymysql.cursors.Cursor.execute, []

    def execute(cursor, query, args=None):
        if "INSERT" in query and len(failures) < 2:
            failures.append(code)
            raise pymysql.err.OperationalError(code, "try restarting transaction")
        return real(cursor, query, args)

    monkeypatch.setattr(pymysql.cursors.Cursor, "execute", execute)
    assert store.open_request("run-1", 7, {}).model_id == 7 and failures == [code, code]
    failures.clear()
    monkeypatch.setattr(signoff, "_MYSQL_ATTEMPTS", 2)  # gives up after its attempts: the error
    with pytest.raises(pymysql.err.OperationalError) as raised:
        store.open_request("run-2", 7, {})
    assert raised.value.args[0] == code
