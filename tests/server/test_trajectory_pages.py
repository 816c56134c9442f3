"""JSON pages of a trajectory (``RunResults.trajectory_page``, behind ``GET /runs/{id}/trajectories/{name}``) hold
exactly the rows of the whole trajectory they say, and read only the chunk files they fall in.

Reading every chunk before the page made paging a trajectory quadratic: 0.05 s for the first 100 rows of a
1,000,000 × 100-step run, 2.1 s for its last. Counted here in files read, not timed. The function is called
directly: the REST tests' server is another process.
"""

from __future__ import annotations

import os

import numpy as np
import pyarrow.parquet as pq
import pytest

import ancho
from ancho.chunk import ChunkResult, Failure
from ancho.server.run_results import RunResults
from ancho.stores.base import RunRecord
from ancho.stores.embedded import EmbeddedStore


class Walk(ancho.Model):
    """Seven steps, failed sequences (their chunks' files list their sequences) and non-finite steps now and then."""

    def sequence(self, rng):
        u = float(rng.random())
        if u < 0.03:
            raise ValueError("a failed sequence")
        walk = np.cumsum(rng.normal(size=7))
        if u > 0.95:
            walk[int(u * 100) % 7] = [np.nan, np.inf, -np.inf][int(u * 1000) % 3]
        return {"walk": walk, "u": u}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    store = EmbeddedStore(tmp_path_factory.mktemp("pages") / "store")
    r = ancho.run(Walk, sequences=1500, seed=5, workers=2, max_failures=1500, store=store)
    assert r.status == "succeeded" and r.failures
    yield store, r
    store.close()


def expected(sequences: np.ndarray, walk: np.ndarray, offset: int, limit: int) -> tuple[list, list]:
    """The slice of the whole trajectory a page should hold, non-finite steps as None (JSON null)."""
    values = [[float(v) if np.isfinite(v) else None for v in row] for row in walk[offset : offset + limit]]
    return sequences[offset : offset + limit].tolist(), values


def rows_per_file(store: EmbeddedStore, run_id: str) -> list[tuple[str, int]]:
    return [(path, pq.read_metadata(path).num_rows) for _, _, path in store.results(run_id).files]


def boundaries(files: list[tuple[str, int]]) -> list[int]:
    """The row each chunk file's rows begin at."""
    return np.cumsum([0] + [n for _, n in files])[:-1].tolist()


@pytest.fixture
def reads(monkeypatch):
    """The chunk files whose footers and whose data are read, in order."""
    seen: dict[str, list[str]] = {"footers": [], "data": []}
    footer = pq.read_metadata

    class Counting(pq.ParquetFile):
        def __init__(self, source, *args, **kwargs):
            seen["data"].append(os.fspath(source))
            super().__init__(source, *args, **kwargs)

    def counting_footer(where, *args, **kwargs):
        seen["footers"].append(os.fspath(where))
        return footer(where, *args, **kwargs)

    monkeypatch.setattr(pq, "ParquetFile", Counting)
    monkeypatch.setattr(pq, "read_metadata", counting_footer)
    return seen


def test_pages_are_slices_of_the_whole_trajectory(run):
    store, r = run
    walk, sequences = r.trajectory("walk"), store.read_column(r.run_id, "sequence")
    total = len(sequences)
    assert walk.shape == (total, 7) and not np.isfinite(walk).all()
    files = rows_per_file(store, r.run_id)
    starts = boundaries(files)
    assert len(files) > 10 and min(n for _, n in files) < 10  # big chunks and tiny ones (the run's last)
    results = RunResults(store)
    t = results.trajectory(r.record.owner, r.run_id, "walk")
    cases = [
        (0, 100),
        (3, 1),
        (starts[5] - 2, 5),  # across two chunks
        (starts[6] + 17, 40),  # inside one
        (starts[-8] - 1, 30),  # across the run's last, tiny chunks
        (total // 2, 1000),
        (total - 3, 100),  # the run's end: a short page
        (total, 10),  # past the end: empty
        (total + 500, 10),
    ]
    for offset, limit in cases:
        page = results.trajectory_page(t, offset, limit)
        want_sequences, want_values = expected(sequences, walk, offset, limit)
        assert page["sequences"] == want_sequences, (offset, limit)
        assert page["values"] == want_values, (offset, limit)
        assert page["offset"] == offset and page["steps"] == 7 and page["name"] == "walk" and page["run"] == r.run_id
        assert all(type(s) is int for s in page["sequences"])
    assert results.trajectory_page(t, total - 3, 100)["sequences"] == sequences[-3:].tolist()
    assert results.trajectory_page(t, total, 10)["values"] == []


def test_every_page_in_turn_is_the_whole_trajectory(run):
    store, r = run
    results = RunResults(store)
    t = results.trajectory(r.record.owner, r.run_id, "walk")
    sequences, values = [], []
    offset = 0
    while (page := results.trajectory_page(t, offset, 97))["sequences"]:
        sequences += page["sequences"]
        values += page["values"]
        offset += len(page["sequences"])
    assert (sequences, values) == expected(
        store.read_column(r.run_id, "sequence"), r.trajectory("walk"), 0, len(sequences) + 1
    )


def test_a_page_reads_only_the_chunk_files_it_falls_in(run, reads):
    store, r = run
    files = rows_per_file(store, r.run_id)
    starts = boundaries(files)
    paths = [p for p, _ in files]
    k = max(range(len(files) - 1), key=lambda i: files[i][1])  # the largest chunk (not the last)
    results = RunResults(store)
    t = results.trajectory(r.record.owner, r.run_id, "walk")
    reads["footers"].clear()
    reads["data"].clear()

    results.trajectory_page(t, starts[k] + files[k][1] // 2, 10)  # a page inside one chunk, deep in the run
    assert reads["data"] == [paths[k]]
    assert reads["footers"] == paths[: k + 1]  # the row counts before it, none after

    reads["footers"].clear()
    reads["data"].clear()
    results.trajectory_page(t, starts[k + 1] - 3, 6)  # across two
    assert reads["data"] == paths[k : k + 2]

    reads["data"].clear()
    results.trajectory_page(t, 0, 5)
    assert reads["data"] == paths[:1]


# -- chunk files of several row groups, and of none --------------------------------------------------------------
STEPS = 5


@pytest.fixture
def grouped(tmp_path):
    """Chunks 0..49 (every sequence), 50..119 (some failed: a sequence column), 120..124 (all failed: no rows) and
    125..399 (every sequence, rewritten in row groups of 32 rows, as an export or a larger chunk may be)."""
    store = EmbeddedStore(tmp_path / "store")
    store.create_run(RunRecord(id="g1", owner="alice", status="succeeded", schema={"walk": f"float[{STEPS}]"}))

    def chunk(start: int, stop: int, sequences: np.ndarray) -> ChunkResult:
        walk = sequences[:, None] * 10.0 + np.arange(STEPS)
        failed = sorted(set(range(start, stop)) - set(sequences.tolist()))
        return ChunkResult(start, stop, sequences, {"walk": walk}, [Failure(s, "ValueError: no") for s in failed])

    everything = np.arange(400, dtype=np.int64)
    some = np.array([s for s in range(50, 120) if s % 7], dtype=np.int64)
    for start, stop, seqs in [(0, 50, everything[:50]), (50, 120, some), (120, 125, everything[:0])]:
        store.write_chunk("g1", chunk(start, stop, seqs))
    store.write_chunk("g1", chunk(125, 400, everything[125:]))
    last = store.results("g1").files[-1][2]
    table = pq.read_table(last)
    pq.write_table(table, last, row_group_size=32)
    assert pq.read_metadata(last).num_row_groups == 9
    sequences = np.concatenate([everything[:50], some, everything[125:]])
    yield RunResults(store), sequences, sequences[:, None] * 10.0 + np.arange(STEPS)
    store.close()


def test_pages_of_row_groups_and_of_chunks_without_rows(grouped):
    results, sequences, walk = grouped
    t = results.trajectory("alice", "g1", "walk")
    total = len(sequences)
    first_grouped = 50 + int(np.count_nonzero(np.arange(50, 120) % 7))
    cases = [(0, 50), (45, 10), (first_grouped - 2, 4), (first_grouped + 31, 2), (first_grouped + 100, 70)]
    for offset, limit in cases + [(total - 5, 20), (total, 1)]:
        page = results.trajectory_page(t, offset, limit)
        assert (page["sequences"], page["values"]) == expected(sequences, walk, offset, limit), (offset, limit)


def test_a_store_whose_chunks_are_not_files_pages_the_same(grouped, monkeypatch):
    """A store whose results are no chunk files (Cassandra's) is paged through its batches, with the same rows."""
    results, sequences, walk = grouped
    t = results.trajectory("alice", "g1", "walk")
    pages = {(o, n): results.trajectory_page(t, o, n) for o in (0, 45, 110, 300, len(sequences)) for n in (1, 33)}
    monkeypatch.setattr(results.store, "results", lambda run_id: None)
    for (offset, limit), page in pages.items():
        assert results.trajectory_page(t, offset, limit) == page
        assert (page["sequences"], page["values"]) == expected(sequences, walk, offset, limit)


def test_a_chunk_stored_without_the_trajectory_pages_as_nulls(tmp_path):
    """A chunk written before the run had the output (as the store's reads fill it: null), not a failed page."""
    store = EmbeddedStore(tmp_path / "store")
    store.create_run(RunRecord(id="n1", owner="alice", status="succeeded", schema={"walk": "float[2]"}))
    store.write_chunk("n1", ChunkResult(0, 3, np.arange(3), {"walk": np.ones((3, 2))}))
    store.write_chunk("n1", ChunkResult(3, 6, np.array([3, 5]), {}, [Failure(4, "ValueError: no")]))
    results = RunResults(store)
    page = results.trajectory_page(results.trajectory("alice", "n1", "walk"), 1, 10)
    assert page["sequences"] == [1, 2, 3, 5]
    assert page["values"] == [[1.0, 1.0], [1.0, 1.0], [None, None], [None, None]]
    store.close()
