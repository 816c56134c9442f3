"""A run with many outputs: its summary reads each chunk file once a group of outputs, not once an output.

Each chunk file's footer describes every output, so reading k outputs one at a time parsed k footers of k columns a
file: 1,000 outputs of 1,000 sequences took 144 s to summarise. Counted here in file opens, not timed.
"""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

import ancho
from ancho.chunk import ChunkResult, Failure
from ancho.errors import RunCancelled
from ancho.expressions import Target
from ancho.stats import build_summary
from ancho.stores.base import RunRecord
from ancho.stores.embedded import EmbeddedStore

OUTPUTS = 60


class ManyOutputs(ancho.Model):
    """A batch model with ``OUTPUTS`` float outputs."""

    block = 256

    def sequences(self, rng, n):
        x = rng.random(n)
        return {f"o{i}": x + i for i in range(OUTPUTS)}


class Wide(ancho.Model):
    """Every kind of output, NaN now and then, and failed sequences (their chunks' files list their sequences)."""

    def sequence(self, rng):
        u = float(rng.random())
        if u < 0.02:
            raise ValueError("a failed sequence")
        k = int(rng.integers(0, 100))
        out = {"u": u, "k": k, "even": k % 2 == 0, "nan": float("nan") if u > 0.9 else u, "walk": rng.random(3)}
        return {**out, **{f"f{i}": u * i for i in range(8)}}


@pytest.fixture
def opens(monkeypatch):
    """How many Parquet files the driver opens (the workers write their chunk files themselves)."""
    counted: list[str] = []

    class Counting(pq.ParquetFile):
        def __init__(self, source, *args, **kwargs):
            counted.append(str(source))
            super().__init__(source, *args, **kwargs)

    monkeypatch.setattr(pq, "ParquetFile", Counting)
    return counted


def test_the_summary_opens_each_chunk_file_once_not_once_an_output(store, opens):
    r = ancho.run(ManyOutputs, sequences=2048, seed=1, workers=2, store=store)
    files = len(store.completed_ranges(r.run_id))
    assert 1 < files < OUTPUTS
    assert len(opens) <= files, f"{len(opens)} opens of {files} chunk files for {OUTPUTS} outputs"
    assert r.summary["outputs"]["o59"]["count"] == 2048


def per_output_summary(store: EmbeddedStore, run_id: str, targets: list[Target]) -> dict:
    """The summary as it was made before: every output read alone (``Store.read_column``)."""
    record = store.get_run(run_id).to_dict()
    return build_summary(
        record,
        record["schema"],
        lambda n: store.read_column(run_id, n),
        targets,
        read_blocks=lambda n: store.iter_column(run_id, n),
    )


@pytest.mark.parametrize("memory", ["", "20K"])  # (20K: two float columns a group, so several passes)
def test_the_summary_is_the_same_bit_for_bit(store, monkeypatch, memory):
    monkeypatch.setenv("ANCHO_COLUMN_MEMORY", memory)
    targets = ["u>0.5", "even", "nan<0.3", "max(walk)>0.9"]
    r = ancho.run(Wide, sequences=1000, seed=3, workers=2, targets=targets, max_failures=100, store=store)
    assert 0 < r.summary["failures"] < 100
    expected = per_output_summary(store, r.run_id, [Target.parse(t) for t in targets])
    assert r.summary["outputs"] == expected["outputs"] and r.summary["targets"] == expected["targets"]
    assert r.summary["trajectories"] == expected["trajectories"]


def write(store: EmbeddedStore, run_id: str, start: int, stop: int, columns: dict, failed=()) -> None:
    keep = np.array([s for s in range(start, stop) if s not in failed], dtype=np.int64)
    picked = {name: col[[s - start for s in keep]] for name, col in columns.items()}
    store.write_chunk(run_id, ChunkResult(start, stop, keep, picked, [Failure(s, "E: e") for s in failed]))


def test_grouped_columns_equal_each_column_read_alone(tmp_path):
    """Several passes (a group holds 3 float columns), a chunk with failures, an int chunk of a float output
    (cast to the run's schema), a trajectory and a bool: every array as ``read_column`` gives it."""
    store = EmbeddedStore(tmp_path / "home", fsync=False)
    schema = {"a": "float", "b": "int", "c": "bool", "w": "float[2]", **{f"f{i}": "float" for i in range(7)}}
    store.create_run(RunRecord(id="r", schema=schema, status="running"))
    rng = np.random.default_rng(0)
    for start, stop, failed in [(0, 100, ()), (100, 200, (103, 150)), (200, 300, ())]:
        n = stop - start
        cols = {"a": rng.random(n), "b": rng.integers(0, 9, n), "c": rng.random(n) < 0.5, "w": rng.random((n, 2))}
        cols.update({f"f{i}": rng.random(n) if start else rng.integers(0, 5, n) for i in range(7)})
        write(store, "r", start, stop, cols, failed)
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("ANCHO_COLUMN_MEMORY", str(3 * 300 * 8))
    try:
        columns = store.summary_columns("r")
    finally:
        monkeypatch.undo()
    for name in ["a", "b", "c", *(f"f{i}" for i in range(7)), "w"]:
        got, alone = columns.read(name), store.read_column("r", name)
        assert got.dtype == alone.dtype and got.shape == alone.shape == (298,) + alone.shape[1:]
        assert got.tobytes() == alone.tobytes(), name
    assert columns.passes == 4  # (7,200 bytes: a, b and c (2,700), f0 to f2, f3 to f5, f6; w is read alone)
    blocks = list(columns.blocks("w"))
    assert np.concatenate(blocks).tobytes() == store.read_column("r", "w").tobytes()


def test_a_cancelled_summary_reads_no_further(tmp_path):
    store = EmbeddedStore(tmp_path / "home", fsync=False)
    store.create_run(RunRecord(id="r", schema={"a": "float", "b": "float"}, status="running"))
    write(store, "r", 0, 10, {"a": np.arange(10.0), "b": np.arange(10.0)})
    cancelled = [False]
    columns = store.summary_columns("r", lambda: cancelled[0])
    columns.read("a")
    cancelled[0] = True
    with pytest.raises(RunCancelled):
        columns.read("b")
    with pytest.raises(RunCancelled):
        next(iter(columns.blocks("a")))


def test_a_chunk_file_holding_more_rows_than_its_name_says_is_a_store_error(tmp_path):
    """Something else rewrote a chunk file with more rows: the summary's grouped read (its arrays sized from the
    files' names) says so in one line naming the run, instead of a NumPy broadcast error deep in the summary."""
    import pyarrow as pa

    from ancho.errors import StoreError

    store = EmbeddedStore(tmp_path / "home", fsync=False)
    store.create_run(RunRecord(id="r", schema={"a": "float", "b": "float"}, status="running"))
    write(store, "r", 0, 10, {"a": np.arange(10.0), "b": np.arange(10.0)})
    (path,) = store.chunk_folder("r").glob("*.parquet")
    pq.write_table(pa.table({"a": np.arange(25.0), "b": np.arange(25.0)}), path)
    message = "run 'r' holds more rows (25) than its chunk files' names say (10)"
    with pytest.raises(StoreError, match=message.replace("(", r"\(").replace(")", r"\)")):
        store.summary_columns("r").read("a")
