"""Two pieces of work at once: one on a helper thread, one on the caller's.

Why: the summary's long passes over a column (its percentile selection, its moments) are NumPy calls that let go of
the GIL, and at the end of a run the workers' cores are idle; each such pass cuts the column in two and runs the
halves side by side. Buffers the work needs are best made by the caller: a helper thread's own allocations come
from its own malloc arena, which can hand out new pages again after each trim (docs/benchmarks.md, "Batch models",
tenth pass).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    import numpy as np

T = TypeVar("T")


def on_two_threads(first: Callable[[], T], second: Callable[[], T], name: str = "ancho-helper") -> tuple[T, T]:
    """``(first(), second())``, ``first`` on a helper thread named ``name``; its error is raised in the caller."""
    out: list[T | BaseException] = []

    def helper_work() -> None:
        try:
            out.append(first())
        except BaseException as exc:  # (raised again below, in the caller's thread)
            out.append(exc)

    helper = threading.Thread(target=helper_work, name=name)
    helper.start()
    try:
        mine = second()
    finally:
        helper.join()
    theirs = out[0]
    if isinstance(theirs, BaseException):
        raise theirs
    return theirs, mine


def on_halves(fn: Callable[[np.ndarray], T], values: np.ndarray, name: str, axis: int = 0) -> tuple[T, T]:
    """``fn`` of each half of ``values`` cut along ``axis`` (a column's first and last halves; a step block's first
    and last steps), the first half's on a helper thread."""
    half = values.shape[axis] // 2
    cut = (slice(None),) * axis
    return on_two_threads(
        lambda: fn(values[(*cut, slice(None, half))]), lambda: fn(values[(*cut, slice(half, None))]), name
    )
