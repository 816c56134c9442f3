"""A study costs its sequences, not its points? A study of P points × S sequences vs one run of P·S sequences.

Both with the same executor and workers and the gambler model (loaded by
path), the run measured first in the same process (the baseline), the study
after; the ratio study/run is the figure (goal ≤ 1.5 at 2,000 × 50), locally
and on Spark (``--spark MASTER``: one Spark session, started before either is
timed, so neither pays its start-up). ``--repeat N`` measures N pairs (the
machine's load moves: each ratio is of a run and a study measured back to
back; repetition k uses seed ``--seed`` + k for both, see below). Each line
also gives the CPU seconds of the driver and (locally) of the worker processes: on a shared machine they move far less with the load than
the wall time, and they say which side a study's extra cost is on. The study's
sequences are not the run's: its points share their streams (common random
numbers), so every point plays the same S streams, whose games may be longer or
shorter than the run's P·S on average; the model's own work on each set is
timed bare in this process first, and each ratio is also given per unit of it
(the ratio divided by the study's work over the run's). That work ratio is a
sample's: 50 shared streams are a small sample of game lengths, ×0.90–×1.21 of
the run's over seeds 1–8 (seed 1 the longest), so each repetition takes the
next seed instead of repeating seed 1. A warm-up run first:
a process's first run pays its imports, which the baseline must not. Usage:
``python benchmarks/bench_study.py [--points 2000] [--sequences 50]
[--workers 2] [--spark spark://HOST:PORT] [--repeat 1] [--seed 1] [--model PATH ...]``. By default two models,
one after the other: ``benchmarks/models/gambler_plain.py``, the gambler without its ``@ancho.summary`` function
(what the points cost Ancho itself: the goal's figure), then the example itself, whose pandas summary function runs
once a point in the study and once in the run (the model's own per-point code, reported beside it).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

GAMBLER = str(Path(__file__).resolve().parents[1] / "examples" / "gambler.py")
PLAIN = str(Path(__file__).resolve().parent / "models" / "gambler_plain.py")


def cpu() -> tuple[float, float]:
    """CPU seconds so far of this process (the driver) and of its ended children (a local executor's workers)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime


def model_work(model: str, ps: list[float], sequences: int, seed: int = 1) -> tuple[float, float]:
    """CPU seconds of the model's own sequences, bare (one process, no Ancho around them): the study's (every point's
    sequences 0..S-1) and the run's (sequences 0..P·S-1 at the default p).

    Why: the two are not the same work. A study's points share their streams (common random numbers), so all its
    2,000 points play the same 50 streams; with seed 1 those 50 are longer games on average than the run's 100,000
    (measured: 2,538,380 rounds against 2,097,474, +21%), a difference of the sample, not of Ancho. The ratio per
    unit of model work (the study/run ratio divided by this one) is what a study's points cost beyond their
    sequences."""
    from ancho.chunk import _shared_streams
    from ancho.loading import load_model

    cls = load_model(model).cls
    assert cls is not None
    streams = _shared_streams(seed)
    points, whole = [cls(stake=3, goal=10, p=p) for p in ps], cls(stake=3, goal=10)  # (making them: Ancho's cost)
    c0 = time.process_time()
    for point in points:
        for i in range(sequences):
            point.sequence(streams.at(i))
    c1 = time.process_time()
    for i in range(len(ps) * sequences):
        whole.sequence(streams.at(i))
    return c1 - c0, time.process_time() - c1


def main() -> None:
    import ancho

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--points", type=int, default=2000)
    ap.add_argument("--sequences", type=int, default=50)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--spark", metavar="MASTER", help="a Spark master URL (default: the local executor)")
    ap.add_argument("--executor", help="former spelling: local, or a Spark master URL")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1, help="the first repetition's seed (each next one's is one more)")
    ap.add_argument("--model", action="append", help="a gambler-like model file (stake, goal, p), once or more "
                    "(default: the gambler without its summary function, then the example)")  # fmt: skip
    args = ap.parse_args()
    master = args.spark or (args.executor if args.executor not in (None, "local") else None)
    ps = [0.45 + 0.1 * k / max(1, args.points - 1) for k in range(args.points)]
    if master:
        from ancho.executors.spark import SparkExecutor

        executor = SparkExecutor(master, args.workers).start()
        where = {"executor": executor}
    else:
        where = {"workers": args.workers, "executor": "local"}
    print(f"executor {master or 'local'}, {args.workers} workers, load average {os.getloadavg()[0]:.1f}")
    for model in args.model or [PLAIN, GAMBLER]:
        own = "" if model != GAMBLER else " (with its pandas summary function: the model's own code, once a point)"
        print(f"model {Path(model).name}{own}")
        with tempfile.TemporaryDirectory() as home:  # (the first run of a process pays its imports: not the baseline's)
            ancho.run(model, {"stake": 3, "goal": 10}, 1000, seed=1000, store=home, **where)
        ratios, per_work = [], []
        for seed in range(args.seed, args.seed + args.repeat):
            works = [model_work(model, ps, args.sequences, seed) for _ in range(3)]  # (a process's first is slow)
            study_work, run_work = min(w[0] for w in works), min(w[1] for w in works)
            work = study_work / run_work
            print(f"seed {seed}: model work alone (one process): study's sequences {study_work:.2f} s, "
                  f"run's {run_work:.2f} s: ×{work:.2f}")  # fmt: skip
            with tempfile.TemporaryDirectory() as home:
                t0, c0 = time.perf_counter(), cpu()
                ancho.run(model, {"stake": 3, "goal": 10}, args.points * args.sequences, seed=seed, store=home,
                          **where)  # fmt: skip
                run_s, c1 = time.perf_counter() - t0, cpu()
                t0 = time.perf_counter()
                study = ancho.study(model, ancho.points([{"p": p} for p in ps]), {"stake": 3, "goal": 10},
                                    args.sequences, seed=seed, store=home, **where)  # fmt: skip
                study_s, c2 = time.perf_counter() - t0, cpu()
            ratios.append(study_s / run_s)
            per_work.append(study_s / run_s / work)
            used = [f"CPU driver {b[0] - a[0]:.2f} s" + ("" if master else f", workers {b[1] - a[1]:.2f} s")
                    for a, b in ((c0, c1), (c1, c2))]  # fmt: skip
            print(f"run   {args.points * args.sequences:>9,} sequences: {run_s:8.2f} s  ({used[0]})")
            print(
                f"study {args.points:>5,} × {args.sequences:<4} sequences: {study_s:8.2f} s  ({study.status}; {used[1]})"
            )
            print(f"ratio study/run: {study_s / run_s:.2f}, per unit of model work {study_s / run_s / work:.2f} "
                  f"(goal ≤ 1.5), load average {os.getloadavg()[0]:.1f}")  # fmt: skip
        if len(ratios) > 1:
            print(f"{Path(model).name} ratios: {', '.join(f'{r:.2f}' for r in ratios)}; "
                  f"median {statistics.median(ratios):.2f}, "
                  f"per unit of model work {statistics.median(per_work):.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
