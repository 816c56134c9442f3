"""Rendered reports of finished runs, kept in memory: a finished run never changes, so neither does its report.

A report costs about a second plus a quarter of a second per output to
render; the web site's links, a reader's reloads and API clients ask for the
same one again and again. Only reports of runs in a final status are kept
(the key includes the status, the finish time and the sequences done, so a
resumed or re-summarised run is rendered afresh); at most :data:`MAX_BYTES`
in all, least recently used first out. Two requests for the same report at
once render it once: the second waits for the first.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable

#: memory the cache may hold (a 100-output report is ~5 MB)
MAX_BYTES = 64 * 1024 * 1024


class RenderedCache:
    def __init__(self, max_bytes: int = MAX_BYTES):
        self.max_bytes = max_bytes
        self._items: OrderedDict[Hashable, bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()
        self._rendering: dict[Hashable, threading.Lock] = {}

    def get(self, key: Hashable, render: Callable[[], bytes]) -> bytes:
        """The bytes kept for ``key``, or ``render()``'s (then kept)."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            pending = self._rendering.setdefault(key, threading.Lock())
        with pending:
            with self._lock:
                if key in self._items:  # rendered by the request we waited for
                    self._items.move_to_end(key)
                    return self._items[key]
            try:
                data = render()
                with self._lock:
                    if len(data) <= self.max_bytes and key not in self._items:
                        self._items[key] = data
                        self._size += len(data)
                        while self._size > self.max_bytes:
                            _, old = self._items.popitem(last=False)
                            self._size -= len(old)
            finally:
                with self._lock:
                    self._rendering.pop(key, None)
            return data


#: the process's cache (the server's report endpoints)
reports = RenderedCache()


def run_key(record, *extra: Hashable) -> Hashable | None:
    """The cache key of a run's report, or None when the run may still change (do not cache)."""
    if not record.final:
        return None
    return (record.id, record.status, record.finished, record.done, record.failures, *extra)


def study_key(record, *extra: Hashable) -> Hashable | None:
    """The cache key of a study's report, or None while the study may still change (do not cache).

    A finished study's points are final runs, so (id, status, finish time, sequences done) pins its report.
    """
    if not record.final:
        return None
    return ("study", record.id, record.status, record.finished, record.done, *extra)
