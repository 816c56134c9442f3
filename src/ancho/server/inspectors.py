"""Warm workers that read models for submissions: one kept a short while per user and model source.

Every ``POST /api/v1/runs`` finds the model and validates its parameters in
a worker, because that runs the user's code (never in the server). A fresh
sandboxed worker costs 0.5-0.9 s to start (bubblewrap, Python, NumPy, the
model's imports), which was all of a submission's latency; automated clients
submit the same model many times in a row (a parameter sweep), so the worker
that read it stays for ``keep_seconds`` and answers the next submission in
milliseconds (benchmarks/bench_server.py, docs/benchmarks.md).

A kept worker serves one user and one source folder only: a model's code
could remember what it was asked, so no user's worker ever reads another's
request. A worker that failed in any way (the model raised, a timeout killed
it) is closed, never kept. Workers are started by one long-lived thread of
this class, not by the request's: a worker dies with the thread that started
it (``PR_SET_PDEATHSIG`` is per thread, so none outlives a killed server),
and the request thread pool stops its idle threads.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from ..executors.local import LocalExecutor


class _Worker:
    def __init__(self, executor: LocalExecutor, sandbox):
        self.executor = executor
        self.sandbox = sandbox
        self.used = time.monotonic()

    def close(self) -> None:
        try:
            self.executor.close()
        finally:
            if self.sandbox is not None:
                self.sandbox.close()


class Inspectors:
    """Idle model-reading workers by (user, source folder), at most ``size``, each closed after ``keep_seconds`` idle.

    ``setup(root)`` gives the LocalExecutor options and sandbox (or None) for a model in ``root``.
    """

    def __init__(self, setup: Callable[[Path], tuple[dict, object]], keep_seconds: float = 60.0, size: int = 4):
        self.setup = setup
        self.keep_seconds = keep_seconds
        self.size = size
        self._idle: OrderedDict[tuple[str, str], _Worker] = OrderedDict()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._reaper: threading.Thread | None = None
        self._starter = ThreadPoolExecutor(
            1, thread_name_prefix="ancho-inspectors-start"
        )  # its thread lives as long as this

    @contextmanager
    def worker(self, user: str, root: Path) -> Iterator[LocalExecutor]:
        """A one-worker LocalExecutor for ``user``'s model in ``root``: a kept one, else a new one; kept after if it did not fail."""
        key = (user, str(root))
        with self._lock:
            kept = self._idle.pop(key, None)  # taken: a concurrent request for the same model starts its own
        if kept is None:
            options, sandbox = self.setup(root)
            kept = _Worker(LocalExecutor(1, **options), sandbox)
            try:
                self._starter.submit(kept.executor.start).result()
            except BaseException:
                kept.close()
                raise
        try:
            yield kept.executor
        except BaseException:
            kept.close()
            raise
        self._keep(key, kept)

    def _keep(self, key: tuple[str, str], worker: _Worker) -> None:
        if self.keep_seconds <= 0 or self._stop.is_set():
            worker.close()
            return
        worker.used = time.monotonic()
        closing = []
        with self._lock:
            if key in self._idle:
                closing.append(self._idle.pop(key))
            self._idle[key] = worker
            while len(self._idle) > self.size:
                closing.append(self._idle.popitem(last=False)[1])
        for w in closing:
            w.close()
        self._start_reaper()

    def _start_reaper(self) -> None:
        with self._lock:
            if self._reaper is None:
                self._reaper = threading.Thread(target=self._reap_loop, name="ancho-inspectors", daemon=True)
                self._reaper.start()

    def _reap_loop(self) -> None:
        while not self._stop.wait(min(5.0, max(self.keep_seconds / 2, 0.05))):
            self.reap()

    def reap(self) -> None:
        """Close the workers idle for ``keep_seconds`` or more."""
        now = time.monotonic()
        with self._lock:
            old = [k for k, w in self._idle.items() if now - w.used >= self.keep_seconds]
            closing = [self._idle.pop(k) for k in old]
        for w in closing:
            w.close()

    def idle(self) -> int:
        return len(self._idle)

    def close(self) -> None:
        self._stop.set()
        self._starter.shutdown(wait=False)
        with self._lock:
            closing, self._idle = list(self._idle.values()), OrderedDict()
        for w in closing:
            w.close()
