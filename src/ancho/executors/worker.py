"""A worker process: ``python -m ancho.executors.worker FD``.

It reads tasks and chunk requests from the connection on file descriptor FD
and answers with :class:`~ancho.chunk.ChunkResult` batches. It imports only
NumPy, the model and what the model imports, so it starts fast, and it can
run under another Python (a model's own environment) or inside a sandbox:
all it needs from the parent is that descriptor.

The messages, in and out, are the typed ones of :mod:`ancho.executors.messages`;
replies go through an :class:`~ancho.executors.outbox.Outbox` (after their chunk files are committed; arrays beside the pickle).
"""

from __future__ import annotations

import os
import signal
import sys
from collections import OrderedDict
from types import FrameType
from typing import TYPE_CHECKING, Any

from .. import syscall_filter
from ..errors import AnchoError, StoreError
from ..recent import kept
from .messages import (
    ChunkDone,
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
from .outbox import Committing, Outbox

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from ..chunk import ChunkResult
    from ..loading import ModelRef
    from ..model import Model


#: runners (model instances after ``setup``) a worker keeps, the least recently used dropped first
RUNNERS_KEPT = 256


def _die_with_parent(parent: int) -> None:
    """Ask Linux to SIGKILL us when the parent dies, so no worker outlives a killed driver."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except Exception:
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def serve(fd: int) -> None:
    from multiprocessing.connection import Connection

    conn = Connection(fd)
    try:
        _loop(conn)
    except (BrokenPipeError, ConnectionResetError):
        return  # the driver stopped listening (it cancelled or failed the run, or died): nothing left to say


def _loop(conn: Connection) -> None:
    outbox = Outbox(conn)  # (replies whose chunk files are still committing leave after their commit, in order)
    answer = _Answers()
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if isinstance(msg, Shutdown):
            outbox.close()
            return
        if isinstance(msg, RunChunks):  # one reply for them all, each request's answer in order
            replies = (answer(request) for request in msg.requests)  # (None: a task set)
            outbox.put([r for r in replies if isinstance(r, (ChunkDone, WorkerFailed, Committing))])
            continue
        reply = answer(msg)
        if reply is not None:
            outbox.put(reply)


class _Answers:
    """What a worker answers to each request (None: a :class:`SetTask` that went well), its errors included.

    It keeps the current task and its runner, and a runner per task (a study interleaves its points' tasks).
    """

    def __init__(self) -> None:
        self.runner: Any = None
        self.task: Any = None
        self.runners: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self.classes: dict[Any, Any] = {}  # model reference -> its class: a study's points share one (0.1 ms each)

    def __call__(self, msg: object) -> object | None:
        try:
            return self._answer(msg)
        except AnchoError as exc:
            return WorkerFailed.of(exc)
        except Exception as exc:
            import traceback

            tb = "".join(traceback.format_exception(exc)[-3:]).strip().splitlines()[-1]
            text = f"{type(exc).__name__}: {exc}" if str(exc) else tb
            if isinstance(msg, SetTask):
                self.runner = self.task = None  # (no chunk runs on the task before it)
                return WorkerFailed(None, "setup", f"model setup failed in a worker: {text}")
            return WorkerFailed(None, "worker", text)

    def _answer(self, msg: object) -> object | None:
        if isinstance(msg, RunChunk):
            runner, task = self.runner, self.task
            if runner is None or task is None:
                raise RuntimeError("chunk before task")
            result = runner.run(msg.start, msg.stop)
            custom = _chunk_summaries(type(runner.model), task.params, result, msg.summaries) if msg.summaries else None
            return _reply(task, result, msg.keep, custom)
        if isinstance(msg, SetTask):
            self.runner, self.task = None, msg.task
            task = msg.task
            key = (task.run_id, task.seed, repr(task.ref), repr(task.params), repr(task.env))
            os.environ.update(task.env)
            self.runner = kept(self.runners, key, lambda: self._prepared(task), RUNNERS_KEPT)
            return None
        if isinstance(msg, Summaries):
            from ..custom import compute_summaries

            return SummariesDone(compute_summaries(msg.task.ref.resolve(), msg.task.params, msg.source, msg.names))
        if isinstance(msg, Inspect):
            return Inspected(_python(inspect(msg.target, msg.params)))
        raise RuntimeError(f"unknown request {type(msg).__name__}")

    def _prepared(self, task: Any) -> Any:
        """A new runner of ``task`` (its model class resolved once per reference)."""
        from ..chunk import ChunkRunner

        cls = self.classes.get(task.ref)
        if cls is None:
            cls = self.classes[task.ref] = task.ref.resolve()
        runner = ChunkRunner(cls, task.params, task.seed)
        limit_sequence_time(runner.model)
        return runner


def _reply(task: Any, result: ChunkResult, keep: bool, custom: dict[str, Any] | None) -> ChunkDone | Committing:
    """The reply to a chunk: with a chunk folder as the task's sink, its file written here (committed by the
    outbox, see ``outbox.py``) and what the driver counts (``keep``: with the chunk's columns too); else the chunk.

    A chunk with failures goes back whole: the driver records its failures with its file (docs/benchmarks.md,
    "Batch models", measured why workers write)."""
    if task is None or task.sink is None or result.failures:  # (so a worker that never writes imports no pyarrow)
        return ChunkDone(result, custom)
    from ..stores.chunk_writer import ChunkFolder

    if not isinstance(task.sink, ChunkFolder):
        return ChunkDone(result, custom)
    from ..chunk import StoredChunk

    if not keep:  # (a study's tiny chunks are no batch model's: they keep glibc's own policy)
        _hold_freed_memory()
    try:
        commit = task.sink.begin(result)
    except StoreError:  # (a full disk): the driver stores it instead, and meets the error for this chunk's run alone
        return ChunkDone(result, custom)
    # (its seconds: the compute time, as a ChunkResult's)
    stored = StoredChunk.of(result, task.tally, first=task.gather and not keep, keep=keep)
    return Committing(ChunkDone(stored, custom), commit, ChunkDone(result, custom))


#: bytes of freed memory a writing worker keeps for its next chunk instead of giving it back to the kernel
HELD_FREE = 64 << 20
_held = False


def _hold_freed_memory() -> None:
    """Keep a writing worker's freed chunk buffers (up to :data:`HELD_FREE`) for the next chunk.

    Why: each chunk's columns and Parquet buffers (8 MB a million rows and output) were fresh ``mmap``s that the
    kernel zeroed page by page and took back when freed; on a batch model's 10M sequences that was ~20,000 page
    faults per worker, a third of its system time. With glibc told to serve blocks up to 32 MB from its heap and to
    trim the heap only past 64 MB free, the next chunk reuses the pages: half the faults (docs/benchmarks.md,
    "Batch models", third pass). Bounded: at most ``HELD_FREE`` bytes more than the worker's peak. Only for workers
    that write their chunks (never sandboxed, so no address-space limit is tightened by it); glibc only.
    """
    global _held
    if _held:
        return
    _held = True
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
        libc.mallopt(M_MMAP_THRESHOLD, 32 << 20)  # (glibc's largest)
        libc.mallopt(M_TRIM_THRESHOLD, HELD_FREE)
    except (OSError, AttributeError):  # not glibc: its allocator's own policy stands
        pass


def _chunk_summaries(cls: Any, params: dict[str, Any], result: Any, names: tuple[str, ...]) -> dict[str, Any]:
    """The summary functions ``names`` of a fresh ``cls(**params)`` over one chunk's results: the frame a store would
    give back for them.

    A study's tiny point is one chunk: its summaries are computed here, where its columns are, instead of
    a round trip per point that reads its results back from the store. ``cls`` is the class the chunk's runner
    already holds (resolving the model's reference again cost ~0.1 ms a point).
    """
    from ..chunk import kind_dtype, trajectory_steps
    from ..columns import to_arrow
    from ..custom import apply_summaries
    from ..stores.base import arrow_schema

    def frame() -> Any:
        kinds = result.kinds()
        if all(trajectory_steps(k) is None for k in kinds.values()):
            # numbers and bools: the same frame as Arrow's to_pandas (tested), at under half its cost on a
            # 50-row point (0.17 against 0.4 ms, paid once per point of a study). Each column copied here, the
            # frame takes them as they are: pandas' own copy=True also merges same-dtype columns into one block,
            # which no summary needs (36 against 78 µs a 50-row point, docs/benchmarks.md "Studies")
            import pandas as pd

            columns = {n: result.columns[n].astype(kind_dtype(k)) for n, k in kinds.items()}
            return pd.DataFrame({"sequence": result.sequences.astype("int64"), **columns}, copy=False)
        import pyarrow as pa

        columns = {"sequence": result.sequences, **result.columns}
        table = pa.table({name: to_arrow(col) for name, col in columns.items()})
        return table.cast(arrow_schema(kinds)).to_pandas()

    return apply_summaries(cls(**params), frame, names)


def _python(value: Any) -> Any:
    """``value`` with NumPy scalars as Python's (a model's default may be one): a reply names no NumPy global."""
    if isinstance(value, dict):
        return {k: _python(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_python(v) for v in value)
    return value.item() if hasattr(value, "item") and type(value).__module__ == "numpy" else value


def inspect(target: str | ModelRef, params: dict[str, Any] | None) -> dict[str, Any]:
    """What a server needs without importing user code itself.

    ``target`` is a model reference or a ``PATH[:file][:Class]`` string (then
    the model is found as ``ancho run`` finds it). Returns the entry found,
    the source hash, the model's description and, given ``params``, their
    validated values or the error.
    """
    from ..errors import ParameterError
    from ..loading import load_model

    if isinstance(target, str):
        loaded = load_model(target)
    else:
        from ..loading import LoadedModel

        loaded = LoadedModel.of(target.resolve(), target, "", "")
    cls = loaded.cls
    assert cls is not None  # load_model and LoadedModel.of always set it
    out: dict[str, Any] = {"entry": loaded.ref.entry, "source_hash": loaded.source_hash, "model": loaded.info}
    if params is not None:
        try:
            out["params"] = cls.recorded_params(params)
        except ParameterError as exc:
            out["error"] = str(exc)
    return out


# -- limits from the sandbox (ancho.isolation), applied before any user code runs ------------

#: seconds a sequence may run (wall clock); None: no limit
_SEQUENCE_TIMEOUT: float | None = None
#: after the TimeoutError, seconds a sequence that swallowed it may go on before the worker is stopped
_TIMEOUT_GRACE = 5.0


def apply_limits() -> None:
    """Apply ``ANCHO_LIMITS`` (JSON: ``as``, ``cpu``, ``nofile``, ``fsize`` as rlimits; ``timeout`` and ``grace`` per sequence).

    Soft and hard limits are equal (user code cannot raise them again), but
    for CPU time: SIGXCPU at the limit, SIGKILL 5 s later. No core files.
    """
    global _SEQUENCE_TIMEOUT, _TIMEOUT_GRACE
    spec = os.environ.get("ANCHO_LIMITS")
    if not spec:
        return
    import json
    import resource

    limits = json.loads(spec)

    def cap(which: int, soft: int, hard: int | None = None) -> None:
        hard = soft if hard is None else hard
        old_hard = resource.getrlimit(which)[1]
        if old_hard != resource.RLIM_INFINITY:
            hard = min(hard, old_hard)
        resource.setrlimit(which, (min(soft, hard), hard))

    for key, which in (
        ("as", resource.RLIMIT_AS),
        ("nofile", resource.RLIMIT_NOFILE),
        ("fsize", resource.RLIMIT_FSIZE),
    ):
        if limits.get(key):
            cap(which, int(limits[key]))  # past RLIMIT_FSIZE a write raises OSError(EFBIG): Python ignores SIGXFSZ
    if limits.get("cpu"):
        cap(resource.RLIMIT_CPU, int(limits["cpu"]), int(limits["cpu"]) + 5)
    cap(resource.RLIMIT_CORE, 0)
    _SEQUENCE_TIMEOUT = float(limits["timeout"]) if limits.get("timeout") else None
    _TIMEOUT_GRACE = float(limits.get("grace") or _TIMEOUT_GRACE)


#: [sequences started, sequences finished, the sequence a TimeoutError is due in, escalation step]
_SEQUENCES = [0, 0, -1, 0]
_watchdog_started = False


def limit_sequence_time(model: Model) -> None:
    """Make a ``model.sequence`` call that runs past the per-sequence limit raise TimeoutError inside it.

    For a batch model the limit applies to each ``model.sequences`` call, i.e.
    per block of ``block`` sequences (a block is the smallest unit it runs).

    The wrapper only counts sequences (~0.05 µs a call; a timer set and
    cleared per sequence costs ~1.3 µs); a watchdog thread sees a sequence
    that has run too long and sends SIGALRM to the main thread, whose
    handler raises TimeoutError in that sequence. A sequence that swallows
    it and goes on for ``grace`` seconds gets a second SIGALRM that kills
    the worker (SIGALRM), and another ``grace`` later the watchdog kills it
    outright (SIGKILL: the handler never ran). The engine then retries or
    fails the chunk. Code stuck in C holding the GIL is beyond signals and
    threads alike: the CPU-time limit stops that.
    """
    seconds, grace = _SEQUENCE_TIMEOUT, _TIMEOUT_GRACE
    if not seconds:
        return
    from ..model import batch_block

    method = "sequences" if batch_block(type(model)) else "sequence"
    what = "time limit per block of a batch model" if method == "sequences" else "per-sequence time limit"
    sequence = getattr(model, method)
    state = _SEQUENCES

    def on_alarm(signum: int, frame: FrameType | None) -> None:
        started, finished, due, step = state
        if due != started or finished == started:
            return  # that sequence ended meanwhile
        if step == 1:
            raise TimeoutError(f"timed out after {seconds:g} s (the {what})")
        os.write(
            2,
            f"ancho worker: a sequence went on {grace:g} s after its time limit of {seconds:g} s; "
            f"stopping worker {os.getpid()}\n".encode(),
        )
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGALRM)

    signal.signal(signal.SIGALRM, on_alarm)

    def timed(*args: Any) -> Any:
        state[0] = n = state[0] + 1
        try:
            return sequence(*args)
        finally:
            state[1] = n

    setattr(model, method, timed)
    _start_watchdog(seconds, grace)


def _start_watchdog(seconds: float, grace: float) -> None:
    global _watchdog_started
    if _watchdog_started:
        return
    _watchdog_started = True
    import threading
    import time

    # bound now: user code that patches the time, os or signal modules does not reach the watchdog
    sleep, now, kill, pthread_kill, write, getpid = (
        time.sleep,
        time.monotonic,
        os.kill,
        signal.pthread_kill,
        os.write,
        os.getpid,
    )
    alarm, sigkill = signal.SIGALRM, signal.SIGKILL
    main = threading.main_thread().ident
    assert main is not None  # the main thread has started: it is running this
    tick = min(max(seconds / 20, 0.005), 0.5)
    state = _SEQUENCES

    def watch() -> None:
        seen, since = -1, 0.0
        while True:
            sleep(tick)
            started, finished = state[0], state[1]
            if started == finished:
                continue
            t = now()
            if started != seen:
                seen, since = started, t
                continue
            over = t - since - seconds
            step = 1 if over >= 0 else 0
            step += over >= grace
            step += over >= 2 * grace
            if step > (state[3] if state[2] == started else 0):
                state[2], state[3] = started, step
                if step < 3:
                    pthread_kill(main, alarm)
                else:
                    write(
                        2,
                        f"ancho worker: a sequence ignored its time limit of {seconds:g} s; killing worker {getpid()}\n".encode(),
                    )
                    kill(getpid(), sigkill)

    threading.Thread(target=watch, name="ancho-sequence-timeout", daemon=True).start()


def _guard_forks(fd: int) -> None:
    """A process that user code forks must never talk on the worker's connection (it would corrupt it).

    In a forked child the connection's descriptor becomes /dev/null: a child
    that falls back into the serve loop sends into nothing, reads EOF, and exits.
    """

    def in_child() -> None:
        try:
            null = os.open(os.devnull, os.O_RDWR)
            os.dup2(null, fd)
            os.close(null)
        except OSError:
            try:
                os.close(fd)
            except OSError:
                pass

    os.register_at_fork(after_in_child=in_child)


def run(fd: int) -> None:
    """Everything a worker does, whether it was started as a fresh interpreter or forked from the driver."""
    parent = int(os.environ.get("ANCHO_PARENT_PID", os.getppid()))
    _die_with_parent(parent)
    # User code that prints must not corrupt the driver's stdout (for example `ancho run --json`).
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    apply_limits()
    syscall_filter.apply()  # (a sandboxed worker's: before anything of the model is imported)
    _guard_forks(fd)
    serve(fd)


def main() -> None:
    run(int(sys.argv[1]))


if __name__ == "__main__":
    main()
