"""Who writes a Spark run's chunks: its tasks, where they can reach the store, or the driver.

Tasks write a **Cassandra** store with the owner's role once a probe task has
connected from an executor, and an **embedded** store's chunk folder once a
probe task has read a file the driver wrote there (the executors see the
driver's folder: the same machine, or a shared file system). Either way the
columns no longer travel from the Python worker through both JVMs to the
driver, which then compresses and writes them: on the 2-core test cluster
that was most of a large run (docs/benchmarks.md, "Spark"). Anything else, or
a probe that fails, leaves the writing to the driver, with a warning that
says why. Each probe's answer is kept for the session.
"""

from __future__ import annotations

import functools
import logging
import os
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import TYPE_CHECKING

from ...stores.results_sources import CassandraResults
from .tasks import probe_folder_task, probe_task

if TYPE_CHECKING:
    from pyspark import SparkContext

    from ...stores.base import Store
    from ...stores.chunk_writer import ChunkFolder

#: (session, Cassandra nodes, keyspace, role) or (session, store folder) whose probe answer is remembered
PROBE_ENTRIES = 64
_LOG = logging.getLogger("ancho.spark")

#: what a probe's answer is kept by: the application, then what was probed
ProbeKey = tuple[Hashable, ...]


class Probes:
    """Whether Spark tasks reach a store: asked once per session and store (Cassandra nodes, keyspace and role; or
    the embedded store's folder).

    Why kept: the answer (a task run on the cluster, up to ``PROBE_PATIENCE`` s) holds for the session, and a server
    starts many runs of the same owners. At most ``size`` answers, the least recently asked going first (a server's
    owners are many over its life; a forgotten one is asked again)."""

    def __init__(self, size: int = PROBE_ENTRIES):
        self.size = size
        self._lock = threading.Lock()
        self._answers: OrderedDict[ProbeKey, str | None] = OrderedDict()  # key -> None (reached) or why not

    def get(self, key: ProbeKey) -> tuple[bool, str | None]:
        with self._lock:
            if key not in self._answers:
                return False, None
            self._answers.move_to_end(key)
            return True, self._answers[key]

    def put(self, key: ProbeKey, why: str | None) -> None:
        with self._lock:
            self._answers[key] = why
            self._answers.move_to_end(key)
            while len(self._answers) > self.size:
                self._answers.popitem(last=False)


PROBES = Probes()


def asked(key: ProbeKey, ask: Callable[[], str | None], reason: Callable[[BaseException], str]) -> str | None:
    """The kept answer for ``key``, else ``ask()``'s (kept); a probe job that itself failed is not kept."""
    known, why = PROBES.get(key)
    if not known:
        try:
            why = ask()
        except Exception as exc:  # the job itself failed: say so, and let the driver write
            return f"the probe task failed: {reason(exc)}"
        PROBES.put(key, why)
    return why


def probe_cassandra(
    context: SparkContext, source: CassandraResults, reason: Callable[[BaseException], str]
) -> str | None:
    """None if a Spark task reaches the source's Cassandra with its role, else why not."""
    ep = source.endpoint
    key = (context.applicationId, tuple(ep.hosts), ep.port, source.keyspace, ep.username)
    job = functools.partial(probe_task, source)
    return asked(key, lambda: context.parallelize([0], 1).mapPartitions(job).collect()[0], reason)


def probe_folder(context: SparkContext, home: Path, reason: Callable[[BaseException], str]) -> str | None:
    """None if a Spark task reads, at the same path, a file the driver has just written in the store's folder ``home``
    (and may write there), else why not."""
    home = home.resolve()

    def ask() -> str | None:
        token = secrets.token_hex(16)
        probe = home / f".spark-probe-{token}"
        try:
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(token)
        except OSError as exc:
            return f"the driver cannot write in the store's folder {home}: {exc.strerror or exc}"
        try:
            job = functools.partial(probe_folder_task, str(probe), token)
            return context.parallelize([0], 1).mapPartitions(job).collect()[0]
        finally:
            probe.unlink(missing_ok=True)

    return asked((context.applicationId, "folder", str(home)), ask, reason)


def tasks_sink(
    store: Store,
    run_id: str,
    forced: bool,
    shared_storage: bool,
    cassandra: Callable[[CassandraResults], str | None],
    folder: Callable[[Path], str | None],
) -> tuple[CassandraResults | ChunkFolder | None, str]:
    """Where the run's tasks write its chunks (None: the driver writes them), and who writes, said for
    ``last_writes``: ``"tasks"`` or ``"driver: why"``. ``forced`` (writes="tasks"): no Cassandra probe; an embedded
    store's folder is always probed (a task writing a folder the driver cannot see would lose the results unseen),
    and only when the executors are said to share the driver's storage (``shared_storage``). ``cassandra`` and
    ``folder`` are the probes."""
    import dataclasses

    from ...stores.embedded import EmbeddedStore

    sink: CassandraResults | ChunkFolder | None
    if isinstance(store, EmbeddedStore):
        if not shared_storage:
            return None, "driver: the executors do not share the driver's storage (shared_storage=False)"
        sink = store.writers_folder(run_id)
        if sink is None:
            return None, "driver: the store's own writes do more than write its chunk files"
        # the folder as an absolute path, its links resolved, as probed: an executor's working folder is its own
        sink = dataclasses.replace(sink, folder=str(Path(sink.folder).resolve()))
        why = folder(store.home)
    else:
        source = store.results(run_id)
        if not isinstance(source, CassandraResults):
            return None, f"driver: tasks write to a Cassandra or an embedded store only, not to a {source.kind} one"
        sink, why = source, None if forced else cassandra(source)
    if why is not None:
        _LOG.warning(
            "the driver writes the results of this Spark run (%s); set writes='driver' "
            "(ANCHO_SPARK_WRITES=driver) to skip the check",
            why,
        )
        return None, f"driver: {why}"
    return sink, "tasks"
