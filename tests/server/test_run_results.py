"""The service's reads of a run's results (server/run_results.py) check the owner before anything is read or
streamed: another user's run is a NotFound at the call (so a route answers 404, never a 200 that breaks off), and
the owner gets exactly the stored rows."""

from __future__ import annotations

import io

import numpy as np
import pyarrow.parquet as pq
import pytest

from ancho.chunk import ChunkResult
from ancho.errors import NotFound
from ancho.server.run_results import RunResults
from ancho.stores.base import RunRecord
from ancho.stores.embedded import EmbeddedStore


@pytest.fixture
def results(tmp_path):
    store = EmbeddedStore(tmp_path / "store")
    store.create_run(RunRecord(id="r1", owner="alice", status="succeeded", schema={"x": "float", "walk": "float[3]"}))
    seqs = np.arange(5, dtype=np.int64)
    walk = np.stack([seqs * 1.0, seqs * 2.0, seqs * 3.0], axis=1)
    store.write_chunk("r1", ChunkResult(0, 5, seqs, {"x": seqs * 0.5, "walk": walk}, [], 0.01))
    yield RunResults(store)
    store.close()


def test_another_users_run_is_not_found_at_the_call(results):
    sink = io.BytesIO()
    calls = [
        lambda: results.csv("bob", "r1"),  # a generator would fail only once streamed: this fails now
        lambda: results.write_parquet("bob", "r1", sink),
        lambda: results.page("bob", "r1", 0, 10),
        lambda: results.trajectory("bob", "r1", "walk"),
        lambda: results.plots("r1", user="bob"),
        lambda: results.csv("alice", "nope"),
    ]
    for call in calls:
        with pytest.raises(NotFound):
            call()
    assert sink.getvalue() == b""


def test_the_owner_reads_exactly_what_was_stored(results):
    page = results.page("alice", "r1", 1, 3)
    assert page == {
        "run": "r1",
        "total": 5,
        "offset": 1,
        "limit": 3,
        "next": 4,
        "results": [{"sequence": s, "x": s * 0.5, "walk": [s * 1.0, s * 2.0, s * 3.0]} for s in (1, 2, 3)],
    }
    text = b"".join(results.csv("alice", "r1")).decode()
    lines = text.splitlines()
    assert lines[0] == "sequence,x"
    assert [(int(a), float(b)) for a, b in (line.split(",") for line in lines[1:])] == [(s, s * 0.5) for s in range(5)]
    sink = io.BytesIO()
    results.write_parquet("alice", "r1", sink)
    table = pq.read_table(io.BytesIO(sink.getvalue()))
    assert table.column("x").to_pylist() == [s * 0.5 for s in range(5)]


def test_a_trajectory_is_read_only_through_its_checked_handle(results):
    with pytest.raises(NotFound, match="no trajectory output 'x'"):
        results.trajectory("alice", "r1", "x")  # a plain output is not a trajectory
    walk = results.trajectory("alice", "r1", "walk")
    assert walk.steps == 3
    page = results.trajectory_page(walk, 3, 10)
    assert page["sequences"] == [3, 4] and page["values"] == [[3.0, 6.0, 9.0], [4.0, 8.0, 12.0]]
    rows = b"".join(results.trajectory_csv(walk)).decode().splitlines()
    assert rows[0] == "sequence,step,value" and len(rows) == 1 + 5 * 3
    parsed = [(int(a), int(b), float(c)) for a, b, c in (row.split(",") for row in rows[1:])]
    assert parsed == [(q, k, q * (k + 1.0)) for q in range(5) for k in range(3)]
    sink = io.BytesIO()
    results.write_trajectory_parquet(walk, sink)
    table = pq.read_table(io.BytesIO(sink.getvalue()))
    assert table.column_names == ["sequence", "walk"] and table.column("walk").to_pylist()[4] == [4.0, 8.0, 12.0]
