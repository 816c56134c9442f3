"""Spark tasks write an embedded store's chunk files themselves when they see its folder (docs/spark.md, "Who writes").

Against the real standalone cluster on this machine; each Spark run is
compared with the same run on the local executor: per-sequence outputs,
failures and summaries identical, and the driver received no columns.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import ancho

from ..conftest import EXAMPLES
from ..models import Flaky, KillsAtDraw, Mixed
from .test_spark import failed_tasks, same_run
from .test_spark_direct_writes import chunks_tile


def services(test):
    """The real Spark cluster; slow."""
    return pytest.mark.spark(pytest.mark.slow(test))


@pytest.fixture(scope="module")
def spark(spark_url):
    from ancho.executors.spark import SparkExecutor

    ex = SparkExecutor(spark_url).start()
    yield ex
    ex.close()


@pytest.fixture
def other_store(tmp_path):
    from ancho.stores.embedded import EmbeddedStore

    s = EmbeddedStore(tmp_path / "local-home")
    yield s
    s.close()


# -- no service needed ------------------------------------------------------------------
def test_the_probe_task_says_why_a_folder_is_not_shared(tmp_path):
    from ancho.executors.spark.tasks import probe_folder_task

    probe = tmp_path / ".spark-probe-x"
    probe.write_text("token")
    assert list(probe_folder_task(str(probe), "token", iter(()))) == [None]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".spark-probe-x"]  # its own file gone again
    (why,) = probe_folder_task(str(probe), "another", iter(()))
    assert "reads another file at" in why and "do not share the store's folder" in why
    (why,) = probe_folder_task(str(tmp_path / "missing"), "token", iter(()))
    assert why.startswith("a Spark task on ") and "cannot use the store's folder" in why and "No such file" in why


def test_a_store_whose_writes_do_more_gets_no_writers_folder(store):
    from ancho.stores.embedded import EmbeddedStore

    class Audited(EmbeddedStore):
        def write_chunk(self, run_id, result):
            super().write_chunk(run_id, result)

    assert store.writers_folder("r1").folder == str(store.home / "runs" / "r1" / "chunks")
    audited = Audited(store.home)
    try:
        assert audited.writers_folder("r1") is None
    finally:
        audited.close()


def test_tasks_write_an_embedded_store_only_where_they_share_it_at_its_absolute_path(tmp_path, monkeypatch):
    """The chunk folder the tasks get is absolute, links resolved, as probed (an executor's working folder is its
    own); executors said not to share the driver's storage get no folder, and the driver's own failure to write
    the probe's file names the folder."""
    from ancho.executors.spark.sinks import probe_folder, tasks_sink
    from ancho.stores.embedded import EmbeddedStore

    monkeypatch.chdir(tmp_path)
    store = EmbeddedStore("relative-home")
    try:
        probed = []
        sink, who = tasks_sink(store, "r1", False, True, None, lambda home: probed.append(home))
        assert who == "tasks" and sink.folder == str((tmp_path / "relative-home/runs/r1/chunks").resolve())
        assert probed == [store.home]
        assert tasks_sink(store, "r1", True, False, None, probed.append) == (
            None,
            "driver: the executors do not share the driver's storage (shared_storage=False)",
        )
        context = type("Context", (), {"applicationId": "app-test"})()
        why = probe_folder(context, tmp_path / "missing-home", str)
        assert why.startswith(f"the driver cannot write in the store's folder {tmp_path / 'missing-home'}")
    finally:
        store.close()


def test_a_chunk_the_driver_would_refuse_is_never_written_by_a_task():
    """A sandboxed model may replace its worker's checks: outputs over the caps come back whole (the driver refuses
    them), so no file of them is committed to the store; so do a chunk's failures and a kept chunk."""
    import numpy as np

    from ancho.chunk import ChunkResult, Failure
    from ancho.executors.spark.tasks import Order, _back_whole

    def result(columns, failures=()):
        return ChunkResult(0, 4, np.arange(4), columns, list(failures), 0.0)

    fine = {"x": np.zeros(4)}
    assert not _back_whole(Order(0, 0, 4), result(fine))
    assert _back_whole(Order(0, 0, 4, keep=True), result(fine))
    assert _back_whole(Order(0, 0, 4), result(fine, [Failure(3, "E", "tb")]))
    assert _back_whole(Order(0, 0, 4), result({f"o{i}": np.zeros(4) for i in range(1_001)}))
    assert _back_whole(Order(0, 0, 4), result({"a" * 101: np.zeros(4)}))


# -- the cluster -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "model, params, n, max_failures",
    [
        (Mixed, {"n": 7}, 20_000, 0),
        (Flaky, {"every": 40}, 12_000, 1_000),
        (str(EXAMPLES / "option.py") + ":BSCall", {}, 3_000_000, 0),
    ],
    ids=["mixed", "failures-allowed", "batch"],
)
@services
def test_tasks_write_the_files_identical_to_a_local_run(spark, store, other_store, model, params, n, max_failures):
    kw = dict(sequences=n, seed=31, max_failures=max_failures)
    r = ancho.run(model, params, executor=spark, store=store, **kw)
    assert spark.last_writes == "tasks"
    direct = spark.last_received
    local = ancho.run(model, params, workers=2, store=other_store, **kw)
    same_run(r, local)
    chunks_tile(store, r.run_id, n)
    assert not list((store.home / "runs" / r.run_id / "chunks").glob(".*"))  # no temporary file left
    assert not list(store.home.glob(".spark-probe-*"))
    if max_failures:  # (a chunk with failures comes back whole: the driver stores it with them)
        assert 0 < r.summary["failures"] == len(r.failures) <= max_failures
        assert r.failures[0].traceback == local.failures[0].traceback
    else:  # the columns stayed with the tasks: ~100 bytes a chunk came back
        assert direct < 8 * n / 20


@services
def test_the_driver_writes_when_asked_or_when_the_folder_is_not_seen(spark, store, other_store, monkeypatch, caplog):
    import logging

    from ancho.executors.spark import SparkExecutor

    # the probe is a real Spark task: a folder the executors cannot see is refused (kept for the session)
    ghost = Path("/nonexistent-ancho-home")
    why = spark._probe_folder(store.home)
    assert why is None
    kw = dict(sequences=5_000, seed=3, targets=["even"])
    local = ancho.run(Mixed, workers=2, store=other_store, **kw)

    monkeypatch.setattr(SparkExecutor, "_probe_folder", lambda self, home: f"a Spark task on host-x cannot use {ghost}")
    with caplog.at_level(logging.WARNING, logger="ancho.spark"):
        r = ancho.run(Mixed, executor=spark, store=store, **kw)
    assert spark.last_writes == f"driver: a Spark task on host-x cannot use {ghost}"
    assert "the driver writes the results of this Spark run (a Spark task on host-x" in caplog.text
    assert spark.last_received > 8 * 5_000
    same_run(r, local)
    monkeypatch.undo()

    via = SparkExecutor(spark.master, writes="driver")
    same_run(ancho.run(Mixed, executor=via, store=store, **kw), local)
    assert via.last_writes.startswith("driver: asked for")


@services
def test_a_task_retried_by_spark_leaves_one_file_a_chunk(spark, store, other_store, tmp_path):
    """A Python worker kills itself once, in sequence 29,000; Spark runs its task again, which writes the same files."""
    from ancho.streams import reference_generator

    n, seed = 60_000, 5
    params = {"marker": str(tmp_path / "killed"), "draw": float(reference_generator(seed, 29_000).random())}
    r = ancho.run(KillsAtDraw, params, sequences=n, seed=seed, executor=spark, store=store)
    assert os.path.exists(params["marker"]) and spark.last_writes == "tasks"
    assert failed_tasks(spark) >= 1
    chunks_tile(store, r.run_id, n)
    same_run(r, ancho.run(KillsAtDraw, params, sequences=n, seed=seed, workers=2, store=other_store))


@services
def test_a_sandboxed_model_sees_the_folder_read_only_but_its_task_writes(spark, store, other_store, write_model):
    """The writer is the Spark task's own Python process; the model runs in bubblewrap and cannot write the store."""
    from ancho.executors.spark import SparkExecutor
    from ancho.isolation import SandboxPolicy, sandbox_problem

    from ..conftest import need_service

    if sandbox_problem():
        need_service("bubblewrap", sandbox_problem())
    path = write_model(
        f"""
        import os

        class Writer(ancho.Model):
            def sequence(self, rng):
                try:
                    open(os.path.join({str(store.home)!r}, "runs", "planted"), "w").close()
                    wrote = True
                except OSError:
                    wrote = False
                return {{"x": float(rng.random()), "wrote": wrote}}
        """,
        name="writer.py",
    )
    ex = SparkExecutor(spark.master, sandbox=SandboxPolicy())
    r = ancho.run(str(path), sequences=300, seed=4, executor=ex, store=store)
    assert ex.last_writes == "tasks" and not r.frame.wrote.any()
    assert not (store.home / "runs" / "planted").exists()
    local = ancho.run(str(path), sequences=300, seed=4, workers=2, store=other_store)
    assert r.frame.x.equals(local.frame.x)
