"""Runs in a driver with threads of its own (a notebook kernel): workers from a zygote vs fresh interpreters.

A driver with other threads alive must not fork itself, so before the zygote
its workers were fresh interpreters, each importing NumPy (and PyArrow)
again. With one helper thread alive in this process, the same runs
alternate between ``ANCHO_WORKER_START=exec`` (the baseline: fresh
interpreters) and ``ANCHO_WORKER_START=zygote``; then the thread stops and
they run with workers forked from the driver itself (what a script gets).
The first zygote run, which starts the zygote, is reported on its own.

Runs (2 workers, a fresh store each time): 1,000 sequences of the trivial
model (a notebook's quick try), 200,000 of ``BSCallOne`` and 10,000,000 of
the batch ``BSCall`` (benchmarks/models/bscall.py).
"""

from __future__ import annotations

import os
import threading
import time

import _common as C

RUNS = [
    ("trivial", C.TRIVIAL, 1_000),
    ("BSCallOne", str(C.MODELS / "bscall.py") + ":BSCallOne", 200_000),
    ("BSCall (batch)", str(C.MODELS / "bscall.py") + ":BSCall", 10_000_000),
]


def one_run(model: str, n: int, how: str) -> float:
    import ancho

    os.environ["ANCHO_WORKER_START"] = how
    home = C.scratch_home("threads")
    try:
        t0 = time.perf_counter()
        res = ancho.run(model, sequences=n, seed=1, workers=2, store=str(home))
        wall = time.perf_counter() - t0
        assert res.summary["sequences"] == n
        return wall
    finally:
        C.cleanup(home)


def main() -> None:
    p = C.base_parser(__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=5)
    a = p.parse_args()
    C.use_pyc_here(True)
    C.header("bench_threads: runs in a driver with threads, workers from a zygote vs fresh", f"{a.reps} repetitions")
    import ancho  # noqa: F401  (imported before the timings, as in a notebook)

    stop = threading.Event()
    helper = threading.Thread(target=stop.wait, name="a kernel's thread")
    helper.start()
    first = one_run(C.TRIVIAL, 1_000, "zygote")  # (starts the zygote)
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(a.reps):
        for name, model, n in RUNS:
            for how in ("exec", "zygote"):
                times.setdefault((name, how), []).append(one_run(model, n, how))
    stop.set()
    helper.join()
    for _ in range(a.reps):
        for name, model, n in RUNS:
            times.setdefault((name, "fork"), []).append(one_run(model, n, "auto"))
    os.environ.pop("ANCHO_WORKER_START", None)

    print(f"first zygote run (1,000 trivial sequences, the zygote started): {first:.3f} s\n")
    rows = []
    for name, _model, n in RUNS:
        exe, zyg, frk = (times[name, how] for how in ("exec", "zygote", "fork"))
        rows.append([name, n, C.med(exe), C.med(zyg), C.med(frk), C.med(exe) / C.med(zyg), min(exe) / min(zyg)])
    print(f"seconds a run, median of {a.reps} (exec and zygote alternating, one thread alive; fork: none)")
    print(
        C.table(
            rows,
            ["run", "sequences", "fresh (exec)", "zygote", "fork, no thread", "exec / zygote", "(minima)"],
        )
    )
    C.write_json(
        a.json,
        {"first_zygote_run_s": first, "runs": {f"{k[0]} {k[1]}": C.stat(v) for k, v in times.items()}},
    )


if __name__ == "__main__":
    main()
