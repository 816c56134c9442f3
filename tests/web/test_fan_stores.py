"""A fan chart's sample paths come from the first stored chunk on every store (embedded, real Cassandra).

The chunks are written out of order, with a failed sequence in the first one,
and each value says where it is (sequence·1000 + step), so the paths drawn
are exactly the first sequences' rows, wherever the store keeps them.
"""

from __future__ import annotations

import numpy as np

from ancho.chunk import ChunkResult, Failure
from ancho.plotdata import fan, first_paths, run_fans
from ancho.stores.base import RunRecord

from ..stores.conftest import any_store, cassandra_catalog  # noqa: F401 (fixtures)

STEPS = 6


def chunk(start: int, stop: int, fail=()) -> ChunkResult:
    seqs = np.array([i for i in range(start, stop) if i not in fail], dtype=np.int64)
    walk = seqs[:, None] * 1000.0 + np.arange(STEPS)
    failures = [Failure(i, "ValueError: unlucky", "") for i in fail]
    return ChunkResult(start, stop, seqs, {"walk": walk, "end": walk[:, -1]}, failures)


def test_first_paths_on_every_store(any_store):
    store = any_store
    store.create_run(RunRecord(id="fanrun", owner="alice", model="Walk"))
    store.update_run("fanrun", schema={"walk": f"float[{STEPS}]", "end": "float"})
    for start, stop in ((8, 40), (0, 8), (40, 41)):
        store.write_chunk("fanrun", chunk(start, stop, fail=(2,) if start == 0 else ()))
    values, numbers = first_paths(store, "fanrun", "walk", 5)
    assert numbers == [0, 1, 3, 4, 5]  # sequence 2 failed: the next ones take its place
    assert np.array_equal(values, np.array(numbers)[:, None] * 1000.0 + np.arange(STEPS))
    more, numbers = first_paths(store, "fanrun", "walk", 9)  # across the first two chunks
    assert numbers == [0, 1, 3, 4, 5, 6, 7, 8, 9] and more.shape == (9, STEPS)

    t = np.arange(STEPS, dtype=float)
    stats = {"steps": STEPS, "count": 40, **{k: t.tolist() for k in ("mean", "ci95_low", "ci95_high", "p5", "p25")}}
    stats.update({k: t.tolist() for k in ("p50", "p75", "p95")})
    store.update_run("fanrun", summary={"trajectories": {"walk": stats}})
    (walk,) = run_fans(store, "fanrun")
    assert walk == fan("walk", stats, values, [0, 1, 3, 4, 5])
    assert walk.paths[2] == (3000.0 + t).tolist()
