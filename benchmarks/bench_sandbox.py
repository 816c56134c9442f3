"""What the bubblewrap sandbox costs: per sequence on a ~1 ms pure-Python model, and per worker start.

    .venv/bin/python benchmarks/bench_sandbox.py [--sequences 4000] [--workers 2] [--reps 7] [--ms 1.0] [--no-pyc]

Per sequence (``models/busy.py``, loop count calibrated at start to ~``--ms``
ms; the same executor is warmed by a 2-sequence run first, so worker
start-up is not in these numbers). Arms, interleaved in every repetition:

* **unsandboxed** (baseline): ``LocalExecutor(W)``;
* **sandboxed**: ``LocalExecutor(W, wrap=Sandbox(policy).wrap)`` with the
  default policy (address space, open files, file size limits, pids cgroup,
  600 s per-sequence timeout: a counting wrapper around ``sequence`` and a
  watchdog thread);
* **sandboxed, no timeout**: the same with ``sequence_timeout=None``
  (isolates the timeout's cost);
* **limits only**: unsandboxed workers with the policy's ``ANCHO_LIMITS``
  (what ``allow_unsandboxed`` keeps).

Reported per sequence: the wall time of ``ancho.run``; the workers' own
compute time (Σ ``ChunkResult.seconds`` / N, from the store); and the CPU
time (user + system) of all the executor's processes (workers, and for the
sandbox its shell and bubblewrap processes), read from /proc before and
after. On a shared machine the wall times swing with other work; CPU time
swings much less, so the CPU-time ratio is the overhead figure. Goal: < 5 %.
Also: the per-call cost of the per-sequence timeout wrapper, in-process.

Start-up: ``/bin/true`` and ``python -c pass`` plain vs through the
sandbox's command line (shell + cgroup + bwrap), and a worker from
``LocalExecutor(1).start()`` to its first answer (``inspect`` of the trivial
model: interpreter, NumPy, Ancho, the model) with and without the sandbox.

Bytecode: unsandboxed workers use the scratch cache of ``_common``; the
sandbox gets the same cache read-only (``PYTHONPYCACHEPREFIX``), but Ancho
itself is at ``/opt/ancho`` inside, a different path, so Ancho's own modules
are compiled at every sandboxed start (NumPy's are cached in both).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

sys.path.insert(0, str(C.MODELS))

import ancho  # noqa: E402
from ancho import isolation as sb  # noqa: E402
from ancho.executors.local import LocalExecutor  # noqa: E402
from ancho.stores.embedded import EmbeddedStore  # noqa: E402

BUSY_FILE = str(C.MODELS / "busy.py") + ":Busy"
TRIVIAL_FILE = str(C.MODELS / "trivial.py") + ":Trivial"


class TimedStore(EmbeddedStore):
    """Adds up the workers' own compute time (ChunkResult.seconds) of the chunks it stores."""

    compute = 0.0

    def write_chunk(self, run_id, result):
        self.compute += result.seconds
        return super().write_chunk(run_id, result)


def calibrate(ms: float) -> int:
    return C.calibrate_spin(ms)[0]


def policy(pyc: bool, **changes) -> sb.SandboxPolicy:
    read_only = [str(C.MODELS)]
    env = {}
    if pyc:
        C.PYCACHE.mkdir(parents=True, exist_ok=True)
        read_only.append(str(C.PYCACHE))
        env["PYTHONPYCACHEPREFIX"] = str(C.PYCACHE)
    return sb.SandboxPolicy(read_only=tuple(read_only), env=env, **changes)


def per_sequence(args, loops: int, home: Path) -> dict:
    arms = {
        "unsandboxed": lambda: LocalExecutor(args.workers),
        "sandboxed": lambda: LocalExecutor(args.workers, wrap=sandboxes["sandboxed"].wrap),
        "sandboxed, no timeout": lambda: LocalExecutor(args.workers, wrap=sandboxes["no timeout"].wrap),
        "limits only (no bwrap)": lambda: LocalExecutor(args.workers, env=sb.limits_env(sb.SandboxPolicy())),
    }
    sandboxes = {
        "sandboxed": sb.Sandbox(policy(args.pyc)),
        "no timeout": sb.Sandbox(policy(args.pyc, sequence_timeout=None)),
    }
    wall: dict[str, list[float]] = {k: [] for k in arms}
    compute: dict[str, list[float]] = {k: [] for k in arms}
    cpu: dict[str, list[float]] = {k: [] for k in arms}
    n = args.sequences
    try:
        for rep in range(args.reps):
            order = list(arms) if rep % 2 == 0 else list(reversed(arms))
            for name in order:
                store = TimedStore(home / f"{rep}-{name.split()[0]}")
                with arms[name]() as ex:
                    ex.start()
                    ancho.run(BUSY_FILE, params={"loops": loops}, sequences=2, seed=1, executor=ex, store=store)
                    store.compute = 0.0
                    c0 = children_cpu()
                    t = time.perf_counter()
                    ancho.run(BUSY_FILE, params={"loops": loops}, sequences=n, seed=rep + 2, executor=ex, store=store)
                    wall[name].append((time.perf_counter() - t) / n)
                    cpu[name].append(children_cpu(c0) / n)
                    compute[name].append(store.compute / n)
                store.close()
    finally:
        for s in sandboxes.values():
            s.close()
    base_w, base_c, base_cpu = C.med(wall["unsandboxed"]), C.med(compute["unsandboxed"]), C.med(cpu["unsandboxed"])
    rows = []
    for name in arms:
        rows.append(
            [
                name,
                C.med(cpu[name]) * 1e3,
                min(cpu[name]) * 1e3,
                C.med(cpu[name]) / base_cpu,
                C.med(wall[name]) * 1e3,
                C.med(wall[name]) / base_w,
                C.med(compute[name]) * 1e3,
                C.med(compute[name]) / base_c,
            ]
        )
    print(f"per sequence: N={n:,}, workers={args.workers}, loops={loops:,}, {args.reps} repetitions (interleaved)")
    print(C.table(rows, ["arm", "CPU ms/seq", "min", "ratio", "wall ms/seq", "ratio", "worker loop ms/seq", "ratio"]))
    overhead = C.med(cpu["sandboxed"]) / base_cpu - 1
    overhead_min = min(cpu["sandboxed"]) / min(cpu["unsandboxed"]) - 1
    wall_overhead = C.med(wall["sandboxed"]) / base_w - 1
    print(
        f"\nsandbox overhead per sequence, CPU time: {overhead * 100:+.1f} % (medians), {overhead_min * 100:+.1f} % (minima); "
        f"wall: {wall_overhead * 100:+.1f} %  (goal < 5 %: {'met' if max(overhead, overhead_min) < 0.05 else 'NOT met'})"
    )
    return {
        "cpu": {k: C.stat(v) for k, v in cpu.items()},
        "wall": {k: C.stat(v) for k, v in wall.items()},
        "compute": {k: C.stat(v) for k, v in compute.items()},
        "overhead_cpu": overhead,
        "overhead_cpu_min": overhead_min,
        "overhead_wall": wall_overhead,
    }


def children_cpu(since: float = 0.0) -> float:
    """CPU seconds (user + system) used so far by this process's descendants that are alive, minus ``since``."""
    import psutil

    total = 0.0
    for proc in psutil.Process().children(recursive=True):
        try:
            t = proc.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total - since


def timer_wrapper_cost(loops: int, ms: float) -> dict:
    """In-process: an empty sequence called plain vs through the worker's per-sequence timeout wrapper."""
    import signal

    import numpy as np
    from busy import Busy

    from ancho.executors import worker

    plain, timed = Busy(loops=0), Busy(loops=0)
    worker._SEQUENCE_TIMEOUT = 600.0
    worker.limit_sequence_time(timed)
    worker._SEQUENCE_TIMEOUT = None
    rng = np.random.default_rng(1)
    res: dict[str, list[float]] = {"plain": [], "timed": []}
    for _ in range(7):
        for name, m in (("plain", plain), ("timed", timed)):
            t = time.perf_counter()
            for _ in range(20_000):
                m.sequence(rng)
            res[name].append((time.perf_counter() - t) / 20_000)
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    p, q = min(res["plain"]), min(res["timed"])
    added = q - p
    print("\nper-sequence timeout (counting wrapper + watchdog thread), empty sequence, in this process (minima)")
    print(
        C.table(
            [["empty sequence", p * 1e6, q * 1e6, added * 1e6, added / (ms / 1000) * 100]],
            ["call", "plain µs", "with timeout µs", "added µs", f"% of a {ms:g} ms sequence"],
        )
    )
    return {"plain_s": C.stat(res["plain"]), "timed_s": C.stat(res["timed"]), "added_s": added}


def timed(argv: list[str], reps: int) -> list[float]:
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        subprocess.run(argv, check=True, stdin=subprocess.DEVNULL)
        out.append(time.perf_counter() - t)
    return out


def startup(args) -> dict:
    sandbox = sb.Sandbox(policy(args.pyc))
    reps = max(2 * args.reps, 10)
    rows, data = [], {}
    try:
        py = [sys.executable, "-c", "pass"]
        pairs = {
            "/bin/true": (["/bin/true"], sandbox.wrap(["/bin/true"])),
            "python -c pass": (py, sandbox.wrap(py)),
        }
        for name, (plain, boxed) in pairs.items():
            a, b = timed(plain, reps), timed(boxed, reps)
            data[name] = {"plain": C.stat(a), "sandboxed": C.stat(b)}
            rows.append([name, C.med(a) * 1e3, C.med(b) * 1e3, (C.med(b) - C.med(a)) * 1e3, C.med(b) / C.med(a)])
        t_wrap = []
        argv = [sys.executable, "-m", "ancho.executors.worker"]
        for _ in range(200):
            t = time.perf_counter()
            sandbox.wrap(argv)
            t_wrap.append(time.perf_counter() - t)
        plain_w, boxed_w = [], []
        for rep in range(reps):
            for wrap, dest in (
                ((None, plain_w), (sandbox.wrap, boxed_w))
                if rep % 2 == 0
                else ((sandbox.wrap, boxed_w), (None, plain_w))
            ):
                t = time.perf_counter()
                with LocalExecutor(1, wrap=wrap) as ex:
                    ex.start()
                    ex.inspect(TRIVIAL_FILE)
                    dest.append(time.perf_counter() - t)
        data["worker first answer"] = {"plain": C.stat(plain_w), "sandboxed": C.stat(boxed_w)}
        rows.append(
            [
                "worker: start → first answer",
                C.med(plain_w) * 1e3,
                C.med(boxed_w) * 1e3,
                (C.med(boxed_w) - C.med(plain_w)) * 1e3,
                C.med(boxed_w) / C.med(plain_w),
            ]
        )
        data["wrap() call"] = C.stat(t_wrap)
    finally:
        sandbox.close()
    print(f"\nstart-up ({reps} repetitions, medians)")
    print(C.table(rows, ["what", "plain ms", "sandboxed ms", "added ms", "ratio"]))
    print(f"Sandbox.wrap() itself (new pids cgroup + command line): {C.med(t_wrap) * 1e3:.2f} ms median")
    return data


def main() -> None:
    p = C.base_parser(__doc__.splitlines()[0])
    p.add_argument("--sequences", type=int, default=4000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--ms", type=float, default=1.0)
    p.add_argument("--no-pyc", dest="pyc", action="store_false")
    args = p.parse_args()
    problem = sb.sandbox_problem()
    if problem:
        sys.exit(f"bench_sandbox: {problem}")
    C.use_pyc_here(args.pyc)
    loops = calibrate(args.ms)
    C.header(
        "bench_sandbox: bubblewrap sandbox vs unsandboxed workers",
        f"bytecode cache: {'yes (read-only inside the sandbox)' if args.pyc else 'no'}; "
        f"process limit: {sb.process_limit_problem() or 'pids cgroup per worker'}",
    )
    home = C.scratch_home("sandbox")
    try:
        # untimed: the driver's lazy imports and the bytecode cache
        with LocalExecutor(1) as ex:
            ancho.run(
                BUSY_FILE, params={"loops": loops}, sequences=2, seed=1, executor=ex, store=EmbeddedStore(home / "warm")
            )
        seq = per_sequence(args, loops, home)
        seq["timer"] = timer_wrapper_cost(loops, args.ms)
        start = startup(args)
    finally:
        C.cleanup(home)
    print(C.load_note())
    C.write_json(args.json, {"per_sequence": seq, "startup": start, "loops": loops, "args": vars(args)})


if __name__ == "__main__":
    main()
