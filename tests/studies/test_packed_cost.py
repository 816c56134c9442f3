"""What makes a study's tiny points cheap on the driver keeps what the store and the study record promise.

Each cut of per-point work (docs/benchmarks.md, "Studies") is checked against the slower form it replaced:
the record's JSON text against ``to_dict``'s, an uncompressed small chunk file against the values written,
the paced study-record writes against their bound.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

import ancho
from ancho.chunk import ChunkResult
from ancho.executors.base import Executor
from ancho.stores.base import RecordSpec, RunRecord, StudyRecord, Submission
from ancho.stores.chunk_layout import chunk_files
from ancho.stores.chunk_writer import UNCOMPRESSED_ROWS, write_chunk_file
from ancho.stores.embedded import EmbeddedStore
from ancho.studies.pacing import WRITE_EVERY, WRITE_MOST, WRITE_SHARE, Pacer
from ancho.studies.packed import PACK_SEQUENCES

from ..conftest import root_only


def _record() -> RunRecord:
    submission = Submission("/srv/m", "m.py", "M", {"p": 0.5}, "https://x", {"kind": "upload", "name": "m.py"})
    spec = RecordSpec({"name": "M", "parameters": [{"name": "p", "default": 0.5}]}, submission, study="s1", point=3)
    return RunRecord(
        "r1",
        params={"p": 0.5, "xs": [1, 2, (3, 4)]},
        targets=["won"],
        schema={"won": "bool", "path": "float[3]"},
        spec=spec,
        summary={"outputs": {"won": {"mean": 0.25, "ci95": [0.1, 0.4]}}, "custom": {"m": None}},
    )


def test_a_record_s_json_text_says_what_its_dict_says():
    record = _record()
    assert json.loads(record.to_json()) == json.loads(json.dumps(record.to_dict()))


def test_a_study_record_s_json_text_says_what_its_dict_says_and_reads_back_so(tmp_path: Path):
    points = [{"point": k, "params": {"p": k / 10}, "run": None, "status": "queued"} for k in range(3)]
    study = StudyRecord("s1", design={"kind": "points", "n": 3}, points=points, spec=_record().spec, seed=7)
    assert json.loads(study.to_json()) == json.loads(json.dumps(study.to_dict()))
    store = EmbeddedStore(tmp_path)
    store.create_study(study)
    assert store.get_study("s1").to_dict() == json.loads(json.dumps(study.to_dict()))


def test_records_created_together_read_back_as_they_were_given(tmp_path: Path):
    store = EmbeddedStore(tmp_path)
    records = [_record(), RunRecord("r2", params={"p": 0.1})]
    store.create_runs(records)
    for record in records:
        assert store.get_run(record.id).to_dict() == json.loads(json.dumps(record.to_dict()))


def _chunk(rows: int) -> ChunkResult:
    rng = np.random.default_rng(rows)
    columns = {"won": rng.random(rows) < 0.5, "rounds": rng.integers(0, 40, rows), "x": rng.random(rows)}
    return ChunkResult(0, rows, np.arange(rows, dtype=np.int64), columns)


def test_a_small_chunk_file_is_uncompressed_a_large_one_zstd_and_both_read_back_exactly(tmp_path: Path):
    for rows, codec in ((50, "UNCOMPRESSED"), (UNCOMPRESSED_ROWS - 1, "UNCOMPRESSED"), (UNCOMPRESSED_ROWS, "ZSTD")):
        folder = tmp_path / str(rows)
        chunk = _chunk(rows)
        write_chunk_file(folder, chunk, False, tmp_path)
        ((_, _, path),) = chunk_files(folder)
        meta = pq.read_metadata(path)
        assert {meta.row_group(0).column(i).compression for i in range(meta.num_columns)} == {codec}
        table = pq.read_table(path)
        assert "sequence" not in table.column_names  # (every sequence of its range: the name says them)
        for name, values in chunk.columns.items():
            assert np.array_equal(table[name].to_numpy(zero_copy_only=False), values)


def test_study_record_writes_keep_their_period_and_their_share():
    pace = Pacer()
    assert pace.due(0.0)  # the first write is always due
    pace.wrote(10.0, 10.001)  # a cheap write: the period rules
    assert not pace.due(10.0 + WRITE_EVERY - 1e-6)
    assert pace.due(10.0 + WRITE_EVERY)
    pace.wrote(20.0, 20.2)  # a 0.2 s write (a large study's record): not again before WRITE_SHARE × 0.2 s
    assert not pace.due(20.0 + WRITE_SHARE * 0.2 - 1e-6)
    assert pace.due(20.0 + WRITE_SHARE * 0.2)
    pace.wrote(30.0, 32.0)  # a 2 s write (a syncfs on a saturated disk): still written within WRITE_MOST
    assert not pace.due(30.0 + WRITE_MOST - 1e-6)
    assert pace.due(30.0 + WRITE_MOST)


GAMBLER = str(Path(__file__).resolve().parents[2] / "examples" / "gambler.py")
#: ... without its summary function (so a point needs nothing but its chunk)
GAMBLER_PLAIN = str(Path(__file__).resolve().parents[2] / "benchmarks" / "models" / "gambler_plain.py")


@pytest.fixture
def sealed_runs(store):
    """The store's ``runs`` folder made immutable (ext4's ``i`` attribute, which binds root too): no run folder can
    be made in it, as on a full disk, while SQLite beside it still works."""
    runs = str(store.home / "runs")
    with root_only(["chattr", "+i", runs], ["chattr", "-i", runs], "must be able to chattr +i on ext4"):
        yield store


#: a gambler slow enough (~2 ms a sequence) that a point of 200 sequences is more than one chunk of ~0.2 s of work
SLOW_GAMBLER = """
import time


class SlowGambler(ancho.Model):
    p: float = 0.5

    def sequence(self, rng):
        time.sleep(0.002)
        return {"won": bool(rng.random() < self.p), "rounds": int(rng.integers(1, 10))}

    @ancho.summary
    def median_rounds_when_won(self, results):
        return float(results.loc[results.won, "rounds"].median())
"""


@pytest.mark.parametrize("sequences", [200, PACK_SEQUENCES + 100])
def test_points_whose_files_cannot_be_written_fail_with_the_store_s_one_line_reason(sealed_runs, write_model,
                                                                                     sequences):  # fmt: skip
    # tiny points: their chunks are rows of the store's database, but these three are each cut into several chunks
    # (more than ~0.2 s of work each), so the model's summary function reads their results as files, and moving
    # the rows there meets the error; larger points: their writers meet it (a worker's chunk goes back to the
    # driver, whose write fails that point alone). Each point is recorded failed with it, the study goes on and ends
    model = GAMBLER if sequences > PACK_SEQUENCES else str(write_model(SLOW_GAMBLER))
    study = ancho.study(model, ancho.points([{"p": 0.4}, {"p": 0.5}, {"p": 0.6}]),
                        {"stake": 3, "goal": 10} if model == GAMBLER else {}, sequences, seed=1, store=sealed_runs,
                        workers=2)  # fmt: skip
    assert study.status == "failed"
    (record,) = sealed_runs.list_studies()
    assert record.error.startswith("3 of 3 points failed; point 0: could not store the results of sequences ")
    for p in record.points:
        run = sealed_runs.get_run(p["run"])
        assert run.status == "failed" and run.error.startswith("could not store the results of sequences ")
        assert "\n" not in run.error and "free some space there" in run.error


def test_points_ended_near_the_end_are_written_before_the_last_result(store, monkeypatch):
    """The last flush, after the last result, runs while the workers are idle: points are written once a tenth of
    the study's sequences is left to come back, then again each time a quarter of what was left is, so the last
    flush holds only the few points that ended after the one before, not half the study."""
    batches: list[int] = []
    create_runs = EmbeddedStore.create_runs

    def counted(self, records):
        batches.append(len(records))
        return create_runs(self, records)

    monkeypatch.setattr(EmbeddedStore, "create_runs", counted)
    monkeypatch.setattr("ancho.studies.pacing.WRITE_EVERY", 3600.0)  # no flush paced by time: only the two rules
    ps = [0.45 + 0.1 * k / 399 for k in range(400)]
    study = ancho.study(GAMBLER, ancho.points([{"p": p} for p in ps]), params={"stake": 3}, sequences=20, seed=3,
                        workers=2, store=store)  # fmt: skip
    assert study.status == "succeeded" and sum(batches) == 400
    assert len(batches) >= 3  # at a tenth left, at a quarter of that, and the last
    # a fortieth of the points (10), plus those in flight when it was reached (at most a worker's share of what was
    # left to hand out, plus the usual 8 chunks a worker: 16 points)
    assert batches[-1] <= 10 + 10 + 16


def test_a_plan_deepens_the_workers_queue_for_a_flush_within_its_bounds():
    """Enough chunks a worker to compute through the flush, no more than DEEPEST, nor than a worker's share."""
    from collections import deque

    from ancho.executors.base import Task
    from ancho.stores.base import RunRecord
    from ancho.studies.plan import Point, StudyPlan

    def plan(points: int) -> StudyPlan:
        pts = [Point({"point": k}, RunRecord(f"r{k}", total=50), Task(None, {}, 1, f"r{k}"), deque([(0, 50)]),
                     created=True) for k in range(points)]  # fmt: skip
        made = StudyPlan(pts, workers=2, block=None, summaries=(), create=lambda batch: None)
        made.index()
        return made

    big = plan(4000)
    base = StudyPlan.inflight_per_worker
    assert big.deepen(1.0) == 0 and big.inflight_per_worker == base  # nothing measured yet: the usual queue
    big.chunk = (50.0, 0.5e-3)  # a tiny point's chunk: 50 sequences in 0.5 ms
    handed = big.deepen(0.1)
    assert big.inflight_per_worker == base + 200  # 0.1 s of work at 0.5 ms a chunk
    big.deepen(10.0)
    assert big.inflight_per_worker == StudyPlan.DEEPEST
    assert not big.ready(handed, waited=0)
    big.next()
    assert big.ready(handed, waited=0)  # a chunk went out since: the deeper queue is being sent
    assert big.ready(handed, waited=4 * StudyPlan.bundle * 2 + 1)  # an executor that keeps no queue: go on anyway
    big.shallow()
    assert big.inflight_per_worker == base
    small = plan(60)
    small.chunk = (50.0, 0.5e-3)
    small.deepen(10.0)
    assert small.inflight_per_worker == 30  # 60 points' chunks left on 2 workers
    while small.next() is not None:
        pass
    assert small.ready(small.handed, waited=0)  # nothing left to hand out: nothing to wait for


def test_local_workers_have_the_deeper_queue_while_the_driver_writes_a_batch(store, monkeypatch):
    """The flush's records are written while each worker has more than the usual chunks queued (it computes
    through the flush instead of idling after its usual few)."""
    from ancho.executors.local import LocalExecutor
    from ancho.studies.plan import StudyPlan

    queued: list[int] = []
    create_runs = EmbeddedStore.create_runs
    executor = LocalExecutor(2)

    def watched(self, records):
        queued.append(min(len(w.inflight) for w in executor._pool))
        return create_runs(self, records)

    monkeypatch.setattr(EmbeddedStore, "create_runs", watched)
    monkeypatch.setattr("ancho.studies.pacing.WRITE_EVERY", 0.2)
    ps = [0.45 + 0.1 * k / 1999 for k in range(2000)]
    try:
        study = ancho.study(GAMBLER, ancho.points([{"p": p} for p in ps]), params={"stake": 3}, sequences=50, seed=3,
                            executor=executor, store=store)  # fmt: skip
    finally:
        executor.close()
    assert study.status == "succeeded"
    assert len(queued) >= 2 and max(queued[:-1]) > StudyPlan.inflight_per_worker


class Bursts(Executor):
    """An executor whose results come back in two bursts, as a Spark study's two tasks' do (each task's results when
    it ends): it runs every chunk in this process, hands back the first half, saying :meth:`ChunkSource.lull` before
    the last of them when ``lull`` (Spark's driver does when another task still runs), and notes how many points'
    records were final in the store when the second burst began."""

    workers = 2
    mixed_tasks = True

    def __init__(self, store: EmbeddedStore, lull: bool):
        self.store, self.lull = store, lull
        self.final_before_second: int | None = None

    def map_chunks(self, task, source):
        from ancho.chunk import ChunkRunner
        from ancho.executors.base import tag_result

        chunks = []
        while (c := source.next()) is not None:
            chunks.append(c)
        results = []
        for c in chunks:
            result = ChunkRunner(c.task.ref.resolve(), c.task.params, c.task.seed).run(c.start, c.stop)
            tag_result(result, c, None)
            results.append(result)
        half = len(results) // 2
        for i, result in enumerate(results[:half]):
            if self.lull and i == half - 1:
                source.lull()
            yield result
        self.final_before_second = len(self.store.list_runs(status="succeeded"))
        yield from results[half:]


@pytest.mark.parametrize("lull", [True, False])
def test_points_whose_results_came_are_written_while_the_executor_waits_for_the_next_burst(store, monkeypatch, lull):
    """On Spark a task's ~1,000 points come back when it ends; written only with the last task's, after it, their
    records were the driver's work while no task ran (docs/benchmarks.md, "On Spark"). When the executor says it
    waits (``lull``), the points ended so far are written then."""
    monkeypatch.setattr("ancho.studies.pacing.WRITE_EVERY", 3600.0)  # (no flush paced by time but the first)
    executor = Bursts(store, lull)
    ps = [0.45 + 0.1 * k / 199 for k in range(200)]
    study = ancho.study(GAMBLER_PLAIN, ancho.points([{"p": p} for p in ps]), params={"stake": 3}, sequences=20,
                        seed=3, executor=executor, store=store)  # fmt: skip
    assert study.status == "succeeded" and len(study.runs) == 200
    if lull:
        assert executor.final_before_second == 100  # the first burst's points, all of them
    else:
        assert executor.final_before_second is not None and executor.final_before_second < 10  # (the first flush's)


def test_a_study_s_plan_starts_from_the_executor_s_guess_of_the_model_s_cost():
    """Told what a sequence cost (Spark's driver remembers the model's last run), the plan hands out tiny points
    whole from the first chunk instead of first cutting 8-sequence chunks to measure (a Spark job each)."""
    from collections import deque

    from ancho.executors.base import Task
    from ancho.studies.plan import Point, StudyPlan

    def plan() -> StudyPlan:
        pts = [Point({"point": k}, RunRecord(f"r{k}", total=50), Task(None, {}, 1, f"r{k}"), deque([(0, 50)]),
                     created=True) for k in range(3)]  # fmt: skip
        made = StudyPlan(pts, workers=2, block=None, summaries=(), create=lambda batch: None)
        made.index()
        return made

    unknown = plan()
    assert unknown.next().size == 8  # type: ignore[union-attr]
    guessed = plan()
    guessed.expect(1e-5)
    assert [guessed.next().size for _ in range(3)] == [50, 50, 50]  # type: ignore[union-attr]
    guessed.measure(ChunkResult(0, 50, np.arange(50), {}, [], 50 * 3e-5))
    assert guessed.per_sequence == pytest.approx(0.8e-5 + 0.2 * 3e-5)  # what comes back corrects it
    guessed.expect(1.0)
    assert guessed.per_sequence == pytest.approx(1.4e-5)  # (a guess never replaces a measurement)
