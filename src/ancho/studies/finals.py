"""A study's point records made final: each point's summary, the outputs of a batch's points described together.

Why together: a tiny point's summary is a few NumPy calls an output on ~50
values, and on 2,000 points those calls' fixed cost was ~0.3 s of the
driver's CPU, the largest part of what a point cost beyond its sequences
(docs/benchmarks.md, "Studies"). :func:`~ancho.stats.describe_many` makes
them once for all the batch's columns of one length, with the same results.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from ..chunk import ChunkResult, kind_dtype, trajectory_steps
from ..stats import build_summary, describe_many
from ..stores.base import Store

if TYPE_CHECKING:
    from ..engine import RunSpec
    from .plan import Point

Column = np.ndarray[Any, Any]


def describe_points(points: list[Point]) -> dict[int, dict[str, dict]]:
    """The described outputs (``describe``'s dicts) of each point whose results are in memory, by ``id(point)``;
    trajectories are left to the point's own summary."""
    wanted: dict[str, list[tuple[int, str, Column]]] = {}  # kind -> (point, output, column)
    for pt in points:
        if pt.error is not None or pt.results is None:
            continue
        read = _memory_reader(_in_order(pt.results), pt.schema)
        for name, kind in pt.schema.items():
            if not kind.endswith("]"):
                wanted.setdefault(kind, []).append((id(pt), name, read(name)))
    described: dict[int, dict[str, dict]] = {}
    for kind, items in wanted.items():
        for (key, name, _), out in zip(items, describe_many([column for _, _, column in items], kind)):
            described.setdefault(key, {})[name] = out
    return described


def final_changes(pt: Point, spec: RunSpec, store: Store, described: dict[str, dict] | None = None) -> dict[str, Any]:
    """The changes that make the point's record final (its summary, or its error), for the caller to write.

    ``described``: its outputs described already (:func:`describe_points`), else described here."""
    now = time.time()
    counts = {"done": pt.done, "total": pt.total, "failures": pt.failures, "retries": pt.retries}
    if pt.error is not None:
        pt.p["status"], pt.p["error"] = "failed", pt.error
        return dict(status="failed", finished=now, error=pt.error, schema=pt.schema, **counts)
    # what build_summary reads of a run record (RunRecord.to_dict deep-copies all of it: ~1 ms a point)
    run = pt.run
    record = dict(id=run.id, status="succeeded", done=pt.done, seed=run.seed, params=dict(run.params))
    record["failures"] = pt.failures
    results = pt.results
    read: Callable[[str], Column]
    blocks: Callable[[str], Iterable[Column]]
    if results is not None:
        read = _memory_reader(_in_order(results), pt.schema)
        blocks = lambda n: (read(n),)  # one block: the point is small
    else:
        store.update_run(pt.run.id, schema=dict(pt.schema))  # what a store reads the stored chunks as (Cassandra)
        columns = store.summary_columns(pt.run.id)  # (outputs read in groups: each chunk file opened once a group)
        read, blocks = columns.read, columns.blocks
    summary = build_summary(
        record, pt.schema, read, spec.targets, pt.custom or {}, None, read_blocks=blocks, described=described
    )
    pt.p["status"] = "succeeded"
    pt.results = None
    return dict(status="succeeded", finished=now, error=None, schema=pt.schema, summary=summary, **counts)


def _in_order(results: list[ChunkResult]) -> list[ChunkResult]:
    if len(results) > 1:
        results.sort(key=lambda r: r.start)
    return results


def _memory_reader(results: list[ChunkResult], schema: dict[str, str]) -> Callable[[str], Column]:
    """A column of a point's results kept in memory, as the store would read it back (ints widened where mixed)."""

    def read(name: str) -> Column:
        # a chunk whose every sequence failed has no output columns: it adds no rows, as in the store
        parts = [r.columns[name] for r in results if name in r.columns]
        if not parts:
            steps = trajectory_steps(schema[name])
            return np.empty((0,) if steps is None else (0, steps), dtype=kind_dtype(schema[name]))
        column = parts[0] if len(parts) == 1 else np.concatenate(parts)
        if not column.flags.writeable:  # (a Spark task's columns are read-only views of its Arrow buffers)
            column = column.copy()  # the summary sorts it in place, as the store's fresh copy would be
        if schema.get(name) == "float" and column.dtype.kind != "f":
            column = column.astype(np.float64)
        return column

    return read
