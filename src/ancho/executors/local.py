"""The local executor: worker processes on this machine.

Each worker is a child process (``python -m ancho.executors.worker``) talking over a socket pair with pickled
messages (:mod:`~ancho.executors.messages`), not a ``multiprocessing.Pool``: the same worker runs unchanged under
another interpreter (a model's own environment) or wrapped in a sandbox command, which a Pool cannot do, and a
worker that dies is seen at once (its socket closes) and replaced.

Each worker gets two chunks at a time (a study's plan asks for more), so it
never idles while the driver stores a result (benchmarks/bench_parallel.py).

How a worker starts. A fresh interpreter importing NumPy costs ~0.15 s
before its first result; forking the driver, which has NumPy imported
already, costs ~0.01 s. On a 4,000 × 1 ms run that difference was the whole
gap to a forked ``multiprocessing.Pool`` (1.07× → see docs/benchmarks.md,
"parallel"). So workers are forked when forking is safe and means the same
thing as starting the worker command: Linux, the driver's own interpreter,
no sandbox wrapper, and no other Python thread alive in the driver (a fork
copies locks that another thread may hold, the printing lock of a progress
bar for one; ``multiprocessing`` has the same caveat, which is why Python
3.14 stopped forking by default). A driver with other threads (a notebook
kernel) gets them from a zygote instead (:mod:`.zygote`: 0.33 → 0.06 s for
a 1,000-sequence run). Otherwise, and whenever ``ANCHO_WORKER_START=exec``,
they are fresh interpreters. Every way the worker runs the same loop
(``ancho.executors.worker.run``) with the same environment variables, and a
forked worker closes the driver's other workers' sockets, so a dead worker
is still seen at once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import replace
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ..chunk import ChunkResult, StoredChunk
from ..claims import misfit, summaries_misfit
from ..errors import Field, FieldError, RunCancelled, RunFailed
from . import worker_output
from .base import Chunk, ChunkLost, ChunkSource, Executor, Task
from .deadline import overdue
from .forked import ONE_BLAS_THREAD, Fork, ForkedProcess, start_mode, start_process
from .messages import (
    ChunkDone,
    ChunksDone,
    Inspect,
    Inspected,
    RunChunk,
    RunChunks,
    SetTask,
    Shutdown,
    Summaries,
    SummariesDone,
    WorkerFailed,
)
from .wire import ForgedReply, receive, socket_pair

if TYPE_CHECKING:
    from ..stores.base import Store
    from ..stores.chunk_writer import ChunkFolder  # noqa: F401 - (also imported at run time where used)
    from ..stores.results_sources import ResultsSource
    from .zygote import ZygoteChild

_Reply = TypeVar("_Reply")

#: chunks queued per worker: one running, one waiting in its pipe
INFLIGHT_PER_WORKER = 2
#: BLAS/OpenMP thread pools are sized to one thread per worker unless the user says otherwise,
#: as joblib/loky do: N workers each starting N threads would oversubscribe the cores.
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")
_ANCHO_PARENT = str(Path(__file__).resolve().parents[2])


def default_workers() -> int:
    """All the cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _sandbox(wrap: Callable[[list[str]], list[str]] | None) -> Any:
    return getattr(wrap, "__self__", None)  # (a Sandbox's bound ``wrap``: its launch_env and policy)


def _depth(source: ChunkSource) -> int:
    return max(INFLIGHT_PER_WORKER, int(getattr(source, "inflight_per_worker", 0)))


class _Worker:
    def __init__(self, argv: list[str], env: dict[str, str], fork: Fork | None = None, forward: bool = False):
        """``forward``: the worker's stderr goes through :mod:`.worker_output` (a wrapped worker's: model code
        must not write the driver's log), else it is the driver's own."""
        parent, child = socket_pair()
        if fork is not None:  # (a worker forked from the driver closes the driver's end of its own socket too)
            fork = replace(fork, close=(parent.fileno(), *fork.close))
        self.proc: subprocess.Popen[bytes] | ForkedProcess | ZygoteChild = start_process(
            argv, child.fileno(), env, fork, forward
        )
        stderr = getattr(self.proc, "stderr", None)
        self.output = None if stderr is None else worker_output.forward(stderr, self.proc.pid)
        child.close()
        self.conn = Connection(parent.detach())
        self.inflight: deque[Chunk] = deque()
        self.task: Task | None = None
        self.since = 0.0  # when its last reply came, or its first request went to it idle (time.monotonic)

    def send(self, msg: object) -> None:
        self.conn.send(msg)

    def kill(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGKILL)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover
            pass
        self.conn.close()
        if self.output is not None:  # its last lines (a crash's traceback) forwarded before the executor closes
            self.output.join(1)

    def exit_reason(self) -> str:
        code: int | None
        try:
            code = self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.kill()
            code = self.proc.returncode
        if code is not None and code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = str(-code)
            return f"worker process {self.proc.pid} was killed by {name}"
        return f"worker process {self.proc.pid} exited with code {code}"


def _clear_partial(w: _Worker) -> None:
    """Remove the chunk file a dead (or killed) worker left half-written in its run's folder, if it wrote there."""
    from ..stores.chunk_writer import ChunkFolder

    sink = w.task.sink if w.task is not None else None
    if isinstance(sink, ChunkFolder):
        sink.clear_partial(w.proc.pid)


def _failed(msg: object) -> Exception:
    """The error to raise for a worker's reply that is not the one asked for (a :class:`WorkerFailed`)."""
    if isinstance(msg, WorkerFailed):
        return msg.exception()
    return RunFailed(f"a worker answered with {type(msg).__name__}, which this driver does not expect")


class LocalExecutor(Executor):
    """Runs chunks in ``workers`` child processes (default: one per core).

    ``python`` runs the workers (a model environment's interpreter), and
    ``wrap`` turns the worker command line into a sandboxed one.
    """

    mixed_tasks = True
    #: and a study's points' chunks are written by the workers too, where :meth:`results_sink` says they can
    mixed_sinks = True

    def __init__(
        self,
        workers: int | None = None,
        python: str | None = None,
        wrap: Callable[[list[str]], list[str]] | None = None,
        env: dict[str, str] | None = None,
        nice: int = 0,
        results: Callable[[ResultsSource], ResultsSource] | None = None,
        idle: bool = False,
        writes: str = "auto",
    ):
        if writes not in ("auto", "driver"):
            raise ValueError(f"writes must be 'auto' or 'driver', got {writes!r}")
        if workers is not None and (not isinstance(workers, int) or isinstance(workers, bool) or workers < 1):
            raise FieldError(Field.WORKERS, f"{{WORKERS}} must be a whole number ≥ 1, got {workers!r}")
        self.workers = workers or default_workers()
        self.python = python or sys.executable
        self.wrap = wrap
        self.extra_env = dict(env or {})
        #: scheduling niceness of the workers: a server gives them 10 so its API stays responsive
        #: while runs use every core (measured in benchmarks/bench_server.py)
        self.nice = nice
        #: run the workers under Linux's SCHED_IDLE policy: they get a core only when nothing else wants it, and a
        #: request's thread preempts them at once (a server's choice; see ``worker_idle`` in docs/server.md)
        self.idle = bool(idle) and hasattr(os, "SCHED_IDLE")
        #: turns a results source into one the workers can read (a sandbox without network cannot reach Cassandra)
        self.results = results
        #: "auto": unsandboxed workers of the driver's own interpreter write an embedded store's chunk files
        #: themselves (:meth:`results_sink`); "driver": the driver writes every chunk
        self.writes = writes
        #: the most bytes one reply may hold (:func:`~.wire.receive`): a sandboxed worker's address space, which no
        #: reply it built could exceed; None (unbounded) for workers that run the user's own code unsandboxed
        policy: Any = getattr(_sandbox(wrap), "policy", None)
        self.reply_limit: int | None = getattr(policy, "address_space", None)
        timeout = getattr(policy, "sequence_timeout", None)  # (how overdue a reply may be: :meth:`_overdue`)
        self.deadline: tuple[float, float] | None = None if timeout is None else (timeout, policy.timeout_grace)
        #: ... and how long its summary functions may take, all together (:meth:`summaries`)
        self.summary_timeout: float | None = getattr(policy, "summary_timeout", None)
        self._blas_held = False  # (ONE_BLAS_THREAD, while workers are forked from here)
        self._pool: list[_Worker] = []
        self._cancelled = threading.Event()
        self._lock = threading.Lock()

    # -- processes ----------------------------------------------------------
    def _env(self) -> dict[str, str]:
        """The environment a worker's command line starts with.

        A sandbox builds its worker's environment itself, from nothing, and its
        launcher must carry nothing of ours (bubblewrap's own process, PID 1
        inside, keeps it readable at /proc/1/environ): it gets the sandbox's
        :meth:`~ancho.isolation.Sandbox.launch_env`. Any other wrapper
        gets that minimal base too, never this process's variables, plus what
        a worker needs. Unwrapped workers are this process's own kind: its
        environment.
        """
        sandboxed = getattr(_sandbox(self.wrap), "launch_env", None)
        if sandboxed is not None:
            launch: dict[str, str] = sandboxed()
            return launch
        if self.wrap is not None:
            from ..isolation import LAUNCHER_ENV

            env = dict(LAUNCHER_ENV)
        else:
            env = dict(os.environ)
        for var in _THREAD_VARS:
            env.setdefault(var, "1")
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_ANCHO_PARENT, env.get("PYTHONPATH", "")) if p)
        env["ANCHO_PARENT_PID"] = str(os.getpid())
        env.update(self.extra_env)
        return env

    def _spawn(self) -> _Worker:
        argv = [self.python, "-m", "ancho.executors.worker"]
        if self.wrap is not None:
            argv = self.wrap(argv)
        if self.nice:
            argv = ["nice", "-n", str(self.nice), *argv]
        if self.idle:
            argv = ["chrt", "--idle", "0", *argv]  # util-linux; the policy is inherited through bwrap's exec
        mode = start_mode(self.python, self.wrap)
        if mode == "exec":
            return _Worker(argv, self._env(), forward=self.wrap is not None)
        fork = Fork(mode, self.python, self.nice, self.idle)
        if mode == "fork":
            # what forked workers need, imported once here (numpy.random too: NumPy 2 loads it lazily, ~12 ms a worker)
            import numpy.random  # noqa: F401

            if self.writes == "auto":  # (they may write Parquet chunk files: ~30 ms here once, not in each)
                import pyarrow.parquet  # noqa: F401

            from .. import chunk, streams  # noqa: F401

            others = tuple(w.conn.fileno() for w in self._pool if not w.conn.closed)  # (the caller holds self._lock)
            fork = replace(fork, close=others)
            # one BLAS thread per worker, held by the driver while this executor is open: the child inherits it
            # (forked.ONE_BLAS_THREAD says why not in the child, nor only for the fork); exec'd ones read _THREAD_VARS
            if not self._blas_held and not any(v in os.environ or v in self.extra_env for v in _THREAD_VARS):
                ONE_BLAS_THREAD.hold()
                self._blas_held = True
        return _Worker(argv, self._env(), fork=fork)

    def start(self) -> LocalExecutor:
        """Start the worker processes now, so their start-up overlaps the driver's own."""
        with self._lock:
            while len(self._pool) < self.workers:
                self._pool.append(self._spawn())
        return self

    # -- work ---------------------------------------------------------------
    def results_sink(self, store: Store, run_id: str) -> ChunkFolder | None:
        """The run's chunk folder when the workers are to write their chunks there themselves, else None.

        Measured (docs/benchmarks.md, "Batch models"): one driver thread writing Parquet and receiving every
        column was most of a batch model's run. Workers write when the store is embedded (a local folder)
        and they can: not sandboxed (a sandbox sees the folder read-only) and running the driver's own
        interpreter (a model environment may lack pyarrow), and the store writes chunks as the embedded store does.
        """
        from ..stores.embedded import EmbeddedStore

        if self.writes == "driver" or self.wrap is not None or self.python != sys.executable:
            return None
        return store.writers_folder(run_id) if isinstance(store, EmbeddedStore) else None

    def map_chunks(self, task: Task, source: ChunkSource) -> Iterator[ChunkResult | StoredChunk | ChunkLost]:
        self._cancelled.clear()
        self.start()
        try:
            yield from self._loop(task, source)
        except BaseException:
            # anything unexpected (or the consumer stopping early): no chunk may keep running
            self._kill_all()
            raise

    def _loop(self, task: Task, source: ChunkSource) -> Iterator[ChunkResult | StoredChunk | ChunkLost]:
        exhausted = False
        # a source of many tiny chunks (a study's points) may ask for a deeper queue, read every round (its driver work
        # per chunk then overlaps the workers'; deeper while it writes a batch of records), and for its chunks to go
        # several to a message (RunChunks), up to half the queue: one bundle runs while the next waits in the pipe
        size = max(1, min(_depth(source) // 2, int(getattr(source, "bundle", 1))))
        while True:
            if self._cancelled.is_set():
                raise RunCancelled("the run was cancelled")
            exhausted = False
            queue = _depth(source)
            for w in list(self._pool):
                while len(w.inflight) < queue and not exhausted:
                    if not w.inflight:
                        w.since = time.monotonic()
                    requests: list[SetTask | RunChunk] = []
                    for _ in range(min(size, queue - len(w.inflight))):
                        chunk = source.next()
                        if chunk is None:
                            exhausted = True
                            break
                        w.inflight.append(chunk)
                        t = chunk.task or task  # a study's chunks carry their point's task
                        if w.task is not t:  # the worker keeps a runner per task: switching back is cheap
                            requests.append(SetTask(t))
                            w.task = t
                        requests.append(RunChunk(chunk.start, chunk.stop, chunk.summaries, chunk.keep))
                    try:
                        if size > 1 and requests:
                            w.send(RunChunks(tuple(requests)))
                        else:
                            for request in requests:
                                w.send(request)
                    except OSError:  # it died before we noticed
                        yield from self._lost(w)
                        break
                if exhausted:
                    break
            busy = [w for w in self._pool if w.inflight]
            if not busy:
                return
            ready = wait([w.conn for w in busy], timeout=0.25)
            for w in busy:
                if w.conn not in ready:
                    if (overdue := self._overdue(w)) is not None:
                        yield from self._lost(w, overdue)
                    continue
                try:
                    msg = receive(w.conn, self.reply_limit)
                except (EOFError, OSError):
                    yield from self._lost(w)
                    continue
                w.since = time.monotonic()
                for reply in msg.replies if type(msg) is ChunksDone else (msg,):
                    if type(reply) is not ChunkDone:
                        raise _failed(reply)
                    if not w.inflight:
                        raise ForgedReply("a worker answered more chunks than it was asked for; refused")
                    chunk = w.inflight.popleft()
                    problem = misfit(reply.result, chunk.start, chunk.stop, reply.custom, chunk.summaries)
                    if problem is not None:
                        raise ForgedReply(f"a worker's reply does not answer its request: {problem}; refused")
                    if chunk.task is not None:  # a study's chunk: which point it is, and what summaries it asked for
                        reply.result.chunk = chunk  # type: ignore[union-attr]
                        reply.result.custom = reply.custom  # type: ignore[union-attr]
                    yield reply.result

    def _request(self, msg: object, reply: type[_Reply], late: tuple[float, str] | None = None) -> _Reply:
        """Send one request to a worker and wait for its ``reply`` (user code, so never in this process); ``late``:
        (seconds, why) after which the worker is killed and the run fails saying why (a limit its process can't keep)."""
        self.start()
        w = self._pool[0]
        try:
            w.send(msg)
            if late is not None and not w.conn.poll(late[0]):
                self._replace(w)
                raise RunFailed(late[1])
            answer = receive(w.conn, self.reply_limit)
        except ForgedReply:
            self._replace(w)  # (nothing more it says can be read: its connection is out of step)
            raise
        except (EOFError, OSError):
            reason = w.exit_reason()
            self._replace(w)
            if self._cancelled.is_set():
                raise RunCancelled("the run was cancelled") from None
            raise RunFailed(f"the worker running the model's code died: {reason}") from None
        if type(answer) is not reply:
            raise _failed(answer)
        return answer

    def summaries(self, task: Task, source: ResultsSource, names: tuple[str, ...]) -> dict[str, Any]:
        if self.results is not None:
            source = self.results(source)
        t, late = self.summary_timeout, None
        if t is not None:
            late = (t, f"the model's summary functions ran longer than {t:g} s (the sandbox's summary_timeout) and were "
                    "stopped; make them quicker, or raise the limit")  # fmt: skip
        values = self._request(Summaries(task, source, tuple(names)), SummariesDone, late).values
        if (problem := summaries_misfit(values, tuple(names))) is not None:
            raise ForgedReply(f"a worker's summary values do not answer their request: {problem}; refused")
        return values

    def inspect(self, ref: Any, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """The model's description, and ``params`` validated or their error (worker.inspect; ancho.descriptions)."""
        from ..descriptions import checked_inspection

        return checked_inspection(self._request(Inspect(ref, params), Inspected).info, getattr(ref, "entry", str(ref)))

    def _overdue(self, w: _Worker) -> str | None:
        """Why a sandboxed worker is killed by the driver, if it is (see :mod:`.deadline`)."""
        return None if self.deadline is None else overdue(w.inflight, w.task, w.since, self.deadline, w.proc.pid)

    def _lost(self, w: _Worker, why: str | None = None) -> Iterator[ChunkLost]:
        """A worker died (or is killed, ``why``): replace it, hand its chunks back to the engine (it decides retries)."""
        reason = why if why is not None else w.exit_reason()
        lost = list(w.inflight)
        _clear_partial(w)
        self._replace(w)
        if self._cancelled.is_set():
            raise RunCancelled("the run was cancelled")
        for chunk in lost:
            yield ChunkLost(chunk, reason)

    def _replace(self, w: _Worker) -> None:
        w.kill()
        with self._lock:
            if w in self._pool:
                self._pool.remove(w)
            if not self._cancelled.is_set():
                self._pool.append(self._spawn())

    def _kill_all(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, []
        for w in pool:
            w.kill()
            _clear_partial(w)

    def cancel(self) -> None:
        # Only signal here: the thread running map_chunks sees the workers' sockets close,
        # raises RunCancelled and cleans up, so no connection is closed under its feet.
        self._cancelled.set()
        with self._lock:
            pool = list(self._pool)
        for w in pool:
            if w.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    w.proc.send_signal(signal.SIGKILL)

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, []
        for w in pool:
            with contextlib.suppress(OSError):
                w.send(Shutdown())
        for w in pool:
            with contextlib.suppress(subprocess.TimeoutExpired):
                w.proc.wait(timeout=2)
            w.kill()
        self._let_go_of_blas()

    def _let_go_of_blas(self) -> None:
        if self._blas_held:
            self._blas_held = False
            ONE_BLAS_THREAD.release()

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self._kill_all()
            self._let_go_of_blas()
        except Exception:
            pass
