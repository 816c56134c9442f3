"""SQLite connections shared by the embedded store and the server's own tables.

One connection per thread (sqlite3 connections must not cross threads), in
autocommit mode with WAL so readers never wait for the writer; ``write()``
wraps a block in ``BEGIN IMMEDIATE … COMMIT`` so a read-modify-write is atomic
across threads and processes.

A connection belongs to its thread; a server's threads come and go (one per
run, a pool for requests), so each new connection first closes those of
threads that have ended, rather than leaving them to the garbage collector
(which let a busy server's open files grow with every run).

A new database file is made 0600 before SQLite opens it (its ``-wal`` and
``-shm`` files take the same mode): it holds results and token hashes.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import StoreError
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
        self._lock = threading.Lock()
        #: every open connection by its thread, so that ended threads' connections are closed
        self._open: dict[threading.Thread, sqlite3.Connection] = {}
        if schema:
            self.conn().executescript(schema)

    def conn(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
            with self._lock:
                for thread in [t for t in self._open if not t.is_alive()]:
                    self._open.pop(thread).close()
                self._open[threading.current_thread()] = db
        return db

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A transaction; a full disk is a one-line :class:`StoreError` (rolled back), not SQLite's bare error."""
        db = self.conn()
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            if getattr(exc, "sqlite_errorcode", None) != sqlite3.SQLITE_FULL:
                raise
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise StoreError(
                f"could not write {self.path}: the disk is full; free some space under {self.path.parent} and run again"
            ) from None

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None
            with self._lock:
                self._open.pop(threading.current_thread(), None)


def newest_first(select: str, where: dict[str, object], limit: int | None) -> tuple[str, list[object]]:
    """``select`` (``SELECT … FROM table``) narrowed to the rows whose columns equal ``where``'s values (those not
    None), newest ``created`` first, at most ``limit`` of them: the SQL and its arguments, values never in the text."""
    shown = {column: value for column, value in where.items() if value is not None}
    sql = select + "".join(f" {'AND' if i else 'WHERE'} {column} = ?" for i, column in enumerate(shown))
    args = list(shown.values())
    sql += " ORDER BY created DESC"
    if limit is not None:
        sql += " LIMIT ?"
        args.append(int(limit))
    return sql, args
