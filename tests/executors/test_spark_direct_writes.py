"""Spark tasks write their chunks to a Cassandra store themselves (docs/cassandra.md, "Spark").

Against the real standalone cluster and the real Cassandra node; each Spark
run is compared with the same run on the local executor and the embedded
store: per-sequence outputs, failures and summaries identical.
"""

from __future__ import annotations

import dataclasses
import logging
import os

import numpy as np
import pytest

import ancho
from ancho.chunk import ChunkResult, Failure, StoredChunk

from ..conftest import PYSPARK_HINT, need_module
from ..models import Flaky, KillsAtDraw, Mixed
from ..stores.conftest import cassandra_catalog, cassandra_store  # noqa: F401 (fixtures)
from .test_spark import failed_tasks, same_run


def services(test):
    """The real Spark cluster and Cassandra node; slow."""
    return pytest.mark.spark(pytest.mark.cassandra(pytest.mark.slow(test)))


TARGETS = ["u>=0.5", "k>=3", "even"]


@pytest.fixture(scope="module")
def spark(spark_url):
    """Tasks write (the default on a Cassandra store); one Spark session for the module."""
    from ancho.executors.spark import SparkExecutor

    ex = SparkExecutor(spark_url).start()
    yield ex
    ex.close()


def driver_writes(spark):
    from ancho.executors.spark import SparkExecutor

    return SparkExecutor(spark.master, writes="driver")


def chunks_tile(store, run_id: str, n: int) -> None:
    """The run's done chunks cover 0..n-1 exactly once: nothing lost, nothing written twice."""
    ranges = sorted(store.completed_ranges(run_id))
    assert ranges[0][0] == 0 and ranges[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:])), ranges


# -- no service needed ------------------------------------------------------------------
def test_a_stored_chunk_travels_without_its_columns():
    from ancho.executors.spark import decode, encode, encode_stored
    from ancho.expressions import Target
    from ancho.stats import Running

    seqs = np.array([0, 1, 3, 4], dtype=np.int64)
    result = ChunkResult(
        0,
        5,
        seqs,
        {"u": np.array([0.1, np.nan, 0.7, 0.9]), "k": np.array([1, 4, 2, 5])},
        [Failure(2, "ValueError: no", "tb")],
        0.25,
    )
    targets = (Target.parse("k>=3"), Target.parse("u>0.5"))
    data = encode_stored(result, targets)
    back = decode(data)
    assert isinstance(back, StoredChunk)
    assert (back.start, back.stop, back.rows, back.failed, back.seconds) == (0, 5, 4, 1, 0.25)
    assert back.kinds() == {"u": "float", "k": "int"} and back.failures == result.failures
    # the engine's running statistics from the tallies equal those from the columns, bit for bit
    for name, column in result.columns.items():
        mine = [t for t in targets if t.output == name]
        a, b = Running(), Running()
        a.add(column, mine)
        b.merge(back.tallies[name])
        assert a == b
    assert len(data) < len(encode(result)) and decode(encode_stored(result, None)).tallies == {}


# -- the cluster and the node ------------------------------------------------------------
@pytest.mark.parametrize(
    "model, params, n, max_failures",
    [(Mixed, {"n": 7}, 20_000, 0), (Flaky, {"every": 40}, 12_000, 1_000)],
    ids=["mixed", "failures-allowed"],
)
@services
def test_identical_to_a_local_run_and_the_driver_gets_no_columns(
    spark,
    store,
    cassandra_store,
    model,
    params,
    n,  # noqa: F811
    max_failures,
):
    kw = dict(sequences=n, seed=31, targets=["x>=0.5"] if model is Flaky else TARGETS, max_failures=max_failures)
    r = ancho.run(model, params, executor=spark, store=cassandra_store, **kw)
    assert spark.last_writes == "tasks"
    direct = spark.last_received
    local = ancho.run(model, params, workers=2, store=store, **kw)
    same_run(r, local)
    chunks_tile(cassandra_store, r.run_id, n)
    if max_failures:
        assert 0 < r.summary["failures"] == len(r.failures) <= max_failures
        assert r.failures[0].traceback == local.failures[0].traceback  # stored by the task, with the traceback
    # the same run written by the driver: the columns crossed over (8+ bytes per value), the direct one sent ~100 bytes a chunk
    via = driver_writes(spark)
    again = ancho.run(model, params, executor=via, store=cassandra_store, **kw)
    assert via.last_writes.startswith("driver: asked for")
    same_run(again, local)
    assert via.last_received > 8 * len(local.frame) > 20 * direct


@services
def test_precision_goal_from_the_tasks_tallies(spark, store, cassandra_store):  # noqa: F811
    kw = dict(sequences=500, seed=8, until="p(u>=0.3)+-0.006", max_sequences=60_000, targets=["k>=3"])
    r = ancho.run(Mixed, executor=spark, store=cassandra_store, **kw)
    assert spark.last_writes == "tasks"
    local = ancho.run(Mixed, workers=2, store=store, **kw)
    assert r.record.done == local.record.done > 500
    hr, hl = r.summary.pop("until"), local.summary.pop("until")
    assert hr == hl and hr["met"]  # hit counts are integers: the goal's interval is exactly the local one
    same_run(r, local)
    kw["until"] = "mean(z)+-0.02"
    r = ancho.run(Mixed, executor=spark, store=cassandra_store, **kw)
    local = ancho.run(Mixed, workers=2, store=store, **kw)
    assert r.record.done == local.record.done > 500
    hr, hl = r.summary.pop("until"), local.summary.pop("until")
    # the running mean is merged chunk by chunk in arrival order: equal up to rounding
    assert hr.pop("half_width") == pytest.approx(hl.pop("half_width"), rel=1e-12) and hr == hl
    same_run(r, local)


@services
def test_a_task_retried_by_spark_duplicates_nothing(spark, store, cassandra_store, tmp_path):  # noqa: F811
    """A Python worker kills itself once, in sequence 29,000: its Spark task fails after sending the chunks it ran
    before (when the task runs several chunks, as tasks of cheap sequences do once their cost is known), and Spark
    runs the task again, which writes the same bytes under the same keys."""
    from ancho.streams import reference_generator

    if "127.0.0.1" not in spark.master and "localhost" not in spark.master:
        pytest.skip("the marker file must be on the executors' machine")
    n, seed = 60_000, 5
    params = {"marker": str(tmp_path / "killed"), "draw": float(reference_generator(seed, 29_000).random())}
    r = ancho.run(KillsAtDraw, params, sequences=n, seed=seed, executor=spark, store=cassandra_store)
    assert os.path.exists(params["marker"]) and spark.last_writes == "tasks"
    assert failed_tasks(spark) >= 1
    chunks_tile(cassandra_store, r.run_id, n)
    local = ancho.run(
        KillsAtDraw, params, sequences=n, seed=seed, workers=2, store=store
    )  # (the marker is there: no kill)
    same_run(r, local)


@services
def test_a_sandboxed_model_cannot_reach_cassandra_but_its_task_writes(spark, store, cassandra_store, write_model):  # noqa: F811
    """The writer is the Spark task's own Python process; the model runs in bubblewrap without network."""
    from ancho.executors.spark import SparkExecutor
    from ancho.isolation import SandboxPolicy, sandbox_problem

    from ..conftest import need_service

    if sandbox_problem():
        need_service("bubblewrap", sandbox_problem())
    path = write_model(
        """
        import socket

        class Offline(ancho.Model):
            def sequence(self, rng):
                try:
                    socket.create_connection(("127.0.0.1", 9042), timeout=1).close()
                    online = True
                except OSError:
                    online = False
                return {"x": float(rng.random()), "online": online}
        """,
        name="offline.py",
    )
    ex = SparkExecutor(spark.master, sandbox=SandboxPolicy())
    r = ancho.run(str(path), sequences=300, seed=4, executor=ex, store=cassandra_store)
    assert ex.last_writes == "tasks" and not r.frame.online.any()
    local = ancho.run(str(path), sequences=300, seed=4, workers=2, store=store)
    assert r.frame.x.equals(local.frame.x)


@services
def test_falls_back_to_the_driver_and_says_why(spark, store, cassandra_store, monkeypatch, caplog):  # noqa: F811
    from ancho.executors.spark import SparkExecutor

    # the probe is a real Spark task: a port nobody listens on is unreachable from the executors
    rec = ancho.run(Mixed, sequences=100, seed=1, executor=spark, store=cassandra_store)
    source = cassandra_store.results(rec.run_id)
    why = spark._probe(dataclasses.replace(source, endpoint=dataclasses.replace(source.endpoint, port=1)))
    assert why and "cannot use Cassandra" in why and "127.0.0.1:1" in why
    assert spark._probe(source) is None

    # executors that cannot reach the node: the driver writes, with a warning saying why
    monkeypatch.setattr(SparkExecutor, "_probe", lambda self, source: "a Spark task on host-x cannot use Cassandra: …")
    kw = dict(sequences=5_000, seed=3, targets=["even"])
    with caplog.at_level(logging.WARNING, logger="ancho.spark"):
        r = ancho.run(Mixed, executor=spark, store=cassandra_store, **kw)
    assert spark.last_writes == "driver: a Spark task on host-x cannot use Cassandra: …"
    assert "the driver writes the results of this Spark run (a Spark task on host-x" in caplog.text
    assert spark.last_received > 8 * 5_000
    local = ancho.run(Mixed, workers=2, store=store, **kw)
    same_run(r, local)

    # turned off by the environment
    monkeypatch.setenv("ANCHO_SPARK_WRITES", "driver")
    off = SparkExecutor(spark.master)
    same_run(ancho.run(Mixed, executor=off, store=cassandra_store, **kw), local)
    assert off.last_writes.startswith("driver: asked for")
    monkeypatch.delenv("ANCHO_SPARK_WRITES")


def test_a_bad_writes_mode_is_named(monkeypatch):
    need_module("pyspark", PYSPARK_HINT)
    from ancho.errors import InputError
    from ancho.executors.spark import SparkExecutor

    with pytest.raises(InputError, match="writes .* must be one of auto, tasks, driver, got 'cluster'"):
        SparkExecutor("local[1]", writes="cluster")
    monkeypatch.setenv("ANCHO_SPARK_WRITES", "nope")
    with pytest.raises(InputError, match="got 'nope'"):
        SparkExecutor("local[1]")
