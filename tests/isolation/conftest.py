"""Helpers of the isolation tests: a model file, and a one-worker executor in a sandbox that reads its folder."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ancho.executors.local import LocalExecutor
from ancho.isolation import sandbox as sb

from ..conftest import need_service


def write_model(folder: Path, name: str, source: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(source)
    return path


@contextlib.contextmanager
def sandboxed(folder: Path, **policy: Any) -> Iterator[LocalExecutor]:
    """One sandboxed worker that may read ``folder`` (the models'); bubblewrap is required (a failure under CI)."""
    problem = sb.sandbox_problem()
    if problem:
        need_service("bubblewrap", problem)
    sandbox = sb.Sandbox(sb.SandboxPolicy(read_only=(str(folder),), **policy))
    try:
        with LocalExecutor(1, wrap=sandbox.wrap) as executor:
            yield executor
    finally:
        sandbox.close()
