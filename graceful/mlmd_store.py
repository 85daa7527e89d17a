"""Opening the ML Metadata store, and telling a damaged store from a missing or empty one.

Why a module: every command (run, history, report, lineage, approve/reject, reconcile) opens the
store, and a garbled file must give all of them the same single message naming the file, not a
traceback from deep inside ml-metadata ("file is not a database").
"""
from __future__ import annotations

import os
import sqlite3

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

SQLITE_HEADER = b"SQLite format 3\x00"


class StoreDamagedError(ValueError):
    """The metadata store exists but cannot be read as an ML Metadata store."""


def damaged(path: str, why: str) -> StoreDamagedError:
    return StoreDamagedError(
        f"The ML Metadata store {path} is damaged ({why}). Nothing was changed. Restore it from a "
        "backup; it holds which model is served and every run's lineage, so graceful will not run "
        "on this home without it (moving it aside and starting afresh loses that history, and the "
        "next run then refuses to train while serving/ holds a model the new store does not know).")


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


def open_store(path: str, readonly: bool = True) -> metadata_store.MetadataStore:
    """The SQLite ML Metadata store at `path`; FileNotFoundError if there is none (read-only use),
    StoreDamagedError if it cannot be read."""
    if not os.path.exists(path):
        if readonly:
            raise FileNotFoundError(f"No ML Metadata store at {path}: no run has happened in this "
                                    "home yet (run `graceful run` first, or pass --home).")
    else:
        check_sqlite(path)
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = path
    config.sqlite.connection_mode = (
        metadata_store_pb2.SqliteMetadataSourceConfig.READONLY if readonly else
        metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE)
    try:
        return metadata_store.MetadataStore(config)
    except RuntimeError as error:
        raise damaged(path, str(error).split(" query:")[0]) from None
