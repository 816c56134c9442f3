"""How long a cancel takes to stop a run, locally (2 workers) and on Spark; and whether the cluster is free after it.

    .venv/bin/python benchmarks/bench_cancel.py [--reps 5] [--ms 10]
    .venv/bin/python benchmarks/bench_cancel.py --spark spark://127.0.0.1:7077   # also on the Spark cluster

Measured, all in this process (the tests assert the behaviour — the workers
are killed, no chunk is stored after the cancel, no task is left running on
the cluster — and leave the timing here):

* **cancel latency, local**: a run of ``models/busy.py`` sequences (``loops``
  calibrated to ~``--ms`` ms each, so a chunk is ~0.2 s of work) on
  ``LocalExecutor(2)``; once its first chunk is done, ``RunHandle.cancel()``
  from another thread, timed until ``execute`` has raised ``RunCancelled``.
  Baseline: SIGKILL and reap of a bare spinning ``python`` child (the floor
  of stopping a process). Goal: ≤ 1 s (the tests' old bound was 30 s).
* **cancel latency, Spark** (``--spark``): the same on ``SparkExecutor``,
  baseline the same local floor; then **the next run after a cancel**
  (1,000 busy sequences) against the same run on the cluster before any
  cancel: a ratio near 1 means the cancelled tasks did not stay in front of
  it. Goal: ≤ 1.5.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

SEQUENCES = 1_000_000  # far more than a cancelled run reaches


def kill_floor() -> float:
    """Seconds to SIGKILL and reap a spinning bare Python child: the least any cancel of a worker process costs."""
    child = subprocess.Popen(
        [sys.executable, "-c", "print('up', flush=True)\nwhile True: pass"], stdout=subprocess.PIPE
    )
    child.stdout.readline()
    t = time.perf_counter()
    child.kill()
    child.wait()
    return time.perf_counter() - t


def cancel_once(executor, store, loaded, loops: int, seed: int) -> float:
    """Start a run, cancel it once its first chunk is in, and return the seconds from cancel() to execute() raising."""
    from ancho.engine import RunHandle, RunSpec, create_record, execute
    from ancho.errors import RunCancelled

    spec = RunSpec.build(loaded, {"loops": loops}, SEQUENCES, seed)
    rec = create_record(loaded, spec, "bench", getattr(executor, "workers", None))
    store.create_run(rec)
    handle = RunHandle()
    started = threading.Event()
    box: dict = {}

    def run() -> None:
        try:
            execute(
                loaded, spec, store, executor, rec, progress=lambda done, total: done and started.set(), handle=handle
            )
        except RunCancelled:
            box["end"] = time.perf_counter()

    t = threading.Thread(target=run)
    t.start()
    if not started.wait(300):
        raise SystemExit("the run never completed a chunk")
    t0 = time.perf_counter()
    handle.cancel()
    t.join(300)
    if "end" not in box:
        raise SystemExit("the run did not end as cancelled")
    return box["end"] - t0


def main() -> None:
    p = C.base_parser(__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--ms", type=float, default=10.0, help="milliseconds of work per sequence (default 10)")
    p.add_argument("--spark", metavar="MASTER", help="also measure on this Spark master")
    a = p.parse_args()
    C.use_pyc_here()
    from ancho.executors.local import LocalExecutor
    from ancho.loading import load_model
    from ancho.stores.embedded import EmbeddedStore

    loops, est_ms = C.calibrate_spin(a.ms)
    C.header(
        "bench_cancel: from RunHandle.cancel() to the run stopped",
        f"busy sequences: loops={loops:,} (~{est_ms:.1f} ms each)",
    )
    home = C.scratch_home("cancel")
    store = EmbeddedStore(home)
    loaded = load_model(C.BUSY)
    results: dict = {}
    try:
        floor = [kill_floor() for _ in range(a.reps)]
        local = []
        for k in range(a.reps):
            with LocalExecutor(2) as ex:
                local.append(cancel_once(ex, store, loaded, loops, k))
        results["kill_floor_s"], results["local_s"] = C.stat(floor), C.stat(local)
        rows = [
            ["SIGKILL + reap a bare python (baseline)", C.med(floor) * 1000, min(floor) * 1000, 1.0],
            ["cancel, LocalExecutor(2)", C.med(local) * 1000, min(local) * 1000, C.med(local) / C.med(floor)],
        ]
        goals = [C.goal_line("local cancel latency (median)", C.med(local), 1.0, " s")]
        if a.spark:
            goals += spark_part(a, store, loaded, loops, floor, rows, results)
        print("milliseconds (median, min over repetitions)")
        print(C.table(rows, ["", "median ms", "min ms", "× baseline"]))
        print()
        for g in goals:
            print(g)
        print(C.load_note())
    finally:
        store.close()
        C.cleanup(home)
    C.write_json(a.json, {"loops": loops, "ms": a.ms, **results})


def spark_part(a, store, loaded, loops: int, floor: list[float], rows: list, results: dict) -> list[str]:
    """Cancel latency on the cluster, and a 1,000-sequence run's time before any cancel versus right after one."""
    import ancho
    from ancho.executors.spark import SparkExecutor

    ex = SparkExecutor(a.spark).start()
    try:

        def next_run(seed: int) -> float:
            t = time.perf_counter()
            ancho.run(C.BUSY, {"loops": loops}, sequences=1000, seed=seed, executor=ex, store=store)
            return time.perf_counter() - t

        next_run(0)  # warm-up: the cost model and the executors' Python workers
        before = [next_run(k) for k in range(a.reps)]
        cancel, after = [], []
        for k in range(a.reps):
            cancel.append(cancel_once(ex, store, loaded, loops, 100 + k))
            after.append(next_run(200 + k))
    finally:
        ex.close()
    results["spark"] = {"cancel_s": C.stat(cancel), "run_before_s": C.stat(before), "run_after_cancel_s": C.stat(after)}
    rows += [
        ["cancel, SparkExecutor", C.med(cancel) * 1000, min(cancel) * 1000, C.med(cancel) / C.med(floor)],
        ["1,000 sequences on a free cluster (baseline)", C.med(before) * 1000, min(before) * 1000, 1.0],
        ["1,000 sequences right after a cancel", C.med(after) * 1000, min(after) * 1000, C.med(after) / C.med(before)],
    ]
    return [
        C.goal_line("Spark cancel latency (median)", C.med(cancel), 1.0, " s"),
        C.goal_line("next run after a cancel / on a free cluster", C.med(after) / C.med(before), 1.5),
    ]


if __name__ == "__main__":
    main()
