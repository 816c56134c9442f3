"""How a local worker's process starts: forked from the driver when that is allowed, else forked from a zygote
(:mod:`.zygote`) or started afresh; and the process object for a worker forked from the driver.

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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from .zygote import ZygoteChild


def start_mode(python: str, wrap: Callable[[list[str]], list[str]] | None) -> Literal["fork", "zygote", "exec"]:
    """How a worker for ``python``, wrapped by ``wrap``, starts: ``"fork"`` (from this process), ``"zygote"`` (from
    :mod:`.zygote`, when other threads are alive here) or ``"exec"`` (see :mod:`.local`'s docstring)."""
    how = os.environ.get("ANCHO_WORKER_START", "auto")
    if how == "exec" or wrap is not None or python != sys.executable or not sys.platform.startswith("linux"):
        return "exec"
    if how != "zygote" and threading.active_count() == 1:
        return "fork"
    return "zygote" if hasattr(os, "pidfd_open") else "exec"  # (pidfds: Linux 5.3 and Python 3.9 on)


@dataclass(frozen=True)
class Fork:
    """A worker to fork rather than start: from this process (``mode`` "fork"), closing its descriptors ``close`` in
    the child, or from the zygote of interpreter ``python`` ("zygote"); at niceness ``nice``, under SCHED_IDLE if
    ``idle``."""

    mode: Literal["fork", "zygote"]
    python: str
    nice: int = 0
    idle: bool = False
    close: tuple[int, ...] = ()


def start_process(
    argv: list[str], fd: int, env: dict[str, str], fork: Fork | None, forward: bool
) -> subprocess.Popen[bytes] | ForkedProcess | ZygoteChild:
    """The process of a worker given ``fd``, its end of its socket pair: forked as ``fork`` says, else the command
    ``argv`` with that descriptor (also when no zygote would start); ``forward``: its stderr is a pipe
    (:mod:`.worker_output`)."""
    if fork is not None and fork.mode == "fork":
        return ForkedProcess(fd, env, close=list(fork.close), nice=fork.nice, idle=fork.idle)
    if fork is not None:
        from . import zygote

        request = zygote.Request(env=env, cwd=os.getcwd(), nice=fork.nice, idle=fork.idle)
        child = zygote.start_worker(fork.python, fd, request)
        if child is not None:
            return child
    return subprocess.Popen(
        argv + [str(fd)],
        pass_fds=(fd,),
        env=env,
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE if forward else None,
    )


class _OneBlasThread:
    """BLAS limited to one thread in this process while any local executor that forks workers is open (the workers
    inherit the limit), the original limits restored when the last closes.

    Why held, not set for the moment of each fork as before: OpenBLAS shuts its thread pool down before every fork
    (an atfork handler of its own), and restoring the limit right after the fork made it start a thread again, which
    spins ~0.1 CPU s before it sleeps. In a 10M-sequence batch run that was ~10% of all the CPU, taken from the
    workers (``perf``: ``blas_thread_server`` in a new driver thread each run; docs/benchmarks.md, "Batch models",
    ninth pass). Held, the pool is rebuilt once, when the executor closes. Set in the child instead, OpenBLAS
    rebuilds its pool there, with the same spin in every worker (the third pass)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.holders = 0
        self.limits: Any = None

    def hold(self) -> None:
        import threadpoolctl

        with self.lock:
            if self.holders == 0:
                self.limits = threadpoolctl.threadpool_limits(1)
            self.holders += 1

    def release(self) -> None:
        with self.lock:
            self.holders = max(0, self.holders - 1)
            if self.holders == 0 and self.limits is not None:
                limits, self.limits = self.limits, None
                limits.restore_original_limits()


#: the process's one-thread BLAS limit, held by each open local executor that forks (``LocalExecutor._spawn``)
ONE_BLAS_THREAD = _OneBlasThread()


def _forked_worker(fd: int, env: dict[str, str], close: list[int], nice: int, idle: bool = False) -> None:
    """The body of a worker forked from the driver."""
    for other in close:  # the driver's ends of the other workers' sockets
        with contextlib.suppress(OSError):
            os.close(other)
    become_worker(fd, env, nice, idle)


def become_worker(fd: int, env: dict[str, str], nice: int, idle: bool) -> None:
    """In a forked process: become what ``python -m ancho.executors.worker FD`` with ``env`` would be."""
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
