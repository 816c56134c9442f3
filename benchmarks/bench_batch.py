"""Batch models at array speed: block size, end to end vs one-at-a-time and vs bare NumPy, and a large run.

1. Block size (in process, no store): ns per sequence of ``ChunkRunner.run``
   over the same 2M sequences for B = 1,024 … 65,536, beside a bare NumPy
   loop over the same blocks (same generators, no checks, no columns).
2. End to end (``ancho.run``: workers, store, summary), 2 workers, a fresh
   store each time: the batch ``BSCall`` vs the one-at-a-time ``BSCallOne``
   (benchmarks/models/bscall.py, the same payoff) and vs the bare NumPy loop
   over the same blocks in one process without Ancho; the batch run also
   with the driver writing every chunk, and the CPU seconds of both.
3. A large run in a fresh process (``--large N``): wall time, bytes stored
   per sequence (the run's folder / sequences) and the driver's peak RSS.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time

import _common as C

BATCH = str(C.MODELS / "bscall.py") + ":BSCall"
ONE = str(C.MODELS / "bscall.py") + ":BSCallOne"
BLOCKS = [1024, 2048, 4096, 8192, 16384, 32768, 65536]


def bare_numpy(n: int, block: int, seed: int = 1):
    """The same blocks computed with NumPy alone (one process): the limit Ancho can approach."""
    import numpy as np

    from ancho.streams import StreamFactory

    s0, k, r, sigma, t = 100.0, 105.0, 0.05, 0.2, 1.0
    streams = StreamFactory(seed)
    out = np.empty(n)
    t0 = time.perf_counter()
    for first in range(0, n, block):
        z = streams.at(first).standard_normal(block)
        st = s0 * np.exp((r - sigma**2 / 2) * t + sigma * np.sqrt(t) * z)
        m = min(block, n - first)
        out[first : first + m] = (np.exp(-r * t) * np.maximum(st - k, 0.0))[:m]
    mean = out.mean()
    return time.perf_counter() - t0, mean


def block_sweep(n: int, reps: int) -> list[dict]:
    sys.path.insert(0, str(C.MODELS))
    from bscall import BSCall

    from ancho.chunk import ChunkRunner

    rows = []
    for block in BLOCKS:
        cls = type("BSCall", (BSCall,), {"block": block})
        runner = ChunkRunner(cls, {}, 1)
        ancho_t, bare_t = [], []
        for _ in range(reps):
            t0 = time.perf_counter()
            runner.run(0, n)
            ancho_t.append(time.perf_counter() - t0)
            bare_t.append(bare_numpy(n, block)[0])
        rows.append({"block": block, "ancho_ns": min(ancho_t) / n * 1e9, "bare_ns": min(bare_t) / n * 1e9})
    return rows


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (the workers), user + system."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def end_to_end(model: str, n: int, reps: int, writes: str = "auto", cpu: list[float] | None = None) -> list[float]:
    """Wall seconds of each run; ``cpu`` gets each run's CPU seconds, driver and workers (less load-sensitive).

    ``writes="driver"``: the driver writes every chunk (what it did before workers wrote their own)."""
    import ancho
    from ancho.executors.local import LocalExecutor

    times = []
    for _ in range(reps):
        home = C.scratch_home("batch")
        try:
            c0, t0 = cpu_seconds(), time.perf_counter()
            with LocalExecutor(2, writes=writes) as ex:
                res = ancho.run(model, sequences=n, seed=1, executor=ex, store=str(home))
                times.append(time.perf_counter() - t0)
            if cpu is not None:
                cpu.append(cpu_seconds() - c0)
            assert res.summary["outputs"]["payoff"]["count"] == n
        finally:
            C.cleanup(home)
    return times


LARGE = """
import json, resource, subprocess, sys, time
import ancho
t0 = time.perf_counter()
res = ancho.run(sys.argv[1], sequences=int(sys.argv[2]), seed=1, workers=2, store=sys.argv[3])
wall = time.perf_counter() - t0
du = int(subprocess.run(["du", "-sb", sys.argv[3] + "/runs/" + res.run_id], capture_output=True, text=True).stdout.split()[0])
out = {"wall": wall, "bytes": du, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
       "count": res.summary["outputs"]["payoff"]["count"], "p95": res.summary["outputs"]["payoff"]["p95"]}
if sys.argv[4] == "plots":  # the run page's and PDF's plot data, its own peak (VmHWM reset first)
    from ancho.plotdata import run_plots
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    t0 = time.perf_counter()
    run_plots(res.store, res.run_id)
    out["plots_s"] = time.perf_counter() - t0
    out["plots_peak_mb"] = int(next(l.split()[1] for l in open("/proc/self/status") if l.startswith("VmHWM"))) / 1024
print(json.dumps(out))
"""


def large(n: int, pyc: bool, held: bool = False, plots: bool = True) -> dict:
    """A run of ``n`` sequences in a fresh process; ``held``: with every column held in memory for the summary
    (``ANCHO_COLUMN_MEMORY`` above its size, the baseline of a run too long to hold)."""
    home = C.scratch_home("batch-large")
    env = C.child_env(home, pyc)
    if held:
        env["ANCHO_COLUMN_MEMORY"] = str(1 << 62)
    try:
        proc = subprocess.run(
            [sys.executable, "-c", LARGE, BATCH, str(n), str(home), "plots" if plots else "-"],
            capture_output=True,
            text=True,
            env=env,
            timeout=3600,
        )
        if proc.returncode:
            raise SystemExit(proc.stderr)
        return json.loads(proc.stdout.strip().splitlines()[-1])
    finally:
        C.cleanup(home)


def main() -> None:
    p = C.base_parser(__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--sweep", type=int, default=2_097_152, help="sequences per block-size measurement (0: skip)")
    p.add_argument("--batch", type=int, default=10_000_000, help="sequences of the end-to-end batch runs")
    p.add_argument("--one", type=int, default=300_000, help="sequences of the end-to-end one-at-a-time runs")
    p.add_argument("--large", type=int, default=30_000_000, help="sequences of the large run (0: skip)")
    p.add_argument("--held", action="store_true", help="also run the large run with its column held in memory")
    p.add_argument("--no-pyc", action="store_true")
    a = p.parse_args()
    C.use_pyc_here(not a.no_pyc)
    C.header("bench_batch: batch models (BSCall) end to end", f"2 workers, {a.reps} repetitions")
    out: dict = {}

    if a.sweep:
        sweep = block_sweep(a.sweep, a.reps)
        out["block_sweep"] = sweep
        print(
            f"1. block size, in process (ChunkRunner.run over {a.sweep:,} sequences, min of {a.reps}), ns per sequence"
        )
        print(
            C.table(
                [[r["block"], r["ancho_ns"], r["bare_ns"], r["ancho_ns"] / r["bare_ns"]] for r in sweep],
                ["block", "ancho", "bare numpy", "ratio"],
            )
        )

    batch_cpu: list[float] = []
    driver_cpu: list[float] = []
    batch = end_to_end(BATCH, a.batch, a.reps, cpu=batch_cpu)
    driver = end_to_end(BATCH, a.batch, a.reps, writes="driver", cpu=driver_cpu)
    one = end_to_end(ONE, a.one, a.reps)
    bare = [bare_numpy(a.batch, 4096)[0] for _ in range(a.reps)]
    rate = {
        "batch": a.batch / min(batch),
        "driver_writes": a.batch / min(driver),
        "one": a.one / min(one),
        "bare": a.batch / min(bare),
    }
    out["end_to_end"] = {
        "batch_s": C.stat(batch),
        "driver_writes_s": C.stat(driver),
        "batch_cpu_s": C.stat(batch_cpu),
        "driver_writes_cpu_s": C.stat(driver_cpu),
        "one_s": C.stat(one),
        "bare_s": C.stat(bare),
        "per_second": rate,
    }
    print(f"\n2. end to end (run + store + summary), 2 workers, sequences per second (best of {a.reps})")
    print(
        C.table(
            [
                ["batch BSCall", a.batch, min(batch), rate["batch"]],
                ["  the same, the driver writing every chunk", a.batch, min(driver), rate["driver_writes"]],
                ["one-at-a-time BSCallOne", a.one, min(one), rate["one"]],
                ["bare NumPy loop, 1 process", a.batch, min(bare), rate["bare"]],
            ],
            ["", "sequences", "seconds", "sequences/s"],
        )
    )
    print(
        f"CPU seconds (driver + workers), min of {a.reps}: workers writing {min(batch_cpu):.2f}, "
        f"driver writing {min(driver_cpu):.2f}"
    )
    print(C.goal_line("batch / one-at-a-time", rate["batch"] / rate["one"], 50, "×", lower_is_better=False))
    print(C.goal_line("batch / bare NumPy", rate["batch"] / rate["bare"], 0.5, "×", lower_is_better=False))

    if a.large:
        big = large(a.large, not a.no_pyc)
        out["large"] = {"sequences": a.large, **big}
        print(f"\n3. large run: {a.large:,} sequences, 2 workers, fresh process")
        print(
            f"wall {big['wall']:.1f} s ({a.large / big['wall'] / 1e6:.2f} M sequences/s), "
            f"{big['bytes'] / a.large:.2f} bytes stored per sequence, driver peak RSS {big['peak_rss_mb']:.0f} MB; "
            f"its plots (run page, PDF) {big['plots_s']:.1f} s, peak {big['plots_peak_mb']:.0f} MB"
        )
        if a.held:  # the baseline: every column held in memory (what a run under ANCHO_COLUMN_MEMORY gets)
            kept = large(a.large, not a.no_pyc, held=True, plots=a.large <= 200_000_000)
            out["large_held"] = kept
            print(
                f"  the same with its columns held: wall {kept['wall']:.1f} s, driver peak {kept['peak_rss_mb']:.0f} MB"
                + (f"; plots {kept['plots_s']:.1f} s, peak {kept['plots_peak_mb']:.0f} MB" if "plots_s" in kept else "")
                + f" (same p95: {kept['p95'] == big['p95']}); peak ratio {big['peak_rss_mb'] / kept['peak_rss_mb']:.2f}"
            )
        print(
            f"extrapolated to 100,000,000 sequences (linear, NOT measured): {big['wall'] * 1e8 / a.large:.0f} s, "
            f"{big['bytes'] * 1e8 / a.large / 1e9:.2f} GB"
        )
    print(C.load_note())
    out["max_rss_mb_bench"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    C.write_json(a.json, {"benchmark": "batch", "results": out})


if __name__ == "__main__":
    main()
