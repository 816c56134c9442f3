"""The Spark executor on the 2-worker standalone cluster versus the local executor with 2 workers.

    ANCHO_PYTHON=.venv/bin/python scripts/services start spark
    .venv/bin/python benchmarks/bench_spark.py [--master spark://127.0.0.1:7077] [--sequences 100000]
        [--ms 1.0] [--trivial 1000000] [--reps 1]

Measured, all in this process:

* **session start-up**: ``SparkExecutor(master).start()`` — the JVM driver,
  the application's executors registering with the master, and one warm-up
  job that starts each executor's Python worker and imports NumPy/PyArrow.
  Paid once per process (the session is reused by every later run);
* **~1 ms sequences**: ``models/busy.py`` (``loops`` calibrated here to ~``--ms``
  ms) for ``--sequences`` sequences, end to end through ``ancho.run``
  (model shipped as a zipped folder, Arrow batches back, Parquet store,
  summary) on Spark with the session up, versus ``ancho.run(workers=2)``
  (which includes starting its 2 worker processes). Goal: Spark ≤ 1.3 × local;
* **trivial sequences** (``models/trivial.py``, one draw): sequences per
  second on each, and the ratio. Goal: Spark ≥ 50% of local. (The executor
  learns the model's cost in the untimed warm-up run and packs cheap chunks
  into fewer Spark tasks, as it would after a run's first wave.)
* **summary** (``--summary``): the trivial run's summary computed by Spark
  SQL (``ancho.executors.spark_summary``) versus the driver
  (``ancho.stats.build_summary``, the baseline), from the same stored run.

Outputs are checked equal between the two executors (same seed).
The machine has 2 cores shared by the driver, the Spark daemons and the
workers: the local executor runs its 2 workers on the same 2 cores.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

sys.path.insert(0, str(C.MODELS))


calibrate = C.calibrate_spin


def main() -> None:
    p = C.base_parser(__doc__.splitlines()[0])
    p.add_argument("--master", default=os.environ.get("ANCHO_TEST_SPARK_URL", "spark://127.0.0.1:7077"))
    p.add_argument("--sequences", type=int, default=100_000)
    p.add_argument("--ms", type=float, default=1.0)
    p.add_argument("--trivial", type=int, default=1_000_000)
    p.add_argument("--reps", type=int, default=1)
    p.add_argument("--summary", action="store_true", help="also time the summary in Spark SQL vs the driver")
    a = p.parse_args()
    C.use_pyc_here()
    import ancho
    from ancho.executors.spark import SparkExecutor

    loops, est_ms = calibrate(a.ms)
    C.header(
        "bench_spark: Spark standalone (2 workers × 1 core) vs local executor (2 workers)",
        f"master {a.master}; N={a.sequences:,} busy sequences, loops={loops:,} (~{est_ms:.2f} ms each); "
        f"trivial N={a.trivial:,}; {a.reps} repetition(s)",
    )
    home = C.scratch_home("spark")
    out: dict = {"master": a.master, "loops": loops, "est_ms": est_ms}
    try:
        t = time.perf_counter()
        ex = SparkExecutor(a.master).start()
        out["startup"] = time.perf_counter() - t
        out["spark_cores"] = ex.workers
        print(
            f"session start-up (driver JVM + executors + Python warm-up): {out['startup']:.2f} s; {ex.workers} cores",
            flush=True,
        )
        # untimed: the driver's lazy imports (store, summary), and the first shipping of each model folder
        ancho.run(C.BUSY, params={"loops": loops}, sequences=20, seed=1, workers=2, store=str(home))
        ancho.run(C.BUSY, params={"loops": loops}, sequences=20, seed=1, executor=ex, store=str(home))
        ancho.run(C.TRIVIAL, sequences=20, seed=1, executor=ex, store=str(home))

        def timed(model: str, params: dict, n: int, seed: int, **kw) -> tuple[float, object]:
            t = time.perf_counter()
            r = ancho.run(model, params=params, sequences=n, seed=seed, store=str(home), **kw)
            return time.perf_counter() - t, r

        res: dict[str, list[float]] = {}
        for rep in range(a.reps):
            seed = rep + 1
            for name, model, params, n in (
                ("busy", C.BUSY, {"loops": loops}, a.sequences),
                ("trivial", C.TRIVIAL, {}, a.trivial),
            ):
                ts, rs = timed(model, params, n, seed, executor=ex)
                tl, rl = timed(model, params, n, seed, workers=2)
                assert rs.summary["outputs"] == rl.summary["outputs"], "Spark and local outputs differ"
                res.setdefault(f"{name} spark", []).append(ts)
                res.setdefault(f"{name} local", []).append(tl)
                print(f"  rep {rep + 1}: {name}: spark {ts:.2f} s, local {tl:.2f} s", file=sys.stderr, flush=True)
        if a.summary:
            out["summary"] = time_summaries(ex, home, a.trivial, a.reps)
        ex.close()
    finally:
        C.cleanup(home)

    bs, bl = C.med(res["busy spark"]), C.med(res["busy local"])
    ts, tl = C.med(res["trivial spark"]), C.med(res["trivial local"])
    rows = [
        [f"{a.sequences:,} × ~{est_ms:.1f} ms, spark (session up)", bs, a.sequences / bs, bs / bl],
        [f"{a.sequences:,} × ~{est_ms:.1f} ms, local workers=2", bl, a.sequences / bl, 1.0],
        [f"{a.trivial:,} trivial, spark (session up)", ts, a.trivial / ts, ts / tl],
        [f"{a.trivial:,} trivial, local workers=2", tl, a.trivial / tl, 1.0],
    ]
    print(C.table(rows, ["run", "median s", "seq/s", "× local"]))
    print(f"\nsession start-up (once per process): {out['startup']:.2f} s")
    print(
        f"~1 ms sequences: Spark overhead {bs - bl:+.2f} s, {bs / bl:.3f} × local (goal ≤ 1.3×); "
        f"with the start-up: {(bs + out['startup']) / bl:.3f} ×"
    )
    print(
        f"trivial sequences: Spark {a.trivial / ts:,.0f} seq/s = {tl / ts:.0%} of local's {a.trivial / tl:,.0f} seq/s (goal ≥ 50%)"
    )
    if "summary" in out:
        sd, ss = C.med(out["summary"]["driver"]), C.med(out["summary"]["spark"])
        print(
            f"summary of {a.trivial:,} trivial sequences: driver {sd:.2f} s, Spark SQL {ss:.2f} s ({ss / sd:.1f} × driver)"
        )
    out.update({k: v for k, v in res.items()})
    C.write_json(a.json, out)


def time_summaries(ex, home, n: int, reps: int) -> dict[str, list[float]]:
    """The same stored run summarised by the driver (baseline) and by Spark SQL, interleaved."""
    import ancho
    from ancho.executors.spark_summary import results_frame, summarize
    from ancho.stats import build_summary
    from ancho.stores.embedded import EmbeddedStore

    store = EmbeddedStore(home)
    r = ancho.run(C.TRIVIAL, sequences=n, seed=99, executor=ex, store=store)
    rec = store.get_run(r.run_id)
    times: dict[str, list[float]] = {"driver": [], "spark": []}
    for _ in range(reps):
        t = time.perf_counter()
        local = build_summary(rec.to_dict(), rec.schema, lambda c: store.read_column(r.run_id, c), [], {}, None)
        times["driver"].append(time.perf_counter() - t)
        t = time.perf_counter()
        frame = results_frame(ex.session, store.results_source(r.run_id), rec.schema)
        spark = summarize(frame, rec.to_dict(), rec.schema, [], {}, None)
        times["spark"].append(time.perf_counter() - t)
        assert spark["outputs"]["x"]["count"] == local["outputs"]["x"]["count"]
        print(
            f"  summary: driver {times['driver'][-1]:.2f} s, spark {times['spark'][-1]:.2f} s",
            file=sys.stderr,
            flush=True,
        )
    return times


if __name__ == "__main__":
    main()
