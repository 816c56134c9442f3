"""Shared helpers for the benchmarks: scratch folders, environment, timing statistics, tables.

Every benchmark measures its own baseline in the same run and reports
ratios, because the machine is shared: absolute numbers drift with whatever
else runs, ratios drift much less. Repeated measurements are reported as
median and minimum (the minimum is the least disturbed run).

Bytecode: this development environment sets ``PYTHONDONTWRITEBYTECODE=1``
and its venv holds no ``.pyc`` files (``uv`` does not compile by default),
so every new interpreter compiles pandas, pyarrow's Python layer, typer,
rich… from source (~2 s). A ``pip install`` (compiles by default) or a
second run of a normal Python does not. Benchmarks that start processes
therefore use a scratch bytecode cache (``PYTHONPYCACHEPREFIX`` under
/tmp, so nothing in the repository or the venv is written) unless told
``--no-pyc``, and say which in their header.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
MODELS = BENCH_DIR / "models"
TRIVIAL = str(MODELS / "trivial.py") + ":Trivial"
BUSY = str(MODELS / "busy.py") + ":Busy"
GAMBLER = str(REPO / "examples" / "gambler.py")
SCRATCH_ROOT = Path(os.environ.get("ANCHO_BENCH_TMP", "/tmp"))
PYCACHE = SCRATCH_ROOT / "ancho-bench-pycache"


def venv_python() -> str:
    """The interpreter running this benchmark (run them with the project's venv)."""
    return sys.executable


def ancho_cli() -> list[str]:
    """The ``ancho`` command of this interpreter's environment."""
    exe = Path(sys.executable).with_name("ancho")
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-c", "import sys; from ancho.cli import main; sys.argv[0] = 'ancho'; main()"]


def scratch_home(tag: str) -> Path:
    """A fresh, empty ANCHO_HOME under /tmp (removed by :func:`cleanup`)."""
    SCRATCH_ROOT.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"ancho-bench-{tag}-", dir=SCRATCH_ROOT))


def cleanup(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def child_env(home: Path | None = None, pyc: bool = True) -> dict[str, str]:
    """Environment for processes a benchmark starts: scratch ANCHO_HOME, and a scratch bytecode cache unless ``pyc`` is False."""
    env = dict(os.environ)
    if home is not None:
        env["ANCHO_HOME"] = str(home)
    if pyc:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    else:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env.pop("PYTHONPYCACHEPREFIX", None)
    return env


def use_pyc_here(pyc: bool = True) -> None:
    """Make processes started by this one (ancho's workers) use the same bytecode setting."""
    os.environ.update(
        {k: v for k, v in child_env(pyc=pyc).items() if k in ("PYTHONPYCACHEPREFIX", "PYTHONDONTWRITEBYTECODE")}
    )
    if pyc:
        os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    else:
        os.environ.pop("PYTHONPYCACHEPREFIX", None)


def ancho(home: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 3600) -> str:
    """Run the ``ancho`` command with ``home`` as its ANCHO_HOME (or ``env``); its output. Exits on failure."""
    done = subprocess.run(
        [*ancho_cli(), *args], env=env or child_env(home), capture_output=True, text=True, timeout=timeout
    )
    if done.returncode != 0:
        sys.exit(f"ancho {' '.join(args)} failed: {done.stderr}")
    return done.stdout


@contextlib.contextmanager
def scratch(tag: str) -> Iterator[Path]:
    """A fresh, empty ANCHO_HOME under /tmp for the block (:func:`scratch_home`), removed after it."""
    home = scratch_home(tag)
    try:
        yield home
    finally:
        cleanup(home)


def base_parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--json", metavar="FILE", help="also write the measurements as JSON to FILE")
    return p


def machine() -> dict:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "nproc": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    try:
        import numpy

        info["numpy"] = numpy.__version__
    except ImportError:
        pass
    try:
        import pyarrow

        info["pyarrow"] = pyarrow.__version__
    except ImportError:
        pass
    try:
        import ancho

        info["ancho"] = f"{ancho.__version__} ({Path(ancho.__file__).parent})"
    except ImportError:
        pass
    try:
        rev = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5
        )
        info["commit"] = rev.stdout.strip()
    except Exception:
        pass
    return info


def header(title: str, extra: str = "") -> None:
    m = machine()
    load = os.getloadavg()
    print(f"== {title} ==")
    print(
        f"machine: {m['nproc']} CPUs ({m['cpu']}), Python {m['python']}, NumPy {m.get('numpy')}, pyarrow {m.get('pyarrow')}"
    )
    print(f"ancho: {m.get('ancho')}  commit {m.get('commit', '?')}")
    print(
        f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (other work on the machine disturbs absolute times)"
    )
    if extra:
        print(extra)
    print()


def load_note() -> str:
    load = os.getloadavg()
    return f"load average at end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"


def med(xs) -> float:
    return statistics.median(xs)


def stat(xs) -> dict:
    xs = list(xs)
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "n": len(xs), "all": xs}


def table(rows: list[list], headers: list[str]) -> str:
    cells = [[str(h) for h in headers]] + [[c if isinstance(c, str) else fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for k, r in enumerate(cells):
        lines.append("  ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r)))
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def fmt(x) -> str:
    if x is None:
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        if x == 0:
            return "0"
        a = abs(x)
        if a >= 1000:
            return f"{x:,.0f}"
        if a >= 100:
            return f"{x:.1f}"
        if a >= 1:
            return f"{x:.2f}"
        return f"{x:.3f}"
    return str(x)


def write_json(path: str | None, data: dict) -> None:
    if path:
        data = {"machine": machine(), "time": time.strftime("%Y-%m-%d %H:%M:%S"), **data}
        Path(path).write_text(json.dumps(data, indent=2, default=str) + "\n")
        print(f"\nwrote {path}")


def goal_line(name: str, value: float, goal: float, unit: str = "", lower_is_better: bool = True) -> str:
    met = value <= goal if lower_is_better else value >= goal
    cmp = "≤" if lower_is_better else "≥"
    return f"goal {name} {cmp} {fmt(goal)}{unit}: measured {fmt(value)}{unit} → {'MET' if met else 'NOT MET'}"


def calibrate_spin(ms: float) -> tuple[int, float]:
    """``loops`` such that ``models/busy.spin(loops)`` takes about ``ms`` milliseconds here, and the ms it takes.

    Median of 15 timings of a 20,000-loop probe (shared by the parallel, sandbox and Spark benchmarks).
    """
    if str(MODELS) not in sys.path:
        sys.path.insert(0, str(MODELS))
    from busy import spin

    probe = 20_000
    spin(probe)
    times = []
    for _ in range(15):
        t = time.perf_counter()
        spin(probe)
        times.append(time.perf_counter() - t)
    per_loop = med(times) / probe
    loops = max(1000, int(ms / 1000 / per_loop))
    return loops, per_loop * loops * 1000
