"""Packages import only downward: a floor uses what is below it, never what is above (DESIGN.md §3, docs/architecture.md).

Read from the source (``ast``), so a lazy import inside a function counts
too: it is the same dependency, only later. Modules on one floor may use
each other.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .server.test_layering import PACKAGE, imported

#: bottom to top. ``stats`` is pure arithmetic over columns (it imports only ``expressions``, ``percentiles`` and
#: ``moments``) that workers and Spark tasks use for their summaries, so it sits on the ground floor; ``custom``
#: runs a model's @summary functions where its sequences run (a worker), beside the executors.
FLOORS: list[tuple[str, frozenset[str]]] = [
    (
        "the ground floor",
        frozenset(
            {
                "errors",
                "files",
                "home",
                "sqlite",
                "present",
                "tree",
                "model",
                "descriptions",
                "streams",
                "batch",
                "chunk",
                "claims",
                "columns",
                "expressions",
                "stats",
                "percentiles",
                "moments",
                "streamed",
                "threads",
                "trajectories",
                "loading",
                "pysource",
                "recent",
                "jsontext",
                "syscall_filter",
            }
        ),
    ),
    ("model code: fetching it, isolating it", frozenset({"sources", "isolation"})),
    ("persistence and execution", frozenset({"stores", "executors", "custom"})),
    ("the engine", frozenset({"engine", "inputs", "kinds", "exports", "plotdata", "writes"})),
    ("studies", frozenset({"studies"})),
    ("the Python API and client", frozenset({"api", "client"})),
    ("front ends", frozenset({"cli", "server", "web", "reports"})),
]
FLOOR = {unit: level for level, (_, units) in enumerate(FLOORS) for unit in units}
#: the package itself: ``__version__`` lives there, and importing ``ancho`` loads only errors and model
#: (``ancho.run`` loads the API lazily, on first use)
ROOT = ("ancho", "ancho.__version__")


def unit(module: str) -> str:
    """``ancho.executors.spark.tasks`` -> ``executors``; ``ancho.engine`` -> ``engine``."""
    return module.split(".")[1]


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name, with its path."""
    return {
        ".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"): p
        for p in sorted(PACKAGE.rglob("*.py"))
    }


def upward(path: Path) -> list[str]:
    """The imports of one module that reach a floor above its own, as 'name (floor)'."""
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if module.count(".") == 0 or module == "ancho.__init__":
        return []
    own = FLOOR[unit(module)]
    return sorted(
        f"{name} ({FLOORS[FLOOR[unit(name)]][0]})"
        for name in imported(path)
        if name not in ROOT and unit(name) in FLOOR and FLOOR[unit(name)] > own
    )


def test_every_module_has_a_floor():
    """A new top-level module or package is placed in FLOORS, so the check below covers it."""
    units = {unit(m) for m in modules() if m != "ancho"}
    assert sorted(units - FLOOR.keys()) == [], (
        "add these to FLOORS in tests/test_layering.py, on the floor of what they import"
    )


@pytest.mark.parametrize("level", range(len(FLOORS)), ids=[name for name, _ in FLOORS])
def test_no_module_imports_a_higher_floor(level):
    offenders = {
        module: found
        for module, path in modules().items()
        if module != "ancho" and FLOOR.get(unit(module)) == level and (found := upward(path))
    }
    assert offenders == {}


#: modules stay under this many lines (CONTRIBUTING.md)
MAX_LINES = 500


def test_every_module_is_under_max_lines():
    """A module reaching the limit is split by what it holds (spark/driver.py reached 500 without anyone seeing)."""
    long = {m: n for m, p in modules().items() if (n := len(p.read_text().splitlines())) >= MAX_LINES}
    assert long == {}


def test_the_check_sees_imports():
    """The check would notice an offence: it sees module-level and function-level imports, relative ones resolved."""
    assert "ancho.engine" in imported(PACKAGE / "api.py")  # module level
    assert "ancho.isolation" in imported(PACKAGE / "executors" / "local.py")  # inside a method
    assert "ancho.isolation" in imported(PACKAGE / "executors" / "spark" / "isolation.py")  # three dots up
    assert FLOOR["api"] > FLOOR["engine"] > FLOOR["executors"] > FLOOR["isolation"] > FLOOR["model"]


def test_model_code_is_fetched_below_the_executors_and_isolated_beside_the_fetchers():
    """The moves this layout rests on: sources only fetch, isolation holds the sandbox and environments."""
    assert not (PACKAGE / "sources" / "sandbox.py").exists() and not (PACKAGE / "sources" / "prepare.py").exists()
    assert (PACKAGE / "isolation" / "sandbox.py").exists() and (PACKAGE / "executors" / "prepare.py").exists()
    assert not any(unit(n) == "executors" for p in (PACKAGE / "sources").glob("*.py") for n in imported(p))


def test_the_check_flags_an_upward_import(monkeypatch):
    """Were isolation a front end, the local executor's lazy import of it would be an offence."""
    monkeypatch.setitem(FLOOR, "isolation", len(FLOORS) - 1)
    assert "ancho.isolation (front ends)" in upward(PACKAGE / "executors" / "local.py")
