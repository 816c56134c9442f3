"""Wall time of a small ``ancho run`` from the command line (start-up latency).

    .venv/bin/python benchmarks/bench_latency.py [--reps 7] [--sequences 100] [--modes pyc nopyc]

Each command runs as a subprocess, in turn, ``--reps`` times (after one
untimed run of each that fills the bytecode cache), with a scratch
ANCHO_HOME. Baselines in the same run: ``python -c pass`` and ``python -c
"import numpy"``. Rows: ``ancho --help`` (CLI import only), ``ancho run``
of the trivial model (no custom summary: pandas should never load), and of
examples/gambler.py (its custom summary gets a pandas DataFrame).

Modes: ``pyc`` = with a bytecode cache (a scratch PYTHONPYCACHEPREFIX, as
any pip-installed environment has); ``nopyc`` = PYTHONDONTWRITEBYTECODE=1
and no cache, as this development venv is configured. Goal (trivial model,
pyc): median ≤ 1.5 s.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402


def timed(argv: list[str], env: dict) -> float:
    t = time.perf_counter()
    proc = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stderr.decode()[-2000:]}")
    return elapsed


def main() -> None:
    p = C.base_parser(__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--sequences", type=int, default=100)
    p.add_argument("--modes", nargs="+", default=["pyc", "nopyc"], choices=["pyc", "nopyc"])
    a = p.parse_args()
    C.header(
        "bench_latency: `ancho run` of a few sequences, end to end (CLI subprocess)",
        f"{a.sequences} sequences, default workers (all cores), {a.reps} repetitions per command and mode",
    )
    py = C.venv_python()
    cli = C.ancho_cli()
    n = str(a.sequences)
    commands = {
        "python -c pass": [py, "-c", "pass"],
        'python -c "import numpy"': [py, "-c", "import numpy"],
        "ancho --help": cli + ["--help"],
        f"ancho run trivial -n {n} --json": cli + ["run", C.TRIVIAL, "-n", n, "--seed", "1", "--json"],
        f"ancho run examples/gambler.py -n {n} --json": cli + ["run", C.GAMBLER, "-n", n, "--seed", "1", "--json"],
    }
    results: dict[str, dict[str, list[float]]] = {}
    home = C.scratch_home("latency")
    try:
        for mode in a.modes:
            env = C.child_env(home, pyc=(mode == "pyc"))
            for argv in commands.values():
                timed(argv, env)  # untimed: fills the bytecode cache (pyc) / the page cache
            for _rep in range(a.reps):
                for name, argv in commands.items():
                    results.setdefault(mode, {}).setdefault(name, []).append(timed(argv, env))
            print(f"  mode {mode} done", file=sys.stderr)
    finally:
        C.cleanup(home)

    summary = {}
    for mode, res in results.items():
        base = C.med(res['python -c "import numpy"'])
        print(f"mode {mode}: wall seconds")
        print(
            C.table(
                [[k, C.med(v), min(v), max(v), C.med(v) / base] for k, v in res.items()],
                ["command", "median s", "min s", "max s", "× import numpy"],
            )
        )
        print()
        summary[mode] = {k: C.stat(v) for k, v in res.items()}
    trivial = f"ancho run trivial -n {n} --json"
    for mode in results:
        print(f"{mode}: " + C.goal_line(f"{trivial} (median)", C.med(results[mode][trivial]), 1.5, " s"))
    print(C.load_note())
    C.write_json(a.json, {"benchmark": "latency", "sequences": a.sequences, "reps": a.reps, "results": summary})


if __name__ == "__main__":
    main()
