"""Execution backends: where sequences run."""

from __future__ import annotations

from typing import Any

from ..errors import InputError
from .base import Chunk, ChunkLost, ChunkSource, Executor, Task

__all__ = ["Executor", "Task", "Chunk", "ChunkLost", "ChunkSource", "make_executor", "is_spark_master"]

_SPARK_PREFIXES = ("spark://", "k8s://", "local[", "local-cluster[", "yarn")


def is_spark_master(name: str) -> bool:
    return name.startswith(_SPARK_PREFIXES)


def make_executor(executor: str | Executor | None = "local", workers: int | None = None, **options: Any) -> Executor:
    """An executor from ``--executor``: ``local`` (processes here) or a Spark master URL.

    ``options`` go to the backend (for the local one: ``python``, ``env``, ``wrap``).
    """
    if isinstance(executor, Executor):
        return executor
    name = executor or "local"
    if name == "local":
        from .local import LocalExecutor

        return LocalExecutor(workers, **options)
    if is_spark_master(name):
        try:
            from .spark import SparkExecutor
        except ImportError:
            raise InputError(
                f"executor '{name}': the Spark executor is not available in this installation; install ancho[spark]"
            ) from None
        return SparkExecutor(name, workers, **options)
    raise InputError(
        f"unknown executor '{name}': use 'local' or a Spark master URL (spark://host:7077, k8s://…, yarn, local[N])"
    )
