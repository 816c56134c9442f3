"""Many runs' small chunks stored together (``Store.write_chunks``: a study's tiny points) read back as if each had
been written alone, in every store; the embedded store keeps them as rows until a run is first read."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from ancho.chunk import ChunkResult
from ancho.stores import read_results_source
from ancho.stores.chunk_layout import chunk_files
from ancho.stores.embedded import PACKED_BYTES, EmbeddedStore

from .test_contract import chunk, record, series_chunk

SCHEMA = {"x": "float", "k": "int", "b": "bool"}


def _runs(store, n: int) -> list[str]:
    ids = [f"p{i}" for i in range(n)]
    store.create_runs([record(run_id) for run_id in ids])
    for run_id in ids:
        store.update_run(run_id, schema=SCHEMA)
    return ids


def _alone(tmp_path, chunks: list[tuple[str, ChunkResult]]) -> EmbeddedStore:
    """The same chunks written one by one with write_chunk: what write_chunks must read back as."""
    alone = EmbeddedStore(tmp_path / "alone")
    for run_id in dict.fromkeys(r for r, _ in chunks):
        alone.create_run(record(run_id))
        alone.update_run(run_id, schema=SCHEMA)
    for run_id, result in chunks:
        alone.write_chunk(run_id, result)
    return alone


def test_chunks_written_together_read_back_as_written_alone(any_store, tmp_path):
    ids = _runs(any_store, 3)
    chunks = [(ids[0], chunk(0, 50, fail=(7,))), (ids[1], chunk(0, 50)), (ids[2], chunk(50, 80)),
              (ids[2], chunk(0, 50, fail=(0, 49)))]  # fmt: skip
    any_store.write_chunks(chunks)
    alone = _alone(tmp_path, chunks)
    for run_id in ids:
        assert any_store.completed_ranges(run_id) == alone.completed_ranges(run_id)
        assert any_store.stored_kinds(run_id) == alone.stored_kinds(run_id)
        assert any_store.read_table(run_id).equals(alone.read_table(run_id))
        assert [(f.sequence, f.error) for f in any_store.failures(run_id)] == [
            (f.sequence, f.error) for f in alone.failures(run_id)
        ]
        assert read_results_source(any_store.results(run_id)).equals(alone.read_table(run_id))
    assert any_store.read_column(ids[2], "k").tolist() == [2 * i for i in range(1, 80) if i != 49]


def test_chunks_written_together_again_replace_themselves_and_delete_with_their_run(any_store):
    ids = _runs(any_store, 2)
    for _ in range(2):
        any_store.write_chunks([(ids[0], chunk(0, 10, fail=(3,))), (ids[1], chunk(0, 10))])
    assert any_store.read_column(ids[0], "sequence").tolist() == [i for i in range(10) if i != 3]
    assert [f.sequence for f in any_store.failures(ids[0])] == [3]
    any_store.delete_run(ids[0])
    assert any_store.failures(ids[0]) == []
    assert any_store.read_column(ids[1], "sequence").tolist() == list(range(10))


def test_small_chunks_make_no_folder_until_their_run_is_read(store):
    ids = _runs(store, 3)
    store.write_chunks([(run_id, chunk(0, 50)) for run_id in ids])
    assert not any((store.home / "runs" / run_id).exists() for run_id in ids)  # rows of runs.db, one transaction
    assert store.completed_ranges(ids[0]) == [(0, 50)]  # the first read moves that run's rows into its files
    ((start, stop, path),) = chunk_files(store._chunks_dir(ids[0]))
    assert (start, stop) == (0, 50) and oct(path.stat().st_mode & 0o777) == "0o600"
    assert pq.read_schema(path) == store.arrow_schema(ids[0])  # an ordinary chunk file
    assert not (store.home / "runs" / ids[1]).exists()
    rows = store.db.conn().execute("SELECT run_id FROM packed_chunks ORDER BY run_id").fetchall()
    assert [r[0] for r in rows] == ids[1:]


def test_a_run_moved_to_files_halfway_reads_each_chunk_once(store):
    """Killed after writing a packed run's files but before dropping its rows: the next read writes the same files
    again and drops the rows; nothing is read twice."""
    (run_id,) = _runs(store, 1)
    store.write_chunks([(run_id, chunk(0, 20)), (run_id, chunk(20, 40))])
    rows = store.db.conn().execute("SELECT run_id, start, stop, data FROM packed_chunks").fetchall()
    store.completed_ranges(run_id)  # moved: files written, rows dropped
    with store.db.write() as db:  # ... as if the rows had not been dropped yet
        db.executemany("INSERT INTO packed_chunks (run_id, start, stop, data) VALUES (?, ?, ?, ?)", rows)
    assert store.completed_ranges(run_id) == [(0, 20), (20, 40)]
    assert store.read_column(run_id, "sequence").tolist() == list(range(40))
    assert store.db.conn().execute("SELECT count(*) FROM packed_chunks").fetchone()[0] == 0


def test_a_chunk_too_large_to_pack_is_written_as_its_file_at_once(store):
    (run_id,) = _runs(store, 1)
    rows = PACKED_BYTES // 8  # one int64 sequence column alone is that large
    big = series_chunk(0, rows, 4)
    assert big.sequences.nbytes + sum(c.nbytes for c in big.columns.values()) >= PACKED_BYTES
    store.write_chunks([(run_id, big)])
    assert store.db.conn().execute("SELECT count(*) FROM packed_chunks").fetchone()[0] == 0
    assert [(a, b) for a, b, _ in chunk_files(store._chunks_dir(run_id))] == [(0, rows)]


def test_packed_chunks_that_cannot_become_files_fail_the_read_with_one_line(store, monkeypatch):
    (run_id,) = _runs(store, 1)
    store.write_chunks([(run_id, chunk(0, 10))])

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("ancho.stores.chunk_writer.os.replace", full)
    from ancho.errors import StoreError

    with pytest.raises(StoreError, match=r"^could not store the results of sequences 0\.\.9 under .*No space left"):
        store.completed_ranges(run_id)
    monkeypatch.undo()
    assert store.read_column(run_id, "sequence").tolist() == list(range(10))  # the rows were kept: nothing lost


def test_an_empty_batch_writes_nothing(any_store):
    (run_id,) = _runs(any_store, 1)
    any_store.write_chunks([])
    assert any_store.completed_ranges(run_id) == [] and len(any_store.read_column(run_id, "x")) == 0


def test_a_packed_chunk_is_the_stream_arrows_writer_writes_for_every_kind_of_column():
    """The schema's message is made once a schema; the bytes are still those of Arrow's stream writer (and read
    back as the chunk), for floats, ints, bools, a trajectory, one row, an empty chunk, and the schema changing."""
    import numpy as np
    import pyarrow as pa

    from ancho.stores.chunk_writer import _written, chunk_table, pack_chunk, unpack_chunk

    rng = np.random.default_rng(4)
    shapes = [
        ChunkResult(0, 50, np.arange(50), {"won": rng.random(50) < 0.5, "rounds": rng.integers(0, 90, 50)}),
        ChunkResult(50, 100, np.arange(50, 100), {"won": rng.random(50) < 0.5, "rounds": rng.integers(0, 9, 50)}),
        ChunkResult(7, 8, np.array([7]), {"x": np.array([0.25])}),
        ChunkResult(0, 3, np.arange(3), {"path": rng.standard_normal((3, 4)), "y": np.array([1.0, np.nan, np.inf])}),
        ChunkResult(0, 2, np.empty(0, dtype=np.int64), {"x": np.empty(0)}),
        ChunkResult(0, 50, np.arange(50), {"won": rng.integers(0, 2, 50), "rounds": rng.random(50)}),  # kinds changed
    ]
    for result in shapes:
        packed = pack_chunk(result)
        assert packed == _written(chunk_table(result))
        back = unpack_chunk(packed)
        assert isinstance(back, pa.Table) and back.schema == chunk_table(result).schema
        assert _written(back) == packed  # (the same values, NaN included, which Table.equals never finds equal)
