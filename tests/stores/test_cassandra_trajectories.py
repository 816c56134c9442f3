"""Trajectory outputs in the Cassandra store (docs/cassandra.md, "Trajectories"), on the real node.

What the shared contract (tests/stores/test_contract.py) cannot see: the partitions a trajectory is cut into
stay within Cassandra's guidance and are all deleted with the run; whole runs on Cassandra — written by the
driver and by Spark tasks — equal the embedded store's bit for bit, values and the summary's ``trajectories``;
bad series fail the run with nothing marked succeeded; and another owner's role cannot read a trajectory.
"""

from __future__ import annotations

import numpy as np
import pytest

import ancho
from ancho.chunk import ChunkResult, Failure
from ancho.errors import OutputError, StoreError

from ..conftest import EXAMPLES
from ..stores.conftest import cassandra_catalog, cassandra_store, cassandra_url  # noqa: F401 (fixtures)
from .test_cassandra import new_run

pytestmark = pytest.mark.cassandra

SIR = str(EXAMPLES / "sir.py")

#: a random walk that now and then has a NaN step or fails: bit-for-bit comparisons see NaN payloads and failures
WALK = """
import numpy as np
import ancho


class Walk(ancho.Model):
    steps: int = 300

    def sequence(self, rng):
        path = np.cumsum(rng.standard_normal(self.steps))
        u = rng.random()
        if u < 0.01:
            raise ValueError("an unlucky walk")
        if u < 0.05:
            path[rng.integers(self.steps)] = np.nan
        return {"walk": path, "end": float(path[-1])}
"""

GROWS = """
import ancho


class Grows(ancho.Model):
    long: int = 4

    def sequence(self, rng):
        return {"x": rng.random(3 if rng.random() < 0.9 else self.long).tolist()}
"""


def paths(start: int, stop: int, steps: int, fail=()) -> ChunkResult:
    """Each value says where it is (sequence·1000 + step); a few NaN and -0.0 for bit-for-bit checks."""
    seqs = np.array([i for i in range(start, stop) if i not in fail], dtype=np.int64)
    walk = seqs[:, None] * 1000.0 + np.arange(steps)
    walk[::7, 3] = np.nan
    walk[::5, 0] = -0.0
    return ChunkResult(start, stop, seqs, {"walk": walk}, [Failure(i, "E: e") for i in fail])


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a.view(np.int64), b.view(np.int64))


def partition_sizes(store, ks: str, run_id: str, start: int, names: list[str]) -> dict[str, tuple[int, int]]:
    """Per ``blocks`` partition: how many blocks, and the largest cell in bytes."""
    out = {}
    for name in names:
        rows = list(
            store.session.execute(
                f"SELECT data FROM {ks}.blocks WHERE run_id = %s AND chunk_start = %s AND name = %s",
                (run_id, start, name),
            )
        )
        out[name] = (len(rows), max((len(r.data) for r in rows), default=0))
    return out


def test_partitions_stay_within_the_guidance_and_are_all_deleted(cassandra_store):  # noqa: F811
    from ancho.stores.cassandra_results import BLOCK, PART_BLOCKS

    store = cassandra_store
    new_run(store, "r1", "alice", schema={"walk": "float[700]"})
    results = store._results_for_run("r1")
    # an attempt that died before its marker: 4,000 × 700 values planned, so delete must find 11 partitions
    work, _marker = results.chunk_writes("r1", paths(0, 4000, 700))
    from cassandra.concurrent import execute_concurrent

    execute_concurrent(results.session, work, concurrency=16, raise_on_first_error=True)
    store.write_chunk("r1", paths(0, 3000, 700, fail=(11, 2999)))
    values = 2998 * 700
    blocks = -(-values // BLOCK)
    names = [f"walk#{p}" for p in range(-(-blocks // PART_BLOCKS))]
    sizes = partition_sizes(store, results.ks, "r1", 0, names + ["walk#10", "sequence"])
    assert all(n <= PART_BLOCKS and cell <= 8 * BLOCK for n, cell in sizes.values()), sizes
    assert sum(sizes[n][0] for n in names) >= blocks and sizes["walk#10"][0] > 0  # (the dead attempt's)
    assert sizes["sequence"] == (1, 8 * 2998)  # not dense: the sequence numbers are stored too
    expected = paths(0, 3000, 700, fail=(11, 2999)).columns["walk"]
    assert same_bits(store.read_column("r1", "walk"), expected)
    store.delete_run("r1")
    assert all(n == 0 for n, _ in partition_sizes(store, results.ks, "r1", 0, names + ["walk#10"]).values())


def test_a_chunk_of_another_length_is_named_when_read(cassandra_store):  # noqa: F811
    store = cassandra_store
    new_run(store, "r1", "alice", schema={"walk": "float[5]"})
    store.write_chunk("r1", paths(0, 10, 5))
    store.write_chunk("r1", paths(10, 20, 6))  # what a Spark task may store before the engine fails the run
    with pytest.raises(StoreError, match=r"output 'walk' of sequences 10..19 is stored as float\[6\]"):
        store.read_column("r1", "walk")


def test_another_owners_role_cannot_read_a_trajectory(cassandra_store):  # noqa: F811
    from cassandra import Unauthorized

    from ancho.stores.cassandra_conn import connect
    from ancho.stores.results_sources import CassandraResults

    store = cassandra_store
    new_run(store, "ra", "alice", schema={"walk": "float[50]"})
    new_run(store, "rb", "bob", schema={"walk": "float[50]"})
    store.write_chunk("ra", paths(0, 100, 50))
    store.write_chunk("rb", paths(0, 10, 50))
    alice, bob = store.results("ra"), store.results("rb")
    assert same_bits(
        alice.read_table().column("walk").combine_chunks().flatten().to_numpy(),
        paths(0, 100, 50).columns["walk"].ravel(),
    )
    session = connect(bob.endpoint)
    try:
        with pytest.raises(Unauthorized):
            session.execute(
                f"SELECT data FROM {alice.keyspace}.blocks WHERE run_id = 'ra' AND chunk_start = 0 AND name = 'walk#0'"
            )
    finally:
        session.cluster.shutdown()
    with pytest.raises(Exception, match="(?i)unauthorized|permission"):
        CassandraResults(bob.endpoint, alice.keyspace, "ra", alice.schema).read_table()


def _equal_runs(a, b) -> None:
    assert a.status == b.status == "succeeded"
    for name, kind in a.record.schema.items():
        if kind.startswith("float["):
            assert same_bits(a.trajectory(name), b.trajectory(name))
            for x, y in zip(a.store.iter_column(a.run_id, name), b.store.iter_column(b.run_id, name)):
                assert x.shape[1] == y.shape[1]
    assert a.frame.drop(columns=[n for n, k in a.record.schema.items() if k.startswith("float[")]).equals(
        b.frame.drop(columns=[n for n, k in b.record.schema.items() if k.startswith("float[")])
    )
    assert [(f.sequence, f.error) for f in a.failures] == [(f.sequence, f.error) for f in b.failures]
    sa = {k: v for k, v in a.summary.items() if k != "run"}
    sb = {k: v for k, v in b.summary.items() if k != "run"}
    assert "trajectories" in sa and sa == sb


@pytest.mark.slow
def test_runs_on_cassandra_equal_the_embedded_store_bit_for_bit(cassandra_catalog, home, tmp_path):  # noqa: F811
    url = cassandra_url(cassandra_catalog.catalog)
    walk = tmp_path / "walk.py"
    walk.write_text(WALK)
    for model, kw in (
        (SIR, dict(sequences=400, seed=3, targets=["max(infected)>=50"])),
        (str(walk), dict(sequences=3000, seed=5, max_failures=100, targets=["max(walk)>=20", "last(walk)<0"])),
    ):
        on_cassandra = ancho.run(model, workers=2, store=url, **kw)
        on_disk = ancho.run(model, workers=2, store=str(home), **kw)
        _equal_runs(on_cassandra, on_disk)
        on_cassandra.store.close()


@pytest.mark.spark
@pytest.mark.slow
def test_spark_tasks_write_trajectories_that_equal_a_local_embedded_run(
    cassandra_catalog,  # noqa: F811
    home,
    tmp_path,
    spark_url,
):
    from ancho.executors.spark import SparkExecutor
    from ancho.stores.cassandra import CassandraStore

    walk = tmp_path / "walk.py"
    walk.write_text(WALK)
    store = CassandraStore.from_url(cassandra_url(cassandra_catalog.catalog))
    spark = SparkExecutor(spark_url).start()
    try:
        kw = dict(sequences=6000, seed=9, max_failures=200, targets=["max(walk)>=20"])
        on_spark = ancho.run(str(walk), executor=spark, store=store, **kw)
        assert spark.last_writes == "tasks"
        local = ancho.run(str(walk), workers=2, store=str(home), **kw)
        _equal_runs(on_spark, local)
    finally:
        spark.close()
        store.close()


def test_bad_series_fail_the_run_on_cassandra_with_nothing_marked_succeeded(
    cassandra_catalog,  # noqa: F811
    tmp_path,
    monkeypatch,
):
    url = cassandra_url(cassandra_catalog.catalog)
    grows = tmp_path / "grows.py"
    grows.write_text(GROWS)
    with pytest.raises(OutputError, match=r"output 'x' of sequence \d+ of Grows has 4 steps"):
        ancho.run(str(grows), sequences=300, seed=2, workers=1, store=url)
    monkeypatch.setenv("ANCHO_MAX_STEPS", "50")
    with pytest.raises(OutputError, match=r"output 'x'.*ANCHO_MAX_STEPS"):
        ancho.run(str(grows), {"long": 60}, sequences=300, seed=2, workers=1, store=url)
    records = [r for r in cassandra_catalog.list_runs() if r.model == "Grows"]
    assert len(records) == 2 and all(r.status == "failed" and "output 'x'" in r.error for r in records)
