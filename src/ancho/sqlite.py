"""SQLite connections shared by the embedded store and the server's own tables.

One connection per thread (sqlite3 connections must not cross threads), in
autocommit mode with WAL so readers never wait for the writer; ``write()``
wraps a block in ``BEGIN IMMEDIATE … COMMIT`` so a read-modify-write is atomic
across threads and processes.

A new database file is made 0600 before SQLite opens it (its ``-wal`` and
``-shm`` files take the same mode): it holds results and token hashes.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .files import private_file


class Database:
    def __init__(self, path: Path, schema: str = ""):
        self.path = path
        if str(path) != ":memory:":
            try:
                private_file(path)
            except FileNotFoundError:  # no such folder: sqlite3 says so below, as before
                pass
        self._local = threading.local()
        if schema:
            self.conn().executescript(schema)

    def conn(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
        return db

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        db = self.conn()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None
