"""A chunk file with a row for every sequence of its range has no ``sequence`` column (its name says them); one
with failed sequences keeps it. Every reader gives the sequences back either way, files of both forms mixed."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ancho.errors import StoreError
from ancho.stores.chunk_layout import chunk_files, chunk_name, chunk_range
from ancho.stores.chunk_writer import parquet_options
from ancho.stores.embedded import EmbeddedStore
from ancho.stores.results_sources import ChunkFiles

from .test_contract import chunk, record

SCHEMA = {"x": "float", "k": "int", "b": "bool"}


def _store(tmp_path) -> EmbeddedStore:
    store = EmbeddedStore(tmp_path)
    store.create_run(record("r1"))
    store.update_run("r1", schema=SCHEMA)
    return store


def _columns(path) -> list[str]:
    return pq.read_schema(path).names


def test_a_full_chunk_s_file_has_no_sequence_column_one_with_failures_has_it(tmp_path):
    store = _store(tmp_path)
    store.write_chunk("r1", chunk(0, 100))
    store.write_chunk("r1", chunk(100, 200, fail=(103, 150)))
    (_, _, full), (_, _, failed) = chunk_files(tmp_path / "runs" / "r1" / "chunks")
    assert _columns(full) == ["x", "k", "b"]
    assert _columns(failed) == ["sequence", "x", "k", "b"]
    meta = pq.ParquetFile(failed).metadata.row_group(0)
    assert "DELTA_BINARY_PACKED" in meta.column(0).encodings  # ascending ids pack to a few bits


def test_every_reader_gives_the_sequences_back_with_files_of_both_forms_mixed(tmp_path):
    store = _store(tmp_path)
    folder = tmp_path / "runs" / "r1" / "chunks"
    store.write_chunk("r1", chunk(0, 100))
    store.write_chunk("r1", chunk(100, 200, fail=(103, 150)))
    # a file as an earlier Ancho wrote every chunk: the sequence column although the range is full
    old = chunk(200, 260)
    table = pa.table({"sequence": old.sequences, **old.columns})
    pq.write_table(table, folder / chunk_name(200, 260), **parquet_options(table.schema))
    expected = np.array([i for i in range(260) if i not in (103, 150)])

    frame = store.read_frame("r1")
    assert np.array_equal(frame["sequence"].to_numpy(), expected)
    assert np.array_equal(frame["x"].to_numpy(), expected * 0.5)
    assert np.array_equal(store.read_column("r1", "sequence"), expected)
    assert np.array_equal(store.read_column("r1", "k"), expected * 2)
    rows, total = store.results_page("r1", 95, 10)
    assert total == 258 and [r["sequence"] for r in rows] == [95, 96, 97, 98, 99, 100, 101, 102, 104, 105]
    source = store.results("r1")
    assert isinstance(source, ChunkFiles)
    assert np.array_equal(source.read_table().column("sequence").to_numpy(), expected)


def test_a_file_without_sequences_whose_rows_its_name_does_not_explain_is_a_store_error(tmp_path):
    store = _store(tmp_path)
    folder = tmp_path / "runs" / "r1" / "chunks"
    store.write_chunk("r1", chunk(0, 100))
    short = chunk(100, 150)
    table = pa.table({n: c[:-1] for n, c in short.columns.items()})  # 49 rows for a 50-sequence name
    pq.write_table(table, folder / chunk_name(100, 150))
    with pytest.raises(StoreError, match=r"000000000100-000000000150\.parquet has 49 rows and no sequence column"):
        store.read_frame("r1")


def test_a_chunk_file_s_name_says_its_range():
    assert chunk_range(chunk_name(1_000_000, 2_048_576)) == (1_000_000, 2_048_576)
    assert chunk_range(".000000000000-000000000100.parquet.12.34.tmp") is None
    assert chunk_range("notes.txt") is None
