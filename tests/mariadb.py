"""A real MariaDB server for the tests (and the metadata benchmark), started from Debian's packages.

Why a throwaway server rather than the machine's: CI starts on a fresh machine where no database
runs, and tests must not touch a developer's databases. One server per test session, on a temporary
data directory (`mariadb-install-db`), bound to 127.0.0.1 on a free port with its own socket and
pid file; each test gets a fresh database and the user graceful with a password, granted that
database only (what the README tells an operator to set up); the server is stopped at the end.

A missing server binary FAILS the tests that need it (never skips them): `bash scripts/setup.sh`
installs Debian's mariadb-server when run as root and prints how to otherwise.
"""
from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import tempfile
import time

import pymysql
import pytest

from graceful import mlmd_store

INSTALL_HINT = ("MariaDB's server (mariadbd, mariadb-install-db) is not installed; the ML Metadata "
                "on MySQL/MariaDB tests need it. Run `bash scripts/setup.sh` as root (it runs "
                "apt-get install mariadb-server) or `sudo apt-get install mariadb-server`.")


def _binary(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/usr/local/sbin")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (at the moment of asking)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class MariaDB:
    """One mariadbd process on a temporary data directory; `database()` hands out fresh
    databases as mysql:// locations (password: PASSWORD, for $GRACEFUL_METADATA_PASSWORD)."""

    USER, PASSWORD = "graceful", "test-only-password"

    def __init__(self):
        self.server, install = _binary("mariadbd"), _binary("mariadb-install-db")
        if not (self.server and install):
            raise FileNotFoundError(INSTALL_HINT)
        self.root = tempfile.mkdtemp(prefix="graceful-mariadb-")
        self.datadir = os.path.join(self.root, "data")
        self.socket = os.path.join(self.root, "mysqld.sock")
        self.log = os.path.join(self.root, "error.log")
        self.as_root = ["--user=root"] if os.geteuid() == 0 else []  # mariadbd refuses root otherwise
        subprocess.run([install, "--no-defaults", f"--datadir={self.datadir}",
                        "--auth-root-authentication-method=normal", "--skip-test-db",
                        *self.as_root], check=True, capture_output=True, timeout=120)
        self.process, self.port, self._names = None, None, itertools.count(1)

    def start(self, timeout: float = 60.0) -> "MariaDB":
        self.port = free_port()
        self.process = subprocess.Popen(
            [self.server, "--no-defaults", f"--datadir={self.datadir}", f"--socket={self.socket}",
             f"--pid-file={os.path.join(self.root, 'mysqld.pid')}", f"--port={self.port}",
             "--bind-address=127.0.0.1", "--skip-name-resolve", f"--log-error={self.log}",
             *self.as_root], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._admin().close()
                break
            except pymysql.err.OperationalError:  # not up yet
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"mariadbd did not start on 127.0.0.1:{self.port}; its log "
                                       f"{self.log} ends:\n{self.log_tail()}") from None
                time.sleep(0.1)
        with self._admin() as db, db.cursor() as cursor:
            cursor.execute(f"CREATE USER '{self.USER}'@'%' IDENTIFIED BY '{self.PASSWORD}'")
        return self

    def _admin(self) -> pymysql.Connection:
        return pymysql.connect(unix_socket=self.socket, user="root", autocommit=True,
                               connect_timeout=5)

    def log_tail(self, lines: int = 20) -> str:
        try:
            with open(self.log) as handle:
                return "".join(handle.readlines()[-lines:])
        except OSError:
            return "(no log)"

    def database(self, prefix: str = "t") -> str:
        """A new empty database that USER may use; its mysql:// location."""
        name = f"{prefix}_{next(self._names)}"
        with self._admin() as db, db.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE `{name}`")
            cursor.execute(f"GRANT ALL PRIVILEGES ON `{name}`.* TO '{self.USER}'@'%'")
        return f"{mlmd_store.MYSQL_SCHEME}://{self.USER}@127.0.0.1:{self.port}/{name}"

    def query(self, sql: str, args: tuple = ()) -> list[tuple]:
        """Rows of `sql`, run as the server's root (to look at what graceful wrote)."""
        with self._admin() as db, db.cursor() as cursor:
            cursor.execute(sql, args)
            return list(cursor.fetchall())

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # a clean shutdown
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def mariadb_server():
    """The session's MariaDB server (started on first use)."""
    try:
        server = MariaDB().start()
    except FileNotFoundError as missing:
        pytest.fail(str(missing), pytrace=False)
    yield server
    server.stop()


@pytest.fixture
def mariadb(mariadb_server, monkeypatch) -> str:
    """A fresh database's location, mysql://graceful@127.0.0.1:PORT/t_N, with its password in
    $GRACEFUL_METADATA_PASSWORD."""
    monkeypatch.setenv(mlmd_store.PASSWORD_ENV, MariaDB.PASSWORD)
    return mariadb_server.database()
