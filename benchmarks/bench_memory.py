"""Peak memory of ``ancho run`` (the CLI) on a large run: the driver's and each worker's.

    .venv/bin/python benchmarks/bench_memory.py [--sequences 10000000] [--workers 2] [--reps 3]

The CLI runs as a subprocess with a scratch ANCHO_HOME. Every
``--interval`` seconds this script reads ``/proc/PID/status`` of the driver
and of each of its child processes (the workers): ``VmHWM`` is the kernel's
own peak-RSS high-water mark, so sampling only has to catch each process
alive, not at its peak (the last ~interval of a process's life can be
missed). The wait4() ``ru_maxrss`` of the driver is shown too (Linux
reports the largest of the driver and its reaped children there, which is
why ``/usr/bin/time -v`` cannot separate them).

Baselines in the same run: a bare ``python -c "import numpy, pyarrow"``
(what any driver holding NumPy and Arrow costs), and the same plus pandas.
Goal: driver peak RSS ≤ 250 MB.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

MB = 1024 * 1024


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM in bytes (empty if the process is gone)."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    key, value = line.split(":", 1)
                    out[key] = int(value.split()[0]) * 1024
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return out


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc/PID/task/*/children)."""
    kids: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{task}/children") as fh:
                    kids += [int(x) for x in fh.read().split()]
            except FileNotFoundError:
                pass
    except FileNotFoundError:
        pass
    return kids


def measure(argv: list[str], env: dict, interval: float) -> dict:
    """Run ``argv`` and track peak RSS of it and of every child process it starts."""
    t = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    peaks: dict[int, int] = {}
    roles: dict[int, str] = {proc.pid: "driver"}
    samples = 0
    rusage = None
    status = None
    while True:
        pids = [proc.pid] + children(proc.pid)
        for pid in pids:
            st = proc_status(pid)
            if st:
                peaks[pid] = max(peaks.get(pid, 0), st.get("VmHWM", 0), st.get("VmRSS", 0))
                roles.setdefault(pid, "worker")
        samples += 1
        waited, status, rusage = os.wait4(proc.pid, os.WNOHANG)
        if waited == proc.pid:
            break
        time.sleep(interval)
    elapsed = time.perf_counter() - t
    proc.returncode = os.waitstatus_to_exitcode(status)
    out, err = proc.stdout.read(), proc.stderr.read()  # type: ignore[union-attr]
    proc.stdout.close()  # type: ignore[union-attr]
    proc.stderr.close()  # type: ignore[union-attr]
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}):\n{err.decode()[-2000:]}")
    workers = sorted((v for p, v in peaks.items() if roles[p] == "worker"), reverse=True)
    return {
        "seconds": elapsed,
        "driver": peaks.get(proc.pid, 0),
        "workers": workers,
        "wait4_maxrss": rusage.ru_maxrss * 1024,
        "samples": samples,
        "stdout": out.decode(),
    }


def main() -> None:
    p = C.base_parser(__doc__.splitlines()[0])
    p.add_argument("--sequences", type=int, default=10_000_000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--interval", type=float, default=0.02)
    p.add_argument("--no-pyc", action="store_true")
    a = p.parse_args()
    env = C.child_env(pyc=not a.no_pyc)
    C.header(
        "bench_memory: peak RSS of `ancho run` (CLI) and its workers",
        f"{a.sequences:,} sequences of the trivial model, --workers {a.workers}, {a.reps} repetitions, "
        f"sampling /proc every {a.interval * 1000:.0f} ms",
    )
    py = C.venv_python()
    baselines = {
        'python -c "import numpy, pyarrow"': [py, "-c", "import numpy, pyarrow"],
        'python -c "import numpy, pyarrow.parquet, pandas"': [py, "-c", "import numpy, pyarrow.parquet, pandas"],
    }
    base: dict[str, list[int]] = {}
    runs: list[dict] = []
    for rep in range(a.reps):
        for name, argv in baselines.items():
            base.setdefault(name, []).append(measure(argv, env, 0.005)["wait4_maxrss"])
        home = C.scratch_home("memory")
        try:
            argv = C.ancho_cli() + [
                "run",
                C.TRIVIAL,
                "--sequences",
                str(a.sequences),
                "--workers",
                str(a.workers),
                "--seed",
                str(rep + 1),
                "--json",
            ]
            r = measure(argv, {**env, "ANCHO_HOME": str(home)}, a.interval)
            r["store_bytes"] = sum(f.stat().st_size for f in home.rglob("*") if f.is_file())
            runs.append(r)
        finally:
            C.cleanup(home)
        print(
            f"  rep {rep + 1}/{a.reps}: {r['seconds']:.1f} s, driver {r['driver'] / MB:.0f} MB, "
            f"workers {[round(w / MB) for w in r['workers']]} MB",
            file=sys.stderr,
        )

    bare = C.med(base['python -c "import numpy, pyarrow"'])
    rows = [[name, C.med(v) / MB, min(v) / MB, C.med(v) / bare] for name, v in base.items()]
    drv = [r["driver"] for r in runs]
    rows.append([f"ancho run driver ({a.sequences:,} seq)", C.med(drv) / MB, min(drv) / MB, C.med(drv) / bare])
    for k in range(max(len(r["workers"]) for r in runs)):
        wk = [r["workers"][k] for r in runs if len(r["workers"]) > k]
        rows.append([f"ancho run worker #{k + 1} (largest first)", C.med(wk) / MB, min(wk) / MB, C.med(wk) / bare])
    w4 = [r["wait4_maxrss"] for r in runs]
    rows.append(["wait4 ru_maxrss of the driver (= max of tree)", C.med(w4) / MB, min(w4) / MB, C.med(w4) / bare])
    print("peak RSS, MB (median, min over repetitions)")
    print(C.table(rows, ["process", "median MB", "min MB", "× numpy+pyarrow"]))
    secs = [r["seconds"] for r in runs]
    print(
        f"\nrun wall time: median {C.med(secs):.1f} s ({C.med(secs) / a.sequences * 1e6:.2f} µs/seq with {a.workers} workers); "
        f"store on disk {C.med([r['store_bytes'] for r in runs]) / MB:.0f} MB; /proc samples per run ≈ {C.med([r['samples'] for r in runs]):.0f}"
    )
    print()
    print(C.goal_line("driver peak RSS (median)", C.med(drv) / MB, 250, " MB"))
    print(C.load_note())
    C.write_json(
        a.json,
        {
            "benchmark": "memory",
            "sequences": a.sequences,
            "workers": a.workers,
            "baselines_bytes": {k: C.stat(v) for k, v in base.items()},
            "runs": [{k: v for k, v in r.items() if k != "stdout"} for r in runs],
        },
    )


if __name__ == "__main__":
    main()
