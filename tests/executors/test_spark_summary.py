"""Summaries computed by Spark (Spark SQL, and user summary functions in a pandas UDF) equal the local ones.

Against the real standalone cluster (``ANCHO_TEST_SPARK_URL``); skipped
without it, failed under CI.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

import ancho
from ancho.errors import InputError

from ..conftest import EXAMPLES, PYSPARK_HINT, need_module
from ..models import Mixed
from ..stores.conftest import cassandra_catalog  # noqa: F401 - a fixture

pytestmark = [pytest.mark.spark, pytest.mark.slow]

#: mean, std, sem and the t interval are sums in another order in Spark: equal to this relative tolerance
REL = 1e-12
TARGETS = ["u>=0.5", "k>=3", "even", "z<-1", "k==0", "w>1", "v<=0.5"]


@pytest.fixture(scope="module")
def spark(spark_url):
    from ancho.executors.spark import SparkExecutor

    ex = SparkExecutor(spark_url, summary="spark").start()
    yield ex
    ex.close()


class Awkward(ancho.Model):
    """Outputs that test the definitions: NaN (left out), inf (null statistics), an all-NaN output, and an output
    that is int in some chunks and float in others (Spark's Parquet reader does not widen types by itself)."""

    def sequence(self, rng):
        a = rng.random()
        v = float("nan") if a < 0.1 else a
        w = float("inf") if a > 0.9995 else float(rng.standard_normal())
        m = float(rng.random()) if rng.random() < 0.0004 else int(rng.integers(0, 100))
        return {"v": v, "w": w, "m": m, "gone": float("nan"), "one": 1}


def close(a, b, path="summary"):
    """Equal, but floats to REL relative (and ints, bools, None, strings exactly)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), (path, a, b)
        for k in a:
            close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), (path, a, b)
        for i, (x, y) in enumerate(zip(a, b)):
            close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert a == pytest.approx(b, rel=REL, abs=1e-300), path
    else:
        assert a == b and type(a) is type(b), (path, a, b)


def summaries(spark, store, model, n, seed, targets=(), params=None):
    r = ancho.run(model, params, sequences=n, seed=seed, executor=spark, store=store, targets=list(targets))
    assert spark.last_summary == "spark"
    local = ancho.run(model, params, sequences=n, seed=seed, workers=2, store=store, targets=list(targets))
    sa = {k: v for k, v in r.summary.items() if k != "run"}
    sb = {k: v for k, v in local.summary.items() if k != "run"}
    return r, sa, sb


EXACT = ("count", "min", "max")


def test_statistics_equal_local(spark, store):
    r, s, local = summaries(spark, store, Mixed, 20_000, 11, TARGETS[:5])
    close(s, local)
    for name, out in s["outputs"].items():
        for key in EXACT:  # integer results are the same bit for bit
            assert out[key] == local["outputs"][name][key]
    assert s["outputs"]["even"]["mean"] == local["outputs"]["even"]["mean"]  # a proportion: hits / count
    assert s["outputs"]["even"]["ci95"] == local["outputs"]["even"]["ci95"]  # Wilson, from the same integers
    assert s["targets"] == local["targets"]  # target probabilities and Wilson intervals: exact
    assert s["outputs"]["k"]["p50"] == local["outputs"]["k"]["p50"]


def test_nan_inf_and_widened_columns(spark, store):
    import pyarrow.parquet as pq

    r, s, local = summaries(spark, store, Awkward, 12_000, 5, TARGETS[5:])
    # the run really stored output 'm' as int in some chunks and float in others
    folder = store.results_source(r.run_id)["path"]
    types = {
        str(pq.read_schema(os.path.join(folder, f)).field("m").type)
        for f in os.listdir(folder)
        if f.endswith(".parquet")
    }
    assert types == {"int64", "double"}
    close(s, local)
    assert s["outputs"]["v"]["count"] == int(r.frame.v.notna().sum()) < 12_000
    assert s["outputs"]["w"]["mean"] is None and s["outputs"]["w"]["max"] is None  # inf: null, as locally
    assert s["outputs"]["gone"] == local["outputs"]["gone"] and s["outputs"]["gone"]["count"] == 0
    assert s["outputs"]["one"]["std"] == 0.0 and s["outputs"]["one"]["mean"] == 1.0


class ThreeCodecs(ancho.Model):
    """Float outputs whose chunk columns are stored uncompressed, with LZ4 and with zstd (``stores/codecs.py``)."""

    block = 65_536

    def sequences(self, rng, n):
        z = rng.standard_normal(n)
        return {
            "u": rng.random(n),
            "payoff": np.maximum(100 * np.exp(0.2 * z) - 100, 0.0),
            "walk": np.cumsum(np.where(z > 0, 1.0, -1.0)),
        }


def test_spark_reads_every_codec_a_chunk_file_may_have(spark, store):
    import pyarrow.parquet as pq

    r, s, local = summaries(spark, store, ThreeCodecs, 400_000, 2)
    folder = store.results_source(r.run_id)["path"]
    seen = set()
    for f in os.listdir(folder):
        if f.endswith(".parquet"):
            meta = pq.ParquetFile(os.path.join(folder, f)).metadata.row_group(0)
            seen |= {meta.column(i).compression for i in range(meta.num_columns)}
    assert {"UNCOMPRESSED", "LZ4", "ZSTD"} <= seen
    for name in ("u", "payoff", "walk"):  # (percentiles of this many are approximate in Spark: the test below)
        for key in EXACT:
            assert s["outputs"][name][key] == local["outputs"][name][key]
        close(s["outputs"][name]["mean"], local["outputs"][name]["mean"])
        close(s["outputs"][name]["std"], local["outputs"][name]["std"])


def test_approximate_percentiles_within_bound(spark, store, monkeypatch):
    from ancho.executors import spark_summary

    monkeypatch.setattr(spark_summary, "EXACT_PERCENTILES", 0)
    n = 20_000
    r = ancho.run(Mixed, sequences=n, seed=12, executor=spark, store=store)
    local = ancho.run(Mixed, sequences=n, seed=12, workers=2, store=store)
    frame = local.frame
    err = math.ceil(n / spark_summary.APPROX_ACCURACY)  # the rank bound docs/spark.md states
    for name, out in r.summary["outputs"].items():
        values = np.sort(frame[name].to_numpy().astype(float))
        for q in (5, 25, 50, 75, 95):
            rank = q / 100 * (n - 1)
            lo = values[max(0, math.floor(rank) - err)]
            hi = values[min(n - 1, math.ceil(rank) + err)]
            assert lo <= out[f"p{q}"] <= hi, (name, q, out[f"p{q}"], lo, hi)
        for key in ("count", "min", "max", "mean", "std"):
            close(out[key], local.summary["outputs"][name][key])


def test_custom_summaries_in_spark(spark, store, write_model):
    path = write_model(
        """
        class WithSummaries(ancho.Model):
            p: float = 0.3

            def sequence(self, rng):
                won = bool(rng.random() < self.p)
                return {"won": won, "rounds": int(rng.integers(1, 50)), "x": float(rng.standard_normal())}

            @ancho.summary
            def median_rounds_when_won(self, results):
                return float(results.loc[results.won, "rounds"].median())

            @ancho.summary
            def layout(self, results):
                # what the function is handed: the same frame as locally
                return {"columns": list(results.columns), "dtypes": [str(t) for t in results.dtypes],
                        "ordered": bool(results.sequence.is_monotonic_increasing), "index0": int(results.index[0]),
                        "first_x": float(results.x.iloc[0]), "n": len(results),
                        # (full chunks' files have no sequence column: Spark adds it from the name and row index)
                        "sequences": results.sequence.tolist() == list(range(len(results)))}

            @ancho.summary
            def broken(self, results):
                return 1 / 0
        """,
        name="withsummaries.py",
    )
    r, s, local = summaries(spark, store, str(path), 6_000, 3, ["won"], {"p": 0.4})
    assert s["custom"] == local["custom"]
    assert s["custom"]["layout"]["columns"] == ["sequence", "won", "rounds", "x"]
    assert s["custom"]["layout"]["sequences"] is True and s["custom"]["layout"]["n"] == 6_000
    assert s["custom"]["layout"]["dtypes"] == ["int64", "bool", "int64", "float64"]
    assert s["custom"]["broken"] == {"error": "ZeroDivisionError: division by zero"}
    close(s, local)


def test_falls_back_to_the_driver_and_says_why(spark_url, store, caplog):
    from ancho.executors.spark import SparkExecutor

    ex = SparkExecutor(spark_url, summary="spark", shared_storage=False)
    with caplog.at_level("WARNING", logger="ancho.spark"):
        r = ancho.run(Mixed, sequences=2_000, seed=4, executor=ex, store=store, targets=["k>=2"])
    assert ex.last_summary.startswith("driver: the executors do not share the store's folder")
    assert "computed in the driver" in caplog.text
    local = ancho.run(Mixed, sequences=2_000, seed=4, workers=2, store=store, targets=["k>=2"])
    assert {k: v for k, v in r.summary.items() if k != "run"} == {k: v for k, v in local.summary.items() if k != "run"}
    auto = SparkExecutor(spark_url)  # small runs: the driver is quicker
    ancho.run(Mixed, sequences=500, seed=4, executor=auto, store=store)
    assert auto.last_summary.startswith("driver: fewer than")


def test_auto_summarises_in_the_driver_when_the_cluster_is_this_machine(tmp_path):
    """Spark SQL summarised a 30M-sequence run on the development cluster in ~24 s, the driver in ~1 s (and exactly):
    on this machine the executors have no more cores than the driver and read the same files. A cluster elsewhere
    keeps Spark from ``SPARK_SUMMARY_MIN`` sequences on."""
    need_module("pyspark", PYSPARK_HINT)
    from ancho.executors.spark import SparkExecutor
    from ancho.executors.spark.driver import SPARK_SUMMARY_MIN

    big = {"done": SPARK_SUMMARY_MIN}
    for master in ("spark://127.0.0.1:7077", "local[2]"):
        frame, why = SparkExecutor(master)._summary_frame(None, big, {"x": "float"})
        assert frame is None and why.startswith("driver: the executors run on this machine"), why
    assert (
        SparkExecutor("spark://127.0.0.1:7077")
        ._summary_frame(None, {"done": 10}, {"x": "float"})[1]
        .startswith("driver: fewer than")
    )
    # elsewhere, past the threshold: Spark is asked (here it cannot read an unknown source, and says so)
    frame, why = SparkExecutor("spark://spark-master.example:7077")._summary_frame(object(), big, {"x": "float"})
    assert frame is None and why.startswith("driver: Spark cannot read"), why


def test_bad_summary_mode_is_named():
    need_module("pyspark", PYSPARK_HINT)
    from ancho.executors.spark import SparkExecutor

    with pytest.raises(InputError, match="summary must be one of auto, spark, driver, got 'cluster'"):
        SparkExecutor("spark://127.0.0.1:7077", summary="cluster")


def test_cheap_sequences_go_in_fewer_bigger_tasks():
    need_module("pyspark", PYSPARK_HINT)
    from ancho.executors.spark import TASK_SECONDS, tasks_chunks

    assert tasks_chunks(None, 1000, 8, 2) == 1  # cost unknown: one chunk per task
    assert tasks_chunks(1e-6, 125_000, 6, 2) == 3  # 0.125 s chunks: as many as leave one task per core
    assert tasks_chunks(1e-6, 125_000, 40, 2) == int(TASK_SECONDS // 0.125)  # capped at TASK_SECONDS of work
    assert tasks_chunks(1e-3, 12_500, 8, 2) == 1  # 12.5 s chunks: one per task, for balance
    assert tasks_chunks(1e-6, 100, 1, 2) == 1 and tasks_chunks(1e-6, 100, 0, 2) == 0


def test_a_task_holds_at_most_so_many_sequences_and_bytes_of_results():
    """A batch model's 1M chunks of ~20 ms would fill TASK_SECONDS with ~100 of them: a task holds at most
    MAX_TASK_SEQUENCES sequences, fewer when their results would pass MAX_TASK_BYTES, counted over chunks of any size
    (a study's differ)."""
    need_module("pyspark", PYSPARK_HINT)
    from collections import deque
    from types import SimpleNamespace

    from ancho.executors.spark.cost import MAX_TASK_BYTES, MAX_TASK_SEQUENCES, take, task_sequences

    assert MAX_TASK_SEQUENCES == 1 << 22 and MAX_TASK_BYTES == 1 << 28
    assert task_sequences(None) == task_sequences(0) == 1 << 22 and task_sequences(8.0) == 1 << 22
    assert task_sequences(256.0) == 1 << 20 and task_sequences(1e12) == 1  # 32 float outputs; a huge trajectory
    chunks = lambda *sizes: deque(SimpleNamespace(size=n) for n in sizes)  # noqa: E731
    assert [c.size for c in take(chunks(*[1 << 20] * 10), 95, 1 << 22)] == [1 << 20] * 4
    mixed = take(chunks(37_856, *[262_144] * 40), 100, 1 << 22)  # a study's tail, then whole chunks
    assert sum(c.size for c in mixed) <= 1 << 22 and len(mixed) == 16
    assert [c.size for c in take(chunks(5 << 22, 8), 10, 1 << 22)] == [5 << 22]  # (one chunk always goes)
    assert len(take(chunks(8, 8, 8), 2, 1 << 22)) == 2


@pytest.mark.cassandra
def test_summary_from_the_cassandra_store(spark, store, cassandra_catalog):  # noqa: F811
    """Spark tasks read a Cassandra run's chunks themselves (owner's role) for the summary and summary functions."""
    for record in cassandra_catalog.list_runs():
        cassandra_catalog.delete_run(record.id)
    kw = dict(sequences=6_000, seed=21, targets=["rounds>=10", "won"], params={"stake": 4, "goal": 9})
    gambler = str(EXAMPLES / "gambler.py")
    r = ancho.run(gambler, executor=spark, store=cassandra_catalog, **kw)
    assert spark.last_summary == "spark"
    local = ancho.run(gambler, workers=2, store=store, **kw)
    close({k: v for k, v in r.summary.items() if k != "run"}, {k: v for k, v in local.summary.items() if k != "run"})
    assert r.summary["custom"] == local.summary["custom"] and r.summary["targets"] == local.summary["targets"]
