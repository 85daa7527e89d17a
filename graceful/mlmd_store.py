"""Where the ML Metadata store is, opening it, and telling a damaged or unreachable store from a
missing or empty one.

Why a module: every command (run, history, report, lineage, approve/reject, reconcile) and every
runner opens the store, and a garbled file or a server that is down must give all of them the same
single message naming the store, not a traceback from deep inside ml-metadata ("file is not a
database", or MySQL's empty "mysql_real_connect failed: errno: , error: ").

A store's *location* is a string: a path (the embedded SQLite file, `<home>/metadata.sqlite` by
default) or `mysql://user@host:port/database` (a MySQL or MariaDB server, so that the metadata can
be backed up centrally and pipeline pods, the Slack gate and the CLI share it without a shared
volume). The password is never part of a location: it is read from $GRACEFUL_METADATA_PASSWORD
when connecting, so it appears in no project file, command line, log line or compiled pipeline.
Parsing a location loads neither ml-metadata nor the MySQL driver (pipeline configs read it).
"""
from __future__ import annotations

import dataclasses
import os
import sqlite3
import urllib.parse

SQLITE_HEADER = b"SQLite format 3\x00"
MYSQL_SCHEME = "mysql"
MYSQL_DEFAULT_PORT = 3306
PASSWORD_ENV = "GRACEFUL_METADATA_PASSWORD"
LOCATION_HELP = ("'' for the embedded SQLite store <home>/metadata.sqlite, or "
                 "mysql://user@host:port/database with the password in $" + PASSWORD_ENV)
MLMD_TABLE = "MLMDEnv"  # ml-metadata's schema-version table: present once a store was created
# MySQL server errors: the user or password is wrong; the database is missing or not the user's
# (a server does not tell these two apart to a user without rights on it). Anything else: unreachable.
_ACCESS_DENIED, _NO_DATABASE = 1045, (1044, 1049)


class StoreDamagedError(ValueError):
    """The metadata store exists but cannot be read as an ML Metadata store."""


class StoreUnreachableError(ConnectionError):
    """The metadata server cannot be reached or refuses the configured user."""


@dataclasses.dataclass(frozen=True)
class MySQLServer:
    """A database on a MySQL/MariaDB server. `str()` is its location, without any password."""

    user: str
    host: str
    port: int
    database: str

    def __str__(self) -> str:
        return f"{MYSQL_SCHEME}://{self.user}@{self.host}:{self.port}/{self.database}"

    @property
    def password(self) -> str:
        return os.environ.get(PASSWORD_ENV, "")

    def connect(self, database: bool = True, init_command: str | None = None):
        """A PyMySQL connection (autocommit, rows as dicts) to the database, or with
        `database=False` to the server only, running `init_command` first if given;
        StoreUnreachableError naming what to fix."""
        import pymysql

        try:
            return pymysql.connect(
                host=self.host, port=self.port, user=self.user, password=self.password,
                database=self.database if database else None, autocommit=True, charset="utf8mb4",
                connect_timeout=10, cursorclass=pymysql.cursors.DictCursor,
                init_command=init_command)
        except pymysql.err.OperationalError as error:
            raise self._unreachable(error) from None

    def _unreachable(self, error: Exception) -> StoreUnreachableError:
        code = error.args[0] if error.args else None
        detail = error.args[1] if len(error.args) > 1 else str(error)
        where = f"MySQL at {self.host}:{self.port}"
        if code == _ACCESS_DENIED:
            return StoreUnreachableError(
                f"{where} refused user '{self.user}' ({detail}): fix the user in --metadata "
                f"(PipelineConfig.metadata) or set {PASSWORD_ENV} to its password.")
        if code in _NO_DATABASE:
            return StoreUnreachableError(
                f"{where} has no database '{self.database}' that user '{self.user}' may use "
                f"({detail}): create it and grant the user all privileges on it (README: ML "
                "Metadata on MySQL/MariaDB), or fix --metadata (PipelineConfig.metadata).")
        return StoreUnreachableError(
            f"cannot reach {where} ({detail}): start it or fix --metadata "
            f"(PipelineConfig.metadata); password from {PASSWORD_ENV}.")


def mysql_server(location: str) -> MySQLServer | None:
    """The MySQL database a location names; None for a SQLite path. ValueError for a URL graceful
    cannot use, above all one carrying a password (it would end up in shell histories, project
    files and logs)."""
    if "://" not in location:
        return None
    url = urllib.parse.urlsplit(location)
    if url.scheme != MYSQL_SCHEME:
        raise ValueError(f"metadata location {url.scheme}://...: unsupported; use {LOCATION_HELP}.")
    # Judged on the raw text, not on urlsplit's reading: a password holding '/', '?' or '#'
    # (mysql://u:pa/ss@h/db) makes urlsplit cut the URL inside the password.
    userinfo, at, _ = location.split("://", 1)[1].rpartition("@")
    if url.password is not None or (at and ":" in userinfo):
        raise ValueError(f"the metadata location carries a password: remove it "
                         f"({_redacted(location)}) and set ${PASSWORD_ENV} instead; a password "
                         "in a URL ends up in shell histories, project files and logs.")
    if url.query or url.fragment or "?" in location or "#" in location:
        raise ValueError(f"metadata location {_redacted(location)} is not "
                         "mysql://user@host:port/database: it takes no ?options or #fragment "
                         f"(they may carry secrets; not repeated here); use {LOCATION_HELP}.")
    try:
        port = url.port or MYSQL_DEFAULT_PORT
    except ValueError:
        port = None
    database = url.path.lstrip("/")
    if not (url.username and url.hostname and port and database) or "/" in database:
        raise ValueError(f"metadata location {_redacted(location)!r} is not "
                         f"mysql://user@host:port/database (port optional, default "
                         f"{MYSQL_DEFAULT_PORT}); use {LOCATION_HELP}.")
    return MySQLServer(urllib.parse.unquote(url.username), url.hostname, port, database)


def _redacted(location: str) -> str:
    """A mysql:// location as it may be shown: without a password (anything between the user and
    the last '@'), a ?query or #fragment (`?password=...`), or a non-numeric "port" (`u:secret`
    without an '@' reads as host:port)."""
    rest = location.split("://", 1)[1]
    userinfo, at, hostpath = rest.rpartition("@")
    if at and ":" in userinfo:
        rest = f"{userinfo.split(':', 1)[0] or 'user'}@{hostpath}"
    cut = min(i for i in (rest.find("?"), rest.find("#"), len(rest)) if i >= 0)
    rest, tail = rest[:cut], ("?..." if cut < len(rest) else "")
    userinfo, at, hostpath = rest.rpartition("@")
    hostport, slash, path = hostpath.partition("/")
    host, colon, port = hostport.partition(":")
    if colon and not port.isdigit():
        hostport = f"{host}:***"
    return f"{MYSQL_SCHEME}://{userinfo}{at}{hostport}{slash}{path}{tail}"


def connection_config(location: str, readonly: bool = False):
    """The ml-metadata ConnectionConfig of a location, for MetadataStore and TFX's runners. It holds
    the MySQL password from the environment: hand it to ml-metadata, never print it."""
    from ml_metadata.proto import metadata_store_pb2

    config = metadata_store_pb2.ConnectionConfig()
    server = mysql_server(location)
    if server is None:
        config.sqlite.filename_uri = location
        config.sqlite.connection_mode = (
            metadata_store_pb2.SqliteMetadataSourceConfig.READONLY if readonly else
            metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE)
    else:
        # The MySQL client library inside ml-metadata takes "localhost" to mean its default Unix
        # socket, not host:port; graceful's own connections (PyMySQL) use TCP. One address for both.
        config.mysql.host = "127.0.0.1" if server.host == "localhost" else server.host
        config.mysql.port = server.port
        config.mysql.database, config.mysql.user = server.database, server.user
        config.mysql.password = server.password
        config.mysql.skip_db_creation = readonly
    return config


def damaged(location: str, why: str) -> StoreDamagedError:
    return StoreDamagedError(
        f"The ML Metadata store {location} is damaged ({why}). Nothing was changed. Restore it "
        "from a backup; it holds which model is served and every run's lineage, so graceful will "
        "not run on this home without it (moving it aside and starting afresh loses that history, "
        "and the next run then refuses to train while serving/ holds a model the new store does "
        "not know).")


def check_sqlite(path: str) -> None:
    """Raises StoreDamagedError unless `path` is a readable SQLite database (an empty file is a
    valid, empty database); a quick integrity check reads every page of a small store."""
    with open(path, "rb") as handle:
        header = handle.read(len(SQLITE_HEADER))
    if header and header != SQLITE_HEADER:
        raise damaged(path, "not an SQLite database")
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            verdict = db.execute("PRAGMA quick_check").fetchone()[0]
        finally:
            db.close()
    except sqlite3.DatabaseError as error:
        raise damaged(path, str(error)) from None
    if verdict != "ok":
        raise damaged(path, f"integrity check: {verdict}")


def exists(location: str) -> bool:
    """Whether a store is there yet (a run has happened): the SQLite file exists, or the MySQL
    database holds ml-metadata's tables. Never answers for a store it cannot read: a damaged file
    raises StoreDamagedError and an unreachable server StoreUnreachableError, since "no store" would
    make a run start a new history beside the real one."""
    server = mysql_server(location)
    if server is None:
        if not os.path.exists(location):
            return False
        check_sqlite(location)
        return True
    db = server.connect(database=False)
    try:
        with db.cursor() as cursor:
            cursor.execute("SELECT 1 FROM information_schema.tables WHERE table_schema = %s AND "
                           "table_name = %s", (server.database, MLMD_TABLE))
            return cursor.fetchone() is not None
    finally:
        db.close()


def open_store(location: str, readonly: bool = True):
    """The ML Metadata store at `location` (a MetadataStore); FileNotFoundError if there is none
    (read-only use; otherwise it is created), StoreDamagedError if it cannot be read,
    StoreUnreachableError if its server cannot be reached. (SQLite is opened read-only for
    read-only use; MySQL has no such mode, so there read-only means only: create nothing.)"""
    from ml_metadata import metadata_store

    if not exists(location) and readonly:
        where = "at" if mysql_server(location) is None else "in"
        raise FileNotFoundError(f"No ML Metadata store {where} {location}: no run has happened "
                                "with it yet (run `graceful run` first, or pass --home / "
                                "--metadata).")
    try:
        return metadata_store.MetadataStore(connection_config(location, readonly))
    except RuntimeError as error:
        server = mysql_server(location)
        if server is not None and "mysql_real_connect" in str(error):
            raise StoreUnreachableError(
                f"ml-metadata's MySQL client could not log in to {server.host}:{server.port} as "
                f"'{server.user}', although the server accepts that user: on MySQL 8 the user needs "
                "the mysql_native_password plugin (ALTER USER ... IDENTIFIED WITH "
                "mysql_native_password BY '...'), which ml-metadata's client requires.") from None
        raise damaged(location, str(error).split(" query:")[0]) from None
