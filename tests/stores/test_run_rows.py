"""The embedded store's run records keep their summary in a column of its own (``stores/run_rows.py``): listings
read none of it, and homes written before the column existed read and update as they did."""

from __future__ import annotations

import json
import sqlite3

import pytest

from ancho.stores.base import RunRecord
from ancho.stores.embedded import EmbeddedStore

SUMMARY = {"sequences": 10, "outputs": {"x": {"mean": 1.5}}, "trajectories": {"w": {"steps": 3, "mean": [0, 1, 2]}}}


def columns(home):
    with sqlite3.connect(home / "runs.db") as db:
        return {r[0]: (r[1], r[2]) for r in db.execute("SELECT id, data, summary FROM runs")}


def test_the_summary_is_stored_apart_and_read_back_whole(tmp_path):
    store = EmbeddedStore(tmp_path, fsync=False)
    store.create_runs([RunRecord(id="a", model="M"), RunRecord(id="b", model="M", status="succeeded", summary=SUMMARY)])
    store.update_run("a", status="succeeded", done=10, summary=SUMMARY)
    store.replace_runs([RunRecord(id="b", model="M", status="succeeded", summary={**SUMMARY, "sequences": 11})])
    for run_id, sequences in (("a", 10), ("b", 11)):
        data, summary = columns(tmp_path)[run_id]
        assert json.loads(data)["summary"] is None and json.loads(summary)["sequences"] == sequences
        assert store.get_run(run_id).summary == {**SUMMARY, "sequences": sequences}
        assert store.versioned_run(run_id)[1].summary["sequences"] == sequences
    version = store.run_version("a")
    store.update_run("a", done=10)  # (the same fields: the texts, and so the version, unchanged)
    assert store.run_version("a") == version and store.get_run("a").summary == SUMMARY
    store.update_run("a", summary={**SUMMARY, "sequences": 12})  # a summary alone changes the version too
    assert store.run_version("a") != version
    store.update_run("a", summary=None)
    assert columns(tmp_path)["a"][1] is None and store.get_run("a").summary is None


def test_listings_leave_the_summary_column_unread(tmp_path):
    """A summary column that could not even be decoded: listings without summaries never touch it."""
    store = EmbeddedStore(tmp_path, fsync=False)
    store.create_run(RunRecord(id="a", model="M", status="succeeded", summary=SUMMARY))
    with sqlite3.connect(tmp_path / "runs.db") as db:
        db.execute("UPDATE runs SET summary = 'not JSON' WHERE id = 'a'")
    (listed,) = store.list_runs(summaries=False)
    assert listed.id == "a" and listed.status == "succeeded" and listed.summary is None
    with pytest.raises(ValueError):
        store.get_run("a")


def test_a_home_from_before_the_summary_column_reads_and_updates_as_before(tmp_path):
    with sqlite3.connect(tmp_path / "runs.db") as db:
        db.executescript(
            "CREATE TABLE runs (id TEXT PRIMARY KEY, owner TEXT NOT NULL, status TEXT NOT NULL, created REAL NOT NULL,"
            " data TEXT NOT NULL); CREATE INDEX runs_owner_created ON runs(owner, created);"
        )
        for run_id in ("old", "older"):
            record = RunRecord(id=run_id, model="M", status="succeeded", params={"cap": float("inf")}, summary=SUMMARY)
            db.execute(
                "INSERT INTO runs VALUES (?, ?, ?, ?, ?)",
                (run_id, "local", "succeeded", 1.0, json.dumps(record.to_dict())),
            )
    store = EmbeddedStore(tmp_path, fsync=False)
    EmbeddedStore(tmp_path, fsync=False)  # (a second opening finds the column there)
    assert store.get_run("old").summary == SUMMARY and store.get_run("old").params == {"cap": float("inf")}
    assert [r.summary for r in store.list_runs(summaries=False)] == [None, None]
    assert [r.summary for r in store.list_runs()] == [SUMMARY, SUMMARY]
    store.update_run("old", done=3)  # an update without a summary keeps the one inside the old row
    assert store.get_run("old").summary == SUMMARY and columns(tmp_path)["old"][1] is None
    store.update_run("older", summary={**SUMMARY, "sequences": 2})  # one with a summary moves it to the column
    data, summary = columns(tmp_path)["older"]
    assert json.loads(data)["summary"] is None and json.loads(summary)["sequences"] == 2
    store.delete_run("old")
    assert [r.id for r in store.list_runs()] == ["older"]
