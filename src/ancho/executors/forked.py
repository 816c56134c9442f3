"""Workers forked from the driver instead of started afresh: when that is allowed, and the process object for one.

Why: a fresh interpreter importing NumPy costs ~0.15 s before its first result, a fork of the driver ~0.01 s (see
:mod:`.local`'s docstring for when forking means the same thing as starting the worker command).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from collections.abc import Callable


def fork_allowed(python: str, wrap: Callable[[list[str]], list[str]] | None) -> bool:
    """Whether a worker may be forked from this process instead of started afresh (see :mod:`.local`'s docstring)."""
    how = os.environ.get("ANCHO_WORKER_START", "auto")
    if how == "exec" or wrap is not None or python != sys.executable or not sys.platform.startswith("linux"):
        return False
    return threading.active_count() == 1


def _forked_worker(fd: int, env: dict[str, str], close: list[int], nice: int, idle: bool = False) -> None:
    """The body of a forked worker: become what ``python -m ancho.executors.worker FD`` would be."""
    for other in close:  # the driver's ends of the other workers' sockets
        with contextlib.suppress(OSError):
            os.close(other)
    os.environ.clear()
    os.environ.update(env)
    if nice:
        os.nice(nice)
    if idle:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    from .worker import run

    run(fd)


class ForkedProcess:
    """A forked worker with the part of ``subprocess.Popen``'s interface that the local executor's worker uses."""

    def __init__(self, fd: int, env: dict[str, str], close: list[int], nice: int, idle: bool = False):
        import gc
        import multiprocessing

        self._process = multiprocessing.get_context("fork").Process(
            target=_forked_worker, args=(fd, env, close, nice, idle), daemon=True, name="ancho-worker"
        )
        # Objects frozen before the fork are never visited by the child's garbage collector, so the child
        # does not write to (and copy) every page of the driver's heap on its first collection.
        gc.freeze()
        try:
            self._process.start()
        finally:
            gc.unfreeze()
        assert self._process.pid is not None  # started
        self.pid: int = self._process.pid

    @property
    def returncode(self) -> int | None:
        return self._process.exitcode

    def poll(self) -> int | None:
        return self._process.exitcode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        if self._process.exitcode is None:
            raise subprocess.TimeoutExpired("ancho-worker", timeout or 0)
        return self._process.exitcode

    def send_signal(self, sig: int) -> None:
        if self._process.exitcode is None:
            os.kill(self.pid, sig)
