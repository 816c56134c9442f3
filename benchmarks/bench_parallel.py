"""Parallel efficiency of the local executor on a ~1 ms pure-Python sequence.

    .venv/bin/python benchmarks/bench_parallel.py [--sequences 4000] [--reps 5] [--ms 1.0]

Work: ``models/busy.py`` — a deterministic integer loop whose length
(``loops``) is calibrated once at start to take about ``--ms`` ms here,
plus one draw. All contenders run exactly the same ``Busy(loops).sequence``
for sequences 0..N-1:

* **serial bare**: a plain loop in this process with one shared default_rng
  (the single-core floor);
* **ancho w=1 / w=2**: ``ancho.run(..., workers=W)`` end to end (worker
  start-up, run, Parquet store, summary). One untimed ancho run first loads
  the driver's lazy imports, which bench_overhead/bench_latency measure;
* **Pool(2).map, per-sequence generator**: ``multiprocessing.Pool(2).map``
  (fork) over range(N) where each item calls ``sequence`` with
  ``ancho.streams.reference_generator(seed, i)`` — the same numbers as
  ancho, built the documented slow way (~10 µs, 1% of a sequence);
* **Pool(2).map, shared default_rng**: the same with one
  ``np.random.default_rng`` per worker process (the cheapest generator
  possible: a baseline that does strictly less work than ancho).

Pool timings include creating and joining the Pool; the chunksize is swept
(``--chunksizes``) and the best median is the baseline. Also shown: a Pool
with the ``spawn`` start method (fresh interpreters, like ancho's workers),
and the fixed cost of each contender (the same run with 2 sequences). Goals: ancho w=2 vs
w=1 speedup ≥ 1.8; ancho w=2 ≤ 1.05 × the best Pool.
"""

from __future__ import annotations

import multiprocessing as mp
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

sys.path.insert(0, str(C.MODELS))
from busy import Busy  # noqa: E402

_model: Busy | None = None
_rng = None
_seed = 1


def _init(loops: int, seed: int, shared_rng: bool) -> None:
    global _model, _rng, _seed
    import numpy as np

    _model = Busy(loops=loops)
    _seed = seed
    _rng = np.random.default_rng(seed) if shared_rng else None


def _one_ref(i: int) -> dict:
    from ancho.streams import reference_generator

    return _model.sequence(reference_generator(_seed, i))  # type: ignore[union-attr]


def _one_shared(i: int) -> dict:
    return _model.sequence(_rng)  # type: ignore[union-attr]


calibrate = C.calibrate_spin


def pool_run(n: int, loops: int, seed: int, chunksize: int | None, shared: bool, method: str = "fork") -> float:
    ctx = mp.get_context(method)
    t = time.perf_counter()
    with ctx.Pool(2, initializer=_init, initargs=(loops, seed, shared)) as pool:
        out = pool.map(_one_shared if shared else _one_ref, range(n), chunksize=chunksize)
    elapsed = time.perf_counter() - t
    assert len(out) == n
    return elapsed


def main() -> None:
    p = C.base_parser(__doc__.splitlines()[0])
    p.add_argument("--sequences", type=int, default=4000)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--ms", type=float, default=1.0, help="target milliseconds per sequence")
    p.add_argument("--chunksizes", type=int, nargs="+", default=[10, 50, 250, 0], help="0 = Pool's own default")
    p.add_argument("--no-pyc", action="store_true")
    a = p.parse_args()
    C.use_pyc_here(not a.no_pyc)

    import numpy as np

    import ancho
    from ancho.stores.embedded import EmbeddedStore

    class TimedStore(EmbeddedStore):
        def write_chunk(self, run_id, result):
            now = time.perf_counter()
            self.first = getattr(self, "first", None) or now
            super().write_chunk(run_id, result)
            self.last = time.perf_counter()
            self.compute = getattr(self, "compute", 0.0) + result.seconds
            self.chunks = getattr(self, "chunks", 0) + 1

    n = a.sequences
    loops, est_ms = calibrate(a.ms)
    C.header(
        "bench_parallel: ~1 ms pure-Python sequences, 2 cores",
        f"N={n:,} sequences, loops={loops:,} (calibrated: {est_ms:.2f} ms per sequence at start), {a.reps} repetitions",
    )

    home = C.scratch_home("parallel")
    try:
        ancho.run(
            C.BUSY, params={"loops": loops}, sequences=20, seed=1, workers=1, store=str(home)
        )  # untimed: driver imports

        def ancho_run(workers: int, seed: int, count: int = n) -> dict:
            st = TimedStore(home)
            t = time.perf_counter()
            r = ancho.run(C.BUSY, params={"loops": loops}, sequences=count, seed=seed, workers=workers, store=st)
            end = time.perf_counter()
            assert r.summary["sequences"] == count
            return {
                "total": end - t,
                "to_first": st.first - t,
                "after_last": end - st.last,
                "compute": st.compute,
                "chunks": st.chunks,
            }

        def serial(seed: int) -> float:
            m = Busy(loops=loops)
            rng = np.random.default_rng(seed)
            t = time.perf_counter()
            for _ in range(n):
                m.sequence(rng)
            return time.perf_counter() - t

        res: dict[str, list] = {}
        fixed: dict[str, list] = {}
        detail: dict[str, list] = {}
        for rep in range(a.reps):
            seed = rep + 1
            res.setdefault("serial bare (1 process)", []).append(serial(seed))
            for w in (1, 2):
                d = ancho_run(w, seed)
                res.setdefault(f"ancho workers={w}", []).append(d["total"])
                detail.setdefault(f"ancho workers={w}", []).append(d)
            for cs in a.chunksizes:
                for shared in (False, True):
                    name = f"Pool(2).map {'shared default_rng' if shared else 'reference_generator'} chunksize={cs or 'default'}"
                    res.setdefault(name, []).append(pool_run(n, loops, seed, cs or None, shared))
            # fresh interpreters like ancho's workers (the default start method on macOS and Windows)
            res.setdefault("Pool(2, spawn).map reference_generator chunksize=default", []).append(
                pool_run(n, loops, seed, None, False, "spawn")
            )
            # fixed costs: the same contenders with 2 sequences
            fixed.setdefault("ancho workers=2, 2 sequences", []).append(ancho_run(2, seed, 2)["total"])
            fixed.setdefault("Pool(2) fork, 2 sequences", []).append(pool_run(2, loops, seed, None, False))
            fixed.setdefault("Pool(2) spawn, 2 sequences", []).append(pool_run(2, loops, seed, None, False, "spawn"))
            print(f"  rep {rep + 1}/{a.reps} done", file=sys.stderr)
    finally:
        C.cleanup(home)

    serial_med = C.med(res["serial bare (1 process)"])
    w1 = C.med(res["ancho workers=1"])
    w2 = C.med(res["ancho workers=2"])
    pools = {k: v for k, v in res.items() if k.startswith("Pool(2).map")}
    best_ref = min((k for k in pools if "reference" in k), key=lambda k: C.med(pools[k]))
    best_shared = min((k for k in pools if "shared" in k), key=lambda k: C.med(pools[k]))
    rows = []
    for k, v in res.items():
        mark = " *" if k in (best_ref, best_shared) else ""
        rows.append(
            [k + mark, C.med(v), min(v), C.med(v) / n * 1e3, serial_med / C.med(v), C.med(v) / C.med(pools[best_ref])]
        )
    print("wall seconds (median, min over repetitions); * = best chunksize of its kind")
    print(C.table(rows, ["contender", "median s", "min s", "ms/seq", "speedup vs serial", "× best Pool (ref. gen.)"]))

    print("\nancho breakdown (median s): to first result = worker start-up + first chunk; after last = summary + close")
    brows = []
    for k, ds in detail.items():
        brows.append(
            [
                k,
                C.med([d["total"] for d in ds]),
                C.med([d["to_first"] for d in ds]),
                C.med([d["after_last"] for d in ds]),
                C.med([d["compute"] for d in ds]),
                C.med([d["chunks"] for d in ds]),
            ]
        )
    print(C.table(brows, ["run", "total", "to first result", "after last chunk", "Σ worker loop", "chunks"]))
    contention = C.med([d["compute"] for d in detail["ancho workers=2"]]) / C.med(
        [d["compute"] for d in detail["ancho workers=1"]]
    )
    print(
        f"contention check: Σ worker loop with 2 workers / with 1 = {contention:.2f} (≈1.0 when both cores were free; "
        f"above ~1.1 other work took CPU from the 2-worker runs and their speedups understate ancho's)"
    )

    print("\nfixed costs: the same contenders with 2 sequences (median, min s)")
    print(C.table([[k, C.med(v), min(v)] for k, v in fixed.items()], ["contender", "median s", "min s"]))
    steady = C.med([d["total"] - d["to_first"] - d["after_last"] for d in detail["ancho workers=2"]])
    print(
        f"ancho w=2 without start-up and end (first result → last chunk stored): {steady:.2f} s "
        f"= {steady / C.med(pools[best_ref]):.3f} × best Pool"
    )

    speedup = w1 / w2
    speedup_min = min(res["ancho workers=1"]) / min(res["ancho workers=2"])
    vs_pool = w2 / C.med(pools[best_ref])
    vs_pool_shared = w2 / C.med(pools[best_shared])
    best_ref_min = min((k for k in pools if "reference" in k), key=lambda k: min(pools[k]))
    best_shared_min = min((k for k in pools if "shared" in k), key=lambda k: min(pools[k]))
    vs_pool_min = min(res["ancho workers=2"]) / min(pools[best_ref_min])
    vs_pool_shared_min = min(res["ancho workers=2"]) / min(pools[best_shared_min])
    print()
    print(
        C.goal_line("speedup w=2 vs w=1 (medians)", speedup, 1.8, "×", lower_is_better=False)
        + f"  (from minima: {speedup_min:.2f}×)"
    )
    print(
        C.goal_line("ancho w=2 / best Pool(2) with reference_generator (medians)", vs_pool, 1.05, "×")
        + f"  (from minima: {vs_pool_min:.2f}×)"
    )
    print(
        C.goal_line("ancho w=2 / best Pool(2) with shared default_rng (medians)", vs_pool_shared, 1.05, "×")
        + f"  (from minima: {vs_pool_shared_min:.2f}×)"
    )
    print(
        f"(minima compare the fastest repetition of each, the best Pool chosen by its minimum: {best_ref_min}; {best_shared_min})"
    )
    print(C.load_note())
    C.write_json(
        a.json,
        {
            "benchmark": "parallel",
            "sequences": n,
            "loops": loops,
            "ms_per_seq_calibrated": est_ms,
            "results": {k: C.stat(v) for k, v in res.items()},
            "ancho_detail": detail,
            "fixed": {k: C.stat(v) for k, v in fixed.items()},
            "contention": contention,
            "speedup": speedup,
            "speedup_minima": speedup_min,
            "ancho_vs_pool_ref": vs_pool,
            "ancho_vs_pool_shared": vs_pool_shared,
            "ancho_vs_pool_ref_minima": vs_pool_min,
            "ancho_vs_pool_shared_minima": vs_pool_shared_min,
            "best_pool_ref": best_ref,
            "best_pool_shared": best_shared,
        },
    )


if __name__ == "__main__":
    main()
