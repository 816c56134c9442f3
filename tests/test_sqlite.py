"""SQLite connections: one per thread, and those of ended threads are closed, not left to the garbage collector."""

from __future__ import annotations

import gc
import threading

from ancho.sqlite import Database


def test_connections_of_ended_threads_are_closed(tmp_path):
    db = Database(tmp_path / "x.db", "CREATE TABLE t (x INTEGER);")
    seen = []

    def work(i):
        with db.write() as c:
            c.execute("INSERT INTO t VALUES (?)", (i,))
        seen.append(db.conn())

    gc.disable()  # what is closed must be closed by Database, not by collection
    try:
        for i in range(20):
            t = threading.Thread(target=work, args=(i,))
            t.start()
            t.join()
        db.conn()  # this thread's connection; the ended threads' are gone by now
        assert len(db._open) <= 2  # this thread's, and at most the last ended thread's
        closed = 0
        for c in seen[:-1]:
            try:
                c.execute("SELECT 1")
            except Exception:  # sqlite3.ProgrammingError: Cannot operate on a closed database
                closed += 1
        assert closed == len(seen) - 1
    finally:
        gc.enable()
    assert db.conn().execute("SELECT COUNT(*) FROM t").fetchone()[0] == 20


def test_newest_first_narrows_by_the_columns_given_and_orders_by_creation():
    from ancho.sqlite import newest_first

    assert newest_first("SELECT data FROM runs", {"owner": None, "status": None}, None) == (
        "SELECT data FROM runs ORDER BY created DESC",
        [],
    )
    assert newest_first("SELECT data FROM runs", {"owner": "alice'; --", "status": "queued"}, 5) == (
        "SELECT data FROM runs WHERE owner = ? AND status = ? ORDER BY created DESC LIMIT ?",
        ["alice'; --", "queued", 5],
    )
