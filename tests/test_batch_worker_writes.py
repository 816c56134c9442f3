"""Local workers writing their own chunk files, and the summary's column gathered while the run goes.

Every run here is also run with the driver writing every chunk (``writes="driver"``, the path before), and the two
must store the same rows and give the same summary, bit for bit."""

from __future__ import annotations

import io
import os
import signal
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import ancho
from ancho.chunk import ChunkResult, Failure, StoredChunk
from ancho.engine import RunSpec, create_record, execute
from ancho.errors import StoreError
from ancho.executors.local import INFLIGHT_PER_WORKER, LocalExecutor
from ancho.loading import load_model
from ancho.stats import PERCENTILES, build_summary, describe
from ancho.stores.chunk_layout import chunk_files, chunk_name
from ancho.stores.chunk_writer import ChunkFolder, parquet_options, temp_path
from ancho.stores.embedded import EmbeddedStore
from ancho.stores.landed import LandedColumn


class Outputs(ancho.Model):
    """Three kinds of output, so the gathered column is checked against the store for each one first."""

    block = 1024

    def sequences(self, rng, n):
        x = rng.standard_normal(n)
        return {"x": x, "k": (x * 10).astype(np.int64), "hit": x > 1.0}


class IntFirst(Outputs):
    def sequences(self, rng, n):
        out = super().sequences(rng, n)
        return {"k": out["k"], "x": out["x"], "hit": out["hit"]}


class BoolFirst(Outputs):
    def sequences(self, rng, n):
        out = super().sequences(rng, n)
        return {"hit": out["hit"], "x": out["x"], "k": out["k"]}


class SomeFail(ancho.Model):
    """One sequence in 1,000 raises: its chunk comes back whole and the driver writes it with its failures."""

    def sequence(self, rng):
        x = rng.random()
        if x < 0.001:
            raise ValueError("rare")
        return {"x": x}


class Recording(ChunkFolder):
    """The real chunk folder, noting which process wrote each chunk file (in a file beside the chunk folder)."""

    def begin(self, result):
        commit = super().begin(result)
        with open(os.path.join(self.folder, "..", "writers"), "a") as fh:
            fh.write(f"{os.getpid()}\n")
        return commit


class RecordingWriters(LocalExecutor):
    def results_sink(self, store, run_id):
        sink = super().results_sink(store, run_id)
        return None if sink is None else Recording(sink.folder, sink.fsync, sink.where)


def stored(store: EmbeddedStore, run_id: str) -> dict[str, np.ndarray]:
    """The run's stored columns, read through the store (the rows a user gets)."""
    return {name: store.read_column(run_id, name) for name in ["sequence", *store.get_run(run_id).schema]}


def but_id(summary: dict) -> dict:
    """A summary without its run's id (two runs of the same spec differ only in that)."""
    return {k: v for k, v in summary.items() if k != "run"}


def run_both(tmp_path, model, n, **kw):
    """The run with workers writing and with the driver writing: (store, result) of each."""
    out = []
    for writes in ("auto", "driver"):
        with LocalExecutor(2, writes=writes) as ex:
            res = ancho.run(model, sequences=n, seed=11, executor=ex, store=str(tmp_path / writes), **kw)
        out.append((EmbeddedStore(tmp_path / writes), res))
    return out


def test_workers_write_the_chunks_and_every_run_equals_the_driver_writing(tmp_path):
    with RecordingWriters(2) as ex:
        res = ancho.run(Outputs, sequences=200_000, seed=11, executor=ex, store=str(tmp_path / "recorded"))
    writers = (tmp_path / "recorded" / "runs" / res.run_id / "writers").read_text().split()
    files = chunk_files(tmp_path / "recorded" / "runs" / res.run_id / "chunks")
    assert len(writers) == len(files) > 1 and str(os.getpid()) not in writers  # every chunk file: by a worker
    (auto, a), (driver, d) = run_both(tmp_path, Outputs, 200_000)
    assert but_id(a.summary) == but_id(d.summary) == but_id(res.summary)  # every statistic, bit for bit
    mine, theirs = stored(auto, a.run_id), stored(driver, d.run_id)
    assert mine.keys() == theirs.keys()
    for name in mine:
        assert np.array_equal(mine[name], theirs[name]), name
    assert np.array_equal(mine["sequence"], np.arange(200_000))
    assert not list((tmp_path / "auto" / "runs" / a.run_id / "chunks").glob(".*"))  # no temporary file left


@pytest.mark.parametrize("model", [Outputs, IntFirst, BoolFirst], ids=["float", "int", "bool"])
def test_the_gathered_column_gives_the_summary_the_store_gives_for_every_kind(tmp_path, model):
    """The first output is the one gathered as chunks land (float, int, bool first): summarised again from the
    store afterwards, with the same function, it must equal the run's summary exactly."""
    store = EmbeddedStore(tmp_path / "s")
    with LocalExecutor(2) as ex:
        res = ancho.run(model, sequences=50_000, seed=3, executor=ex, store=store, targets=["x > 0.5"])
    record = store.get_run(res.run_id)
    targets = RunSpec.build(load_model(f"{__file__}:{model.__name__}"), sequences=1, targets=["x > 0.5"]).targets
    again = build_summary(record.to_dict(), record.schema, lambda n: store.read_column(res.run_id, n), targets, {})
    assert again == res.summary


def test_a_chunk_with_failures_is_written_by_the_driver_with_its_failures(tmp_path):
    (auto, a), (driver, d) = run_both(tmp_path, SomeFail, 20_000, max_failures=100)
    assert but_id(a.summary) == but_id(d.summary)
    assert a.summary["failures"] == d.summary["failures"] > 0
    assert [f.sequence for f in auto.failures(a.run_id)] == [f.sequence for f in driver.failures(d.run_id)]
    assert np.array_equal(stored(auto, a.run_id)["x"], stored(driver, d.run_id)["x"])


class DiesMidWrite(ChunkFolder):
    """The real chunk folder, but the first time chunk ``[4096, 8192)`` is written its worker dies half way through
    the file: half the Parquet bytes are in the temporary file when the process is killed."""

    def begin(self, result):
        marker = os.path.join(self.folder, "..", "died")
        if result.start == 4096 and not os.path.exists(marker):
            open(marker, "w").close()
            buf = io.BytesIO()
            table = pa.table({"sequence": result.sequences, **result.columns})
            pq.write_table(table, buf, **parquet_options(table.schema))
            data = buf.getvalue()
            with open(temp_path(Path(self.folder) / chunk_name(result.start, result.stop)), "wb") as fh:
                fh.write(data[: len(data) // 2])
                fh.flush()
                os.kill(os.getpid(), signal.SIGKILL)
        return super().begin(result)


class WritesThenDies(LocalExecutor):
    def results_sink(self, store, run_id):
        sink = super().results_sink(store, run_id)
        return DiesMidWrite(sink.folder, sink.fsync, sink.where)


def test_a_worker_killed_mid_write_is_retried_and_its_chunk_counted_once(tmp_path):
    model = load_model(f"{__file__}:Outputs")
    store = EmbeddedStore(tmp_path / "s")
    spec = RunSpec.build(model, sequences=100_000, seed=11)
    record = create_record(model, spec, "local", 2)
    store.create_run(record)
    with WritesThenDies(2) as ex:
        final = execute(model, spec, store, ex, record)
    assert os.path.exists(tmp_path / "s" / "runs" / record.id / "died")  # the worker did die mid-write
    # the dead worker's chunks in flight (the one it was writing and the one waiting) were run again, and counted once
    assert final.status == "succeeded" and 1 <= final.retries <= INFLIGHT_PER_WORKER and final.done == 100_000
    assert final.summary["outputs"]["x"]["count"] == 100_000
    folder = tmp_path / "s" / "runs" / record.id / "chunks"
    assert not list(folder.glob(".*.tmp"))  # the half-written file is gone
    ranges = [(a, b) for a, b, _ in chunk_files(folder)]
    assert sum(b - a for a, b in ranges) == 100_000 and all(b == c for (_, b), (c, _) in zip(ranges, ranges[1:]))
    with LocalExecutor(2, writes="driver") as ex:
        clean = ancho.run(Outputs, sequences=100_000, seed=11, executor=ex, store=str(tmp_path / "ref"))
    assert final.summary["outputs"] == clean.summary["outputs"]
    assert np.array_equal(
        store.read_column(record.id, "x"), EmbeddedStore(tmp_path / "ref").read_column(clean.run_id, "x")
    )


def test_workers_write_only_where_they_can(tmp_path):
    store = EmbeddedStore(tmp_path / "s")
    model = load_model(f"{__file__}:Outputs")
    record = create_record(model, RunSpec.build(model, sequences=10, seed=1), "local", 1)
    store.create_run(record)
    assert isinstance(LocalExecutor(1).results_sink(store, record.id), ChunkFolder)
    assert LocalExecutor(1, writes="driver").results_sink(store, record.id) is None
    assert LocalExecutor(1, wrap=lambda argv: argv).results_sink(store, record.id) is None  # a sandbox: read-only
    assert LocalExecutor(1, python="/usr/bin/python3").results_sink(store, record.id) is None  # another environment
    store.write_chunk = lambda run_id, result: None  # a store whose writes do more (or less): the driver's
    assert LocalExecutor(1).results_sink(store, record.id) is None


@pytest.mark.parametrize("kind", ["float", "int", "bool"])
def test_describe_gives_numpys_percentiles_of_the_column_as_it_was(kind):
    """The summary sorts the column before its percentiles: they must be np.percentile's of the unsorted column, and
    the mean and std those of the column in its stored order (taken before the sort)."""
    rng = np.random.default_rng(5)
    column = {
        "float": np.maximum(rng.standard_normal(3_000_001), 0.0),
        "int": rng.integers(-50, 50, 2_000_003),
        "bool": rng.random(1_000_001) < 0.3,
    }[kind]
    if kind == "float":
        column[::1000] = np.nan  # left out of every statistic
    kept = column[~np.isnan(column)] if kind == "float" else column.astype(np.float64)
    expected = np.percentile(kept, PERCENTILES)
    out = describe(column.copy(), kind)
    assert [out[f"p{q}"] for q in PERCENTILES] == expected.tolist()
    if kind != "bool":
        from ancho.moments import moments

        in_order = moments(column.copy())  # (blocks are positions in the column: the stored order's)
        assert out["mean"] == in_order.mean and out["std"] == in_order.std
        assert out["mean"] == pytest.approx(float(np.mean(kept, dtype=np.float64)), rel=1e-14)


def test_the_landed_column_is_the_stored_order_whatever_order_chunks_land_in():
    """Chunks landing out of order, from the driver's columns or a worker's StoredChunk, fill sequence i at index i;
    the summary gets that array once, and anything it cannot be exact about falls back to the store's read."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal(3000)

    def columns(a, b):
        return ChunkResult(a, b, np.arange(a, b), {"x": x[a:b], "k": np.arange(a, b)})

    from_store = []

    def read(name):
        from_store.append(name)
        return np.zeros(3)

    landed = LandedColumn(3000)
    landed.add(StoredChunk.of(columns(2000, 3000), first=True))
    landed.add(columns(0, 1000))
    landed.add(StoredChunk.of(columns(1000, 2000), first=True))
    reader = landed.reader(read)
    assert np.array_equal(reader("x"), x) and from_store == []
    reader("x")  # given once: a second read goes to the store
    reader("k")  # another output: the store
    assert from_store == ["x", "k"]

    failed = LandedColumn(3000)  # a chunk with a failed sequence: not exact here, so the store
    failed.add(ChunkResult(0, 3000, np.arange(1, 3000), {"x": x[1:]}, [Failure(0, "ValueError: no")]))
    assert failed.reader(read)("x").size == 3
    elsewhere = LandedColumn(3000)  # stored by a task that sent no values (Spark on Cassandra)
    elsewhere.add(StoredChunk.of(columns(0, 3000)))
    assert elsewhere.reader(read)("x").size == 3
    partial = LandedColumn(3000)  # a run that did not fill every sequence
    partial.add(columns(0, 1000))
    assert partial.reader(read)("x").size == 3


def test_a_chunk_its_worker_cannot_write_goes_back_whole_for_the_driver(tmp_path):
    """A worker whose write meets a full disk (here: a folder that cannot be made) does not fail the whole executor
    call: the chunk goes back with its columns, the driver stores it and meets the error for that run alone."""
    from types import SimpleNamespace

    from ancho.executors.outbox import Committing
    from ancho.executors.worker import _reply

    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    sink = ChunkFolder(str(blocked / "chunks"), False, str(tmp_path))
    result = ChunkResult(0, 3, np.arange(3), {"x": np.array([0.5, 1.5, 2.5])})
    for keep in (False, True):
        assert _reply(SimpleNamespace(sink=sink, tally=None, gather=True), result, keep, None).result is result
    written = _reply(SimpleNamespace(sink=ChunkFolder(str(tmp_path / "ok"), False, str(tmp_path)), tally=None, gather=True), result,
                     False, None)  # fmt: skip
    assert isinstance(written, Committing) and chunk_files(tmp_path / "ok") == []  # written, not yet committed
    assert isinstance(written.settle().result, StoredChunk) and chunk_files(tmp_path / "ok") == [
        (0, 3, tmp_path / "ok" / chunk_name(0, 3))
    ]


class CommitFails(ChunkFolder):
    """The real chunk folder, but the commit of chunk ``[4096, 8192)`` fails (the disk filled between the write and
    the fsync): its temporary file is removed and the store's one-line error raised, in the worker's outbox."""

    def begin(self, result):
        commit = super().begin(result)
        if result.start != 4096:
            return commit
        own = temp_path(Path(self.folder) / chunk_name(result.start, result.stop))  # (named by the writing thread)

        def fails():
            own.unlink()  # its own only: globbing the folder took the other worker's, committing at the same time
            raise StoreError("could not store the results of sequences 4096..8191: No space left on device")

        return fails


class CommitsFail(LocalExecutor):
    def results_sink(self, store, run_id):
        sink = super().results_sink(store, run_id)
        return CommitFails(sink.folder, sink.fsync, sink.where)


def test_a_chunk_whose_commit_fails_goes_back_whole_and_the_run_loses_nothing(tmp_path):
    """The worker commits a chunk file while it computes the next: a commit that fails sends the chunk's columns
    instead (as a failed write does), the driver stores them, and the run equals one where the driver wrote all."""
    with CommitsFail(2) as ex:
        res = ancho.run(Outputs, sequences=100_000, seed=11, executor=ex, store=str(tmp_path / "s"))
    _, (_, clean) = run_both(tmp_path, Outputs, 100_000)
    assert res.status == "succeeded" and but_id(res.summary) == but_id(clean.summary)
    folder = tmp_path / "s" / "runs" / res.run_id / "chunks"
    assert any(a == 4096 for a, _, _ in chunk_files(folder)) and not list(folder.glob(".*.tmp"))
    mine = stored(EmbeddedStore(tmp_path / "s"), res.run_id)
    assert np.array_equal(mine["sequence"], np.arange(100_000))
    assert np.array_equal(mine["x"], stored(EmbeddedStore(tmp_path / "driver"), clean.run_id)["x"])


def test_a_large_gathered_column_has_its_pages_mapped_by_a_thread_and_keeps_what_is_written():
    import threading

    from ancho.stores.landed import POPULATE_APART, ordinary_pages

    n = POPULATE_APART // 8 + 1_000
    column = ordinary_pages(n, np.dtype(np.float64))
    column[:] = np.arange(n)  # written while (or after) the thread maps the pages: nothing is lost either way
    for thread in threading.enumerate():
        if thread.name == "ancho-pages":
            thread.join(30)
    assert column.shape == (n,) and column.flags.writeable
    assert np.array_equal(column, np.arange(n, dtype=np.float64))
    small = ordinary_pages(1_000, np.dtype(np.int64))  # a small one: mapped at once, no thread
    small[:] = 7
    assert int(small.sum()) == 7_000
