"""What runs on the Spark executors: a task's chunks, and what a reused Python worker keeps between tasks.

Everything here runs in an executor's Python worker, never on the driver
(the driver only sends these functions, by reference, in its jobs). A task
is one :class:`Job`: the distinct :class:`~ancho.executors.base.Task` values
of its chunks, each sent once (a study's task runs chunks of many points,
each point's model parameters shipped once per job, not per chunk), and its
chunks as :class:`Order` values naming their task by index. It resolves the
model (from the shipped archive of its folder when there is one), runs each
chunk, runs the model's summary functions over a chunk that asks for them
(a study's one-chunk point: where its columns are, as a local worker does)
and yields :mod:`~ancho.executors.spark.codec` records: one per chunk, or a
record for several small chunks in a row (a study's tiny points).

PySpark reuses a Python worker across tasks, so two small LRUs keep what is
dear to rebuild:

* :data:`RUNNERS` — each run's prepared models (:class:`Prepared`: a
  ``ChunkRunner`` per task, or one ``NestedRunner`` with its sandboxed or
  environment-bound local worker, ~0.5 s to start), by the run's job group;
* :data:`WRITERS` — an open Cassandra session per owner role and keyspace
  (~0.3 s to open), when tasks write a run's chunks themselves.

Each holds :data:`KEEP` entries: a server runs that many runs at a time by
default and their tasks alternate on the same workers; keeping only the
latest made each alternation rebuild it.
"""

from __future__ import annotations

import dataclasses
import os
import traceback
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ...errors import AnchoError
from ...loading import FileRef, ModelRef
from ...recent import kept
from ...stores.results_sources import CassandraResults
from ..base import Task
from ..messages import WorkerFailed
from .codec import Grouper, encode_error, encode_failed, encode_stored
from .isolation import Isolation, WorkerLost

if TYPE_CHECKING:
    from ...chunk import ChunkResult
    from ...model import Model
    from ...stores.cassandra_results import RemoteResults, RunResults
    from ...stores.chunk_writer import ChunkFolder

#: seconds the probe task tries to reach Cassandra before the driver writes instead (writes="auto")
PROBE_PATIENCE = 10.0
KEEP = 2  # a server's default concurrency
#: a run's prepared models a worker keeps (a study's points: one each; most run one chunk)
TASKS_KEPT = 64


class Closable(Protocol):
    def close(self) -> None: ...


class Kept:
    """The few most recently used things a reused Python worker keeps across tasks: prepared models, Cassandra sessions.

    A server runs ``concurrency`` runs at a time (default 2), and their tasks alternate on the same Python workers.
    Keeping only the last run's made every alternation rebuild it: a sandboxed model's local worker (~0.5 s) or a
    Cassandra session (~0.3 s) per task. The least recently used goes, closed, when a new one would exceed ``size``.
    """

    def __init__(self, size: int):
        self.size = size
        self.items: OrderedDict[Hashable, object] = OrderedDict()

    def get(self, key: Hashable) -> Any:
        item = self.items.get(key)
        if item is not None:
            self.items.move_to_end(key)
        return item

    def put(self, key: Hashable, item: object) -> None:
        while len(self.items) >= self.size:
            self._close(self.items.popitem(last=False)[1])
        self.items[key] = item

    def drop(self, key: Hashable) -> None:
        item = self.items.pop(key, None)
        if item is not None:
            self._close(item)

    @staticmethod
    def _close(item: object) -> None:
        close: Callable[[], object] | None = getattr(item, "close", None)  # a ChunkRunner holds nothing to close
        if close is not None:
            try:
                close()
            except Exception:  # noqa: BLE001 - its errors were an earlier task's
                pass


#: run's job group -> its prepared models (a :class:`Prepared`)
RUNNERS = Kept(KEEP)
#: (hosts, port, role, keyspace) -> its open RemoteResults, kept across tasks and runs
WRITERS = Kept(KEEP)


@dataclass(frozen=True)
class Order:
    """One chunk of a :class:`Job`: sequences ``start..stop-1`` of the job's task number ``task``, then the model's
    summary functions ``summaries`` over them (a study's point that is this one chunk)."""

    task: int
    start: int
    stop: int
    summaries: tuple[str, ...] = ()
    #: its columns come back even where its task writes a chunk folder (a study's point summarised from them)
    keep: bool = False


@dataclass(frozen=True)
class Job:
    """What one Spark task runs: its chunks, each distinct task among them sent once."""

    #: the job group of the executor call (the key of what the worker keeps for it)
    group: str
    tasks: tuple[Task, ...]
    #: the name of the model folder's archive in the session (None: nothing shipped)
    archive: str | None
    isolation: Isolation
    orders: tuple[Order, ...]


def import_task_modules(_rows: Iterable[object]) -> None:
    """The warm-up task (see :meth:`~ancho.executors.spark.session.Session.warm_up`)."""
    drain(_rows)  # (so this worker stays for the first tasks)
    import pandas  # noqa: F401
    import pyarrow  # noqa: F401

    from ... import chunk  # noqa: F401


def drain(rows: Iterable[object]) -> None:
    """Read a task's input to its end: PySpark reuses a Python worker only if its task did (pyspark/worker.py checks
    for the end of the stream and otherwise exits), so a task that ignores its input pays a fresh worker, and loses
    what the worker keeps (the runner, the Cassandra session), every time."""
    for _ in rows:
        pass


def shipped_ref(task: Task, archive: str | None) -> ModelRef:
    """The model reference in a Spark task: the shipped copy of its folder when there is one."""
    ref = task.ref
    if archive is not None and isinstance(ref, FileRef):
        from pyspark import SparkFiles

        shipped = SparkFiles.get(archive)
        if os.path.isdir(shipped):
            ref = FileRef(shipped, ref.file, ref.class_name)
    return ref


def model_class(task: Task, archive: str | None) -> type[Model]:
    return shipped_ref(task, archive).resolve()


class Prepared:
    """A run's prepared models in this worker: a ``ChunkRunner`` per task (a study's points share the group), or one
    ``NestedRunner`` whose local worker switches task as a local executor's does."""

    def __init__(self, archive: str | None, isolation: Isolation):
        self.archive = archive
        self.isolation = isolation
        self.nested: Any = None  # the NestedRunner, started with the first task
        self.runners: OrderedDict[Hashable, Any] = OrderedDict()
        self.classes: dict[ModelRef, type[Model]] = {}

    def runner(self, task: Task) -> Any:
        """The object whose ``run(start, stop)`` runs ``task``'s chunks (the same one for the same task)."""
        if self.isolation.nested:
            if self.nested is None:
                from .isolation import NestedRunner

                ref = shipped_ref(task, self.archive)
                self.nested = NestedRunner(dataclasses.replace(task, ref=ref, sink=None), _root(ref), self.isolation)
            return self.nested
        from ...chunk import ChunkRunner

        return kept(
            self.runners,
            _task_key(task),
            lambda: ChunkRunner(self.model_class(task), task.params, task.seed),
            TASKS_KEPT,
        )

    def model_class(self, task: Task) -> type[Model]:
        cls = self.classes.get(task.ref)
        if cls is None:
            cls = self.classes[task.ref] = model_class(task, self.archive)
        return cls

    def run(self, runner: Any, task: Task, order: Order) -> tuple[ChunkResult, dict[str, Any] | None]:
        """One chunk's results by ``task``'s runner, and its summary functions' values when it asks for them."""
        if runner is self.nested:  # its local worker runs the summaries too, in the sandbox or environment
            ref = shipped_ref(task, self.archive)
            result, custom = runner.run_task(dataclasses.replace(task, ref=ref, sink=None), order)
            return result, custom
        result = runner.run(order.start, order.stop)
        if not order.summaries:
            return result, None
        from ..worker import _chunk_summaries  # the local worker's own: the frame a store would give back

        return result, _chunk_summaries(type(runner.model), task.params, result, order.summaries)

    def close(self) -> None:
        if self.nested is not None:
            self.nested.close()


def _task_key(task: Task) -> Hashable:
    return (task.run_id, task.seed, repr(task.ref), repr(sorted(task.params.items())))


def _root(ref: ModelRef) -> str | None:
    return ref.root if isinstance(ref, FileRef) else None


def prepared_models(group: str, archive: str | None, isolation: Isolation) -> Prepared:
    """The prepared models of this job group, kept in the (reused) Python worker across its tasks."""
    found: Prepared | None = RUNNERS.get(group)
    if found is None:
        found = Prepared(archive, isolation)
        RUNNERS.put(group, found)
    return found


def runner(group: str, task: Task, archive: str | None, isolation: Isolation) -> Any:
    """The prepared model for this run, kept in the (reused) Python worker across its tasks."""
    os.environ.update(task.env)  # each task: the worker may have run another run's task since
    return prepared_models(group, archive, isolation).runner(task)


def results_writer(sink: CassandraResults) -> RunResults:
    """The :class:`~ancho.stores.cassandra_results.RunResults` writing to the sink's keyspace with its role: a session
    kept in the (reused) Python worker for later tasks and runs of the same owner (opening one costs ~0.3 s)."""
    ep = sink.endpoint
    key = (tuple(ep.hosts), ep.port, ep.username, sink.keyspace)
    remote: RemoteResults | None = WRITERS.get(key)
    if remote is None:
        from ...stores.cassandra_results import open_writer

        try:
            remote = open_writer(sink)
        except AnchoError as exc:
            import socket

            raise type(exc)(
                f"a Spark task on {socket.gethostname()} could not open the results in Cassandra: {exc} "
                "(or let the driver write them: ANCHO_SPARK_WRITES=driver)"
            ) from None
        WRITERS.put(key, remote)
    return remote.results


def probe_task(source: CassandraResults, _rows: Iterable[object]) -> Iterator[str | None]:
    """In a Spark task: None if this executor reaches the source's Cassandra with its role and reads its keyspace, else why."""
    drain(_rows)
    from ...stores.cassandra_conn import connect

    endpoint = source.endpoint
    try:
        session = connect(dataclasses.replace(endpoint, retry_seconds=min(endpoint.retry_seconds, PROBE_PATIENCE)))
        try:
            session.execute(
                f"SELECT chunk_start FROM {source.keyspace}.chunks WHERE run_id = %s LIMIT 1", (source.run_id,)
            )
        finally:
            session.cluster.shutdown()
    except Exception as exc:  # noqa: BLE001 - any failure means: the driver writes
        import socket

        yield f"a Spark task on {socket.gethostname()} cannot use Cassandra: {str(exc) or type(exc).__name__}"[:500]
        return
    yield None


def probe_folder_task(path: str, token: str, _rows: Iterable[object]) -> Iterator[str | None]:
    """In a Spark task: None if the file at ``path`` holds ``token`` (the driver just wrote it: this executor sees
    the store's folder at the driver's path) and its folder takes a new file, else why not."""
    drain(_rows)
    import socket

    where = f"a Spark task on {socket.gethostname()}"
    try:
        if Path(path).read_text() != token:
            yield f"{where} reads another file at {path}: the executors do not share the store's folder"
            return
        mine = Path(f"{path}.{os.getpid()}")
        mine.write_text(token)
        mine.unlink()
    except OSError as exc:
        yield f"{where} cannot use the store's folder {Path(path).parent}: {exc.strerror or exc}"[:500]
        return
    yield None


def failed(exc: AnchoError) -> bytes:
    """An AnchoError raised in the task, as the local worker pipe sends it (the object: its field too) and where."""
    return encode_failed(WorkerFailed.of(exc, "".join(traceback.format_exception(exc)[-8:])))


def run_partition(job: Job, _rows: Iterable[object]) -> Iterator[bytes]:
    """The Spark task: each chunk of ``job`` as Arrow bytes, or an error record (never a raised exception, so a bug
    in the model reaches the user as one line instead of a Java stack trace after Spark's retries). Only a lost
    local worker (:class:`WorkerLost`) fails the task, so that Spark retries it.

    A chunk whose task has a ``sink`` is written to that run's Cassandra store, or as a file in its embedded store's
    chunk folder, here, in the task's own Python process (a sandboxed model's worker has no network and never sees
    the store); the task waits until every such chunk is marked done, and returns only :func:`encode_stored` records
    for them: no columns. A retried task writes the same bytes under the same keys (the same file), so nothing is
    duplicated. A chunk with failures, or one whose columns the driver keeps (``Order.keep``), comes back whole to
    a chunk folder's run, as from a local worker: the driver records it."""
    drain(_rows)
    try:
        for task in job.tasks:
            os.environ.update(task.env)  # each task: the worker may have run another run's task since
        prepared = prepared_models(job.group, job.archive, job.isolation)
    except AnchoError as exc:
        yield failed(exc)
        return
    writing = any(task.sink is not None for task in job.tasks)
    sender: ThreadPoolExecutor | None = None
    sends: list[Future[None]] = []
    out: list[bytes] = []  # with writes: sent once every chunk is marked done
    writers: dict[int, Future[RunResults]] = {}
    grouper = Grouper()  # (small chunks several to a record; the records go in the job's order, as its chunks)

    def then(error: bytes) -> list[bytes]:
        """The records a task that failed sends: the chunks it ran before, unless it writes (then only the error,
        as none of its records is sent until every chunk is marked done), and the error."""
        return [error] if writing else [*grouper.end(), error]

    try:
        for order in job.orders:
            task = job.tasks[order.task]
            try:
                runner = prepared.runner(task)
            except AnchoError as exc:
                yield from then(failed(exc))
                return
            except Exception as exc:  # noqa: BLE001 - reported as one line, as a local worker does
                yield from then(encode_error("setup", f"model setup failed in a worker: {type(exc).__name__}: {exc}"))
                return
            try:
                result, custom = prepared.run(runner, task, order)
            except WorkerLost:
                RUNNERS.drop(job.group)
                raise
            except AnchoError as exc:
                yield from then(failed(exc))
                return
            except Exception as exc:  # noqa: BLE001 - reported as one line, as a local worker does
                what = f"sequences {order.start}..{order.stop - 1} could not be run: {type(exc).__name__}: {exc}"
                yield from then(encode_error("worker", what))
                return
            sink = task.sink
            if sink is not None and not isinstance(sink, CassandraResults) and _back_whole(order, result):
                sink = None  # (a chunk folder's: the driver records a chunk's failures, and keeps it, with the file)
            if sink is None:
                if writing:  # (the records go in the job's order: the driver pairs them with its chunks so)
                    out.extend(grouper.add(result, custom))
                else:
                    yield from grouper.add(result, custom)
                continue
            out.extend(grouper.end())
            if sender is None:
                # a thread connects (a Spark task mostly runs in a fresh Python worker: ~0.2-0.7 s here, hidden
                # behind the first chunk's work) and then sends each chunk's requests while the next chunk runs
                sender = ThreadPoolExecutor(1, thread_name_prefix="ancho-send")
            if isinstance(sink, CassandraResults):
                writer = writers.get(id(sink))
                if writer is None:
                    writer = writers[id(sink)] = sender.submit(results_writer, sink)
                sends.append(sender.submit(_write, writer, sink.run_id, result))  # sent now, done once acknowledged
            else:  # a chunk folder: the file written (compressed while the next chunk runs), fsynced and renamed
                sends.append(sender.submit(_write_file, sink, result))
            out.append(encode_stored(result, task.tally, custom))
        if writing:
            out.extend(grouper.end())
            try:
                for sent in sends:
                    sent.result()
                for writer in writers.values():
                    writer.result().flush()  # every chunk of this task is marked done before the driver hears of it
            except Exception as exc:  # a write that failed for good fails the run, as in the driver
                if isinstance(exc, AnchoError):
                    yield failed(exc)
                else:
                    yield encode_error(type(exc).__name__, f"writing the results failed: {type(exc).__name__}: {exc}")
                return
            yield from out
        else:
            yield from grouper.end()
    finally:
        if sender is not None:  # (also when a chunk failed or the task was interrupted): no write starts after the
            # task's answer, and the one under way ends first (a chunk file committed after the driver heard of the
            # failure would be a file no record knows of)
            sender.shutdown(wait=True, cancel_futures=True)


def _write(writer: Future[RunResults], run_id: str, result: ChunkResult) -> None:
    writer.result().write_chunk(run_id, result)


def _write_file(sink: ChunkFolder, result: ChunkResult) -> None:
    sink.begin(result)()


def _back_whole(order: Order, result: ChunkResult) -> bool:
    """Whether a chunk of a chunk folder's run goes back to the driver whole instead of into a file here: its
    failures (the driver records them with the file), kept for a study's point, or outputs the driver would refuse
    (a sandboxed model may have replaced its worker's checks: no file of them is committed to the store)."""
    from ...chunk import odd_outputs

    return order.keep or bool(result.failures) or odd_outputs(result.kinds()) is not None
