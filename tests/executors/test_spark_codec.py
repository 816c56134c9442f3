"""A Spark task's records of several small chunks read back as the chunks they were, and nothing else.

No cluster needed: the codec is what a task writes and the driver reads (:mod:`ancho.executors.spark.codec`).
A study's task runs ~1,000 tiny points; their chunks go several to a record (:class:`Grouper`), so each
record's chunks must come back with their own rows, failures and summary values, in order, and a record whose
row counts do not add up is refused rather than read across chunks.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from ancho.chunk import ChunkResult, Failure
from ancho.claims import misfit
from ancho.executors.base import Chunk
from ancho.executors.spark.codec import (
    RECORD_ROWS,
    SMALL_ROWS,
    Grouper,
    _batch,
    decode_chunks,
    decode_custom,
    encode,
    encode_chunks,
    paired,
)
from ancho.executors.wire import ForgedReply


def chunk(start: int, stop: int, failed: tuple[int, ...] = (), path: bool = False, won=np.bool_) -> ChunkResult:
    """Sequences start..stop-1, those in ``failed`` failed (no row), with a bool, an int, a float and optionally a
    trajectory (3 steps) output whose values say their sequence."""
    seqs = np.array([s for s in range(start, stop) if s not in failed], dtype=np.int64)
    columns = {
        "won": (seqs % 3 == 0).astype(won),
        "rounds": seqs * 7,
        "x": seqs / 4.0,
    }
    if path:
        columns["path"] = np.stack([seqs * 1.0, seqs * 2.0, seqs * 3.0], axis=1)
    failures = [Failure(s, f"ValueError: {s}", "trace") for s in failed]
    return ChunkResult(start, stop, seqs, columns, failures, 0.001 * (stop - start))


def same(a: ChunkResult, b: ChunkResult) -> None:
    assert (a.start, a.stop, a.seconds) == (b.start, b.stop, b.seconds)
    assert a.sequences.dtype == b.sequences.dtype and np.array_equal(a.sequences, b.sequences)
    assert list(a.columns) == list(b.columns)
    for name in a.columns:
        assert a.columns[name].dtype == b.columns[name].dtype, name
        assert a.columns[name].shape == b.columns[name].shape, name
        assert np.array_equal(a.columns[name], b.columns[name]), name
    assert [(f.sequence, f.error, f.traceback) for f in a.failures] == [
        (f.sequence, f.error, f.traceback) for f in b.failures
    ]


@pytest.mark.parametrize("path", [False, True])
def test_chunks_in_one_record_read_back_each_with_its_rows_failures_and_summary_values(path):
    items = [
        (chunk(0, 50, path=path), {"m": 1.5}),
        (chunk(50, 53, failed=(51,), path=path), None),
        (chunk(53, 53, path=path), {"m": None}),  # (an empty range)
        (chunk(100, 160, failed=(100, 159), path=path), {"m": [1, 2]}),
        (chunk(200, 201, failed=(200,), path=path), None),  # (every sequence failed: no row)
    ]
    decoded = decode_chunks(encode_chunks(items))
    assert len(decoded) == len(items)
    for (want, custom), (got, got_custom) in zip(items, decoded):
        assert isinstance(got, ChunkResult)
        same(got, want)
        assert got_custom == custom


def test_one_chunk_is_the_plain_record_and_decode_custom_takes_only_one():
    one = chunk(0, 10)
    assert encode_chunks([(one, {"m": 2})]) == encode(one, {"m": 2})
    result, custom = decode_custom(encode(one, {"m": 2}))
    same(result, one)  # type: ignore[arg-type]
    assert custom == {"m": 2}
    with pytest.raises(ForgedReply, match="holds 2 chunks where one was expected"):
        decode_custom(encode_chunks([(chunk(0, 10), None), (chunk(10, 20), None)]))


def records(results: list[ChunkResult]) -> list[bytes]:
    grouper = Grouper()
    out = [record for r in results for record in grouper.add(r, None)]
    return out + grouper.end()


def test_the_grouper_puts_small_chunks_of_one_layout_together_and_keeps_their_order():
    small = [chunk(50 * k, 50 * k + 50) for k in range(30)]
    (record,) = records(small)
    assert [r.start for r, _ in decode_chunks(record)] == [c.start for c in small]
    assert Grouper().end() == []


def test_the_grouper_starts_a_new_record_where_the_layout_changes():
    ints = chunk(0, 10, won=np.int64)  # "won" an int here, a bool in the others: not one column
    trajectory = chunk(30, 40, path=True)  # one more output
    got = records([chunk(0, 10), chunk(10, 20), ints, chunk(20, 30), trajectory, trajectory])
    assert [len(decode_chunks(r)) for r in got] == [2, 1, 1, 2]
    assert decode_chunks(got[1])[0][0].columns["won"].dtype == np.int64  # type: ignore[union-attr]


def test_a_big_chunk_goes_alone_and_a_record_holds_at_most_its_rows():
    big = chunk(0, SMALL_ROWS + 1)
    got = records([chunk(-20, -10), big, chunk(SMALL_ROWS + 1, SMALL_ROWS + 11)])
    assert [len(decode_chunks(r)) for r in got] == [1, 1, 1]
    same(decode_custom(got[1])[0], big)  # type: ignore[arg-type]
    per = SMALL_ROWS
    many = [chunk(per * k, per * (k + 1)) for k in range(2 * RECORD_ROWS // per + 1)]
    got = records(many)
    assert all(sum(len(r.sequences) for r, _ in decode_chunks(rec)) <= RECORD_ROWS for rec in got)
    assert [r.start for rec in got for r, _ in decode_chunks(rec)] == [c.start for c in many]


@pytest.mark.parametrize(
    "rows",
    [[10, 9], [10, 11], [-1, 21], [10.0, 10], ["10", 10], [None, 20]],
    ids=["short", "long", "negative", "float", "text", "missing"],
)
def test_a_record_whose_row_counts_do_not_add_up_is_refused(rows):
    a, b = chunk(0, 10), chunk(10, 20)
    meta = []
    for result, n in zip((a, b), rows):
        m = {"start": result.start, "stop": result.stop, "seconds": 0.0, "failures": []}
        if n is not None:
            m["rows"] = n
        meta.append(m)
    sequences = np.concatenate([a.sequences, b.sequences])
    columns = {name: np.concatenate([a.columns[name], b.columns[name]]) for name in a.columns}
    forged = _batch({"chunks": meta}, sequences, columns)  # type: ignore[typeddict-item]
    with pytest.raises(ForgedReply, match="does not add up to its 20 rows"):
        decode_chunks(forged)


def test_the_driver_refuses_a_task_s_results_for_more_chunks_than_it_was_given():
    asked = [Chunk(0, 10), Chunk(10, 20)]
    sent = [encode_chunks([(chunk(0, 10), None), (chunk(10, 20), None)]), encode(chunk(20, 30))]
    with pytest.raises(ForgedReply, match="more than its 2 chunks"):
        list(paired(asked, sent))
    pairs = list(paired(asked, sent[:1]))
    assert [(c.start, r.start, size > 0, last) for c, (r, _), size, last in pairs] == [
        (0, 0, True, False),
        (10, 10, False, True),
    ]


def _job(tmp_path, orders, sink_for=()):
    """A Spark task's Job over a gambler whose ``goal`` of 0 raises in ``setup``: tasks 0 (fine), 1 (fine, with a
    sink when 1 is in ``sink_for``) and 2 (fails)."""
    from ancho.executors.base import Task
    from ancho.executors.spark.isolation import Isolation
    from ancho.executors.spark.tasks import Job, Order
    from ancho.loading import FileRef

    model = tmp_path / "m.py"
    model.write_text(
        "import ancho\n"
        "from ancho.errors import ParameterError\n"
        "class M(ancho.Model):\n"
        "    goal: int = 3\n"
        "    def setup(self):\n"
        "        if self.goal == 0:\n"
        "            raise ParameterError('goal must be positive', 'goal')\n"
        "    def sequence(self, rng):\n"
        "        return {'x': float(rng.random()) * self.goal}\n"
    )
    ref = FileRef(str(tmp_path), "m.py", "M")
    from types import SimpleNamespace

    sink = SimpleNamespace(run_id="r1") if 1 in sink_for else None
    tasks = (
        Task(ref, {"goal": 3}, 1, "r0"),
        Task(ref, {"goal": 4}, 1, "r1", sink=sink),
        Task(ref, {"goal": 0}, 1, "r2"),
    )
    return Job(f"test-{tmp_path.name}", tasks, None, Isolation(), tuple(Order(t, a, b) for t, a, b in orders))


def test_a_task_s_small_chunks_come_in_one_record_and_those_before_an_error_first(tmp_path):
    from ancho.errors import ParameterError
    from ancho.executors.spark.tasks import run_partition

    orders = [(0, 0, 20), (1, 0, 20), (0, 20, 40), (2, 0, 20), (0, 40, 60)]
    records = list(run_partition(_job(tmp_path, orders), iter(())))
    assert len(records) == 2  # the three chunks before the error, together; then the error
    asked = [Chunk(a, b) for _, a, b in orders]
    taken = []
    with pytest.raises(ParameterError, match="goal must be positive"):  # the model's error, not a forged reply
        for c, (result, _), _, _ in paired(asked, records):
            assert misfit(result, c.start, c.stop) is None
            taken.append((c.start, result.start, len(result.sequences)))
    assert taken == [(0, 0, 20), (0, 0, 20), (20, 20, 20)]


def test_a_writing_task_that_fails_sends_only_its_error(tmp_path, monkeypatch):
    """A task that writes some chunks itself sends no record until all are marked done: when it fails, the chunks it
    ran are not sent, not even the small ones held together, so the driver pairs no record with the wrong chunk."""
    from ancho.errors import ParameterError
    from ancho.executors.spark import tasks

    class Writer:
        def write_chunk(self, run_id, result):
            pass

        def flush(self):
            pass

    monkeypatch.setattr(tasks, "results_writer", lambda sink: Writer())
    monkeypatch.setattr(tasks, "CassandraResults", SimpleNamespace)  # (the job's sink stands for a Cassandra store's)
    orders = [(0, 0, 20), (1, 0, 20), (0, 20, 40), (2, 0, 20)]
    records = list(tasks.run_partition(_job(tmp_path, orders, sink_for=(1,)), iter(())))
    fits = []
    with pytest.raises(ParameterError, match="goal must be positive"):
        for c, (result, _), _, _ in paired([Chunk(a, b) for _, a, b in orders], records):
            fits.append(misfit(result, c.start, c.stop) is None)  # (what the driver checks of each)
    assert fits == [] and len(records) == 1
    fine = [(0, 0, 20), (1, 0, 20), (0, 20, 40), (0, 40, 60)]
    records = list(tasks.run_partition(_job(tmp_path, fine, sink_for=(1,)), iter(())))
    got = [(c.start, type(r).__name__) for c, (r, _), _, _ in paired([Chunk(a, b) for _, a, b in fine], records)]
    assert got == [(0, "ChunkResult"), (0, "StoredChunk"), (20, "ChunkResult"), (40, "ChunkResult")]


def test_a_task_writes_a_chunk_folders_files_and_sends_only_what_the_driver_counts(tmp_path):
    """An embedded store's chunk folder as the sink (what the driver gives when the executors see its folder): the
    task writes each chunk's file and sends a StoredChunk; a chunk the driver keeps (``Order.keep``) and a chunk
    with failures come back whole, for the driver to write, as from a local worker."""
    from ancho.executors.base import Task
    from ancho.executors.spark.isolation import Isolation
    from ancho.executors.spark.tasks import Job, Order, run_partition
    from ancho.loading import FileRef
    from ancho.stores.chunk_layout import chunk_files
    from ancho.stores.chunk_writer import ChunkFolder

    (tmp_path / "m.py").write_text(
        "import ancho\n"
        "class M(ancho.Model):\n"
        "    def sequence(self, rng):\n"
        "        x = float(rng.random())\n"
        "        if x < 0.02:\n"
        "            raise ValueError('unlucky')\n"
        "        return {'x': x}\n"
    )
    folder = tmp_path / "runs" / "r1" / "chunks"
    task = Task(FileRef(str(tmp_path), "m.py", "M"), {}, 7, "r1", sink=ChunkFolder(str(folder), fsync=False))
    from ancho.streams import reference_generator

    unlucky = [i for i in range(2_020) if reference_generator(7, i).random() < 0.02]
    assert unlucky[0] == 7 and not set(unlucky) & set(range(8, 60))  # (seed 7: 8..59 all succeed, 0..7 does not)
    orders = (Order(0, 8, 60), Order(0, 0, 8), Order(0, 2_010, 2_020, keep=True))
    records = list(run_partition(Job(f"test-{tmp_path.name}", (task,), None, Isolation(), orders), iter(())))
    got = [(c.start, type(r).__name__) for c, (r, _), _, _ in paired([Chunk(o.start, o.stop) for o in orders], records)]
    assert got == [(8, "StoredChunk"), (0, "ChunkResult"), (2_010, "ChunkResult")]
    assert [(a, b) for a, b, _ in chunk_files(folder)] == [(8, 60)]  # only the first chunk's file, written whole
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]
