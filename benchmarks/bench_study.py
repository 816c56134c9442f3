"""A study costs its sequences, not its points? A study of P points × S sequences vs one run of P·S sequences.

Both with the same executor and workers and the gambler model (loaded by
path), the run measured first in the same process (the
baseline), the study after; the ratio study/run is the figure (goal ≤ 1.5 at
2,000 × 50). Usage: ``python benchmarks/bench_study.py [--points 2000]
[--sequences 50] [--workers 2] [--executor local|spark://HOST:PORT]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

GAMBLER = str(Path(__file__).resolve().parents[1] / "examples" / "gambler.py")


def main() -> None:
    import ancho

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--points", type=int, default=2000)
    ap.add_argument("--sequences", type=int, default=50)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--executor", default="local", help="local, or a Spark master URL")
    args = ap.parse_args()
    ps = [0.45 + 0.1 * k / max(1, args.points - 1) for k in range(args.points)]
    where = {"workers": args.workers, "executor": args.executor}
    with tempfile.TemporaryDirectory() as home:
        t0 = time.perf_counter()
        ancho.run(GAMBLER, {"stake": 3, "goal": 10}, args.points * args.sequences, seed=1, store=home, **where)
        run_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        study = ancho.study(GAMBLER, ancho.points([{"p": p} for p in ps]), {"stake": 3, "goal": 10}, args.sequences,
                            seed=1, store=home, **where)  # fmt: skip
        study_s = time.perf_counter() - t0
    print(f"executor {args.executor}, {args.workers} workers")
    print(f"run   {args.points * args.sequences:>9,} sequences: {run_s:8.2f} s")
    print(f"study {args.points:>5,} × {args.sequences:<4} sequences: {study_s:8.2f} s  ({study.status})")
    print(f"ratio study/run: {study_s / run_s:.2f} (goal ≤ 1.5)")


if __name__ == "__main__":
    main()
