"""The chunks a driver writes itself (sandboxed workers, a model's environment): large ones on a thread while the next
arrives, the same files as written in turn; a write's error still fails its run, and no thread outlives a run."""

import threading

import numpy as np
import pytest

import ancho
from ancho import writes
from ancho.chunk import ChunkResult, Failure
from ancho.errors import RunFailed, StoreError
from ancho.executors.local import LocalExecutor
from ancho.stores import embedded

from .test_streamed import Wide


def test_large_chunks_are_written_on_threads_and_give_the_same_results(tmp_path, monkeypatch):
    threads: list[str] = []
    original = embedded.write_chunk_file
    monkeypatch.setattr(
        embedded,
        "write_chunk_file",
        lambda *a, **k: (threads.append(threading.current_thread().name), original(*a, **k))[1],
    )
    alive = threading.active_count()
    with LocalExecutor(2, writes="driver") as ex:
        driven = ancho.run(Wide, sequences=700_000, seed=9, executor=ex, store=str(tmp_path / "a"))
    assert threading.active_count() == alive  # (every write's thread ended with the run)
    assert "ancho-chunk-write" in threads and "MainThread" in threads  # (the first, small chunks: in turn)
    with LocalExecutor(2) as ex:  # (the workers write their own chunks)
        own = ancho.run(Wide, sequences=700_000, seed=9, executor=ex, store=str(tmp_path / "b"))
    assert driven.frame.equals(own.frame)
    assert repr(driven.summary["outputs"]) == repr(own.summary["outputs"])


def test_a_write_that_fails_on_its_thread_fails_the_run(tmp_path, monkeypatch):
    original = embedded.write_chunk_file
    calls: list[str] = []

    def flaky(folder, result, *a, **k):
        if result.size >= writes.THREADED_ROWS and not calls:  # (the first large chunk, on a thread)
            calls.append(threading.current_thread().name)
            raise StoreError(f"could not store the results of sequences {result.start}..{result.stop - 1}: disk full")
        return original(folder, result, *a, **k)

    monkeypatch.setattr(embedded, "write_chunk_file", flaky)
    alive = threading.active_count()
    with LocalExecutor(2, writes="driver") as ex, pytest.raises(StoreError, match="could not store the results"):
        ancho.run(Wide, sequences=2_000_000, seed=9, executor=ex, store=str(tmp_path / "a"))
    assert threading.active_count() == alive
    (record,) = embedded.EmbeddedStore(tmp_path / "a").list_runs()
    assert record.status == "failed" and "could not store the results" in record.error
    assert calls == ["ancho-chunk-write"]


def test_only_an_embedded_stores_large_chunks_without_failures_go_to_a_thread(tmp_path):
    class Other:
        def __init__(self):
            self.where: list[str] = []

        def write_chunk(self, run_id, result):
            self.where.append(threading.current_thread().name)

    big = ChunkResult(0, writes.THREADED_ROWS, np.arange(writes.THREADED_ROWS), {"x": np.zeros(writes.THREADED_ROWS)})
    other = Other()
    w = writes.ChunkWrites(other, "r")
    w.put(big)
    w.wait()
    assert other.where == ["MainThread"] and not w.threaded
    store = embedded.EmbeddedStore(tmp_path)
    assert writes.ChunkWrites(store, "r").threaded
    store.write_chunk = lambda run_id, result: None  # (a store whose writes were replaced: theirs, in turn)
    assert not writes.ChunkWrites(store, "r").threaded


def test_a_failed_write_is_raised_once_and_the_others_still_finish(monkeypatch, tmp_path):
    done: list[int] = []
    store = embedded.EmbeddedStore(tmp_path)

    def write(run_id, result):
        if result.start == 0:
            raise StoreError("disk full")
        done.append(result.start)

    monkeypatch.setattr(embedded.EmbeddedStore, "write_chunk", lambda self, run_id, result: write(run_id, result))
    w = writes.ChunkWrites(store, "r")
    w.threaded = True
    n = writes.THREADED_ROWS
    for start in (n, 0):
        w.put(ChunkResult(start, start + n, np.arange(start, start + n), {"x": np.zeros(n)}))
    with pytest.raises(StoreError, match="disk full"):
        w.wait()
    assert done == [n]
    w.wait()  # (nothing left)
    failed = ChunkResult(0, n, np.arange(n), {"x": np.zeros(n)}, failures=[Failure(3, "ValueError: x")])
    with pytest.raises(RunFailed):  # (a chunk with failures is written in turn: its error raised at once)
        monkeypatch.setattr(embedded.EmbeddedStore, "write_chunk", lambda *a: (_ for _ in ()).throw(RunFailed("x")))
        w.put(failed)
