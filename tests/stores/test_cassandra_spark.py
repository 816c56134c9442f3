"""Spark tasks writing and reading a run in Cassandra directly, with the owner's role (docs/cassandra.md, Spark).

What ``executors/spark.py`` would call: ``open_writer(source)`` in the task
that ran a chunk, and ``chunk_starts``/``read_chunks`` in a ``mapInArrow`` job
for a Spark DataFrame of the results. Functions sent to Spark are defined
inside the test, so cloudpickle sends them by value (the executors cannot
import the ``tests`` package).
"""

from __future__ import annotations

import numpy as np
import pytest

from ..stores.conftest import cassandra_catalog  # noqa: F401 (a fixture)
from .test_cassandra import new_run

pytestmark = [pytest.mark.cassandra, pytest.mark.spark, pytest.mark.slow]


def test_spark_tasks_write_chunks_and_read_them_back_directly(spark_url, cassandra_catalog):  # noqa: F811
    from ancho.executors.spark import spark_session
    from ancho.stores.cassandra_results import chunk_starts

    store = cassandra_catalog
    for record in store.list_runs():
        store.delete_run(record.id)
    new_run(store, "r1", "alice", schema={"x": "float", "k": "int"})
    source = store.results_source("r1")
    assert source["endpoint"]["username"] != store.endpoint.username  # the tasks get the owner's role only
    ranges = [(0, 40_000), (40_000, 70_000), (70_000, 100_000)]

    def write(bounds):
        import numpy as np

        from ancho.chunk import ChunkResult
        from ancho.stores.cassandra_results import open_writer

        start, stop = bounds
        seqs = np.arange(start, stop, dtype=np.int64)
        keep = seqs[seqs % 1000 != 7]  # some "failed" sequences: stored sequences are not dense
        with open_writer(source) as writer:
            writer.write(ChunkResult(start, stop, keep, {"x": keep * 0.5, "k": keep * 3}))

    def read(batches):
        from ancho.stores.cassandra_results import read_chunks

        for batch in batches:
            yield from read_chunks(source, batch.column(0).to_pylist())

    spark = spark_session(spark_url)
    spark.sparkContext.parallelize(ranges, len(ranges)).foreach(write)
    assert store.completed_ranges("r1") == ranges

    starts = chunk_starts(source)
    frame = (
        spark.createDataFrame([(s,) for s in starts], "start long")
        .repartition(len(starts))
        .mapInArrow(read, "sequence long, x double, k long")
        .toPandas()
        .sort_values("sequence", ignore_index=True)
    )
    expected = store.read_frame("r1")
    assert len(expected) == 100_000 - 100
    assert np.array_equal(frame.sequence.to_numpy(), expected.sequence.to_numpy())
    assert np.array_equal(frame.x.to_numpy(), expected.x.to_numpy())
    assert np.array_equal(frame.k.to_numpy(), expected.k.to_numpy())


def test_a_batch_model_on_spark_writing_to_cassandra_equals_a_local_run(spark_url, cassandra_catalog, tmp_path):  # noqa: F811
    """The batch example run by Spark tasks that write their chunks to Cassandra with the owner's role: every
    sequence and the summary as a local run into the embedded store gives them."""
    import ancho

    from ..conftest import EXAMPLES
    from .conftest import cassandra_url

    model = f"{EXAMPLES / 'option.py'}:BSCall"
    kw = {"sequences": 60_000, "seed": 9, "targets": ["payoff>0"], "params": {"k": 100.0}}
    local = ancho.run(model, workers=2, store=str(tmp_path / "store"), **kw)
    remote = ancho.run(model, executor=spark_url, store=cassandra_url(cassandra_catalog.catalog), **kw)
    assert remote.frame.reset_index(drop=True).equals(local.frame.reset_index(drop=True))
    assert repr(remote.summary["outputs"]) == repr(local.summary["outputs"])
    assert remote.summary["targets"] == local.summary["targets"]
    remote.store.close()
