"""Two pieces of work at once: one on a helper thread, one on the caller's.

Why: the summary's long passes over a column (its percentile selection, its moments) are NumPy calls that let go of
the GIL, and at the end of a run the workers' cores are idle; each such pass cuts the column in two and runs the
halves side by side. Buffers the work needs are best made by the caller: a helper thread's own allocations come
from its own malloc arena, which can hand out new pages again after each trim (docs/benchmarks.md, "Batch models",
tenth pass).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
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


_END = object()


def ahead(items: Iterable[T], name: str) -> Iterator[T]:
    """``items``, each next one made on a helper thread while the caller works on the one it has.

    Why: a summary's pass over a long column reads chunk files (Arrow lets go of the GIL) and then does NumPy work on
    each; reading the next chunk beside that work hides most of the reading (a 1M × 100-step trajectory: ~1.3 s of
    its ~5.8 s summary). Holds one item more than the caller. ``items`` is advanced on the helper thread, one step at
    a time, never at once from two threads; its errors are raised in the caller."""
    source = iter(items)
    with ThreadPoolExecutor(1, thread_name_prefix=name) as pool:
        coming = pool.submit(next, source, _END)
        while (item := coming.result()) is not _END:
            coming = pool.submit(next, source, _END)
            yield item  # type: ignore[misc]
