"""The few most recently used things a process keeps (stream factories by seed, prepared models by task), each made
when it is missing.

Why one helper: a local worker's runners, a Spark task's runners and a worker's stream factories were each the
same loop over an ``OrderedDict`` (take it out, make it if absent, put it back last, drop the oldest past a bound).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


def kept(cache: OrderedDict[K, V], key: K, make: Callable[[], V], most: int) -> V:
    """``cache[key]``, made by ``make()`` when missing, now the most recently used; past ``most`` entries the least
    recently used are dropped."""
    value = cache.pop(key, None)
    if value is None:
        value = make()
    cache[key] = value
    while len(cache) > most:
        cache.popitem(last=False)
    return value
