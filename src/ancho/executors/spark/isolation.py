"""Models that need more than the executor's Python, inside a Spark task: their own environment, a sandbox.

A Spark task runs in the executor's Python worker, which has Ancho's
packages only. A model with a ``requirements.txt`` needs its own
environment, and untrusted code needs the bubblewrap sandbox; both are what
the local executor already does for a worker process. So the task hands its
chunk to a :class:`~ancho.executors.local.LocalExecutor` with one worker,
started with that environment's interpreter and wrapped in the sandbox, and
kept for the run's later tasks in the same (reused) Python worker.

Where the environment comes from (measured in docs/spark.md): each executor
builds it with :class:`~ancho.isolation.Environments` from the
``requirements.txt`` in the shipped model folder, keyed exactly as on the
driver (requirements, Python version, Ancho's worker packages), once per
machine, under ``envs`` — the driver's own environments folder when the
executors share the driver's storage (then it is already built), else
``$ANCHO_HOME/envs`` of the executor. Building needs uv (an Ancho
dependency) and the package index on the executors; concurrent tasks on one
machine wait for one build (a file lock).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...chunk import ChunkResult
from ...isolation import SandboxPolicy
from ..base import Chunk, ChunkSource, Task

if TYPE_CHECKING:
    from .tasks import Order


@dataclass(frozen=True)
class Isolation:
    """What a Spark task needs to run the model as a local worker would (sent with every task)."""

    #: the model folder has a requirements.txt: run it in that environment
    environment: bool = False
    #: where executors keep environments (None: ``$ANCHO_HOME/envs`` on each executor)
    envs: str | None = None
    #: run the worker in bubblewrap with this policy (its read-only paths and scratch folder are replaced by the
    #: executor's own; its hidden paths, the server's home among them, are kept: the executor's environment does not
    #: know the server's settings)
    sandbox: SandboxPolicy | None = None

    @property
    def nested(self) -> bool:
        return self.environment or self.sandbox is not None


class WorkerLost(RuntimeError):
    """The task's local worker died: the Spark task fails, so Spark retries it (as for a lost executor)."""


class _One(ChunkSource):
    def __init__(self, chunk: Chunk):
        self.chunk: Chunk | None = chunk

    def next(self) -> Chunk | None:
        chunk, self.chunk = self.chunk, None
        return chunk


class NestedRunner:
    """Runs chunks of one run in a local worker of the model's environment, in the sandbox when asked.

    Has :class:`~ancho.chunk.ChunkRunner`'s ``run(start, stop)``, so the Spark task does not care which it got.
    """

    def __init__(self, task: Task, root: str | None, isolation: Isolation):
        from ..local import LocalExecutor
        from ..prepare import worker_options

        python = pythonpath = None
        read_only = [root] if root else []
        if isolation.environment:
            from ...home import default_home
            from ...isolation import Environments, ancho_pythonpath

            envs = Environments(Path(isolation.envs) if isolation.envs else default_home() / "envs")
            env = envs.for_source(Path(root)) if root else None
            if env is not None:
                python, pythonpath = env.python, ancho_pythonpath(envs.root)
                read_only.append(str(env.path))
        self.sandbox = None
        wrap = None
        if isolation.sandbox is not None:
            from ...isolation import Sandbox

            # the executor's own paths: the unpacked model folder and environment, a private scratch folder; the
            # driver's hidden paths as they came (never SandboxPolicy's default, $ANCHO_HOME of this executor)
            policy = dataclasses.replace(
                isolation.sandbox, scratch=None, read_only=tuple(read_only), hidden=isolation.sandbox.hidden
            )
            self.sandbox = Sandbox(policy)
            wrap = self.sandbox.wrap
        self.executor = LocalExecutor(1, wrap=wrap, **worker_options(python, pythonpath))
        self.task = task

    def run(self, start: int, stop: int) -> ChunkResult:
        result = None
        for item in self.executor.map_chunks(self.task, _One(Chunk(start, stop))):
            if not isinstance(item, ChunkResult):  # (a local worker's chunk is never stored by it)
                raise WorkerLost(f"sequences {start}..{stop - 1}: {getattr(item, 'reason', 'no results')}")
            result = item
        assert result is not None
        return result

    def run_task(self, task: Task, order: Order) -> tuple[ChunkResult, dict[str, Any] | None]:
        """A chunk of ``task`` (a study's point: the local worker switches to it) and the summary functions'
        values ``order`` asks for, computed in the local worker as a local executor computes them."""
        chunk = Chunk(order.start, order.stop, task=task, summaries=order.summaries)
        for item in self.executor.map_chunks(task, _One(chunk)):
            if not isinstance(item, ChunkResult):
                raise WorkerLost(f"sequences {order.start}..{order.stop - 1}: {getattr(item, 'reason', 'no results')}")
            custom: dict[str, Any] | None = vars(item).get("custom")
            return item, custom
        raise WorkerLost(f"sequences {order.start}..{order.stop - 1}: the local worker returned nothing")

    def close(self) -> None:
        self.executor.close()
        if self.sandbox is not None:
            self.sandbox.close()
