"""The embedded store's run records: a row a run, its fields as JSON text, its summary in a column of its own.

Why apart: a summary of long trajectories is megabytes (eight numbers a step: one 100,000-step trajectory made a
15 MB record), and what lists runs (``GET /runs``, the web site's list, ``ancho runs``, the dispatcher) shows none of
it. With the summary in its own, last column a listing reads none of its bytes: SQLite leaves a row's later
columns' overflow pages unread. Rows written before this held the summary inside ``data`` (and no column): they
read as they always did, and lose the summary from ``data`` at their next update.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from .. import jsontext
from ..errors import NotFound
from ..sqlite import Database, newest_first
from .base import RunRecord

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    status TEXT NOT NULL,
    created REAL NOT NULL,
    data TEXT NOT NULL,
    summary TEXT
);
CREATE INDEX IF NOT EXISTS runs_owner_created ON runs(owner, created);
"""


class RunRows:
    """The ``runs`` table of a :class:`~ancho.sqlite.Database` (ids are checked by the store before they get here)."""

    def __init__(self, db: Database):
        self.db = db
        db.conn().executescript(SCHEMA)
        columns = {row[1] for row in db.conn().execute("PRAGMA table_info(runs)")}
        if "summary" not in columns:  # a home made before summaries had their column
            try:
                db.conn().execute("ALTER TABLE runs ADD COLUMN summary TEXT")
            except sqlite3.OperationalError as exc:  # (another process opening the same home added it first)
                if "duplicate column" not in str(exc):
                    raise

    def create(self, records: Iterable[RunRecord]) -> None:
        """Insert them all in one transaction."""
        with self.db.write() as db:
            db.executemany(
                "INSERT INTO runs (id, owner, status, created, data, summary) VALUES (?, ?, ?, ?, ?, ?)",
                [(r.id, r.owner, r.status, r.created, *_texts(r)) for r in records],
            )

    def texts(self, run_id: str, owner: str | None) -> tuple[str, str | None]:
        """The run's ``data`` and ``summary`` texts; NotFound if there is no such run (or it is another owner's)."""
        row = self.db.conn().execute("SELECT owner, data, summary FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None or (owner is not None and row[0] != owner):
            raise NotFound(f"no run '{run_id}'")
        return str(row[1]), row[2]

    def fields(self, run_id: str) -> str:
        """The run's ``data`` text alone (its summary column unread); NotFound if there is no such run."""
        row = self.db.conn().execute("SELECT data FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise NotFound(f"no run '{run_id}'")
        return str(row[0])

    def update(self, changes: list[tuple[str, dict[str, Any]]]) -> None:
        """Merge each change into its run's fields, in one transaction; a missing run raises NotFound, none changed."""
        with self.db.write() as db:
            for run_id, change in changes:
                row = db.execute("SELECT data FROM runs WHERE id = ?", (run_id,)).fetchone()
                if row is None:
                    raise NotFound(f"no run '{run_id}'")
                data = jsontext.loads(row[0])
                data.update(change)
                if "summary" not in change:
                    db.execute(
                        "UPDATE runs SET status = ?, data = ? WHERE id = ?",
                        (data["status"], jsontext.dumps(data), run_id),
                    )
                    continue
                summary = data.pop("summary")
                db.execute(
                    "UPDATE runs SET status = ?, data = ?, summary = ? WHERE id = ?",
                    (data["status"], jsontext.dumps({**data, "summary": None}), _summary_text(summary), run_id),
                )

    def replace(self, records: list[RunRecord]) -> None:
        """Write these whole records over theirs, none read back; a missing run raises NotFound, none changed."""
        with self.db.write() as db:
            written = db.executemany(
                "UPDATE runs SET status = ?, data = ?, summary = ? WHERE id = ?",
                [(r.status, *_texts(r), r.id) for r in records],
            ).rowcount
            if written != len(records):
                for r in records:
                    if db.execute("SELECT 1 FROM runs WHERE id = ?", (r.id,)).fetchone() is None:
                        raise NotFound(f"no run '{r.id}'")

    def list(self, owner: str | None, status: str | None, limit: int | None, summaries: bool) -> list[RunRecord]:
        """Newest first; ``summaries=False``: their summary column unread, and None (see ``Store.list_runs``)."""
        select = f"SELECT data{', summary' if summaries else ''} FROM runs"
        sql, args = newest_first(select, {"owner": owner, "status": status}, limit)
        rows = self.db.conn().execute(sql, args).fetchall()
        if summaries:
            return [record_of(data, summary) for data, summary in rows]
        return [RunRecord.from_dict({**jsontext.loads(data), "summary": None}) for (data,) in rows]

    def delete(self, db: sqlite3.Connection, run_id: str) -> None:
        """Within the caller's transaction (the store removes the run's failures and packed chunks with it)."""
        db.execute("DELETE FROM runs WHERE id = ?", (run_id,))


def record_of(data: str, summary: str | None) -> RunRecord:
    """The record a row's texts hold (a row written before summaries had their column: ``data`` holds it)."""
    fields = jsontext.loads(data)
    if summary is not None:
        fields["summary"] = jsontext.loads(summary)
    return RunRecord.from_dict(fields)


def _texts(record: RunRecord) -> tuple[str, str | None]:
    """A record's ``data`` (its fields, summary None) and ``summary`` texts."""
    if record.summary is None:
        return record.to_json(), None
    return replace(record, summary=None).to_json(), _summary_text(record.summary)


def _summary_text(summary: Any) -> str | None:
    return None if summary is None else jsontext.dumps(summary)
