"""What runs on the Spark executors: a task's chunks, and what a reused Python worker keeps between tasks.

Everything here runs in an executor's Python worker, never on the driver
(the driver only sends these functions, by reference, in its jobs). A task
resolves the model (from the shipped archive of its folder when there is
one), runs its chunks and yields one :mod:`~ancho.executors.spark.codec`
record per chunk. PySpark reuses a Python worker across tasks, so two small
LRUs keep what is dear to rebuild:

* :data:`RUNNERS` — each run's prepared model (a ``ChunkRunner``, or a
  ``NestedRunner`` with its sandboxed or environment-bound local worker,
  ~0.5 s to start), by the run's job group;
* :data:`WRITERS` — an open Cassandra session per owner role and keyspace
  (~0.3 s to open), when tasks write a run's chunks themselves.

Each holds :data:`KEEP` entries: a server runs that many runs at a time by
default and their tasks alternate on the same workers; keeping only the
latest made each alternation rebuild it.
"""

from __future__ import annotations

import dataclasses
import os
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor

from ...errors import AnchoError
from ...loading import FileRef
from ..base import Task
from .codec import encode, encode_error, encode_stored
from .isolation import Isolation, WorkerLost

#: seconds the probe task tries to reach Cassandra before the driver writes instead (writes="auto")
PROBE_PATIENCE = 10.0
KEEP = 2  # a server's default concurrency


class Kept:
    """The few most recently used things a reused Python worker keeps across tasks: prepared models, Cassandra sessions.

    A server runs ``concurrency`` runs at a time (default 2), and their tasks alternate on the same Python workers.
    Keeping only the last run's made every alternation rebuild it: a sandboxed model's local worker (~0.5 s) or a
    Cassandra session (~0.3 s) per task. The least recently used goes, closed, when a new one would exceed ``size``.
    """

    def __init__(self, size: int):
        self.size = size
        self.items: OrderedDict = OrderedDict()

    def get(self, key):
        item = self.items.get(key)
        if item is not None:
            self.items.move_to_end(key)
        return item

    def put(self, key, item) -> None:
        while len(self.items) >= self.size:
            self._close(self.items.popitem(last=False)[1])
        self.items[key] = item

    def drop(self, key) -> None:
        item = self.items.pop(key, None)
        if item is not None:
            self._close(item)

    @staticmethod
    def _close(item) -> None:
        close = getattr(item, "close", None)  # a ChunkRunner holds nothing to close
        if close is not None:
            try:
                close()
            except Exception:  # noqa: BLE001 - its errors were an earlier task's
                pass


#: run's job group -> its prepared model (a ChunkRunner, or a NestedRunner with its local worker)
RUNNERS = Kept(KEEP)
#: (hosts, port, role, keyspace) -> its open RemoteResults, kept across tasks and runs
WRITERS = Kept(KEEP)


def import_task_modules(_rows) -> None:
    """The warm-up task (see :meth:`~ancho.executors.spark.session.Session.warm_up`)."""
    drain(_rows)  # (so this worker stays for the first tasks)
    import pandas  # noqa: F401
    import pyarrow  # noqa: F401

    from ... import chunk  # noqa: F401


def drain(rows) -> None:
    """Read a task's input to its end: PySpark reuses a Python worker only if its task did (pyspark/worker.py checks
    for the end of the stream and otherwise exits), so a task that ignores its input pays a fresh worker, and loses
    what the worker keeps (the runner, the Cassandra session), every time."""
    for _ in rows:
        pass


def shipped_ref(task: Task, archive: str | None):
    """The model reference in a Spark task: the shipped copy of its folder when there is one."""
    ref = task.ref
    if archive is not None:
        from pyspark import SparkFiles

        shipped = SparkFiles.get(archive)
        if os.path.isdir(shipped):
            ref = FileRef(shipped, ref.file, ref.class_name)
    return ref


def model_class(task: Task, archive: str | None):
    return shipped_ref(task, archive).resolve()


def runner(group: str, task: Task, archive: str | None, isolation: Isolation):
    """The prepared model for this run, kept in the (reused) Python worker across its tasks."""
    os.environ.update(task.env)  # each task: the worker may have run another run's task since
    found = RUNNERS.get(group)
    if found is None:
        ref = shipped_ref(task, archive)
        if isolation.nested:
            from .isolation import NestedRunner

            found = NestedRunner(
                Task(ref, task.params, task.seed, task.run_id, task.env), getattr(ref, "root", None), isolation
            )
        else:
            from ...chunk import ChunkRunner

            found = ChunkRunner(ref.resolve(), task.params, task.seed)
        RUNNERS.put(group, found)
    return found


def results_writer(sink):
    """The :class:`~ancho.stores.cassandra_results.RunResults` writing to the sink's keyspace with its role: a session
    kept in the (reused) Python worker for later tasks and runs of the same owner (opening one costs ~0.3 s)."""
    ep = sink.endpoint
    key = (tuple(ep.hosts), ep.port, ep.username, sink.keyspace)
    remote = WRITERS.get(key)
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


def probe_task(source, _rows):
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


def run_partition(
    group: str, task: Task, archive: str | None, isolation: Isolation, ranges: list[tuple[int, int]], _rows
):
    """The Spark task: each chunk ``start..stop-1`` of ``ranges`` as Arrow bytes, or an error record (never a raised
    exception, so a bug in the model reaches the user as one line instead of a Java stack trace after Spark's
    retries). Only a lost local worker (:class:`WorkerLost`) fails the task, so that Spark retries it.

    With a ``task.sink`` the task writes each chunk to the run's Cassandra store itself, here in the task's own
    Python process (a sandboxed model's worker has no network and never sees the store), waits until every chunk
    is marked done, and returns only :func:`encode_stored` records: no columns. A retried task writes the same
    bytes under the same keys, so nothing is duplicated."""
    drain(_rows)
    try:
        prepared = runner(group, task, archive, isolation)
    except AnchoError as exc:
        yield encode_error(type(exc).__name__, str(exc))
        return
    except Exception as exc:
        yield encode_error("setup", f"model setup failed in a worker: {type(exc).__name__}: {exc}")
        return
    stored, sends = [], []
    sink = task.sink
    writing = sink is not None
    if writing:
        # a thread connects (a Spark task mostly runs in a fresh Python worker: ~0.2-0.7 s here, hidden behind the
        # first chunk's work) and then sends each chunk's requests while the next chunk runs
        sender = ThreadPoolExecutor(1, thread_name_prefix="ancho-send")
        opened = sender.submit(results_writer, sink)
    try:
        for start, stop in ranges:
            try:
                result = prepared.run(start, stop)
                if not writing:
                    out = encode(result)
                else:  # sent now, marked done once acknowledged
                    sends.append(sender.submit(lambda r: opened.result().write_chunk(sink.run_id, r), result))
                    out = encode_stored(result, task.tally)
            except WorkerLost:
                RUNNERS.drop(group)
                raise
            except AnchoError as exc:
                yield encode_error(type(exc).__name__, str(exc))
                return
            except Exception as exc:
                yield encode_error(
                    "worker", f"sequences {start}..{stop - 1} could not be run: {type(exc).__name__}: {exc}"
                )
                return
            if not writing:
                yield out
            else:
                stored.append(out)
        if writing:
            try:
                for sent in (opened, *sends):
                    sent.result()
                opened.result().flush()  # every chunk of this task is marked done before the driver hears of it
            except Exception as exc:  # a write that failed for good fails the run, as in the driver
                message = (
                    str(exc)
                    if isinstance(exc, AnchoError)
                    else f"writing to Cassandra failed: {type(exc).__name__}: {exc}"
                )
                yield encode_error(type(exc).__name__, message)
                return
            yield from stored
    finally:
        if writing:  # (also when a chunk failed or the task was interrupted: the thread ends with it)
            sender.shutdown(wait=False)
