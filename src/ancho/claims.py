"""What a chunk's reply may claim, checked where it lands, before the engine or a store reads any of it.

A reply is written by a process that runs model code, so a forged one may
say anything Ancho's reply classes can hold (the reply unpickler,
``executors/wire.py``, already refuses anything else). :func:`misfit` says
why a reply cannot answer its request, in one line for a
:class:`~ancho.executors.wire.ForgedReply`: another chunk's range (another
worker's sequences), rows its range has not, sequence numbers out of order
where the store keeps them, failures of sequences it did not run or of the
wrong types, a compute time that is not a number. Before, the last three
reached the store or the engine's arithmetic and failed there, deep and
unnamed (a ``NOT NULL`` constraint, ``'int' object is not iterable``), or
were stored as claimed (a failure of sequence 99 in a chunk of 0..4).

What it costs (measured, one core): ~1 µs for a chunk without failures (its
range, row counts, first and last sequence numbers), whatever its rows. With
failures its ids are stored, so they must ascend: 27 µs for 65,536 rows with
one failure, 0.2 ms for 1,048,576 (~1% of computing them as a batch), plus
~0.17 µs a failure (1.1 ms for 6,554 of 65,536), far less than the worker
spent recording each.
"""

from __future__ import annotations

import math

import numpy as np

from .chunk import ChunkResult, Failure, StoredChunk
from .jsontext import MAX_DEPTH, plain
from .stats import Tally


def misfit(
    result: ChunkResult | StoredChunk,
    start: int,
    stop: int,
    custom: object = None,
    summaries: tuple[str, ...] = (),
) -> str | None:
    """Why ``result`` cannot answer a request for sequences ``start..stop-1`` (None: it can), nor ``custom`` the
    summary functions ``summaries`` asked to run with it (a study's tiny point: :func:`summaries_misfit`)."""
    problem = _result_misfit(result, start, stop)
    if problem is None and (custom is not None or summaries):
        problem = summaries_misfit(custom, summaries)
    return problem


def _result_misfit(result: ChunkResult | StoredChunk, start: int, stop: int) -> str | None:
    if (type(result.start), type(result.stop)) != (int, int) or (result.start, result.stop) != (start, stop):
        return f"it names sequences {result.start!r}..{result.stop!r}, not the {start}..{stop} (exclusive) asked for"
    if not _number(result.seconds) or not math.isfinite(result.seconds) or result.seconds < 0:
        return f"its compute time {result.seconds!r} is not a number of seconds"
    if isinstance(result, StoredChunk):
        rows, first, failed = result.rows, result.first, result.failed
        if type(rows) is not int or not 0 <= rows <= stop - start or first is not None and len(first) != rows:
            return f"it claims {rows!r} rows for {stop - start} sequences"
        if type(failed) is not int or not 0 <= failed <= stop - start - rows:
            return f"it claims {failed!r} failed sequences beside {rows} rows of {stop - start}"
        if type(result.tallies) is not dict or not all(
            type(name) is str and _tally(t, rows) for name, t in result.tallies.items()
        ):
            return f"it claims tallies that are not counts, means and sums of squares of its {rows} rows"
        problem = _failures(result.failures, start, stop)
        return problem or (None if result.kept is None else _result_misfit(result.kept, start, stop))
    seqs, n = result.sequences, len(result.sequences)
    if (
        seqs.ndim != 1
        or seqs.dtype.kind not in "iu"
        or n > stop - start
        or n
        and not start <= seqs[0] <= seqs[-1] < stop
    ):
        return f"its {n} sequence numbers are not within {start}..{stop} (exclusive)"
    for name, column in result.columns.items():
        if column.ndim == 0 or len(column) != n:
            return f"its output {name!r} has {column.shape[:1]} rows for {n} sequences"
    problem = _failures(result.failures, start, stop)
    if problem or not result.failures and n == stop - start:
        return problem  # a chunk with a row for every sequence stores no ids: they are its range
    if n > 1 and not bool(np.all(seqs[1:] > seqs[:-1])):
        return f"its {n} sequence numbers do not ascend"
    ids = np.sort(np.fromiter((f.sequence for f in result.failures), np.int64, len(result.failures)))
    twice = bool(np.any(ids[1:] == ids[:-1]))
    if n and not twice:  # a failure's number among the rows (they ascend): the place it would take holds it
        twice = bool(np.any(seqs[np.minimum(np.searchsorted(seqs, ids), n - 1)] == ids))
    if twice or n + len(ids) > stop - start:
        return f"its {len(ids)} failures and {n} rows claim some of its {stop - start} sequences twice"
    return None


def _number(x: object) -> bool:
    return type(x) in (int, float)


def _tally(t: object, rows: int) -> bool:
    """Whether ``t`` is a :class:`Tally` of at most ``rows`` values (a precision goal adds them up)."""
    return (
        type(t) is Tally
        and type(t.n) is int
        and 0 <= t.n <= rows
        and _number(t.mean)
        and _number(t.m2)
        and type(t.hits) is dict
        and all(type(k) is str and type(h) is int and 0 <= h <= rows for k, h in t.hits.items())
    )


def _failures(failures: object, start: int, stop: int) -> str | None:
    """Why ``failures`` are not a list of :class:`Failure` of sequences in ``start..stop-1`` with text (None: they are)."""
    if type(failures) is not list:
        return f"its failures are not a list but {type(failures).__name__!r}"
    for f in failures:
        if (
            type(f) is not Failure
            or type(f.sequence) is not int
            or not start <= f.sequence < stop
            or type(f.error) is not str
            or type(f.traceback) is not str
        ):
            return f"it claims a failure that is not a sequence of {start}..{stop} (exclusive) with its error as text"
    return None


def summaries_misfit(values: object, names: tuple[str, ...]) -> str | None:
    """Why ``values`` cannot answer a request for the summary functions ``names`` (None: they can): a value for each
    name, each plain JSON (a forged one nested 200,000 deep made the driver's run fail with a RecursionError)."""
    if type(values) is not dict or set(values) != set(names):
        return f"it answers for {sorted(map(str, values)) if isinstance(values, dict) else values!r}, not {list(names)}"
    if not plain(values):
        return f"its values are not plain JSON (numbers, text, lists and dicts of them, at most {MAX_DEPTH} deep)"
    return None
