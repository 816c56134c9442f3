"""Workers forked from a zygote: a process of the driver's interpreter, started once with NumPy, PyArrow and the
worker's modules imported, that forks a worker whenever the driver asks.

Why: a driver with other threads alive (a Jupyter kernel always has some) must not fork itself (a fork copies
locks another thread may hold), and fresh interpreters made every run in a notebook pay their start-up again: a
1,000-sequence run took ~0.35 s instead of ~0.05, a 200,000-sequence one 2.3× as long, a 10M batch run 1.5×
(docs/benchmarks.md, "Workers in a driver with threads"). The zygote has one thread, so it may fork; it is what
``python -m ancho.executors.worker`` would be up to the worker's first message, so a worker forked from it behaves as
a fresh one (the same environment variables, working directory and modules), minus the start-up.

The protocol, on a ``SOCK_SEQPACKET`` socket pair (one message each way per worker, so the driver's lock is held
for a fork's ~1 ms only):

- driver → zygote: a pickled :class:`Request`, with two descriptors: the worker's end of its socket pair, and the
  write end of a pipe for the worker's exit status;
- zygote → driver: the worker's pid, with a pidfd for it (signals go to that process even once its pid is reused);
- zygote → status pipe: the worker's return code once it has exited (``-N`` for a signal, as :mod:`subprocess`
  reports it); no code at all if the zygote itself died, whose workers the kernel kills then (``PDEATHSIG``).

There is one zygote per interpreter and set of variables read at start-up (``PYTHON*``, BLAS thread counts,
``LD_*``...): a worker must start as ``python -m ancho.executors.worker`` with its environment would. When the
driver's end closes (it exited, or died) the zygote kills the workers it forked, as ``PDEATHSIG`` kills fresh
workers whose driver died, and exits.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
from dataclasses import dataclass

#: variables a Python process (or a library it loads) reads when it starts, so a zygote serves only workers that
#: would have started with the same values: a different value starts another zygote
_AT_START = ("PYTHON", "LD_", "GLIBC_", "MALLOC_", "OMP_", "OPENBLAS_", "MKL_", "NUMEXPR_", "GOTO", "KMP_", "ARROW_")
#: imported by the zygote before its first fork: what a worker otherwise imports itself before its first result
_PRELOAD = ("numpy", "numpy.random", "ancho.executors.worker", "ancho.chunk", "ancho.streams", "ancho.batch")
#: ... where the interpreter has them (a worker that writes chunk files needs them)
_OPTIONAL = ("pyarrow", "pyarrow.parquet", "ancho.stores.chunk_writer")
_PID = struct.Struct("q")
_CODE = struct.Struct("i")
#: how long the driver waits for a zygote to start (imports included) or to answer a request before giving up on it
START_TIMEOUT = 60.0


@dataclass(frozen=True)
class Request:
    """What a forked worker becomes: the values ``LocalExecutor`` would start a fresh worker with."""

    env: dict[str, str]
    cwd: str
    nice: int = 0
    idle: bool = False


class ZygoteGone(OSError):
    """The zygote did not answer (it failed to start, or died): workers start afresh instead."""


class ZygoteChild:
    """A worker forked by the zygote, with the part of ``subprocess.Popen``'s interface the local executor uses."""

    def __init__(self, pid: int, pidfd: int, status: int):
        self.pid = pid
        self.returncode: int | None = None
        # Open for as long as this object lives: the executor's thread waits while another cancels, so a descriptor
        # closed by one could be reused by the process for another file under the other's feet.
        self._pidfd, self._status = pidfd, status
        self._read = threading.Lock()

    def poll(self) -> int | None:
        return self._collect(0)

    def wait(self, timeout: float | None = None) -> int:
        code = self._collect(timeout)
        if code is None:
            raise subprocess.TimeoutExpired("ancho-worker", timeout or 0)
        return code

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            signal.pidfd_send_signal(self._pidfd, sig)

    def _collect(self, timeout: float | None) -> int | None:
        if self.returncode is not None:
            return self.returncode
        waiting = select.poll()  # (not select.select: a server's descriptors may number over 1,024)
        waiting.register(self._status, select.POLLIN)
        if not waiting.poll(None if timeout is None else max(0, int(timeout * 1000))):
            return None
        with self._read:
            if self.returncode is None:
                data = os.read(self._status, _CODE.size)
                # no code: the zygote died first, and the kernel killed its workers with it
                self.returncode = _CODE.unpack(data)[0] if len(data) == _CODE.size else -signal.SIGKILL
        return self.returncode

    def __del__(self) -> None:
        for fd in (self._pidfd, self._status):
            with contextlib.suppress(OSError):
                os.close(fd)


class Zygote:
    """The driver's end of one zygote process."""

    def __init__(self, python: str, env: dict[str, str]):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with theirs:
            self.process = subprocess.Popen(
                [python, "-m", "ancho.executors.zygote", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,  # (a worker's print goes to stderr; a pipe the driver's reader waits on, no)
            )
        self.sock = ours
        self.sock.settimeout(START_TIMEOUT)
        try:
            if self.sock.recv(16) != b"ready":
                raise ZygoteGone("the zygote closed its end before it was ready")
        except OSError as e:
            self.close()
            raise ZygoteGone(f"the zygote did not start: {e}") from e

    def fork(self, fd: int, request: Request) -> ZygoteChild:
        """A worker forked from the zygote, given ``fd``, its end of its socket pair."""
        status_r, status_w = os.pipe()
        try:
            socket.send_fds(self.sock, [pickle.dumps(request)], [fd, status_w])
            reply, fds, _, _ = socket.recv_fds(self.sock, _PID.size, 1)
        except OSError as e:
            os.close(status_r)
            raise ZygoteGone(f"the zygote did not fork a worker: {e}") from e
        finally:
            os.close(status_w)
        if len(reply) != _PID.size or len(fds) != 1:
            os.close(status_r)
            for got in fds:
                os.close(got)
            raise ZygoteGone("the zygote closed its end")
        return ZygoteChild(_PID.unpack(reply)[0], fds[0], status_r)

    def alive(self) -> bool:
        return self.process.poll() is None

    def close(self) -> None:
        """Let the zygote go: it kills the workers it forked and exits (a dead one's are gone already)."""
        self.sock.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=0)  # (reaped now if it is gone already; otherwise by Popen's own bookkeeping)


_zygotes: dict[tuple[str, tuple[tuple[str, str], ...]], Zygote] = {}
_failed: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
_lock = threading.Lock()


def _forget_in_child() -> None:
    """In any process forked from the driver: its zygotes are the driver's, and a copy of their sockets must not keep
    them from seeing the driver go."""
    global _lock
    _lock = threading.Lock()
    for zygote in _zygotes.values():
        zygote.sock.close()
    _zygotes.clear()


os.register_at_fork(after_in_child=_forget_in_child)


def start_worker(python: str, fd: int, request: Request) -> ZygoteChild | None:
    """Fork a worker from the zygote for ``python`` and the request's start-up variables (started if need be); None
    if no zygote can: one failed to start for these (not tried again in this process, so no run waits for it
    twice), or two died in turn. The caller then starts the worker afresh."""
    key = (python, tuple(sorted((k, v) for k, v in request.env.items() if k.startswith(_AT_START))))
    with _lock:
        for _attempt in range(2):
            if key in _failed:
                return None
            zygote = _zygotes.pop(key, None)
            if zygote is not None and not zygote.alive():
                zygote.close()
                zygote = None
            if zygote is None:
                try:
                    zygote = Zygote(python, request.env)
                except ZygoteGone:
                    _failed.add(key)
                    return None
            try:
                child = zygote.fork(fd, request)
            except ZygoteGone:
                zygote.close()
                continue
            _zygotes[key] = zygote
            return child
        _failed.add(key)  # (two zygotes in turn could not fork: this process's workers start afresh from now on)
        return None


# -- the zygote's side -------------------------------------------------------------------------------------------


def _preload() -> None:
    import gc
    import importlib

    for name in _PRELOAD:
        importlib.import_module(name)
    for name in _OPTIONAL:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    # Objects frozen now are never visited by a worker's garbage collector, so a worker does not write to (and copy)
    # every page of the zygote's heap on its first collection.
    gc.freeze()


def _become(request: Request, fd: int, start_dir: str) -> None:
    """In the forked child: the worker a fresh interpreter with ``request.env`` in ``request.cwd`` would be."""
    env = dict(request.env)
    env["ANCHO_PARENT_PID"] = str(os.getppid())  # (the zygote: the worker dies with it, and it with the driver)
    os.chdir(request.cwd)
    if sys.path and sys.path[0] == start_dir:  # ``-m`` put the zygote's working directory first, as a worker's own
        sys.path[0] = request.cwd
    from .forked import become_worker

    become_worker(fd, env, request.nice, request.idle)


def _serve(sock: socket.socket) -> None:
    children: dict[int, tuple[int, int]] = {}  # pidfd → (pid, status pipe)
    start_dir = os.getcwd()
    listening = True
    waiting = select.poll()  # (not select.select: a zygote of many workers may hold over 1,024 descriptors)
    waiting.register(sock, select.POLLIN)
    while listening or children:
        for fd, _event in waiting.poll():
            if fd in children:  # a worker exited: its code to the driver
                waiting.unregister(fd)
                pid, status = children.pop(fd)
                code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
                with contextlib.suppress(OSError):
                    os.write(status, _CODE.pack(code))
                os.close(status)
                os.close(fd)
                continue
            msg, fds, _, _ = socket.recv_fds(sock, 1 << 20, 2)
            if not msg or len(fds) != 2:  # the driver is gone (or let go): its workers go too, as PDEATHSIG does
                for got in fds:  # (a request cut short)
                    os.close(got)
                listening = False
                waiting.unregister(sock)
                for pidfd in children:
                    with contextlib.suppress(OSError):
                        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                continue
            request, (worker_fd, status) = pickle.loads(msg), fds
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    sock.close()
                    for pidfd, (_, other) in children.items():
                        os.close(pidfd)
                        os.close(other)
                    os.close(status)
                    signal.signal(signal.SIGINT, signal.default_int_handler)
                    _become(request, worker_fd, start_dir)
                    code = 0
                except SystemExit as e:
                    code = e.code if isinstance(e.code, int) else 1
                except BaseException:
                    import traceback

                    traceback.print_exc()
                finally:
                    with contextlib.suppress(Exception):
                        sys.stdout.flush()
                        sys.stderr.flush()
                    os._exit(code)
            os.close(worker_fd)
            pidfd = os.pidfd_open(pid)
            children[pidfd] = (pid, status)
            waiting.register(pidfd, select.POLLIN)
            socket.send_fds(sock, [_PID.pack(pid)], [pidfd])


def main() -> None:
    sock = socket.socket(fileno=int(sys.argv[1]))
    # Ctrl-C in a terminal reaches the whole process group: the workers take it as fresh ones would, the zygote not
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _preload()
    sock.sendall(b"ready")
    _serve(sock)


if __name__ == "__main__":
    main()
