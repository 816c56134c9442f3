"""Typed results sources (ancho.stores.results_sources) and the chunk layout (ancho.stores.chunk_layout): no service.

They replace dicts told apart by a ``kind`` string; until every store returns them, each must
read exactly what the dict form read, and the layout module must name the files the embedded store writes.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from ancho.chunk import ChunkResult
from ancho.errors import InputError
from ancho.stores import export_results, read_results_source
from ancho.stores.base import RunRecord
from ancho.stores.cassandra_conn import Endpoint
from ancho.stores.chunk_layout import chunk_files, chunk_name
from ancho.stores.results_sources import CassandraResults, ChunkFiles, results_source


def _run(store, run_id="r1"):
    store.create_run(RunRecord(id=run_id, model="M"))
    store.update_run(run_id, schema={"x": "float", "k": "int"})
    for start, stop in ((0, 100), (100, 250)):
        seqs = np.arange(start, stop, dtype=np.int64)
        store.write_chunk(run_id, ChunkResult(start, stop, seqs, {"x": seqs * 0.5, "k": seqs * 3}))
    return run_id


def test_the_layout_module_lists_what_the_embedded_store_wrote(store):
    run = _run(store)
    folder = store.results_source(run)["path"]
    (__import__("pathlib").Path(folder) / ".000000000250-000000000300.parquet.1.2.tmp").write_bytes(b"")  # not a chunk
    listed = chunk_files(folder)
    assert [(a, b) for a, b, _ in listed] == store.completed_ranges(run) == [(0, 100), (100, 250)]
    assert [p.name for _, _, p in listed] == [chunk_name(0, 100), chunk_name(100, 250)]


def test_chunk_files_from_the_old_dict_read_what_the_dict_read(store):
    run = _run(store)
    old = store.results_source(run)
    typed = store.results(run)
    assert isinstance(typed, ChunkFiles) and typed == results_source(old)
    assert typed.folder == old["path"] and typed.sequences == 250 and len(typed.paths) == 2
    assert typed.to_dict() == old  # crosses JSON as before
    assert pickle.loads(pickle.dumps(typed)) == typed  # travels to workers and Spark tasks
    assert read_results_source(typed).equals(read_results_source(old))
    assert read_results_source(old).equals(store.read_table(run))


def test_an_export_is_chunk_files_too(store, tmp_path):
    run = _run(store)
    exported = export_results(store, run, tmp_path / "export")
    assert [(a, b) for a, b, _ in results_source(exported).files] == [(0, 100), (100, 250)]
    assert read_results_source(exported).equals(store.read_table(run))


def test_a_missing_folder_lists_no_chunks_and_reading_it_says_so(tmp_path):
    gone = ChunkFiles.of_folder(tmp_path / "gone", {"x": "float"})
    assert gone.files == () and gone.sequences == 0
    with pytest.raises(FileNotFoundError, match="gone"):
        read_results_source(gone)


def test_cassandra_results_round_trip_through_the_old_dict():
    endpoint = Endpoint(("127.0.0.1",), 9042, "owner_role", "secret")
    typed = CassandraResults(endpoint, "ks_alice", "r1", {"x": "float"})
    old = typed.to_dict()
    assert old["kind"] == "cassandra" and old["endpoint"]["username"] == "owner_role" and old["run_id"] == "r1"
    assert results_source(old) == typed and results_source(typed) is typed
    assert pickle.loads(pickle.dumps(typed)) == typed
    assert "secret" not in repr(typed)  # the owner's password never reaches a log line


def test_an_unknown_source_is_named():
    with pytest.raises(InputError, match="unknown results source 'ftp'"):
        results_source({"kind": "ftp"})
    with pytest.raises(InputError, match="got list"):
        results_source([])
