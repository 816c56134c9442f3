"""Per-sequence overhead of Ancho on a trivial model, end to end, against a bare Python loop.

    .venv/bin/python benchmarks/bench_overhead.py [--sizes 200000 2000000] [--reps 5] [--no-pyc]

What is compared (each repetition in a fresh Python process, so the
driver's one-time lazy imports are counted once, as a script or ``ancho
run`` pays them):

* **bare**: ``model.sequence(rng)`` N times in a Python loop with one shared
  ``np.random.default_rng`` — the least any tool could cost;
* **ancho cold**: ``ancho.run(Trivial, sequences=N, workers=1)``, the first
  run in that process: worker start-up, running, storing every result
  (Parquet, fsync), summary;
* **ancho warm**: the same again in the same process (a notebook user's
  second run): the driver's imports are already done.

overhead = (ancho − bare) / N, goal ≤ 3 µs per sequence.

Breakdown (from an instrumented store, same run): time to the first result
(driver set-up + worker start-up), the streaming phase (first result to
last stored chunk; worker compute and driver writes overlap in it), the
worker's own loop time Σ ChunkResult.seconds, driver write time, and the
summary after the last chunk. A second table runs the pieces in one
process, without workers, to show what each layer adds per sequence.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402


def child(n: int, seed: int, home: str) -> None:
    """One repetition, in a fresh interpreter: bare loop, cold ancho run, warm ancho run, bare loop."""
    import numpy as np

    import ancho
    from ancho.stores.embedded import EmbeddedStore

    sys.path.insert(0, str(C.MODELS))
    from trivial import Trivial

    class TimedStore(EmbeddedStore):
        def reset(self):
            self.t0 = time.perf_counter()
            self.writes: list[tuple[float, float]] = []
            self.compute = 0.0
            self.chunks = 0
            self.read_s = 0.0

        def write_chunk(self, run_id, result):
            a = time.perf_counter()
            super().write_chunk(run_id, result)
            b = time.perf_counter()
            self.writes.append((a - self.t0, b - self.t0))
            self.compute += result.seconds
            self.chunks += 1

        def update_run(self, run_id, **changes):
            super().update_run(run_id, **changes)
            if changes.get("status") == "succeeded":
                self.t_done = time.perf_counter() - self.t0

        def read_column(self, run_id, name):
            a = time.perf_counter()
            try:
                return super().read_column(run_id, name)
            finally:
                self.read_s += time.perf_counter() - a

    def bare() -> float:
        m = Trivial()
        seq = m.sequence
        rng = np.random.default_rng(seed)
        t = time.perf_counter()
        for _ in range(n):
            seq(rng)
        return time.perf_counter() - t

    def one_run() -> dict:
        store.reset()
        t = time.perf_counter()
        r = ancho.run(C.TRIVIAL, sequences=n, seed=seed, workers=1, store=store)
        total = time.perf_counter() - t
        assert r.summary["outputs"]["x"]["count"] == n, r.summary
        w = store.writes
        return {
            "total": total,
            "startup": w[0][0],
            "first_write": w[0][1] - w[0][0],
            "writes": sum(b - a for a, b in w),
            "stream": w[-1][1] - w[0][0],
            "compute": store.compute,
            "summary": store.t_done - w[-1][1],
            "close": total - store.t_done,
            "read_column": store.read_s,
            "chunks": store.chunks,
            "pandas_imported": "pandas" in sys.modules,
        }

    store = TimedStore(home)
    b1 = bare()
    cold = one_run()
    warm = one_run()
    b2 = bare()
    print(json.dumps({"bare": (b1 + b2) / 2, "bare_min": min(b1, b2), "cold": cold, "warm": warm}))


def ladder(n: int, reps: int) -> dict:
    """In-process, no worker processes: the cost each layer adds per sequence."""
    import numpy as np

    from ancho.chunk import run_chunk
    from ancho.executors.messages import ChunkDone
    from ancho.stats import describe
    from ancho.stores.embedded import EmbeddedStore
    from ancho.streams import StreamFactory

    sys.path.insert(0, str(C.MODELS))
    from trivial import Trivial

    m = Trivial()
    seq = m.sequence
    streams = StreamFactory(1)
    home = C.scratch_home("ladder")
    store = EmbeddedStore(home)
    from ancho.stores.base import RunRecord

    store.create_run(RunRecord(id="ladder", schema={"x": "float"}))
    out: dict[str, list[float]] = {}

    def add(name, seconds):
        out.setdefault(name, []).append(seconds / n * 1e6)

    try:
        # one untimed round first: lazy imports (pyarrow, and whatever it imports) are not per-sequence costs
        warm = run_chunk(m, streams, 0, 1000)
        store.write_chunk("ladder", warm)
        describe(warm.columns["x"].copy(), "float")
        for _ in range(reps):
            rng = np.random.default_rng(1)
            t = time.perf_counter()
            for _i in range(n):
                seq(rng)
            add("1 bare: sequence(shared rng)", time.perf_counter() - t)
            at = streams.at
            t = time.perf_counter()
            for i in range(n):
                seq(at(i))
            add("2 + per-sequence stream (StreamFactory.at)", time.perf_counter() - t)
            t = time.perf_counter()
            res = run_chunk(m, streams, 0, n)
            total = time.perf_counter() - t
            add("3 run_chunk loop (ChunkResult.seconds)", res.seconds)
            add("4 run_chunk incl. building columns", total)
            t = time.perf_counter()
            blob = pickle.dumps(ChunkDone(res), protocol=pickle.HIGHEST_PROTOCOL)
            pickle.loads(blob)
            add("5 pickle + unpickle the batch (pipe)", time.perf_counter() - t)
            t = time.perf_counter()
            store.write_chunk("ladder", res)
            add("6 EmbeddedStore.write_chunk (Parquet zstd + fsync)", time.perf_counter() - t)
            col = res.columns["x"].copy()
            t = time.perf_counter()
            describe(col, "float")
            add("7 summary of the column (describe)", time.perf_counter() - t)
    finally:
        store.close()
        C.cleanup(home)
    return out


def main() -> None:
    p = C.base_parser(__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[200_000, 2_000_000])
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--ladder-size", type=int, default=200_000)
    p.add_argument("--no-pyc", action="store_true", help="no bytecode cache (as this dev venv is configured)")
    p.add_argument("--ladder-only", action="store_true", help="only the in-process ladder (seconds, no processes)")
    p.add_argument("--child", type=int, help=argparse_hidden())
    p.add_argument("--seed", type=int, default=1, help=argparse_hidden())
    p.add_argument("--home", help=argparse_hidden())
    a = p.parse_args()
    if a.child:
        child(a.child, a.seed, a.home)
        return

    pyc = not a.no_pyc
    if a.ladder_only:
        C.header(
            "bench_overhead --ladder-only: in-process per-sequence ladder", f"N={a.ladder_size:,}, {a.reps} repetitions"
        )
        lad = ladder(a.ladder_size, a.reps)
        base = C.med(lad["1 bare: sequence(shared rng)"])
        print(
            C.table(
                [[k, C.med(v), min(v), C.med(v) / base] for k, v in lad.items()], ["step", "median", "min", "× bare"]
            )
        )
        C.write_json(a.json, {"benchmark": "overhead-ladder", "results": {k: C.stat(v) for k, v in lad.items()}})
        return
    C.header(
        "bench_overhead: per-sequence overhead, trivial model, workers=1",
        f"bytecode cache: {'scratch PYTHONPYCACHEPREFIX' if pyc else 'none (PYTHONDONTWRITEBYTECODE=1)'}; "
        f"{a.reps} repetitions per size, each in a fresh process",
    )
    # warm the bytecode cache (not measured)
    warm_home = C.scratch_home("overhead-warm")
    subprocess.run(
        [sys.executable, __file__, "--child", "1000", "--home", str(warm_home)],
        env=C.child_env(pyc=pyc),
        check=True,
        capture_output=True,
    )
    C.cleanup(warm_home)

    results: dict[int, list[dict]] = {}
    for rep in range(a.reps):
        for n in a.sizes:
            home = C.scratch_home("overhead")
            try:
                proc = subprocess.run(
                    [sys.executable, __file__, "--child", str(n), "--seed", str(rep + 1), "--home", str(home)],
                    env=C.child_env(pyc=pyc),
                    capture_output=True,
                    text=True,
                )
                if proc.returncode != 0:
                    sys.exit(f"child failed:\n{proc.stderr}")
                results.setdefault(n, []).append(json.loads(proc.stdout.strip().splitlines()[-1]))
            finally:
                C.cleanup(home)
            print(f"  rep {rep + 1}/{a.reps} N={n:,} done", file=sys.stderr)

    rows, summary = [], {}
    for n, reps in results.items():
        bare = [r["bare"] / n * 1e6 for r in reps]
        for mode in ("cold", "warm"):
            tot = [r[mode]["total"] / n * 1e6 for r in reps]
            ovh = [r[mode]["total"] / n * 1e6 - r["bare"] / n * 1e6 for r in reps]
            ratio = [r[mode]["total"] / r["bare"] for r in reps]
            rows.append(
                [f"{n:,} {mode}", C.med(bare), min(bare), C.med(tot), min(tot), C.med(ovh), min(ovh), C.med(ratio)]
            )
            summary[f"{n}_{mode}"] = {
                "bare_us": C.stat(bare),
                "ancho_us": C.stat(tot),
                "overhead_us": C.stat(ovh),
                "ratio": C.stat(ratio),
            }
    print("µs per sequence (median and min over repetitions)")
    print(
        C.table(
            rows,
            ["N, run", "bare med", "bare min", "ancho med", "ancho min", "overhead med", "overhead min", "ancho/bare"],
        )
    )

    print("\nbreakdown, seconds (median over repetitions); stream = first result → last chunk stored")
    brows = []
    keys = [
        "total",
        "startup",
        "stream",
        "compute",
        "writes",
        "first_write",
        "summary",
        "read_column",
        "close",
        "chunks",
    ]
    for n, reps in results.items():
        for mode in ("cold", "warm"):
            brows.append(
                [f"{n:,} {mode}"]
                + [C.med([r[mode][k] for r in reps]) for k in keys]
                + [str(reps[0][mode]["pandas_imported"])]
            )
            summary[f"{n}_{mode}"]["breakdown"] = {k: C.med([r[mode][k] for r in reps]) for k in keys}
            summary[f"{n}_{mode}"]["pandas_imported"] = reps[0][mode]["pandas_imported"]
    print(
        C.table(
            brows,
            [
                "N, run",
                "total",
                "to 1st result",
                "stream",
                "worker loop Σ",
                "driver writes Σ",
                "1st write",
                "summary",
                "read_column Σ",
                "close",
                "chunks",
                "pandas in driver",
            ],
        )
    )
    sizes = sorted(results)
    if len(sizes) >= 2:
        n1, n2 = sizes[0], sizes[-1]
        for mode in ("cold", "warm"):
            t1 = C.med([r[mode]["total"] for r in results[n1]])
            t2 = C.med([r[mode]["total"] for r in results[n2]])
            b = C.med([r["bare"] / n2 for r in results[n2]])
            marginal = (t2 - t1) / (n2 - n1)
            fixed = t1 - marginal * n1
            summary[f"fit_{mode}"] = {
                "fixed_s": fixed,
                "marginal_us": marginal * 1e6,
                "marginal_overhead_us": (marginal - b) * 1e6,
            }
            print(
                f"fit total(N) = fixed + marginal·N from N={n1:,} and N={n2:,} ({mode}): fixed {fixed:.2f} s, "
                f"marginal {marginal * 1e6:.2f} µs/seq = bare {b * 1e6:.2f} + {(marginal - b) * 1e6:.2f} µs/seq overhead"
            )
    for n, reps in results.items():
        s = [r["warm"]["stream"] / n * 1e6 for r in reps]
        c = [r["warm"]["compute"] / n * 1e6 for r in reps]
        print(
            f"N={n:,} warm: streaming phase {C.med(s):.2f} µs/seq, of which the worker loop {C.med(c):.2f} µs/seq "
            f"(bare {C.med([r['bare'] / n * 1e6 for r in reps]):.2f})"
        )

    print(f"\nin-process ladder, N={a.ladder_size:,} per step, µs per sequence (no worker processes)")
    lad = ladder(a.ladder_size, a.reps)
    base = C.med(lad["1 bare: sequence(shared rng)"])
    print(
        C.table([[k, C.med(v), min(v), C.med(v) / base] for k, v in lad.items()], ["step", "median", "min", "× bare"])
    )
    summary["ladder"] = {k: C.stat(v) for k, v in lad.items()}

    print()
    for n in results:
        for mode in ("cold", "warm"):
            print(
                f"N={n:,} {mode}: "
                + C.goal_line("overhead", summary[f"{n}_{mode}"]["overhead_us"]["median"], 3.0, " µs/seq")
            )
    print(C.load_note())
    C.write_json(a.json, {"benchmark": "overhead", "sizes": a.sizes, "reps": a.reps, "pyc": pyc, "results": summary})


def argparse_hidden():
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
