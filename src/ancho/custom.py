"""Running a model's ``@ancho.summary`` functions.

They are user code, so they run where the model's sequences run (a worker
process, later inside its sandbox), reading the results through a *results
source*: a description of where this one run's results are (see
``Store.results_source``) rather than the store itself, so the code can
read this run and nothing else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .jsontext import MAX_DEPTH, plain
from .stats import clean

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .model import Model
    from .stores.results_sources import ResultsSource


def compute_summaries(
    cls: type[Model],
    params: dict[str, Any],
    source: ResultsSource | Mapping[str, Any],
    names: tuple[str, ...] | list[str],
) -> dict[str, Any]:
    """Each named summary over the results DataFrame; one that raises gets ``{"error": …}`` as its value.

    The results are read only if a summary uses them (see :func:`apply_summaries`).
    """
    from .stores import read_results_source

    return apply_summaries(cls(**params), lambda: read_results_source(source).to_pandas(), names)


def apply_summaries(instance, frame, names: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """Each named summary function of a model instance over ``frame`` (a copy each, so one cannot spoil the next).

    ``frame`` is the results DataFrame or a function returning it. A summary whose code never reads its
    ``results`` argument (a closed-form value to compare with) gets a stand-in that reads the results only if
    touched after all: when no summary reads them, neither the results nor pandas are loaded (on 20M sequences
    that was most of the run's time, docs/benchmarks.md "Batch models").
    """
    fresh = callable(frame)  # a frame made for this call: the last summary to read it may have it, not a copy
    cache: list = [] if fresh else [frame]

    def load():
        if not cache:
            cache.append(frame())
        return cache[0]

    out: dict[str, Any] = {}
    for i, name in enumerate(names):
        try:
            func = getattr(instance, name)
            if reads_results(func):
                # the frame itself only to the last summary of all, none runs after it to see what it did to it
                # (a study's tiny point pays this per point: one copy less, ~0.05 ms of a 50-row frame's 0.5 ms)
                results = load() if fresh and i == len(names) - 1 else load().copy()
            else:
                results = _Unread(load)
            value = clean(func(results))
            if not plain(value):  # (only plain values cross to the driver: wire.REPLY_GLOBALS)
                raise TypeError(f"it returned a {_kind(value)}; return a number, string, bool, None, list or dict")
            out[name] = value
        except Exception as exc:  # a broken summary function is reported in its slot; the others still count
            out[name] = {"error": f"{type(exc).__name__}: {exc}"}
    return out


def _kind(value: Any, depth: int = 0) -> str:
    """The type of the first value in ``value`` that is not plain (``datetime.date``, ``set``)."""
    if type(value) in (list, dict):
        if depth >= MAX_DEPTH:
            return f"list or dict nested more than {MAX_DEPTH} deep"
        inner = value.values() if isinstance(value, dict) else value
        bad = [v for v in inner if not plain(v, depth=depth + 1)]
        return _kind(bad[0], depth + 1) if bad else "dict with a key that is not a string"
    module = type(value).__module__
    return type(value).__qualname__ if module == "builtins" else f"{module}.{type(value).__qualname__}"


#: names through which code can reach its arguments without naming them
_INTROSPECTION = frozenset({"locals", "vars", "eval", "exec", "_getframe", "currentframe", "stack", "f_locals"})


def reads_results(func) -> bool:
    """False only if ``func(self, results)``'s bytecode provably never touches ``results`` (True when unsure)."""
    code = getattr(getattr(func, "__func__", func), "__code__", None)
    if code is None:
        return True
    known = _READS.get(code)
    if known is None:
        known = _READS[code] = _code_reads_results(code)
    return known


#: what :func:`reads_results` found per code object: a study's worker asks it for every point (disassembling the
#: function each time cost ~0.1 ms a point)
_READS: dict[Any, bool] = {}


def _code_reads_results(code) -> bool:
    import dis

    if code.co_argcount < 2 or _INTROSPECTION & set(code.co_names):
        return True
    name = code.co_varnames[1]
    if name in code.co_cellvars:  # captured by an inner function
        return True
    for ins in dis.get_instructions(code):
        arg = ins.argval
        if ("FAST" in ins.opname or "DEREF" in ins.opname or "CELL" in ins.opname) and (
            arg == name or (isinstance(arg, tuple) and name in arg)
        ):
            return True
    return False


class _Unread:
    """What a summary that ignores its results gets: the results DataFrame, read only if used after all."""

    def __init__(self, load):
        self._load = load

    def _frame(self):
        frame = self.__dict__.get("_copy")
        if frame is None:
            frame = self.__dict__["_copy"] = self._load().copy()
        return frame

    def __getattr__(self, attr):
        return getattr(self._frame(), attr)

    def __getitem__(self, key):
        return self._frame()[key]

    def __len__(self):
        return len(self._frame())

    def __iter__(self):
        return iter(self._frame())
