"""Running a chunk of a batch model: ``sequences(rng, n)`` over fixed blocks.

A batch model computes many sequences per call. So that sequence *i*'s
outputs never depend on chunk boundaries, workers, executors, retries or the
run's length, sequences are grouped in **fixed blocks** of ``B`` (the
model's ``block``): block *k* holds sequences ``k·B … k·B+B−1`` and is
ALWAYS computed by one call ``sequences(rng, B)`` whose ``rng`` is the
generator of sequence ``k·B`` (``StreamFactory.at(k·B)``, i.e.
``reference_generator(seed, k·B)``); sequence *i* is element ``i − k·B`` of
the returned arrays. A chunk that does not line up with blocks computes the
blocks it touches in full and keeps its own sequences (the few sequences it
computes and drops cost less than making results depend on the chunking).
So sequence *i* depends on (seed, i // B, B, the parameters) and nothing else.

Everything here is per block, never per sequence: outputs are checked once
per block with NumPy (shape, dtype, NaN-only, names) and columns are
concatenations of the blocks' slices. The only per-sequence objects are the
:class:`~ancho.chunk.Failure` records of a block whose call raised: each of
its sequences in the chunk is a failure, as the user asked for them all.
"""

from __future__ import annotations

import time
import traceback

import numpy as np

from .chunk import ChunkResult, Failure, check_names, max_steps, raise_changed_names, trajectory_kind
from .errors import OutputError
from .streams import StreamFactory

_KINDS = {"b": "bool", "i": "int", "u": "int", "f": "float"}
_DTYPES = {"bool": np.dtype(bool), "int": np.dtype(np.int64), "float": np.dtype(np.float64)}


def run_batch_chunk(model, streams: StreamFactory, start: int, stop: int, block: int, name: str = "") -> ChunkResult:
    """Run sequences ``start..stop-1`` of the batch ``model`` block by block; columns straight from its arrays."""
    name = name or type(model).__name__
    call = model.sequences
    at = streams.at
    parts: dict[str, list[np.ndarray]] = {}
    kinds: dict[str, str] = {}
    ids: list[tuple[int, int]] = []  # the ranges of the blocks that ran
    failures: list[Failure] = []
    keys = None
    t0 = time.perf_counter()
    for k in range(start // block, (stop - 1) // block + 1 if stop > start else 0):
        first = k * block
        lo, hi = max(start, first) - first, min(stop, first + block) - first
        try:
            out = call(at(first), block)
        except (Exception, SystemExit) as exc:  # a failing block is data: each of its sequences here is a failure
            # (SystemExit too: a model's sys.exit() ended its worker, and the chunk was retried for nothing)
            tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__ and exc.__traceback__.tb_next))
            error = f"{type(exc).__name__}: {exc}"
            if isinstance(exc, MemoryError):  # (a block's arrays: what the user can change is the block)
                error += f"; a block is {block:,} sequences at once: a smaller `block` on {name} needs less memory"
            failures.extend(Failure(i, error, tb) for i in range(first + lo, first + hi))
            continue
        what = f"block {k} (sequences {first}–{first + block - 1})"
        try:
            if keys is None:
                keys = check_names(out, what, name)
                parts = {key: [] for key in keys}
            elif out.keys() != keys:
                raise_changed_names(out, keys, what, name)
            for key in keys:
                column = _checked(out[key], block, key, kinds, what, name)
                parts[key].append(column[lo:hi])
        except OutputError:
            raise
        except (Exception, SystemExit) as exc:  # (what the model returned raised when read: hostile mapping or array)
            raise OutputError(f"the outputs of {name}, {what}, could not be read: {_said(exc)}") from None
        ids.append((first + lo, first + hi))
    seconds = time.perf_counter() - t0
    columns = {}
    for key, pieces in parts.items():
        dtype = _DTYPES.get(kinds[key], np.dtype(np.float64))  # a trajectory's kind is float[STEPS]
        # one piece: still copied, so the result never aliases an array the model may reuse
        columns[key] = np.concatenate(pieces, dtype=dtype) if len(pieces) > 1 else np.array(pieces[0], dtype=dtype)
    if not failures:  # every block ran: the ids are start..stop-1, one arange (not one a block, then a copy of all)
        sequences = np.arange(start, stop, dtype=np.int64)
    elif ids:
        sequences = np.concatenate([np.arange(a, b, dtype=np.int64) for a, b in ids])
    else:
        sequences = np.empty(0, dtype=np.int64)
    return ChunkResult(start, stop, sequences, columns, failures, seconds)


def _said(exc: BaseException) -> str:
    """``Type: message`` of an exception the model raised, at most 300 characters of it (its ``__str__`` is model
    code too, and may raise)."""
    try:
        text = str(exc)[:300]
    except Exception:  # noqa: BLE001 - a message that cannot be read is left out
        text = "(its message could not be read)"
    return f"{type(exc).__name__}: {text}"


def _checked(value, n: int, key: str, kinds: dict[str, str], what: str, name: str) -> np.ndarray:
    """``value`` as a 1-D numeric array of length ``n``, or a one-line OutputError naming the model and output."""
    where = f"output '{key}' of {name}, {what},"
    if isinstance(value, np.ndarray) and type(value) is not np.ndarray:  # a subclass: its own data, its methods not
        if type(value).__module__.startswith("numpy.ma"):
            raise OutputError(
                f"{where} is a masked array, whose masked values hold whatever was in memory; return a plain array "
                "(np.ma.filled(x, np.nan) for floats)"
            )
        value = np.asarray(value)
    elif not isinstance(value, np.ndarray):
        if np.ndim(value) == 0:
            raise OutputError(
                f"{where} is a scalar ({type(value).__name__}); sequences(rng, n) must return an array of length n for each output"
            )
        value = np.asarray(value)
    if value.ndim == 2:
        return _checked_series(value, n, key, kinds, where)
    if value.ndim != 1 or len(value) != n:
        raise OutputError(f"{where} has shape {value.shape}; return a 1-D array of length n = {n}")
    kind = _KINDS.get(value.dtype.kind)
    if kind is None:
        raise OutputError(
            f"{where} has dtype {value.dtype}; outputs must be numbers or bools (float, int or bool arrays)"
        )
    if kind == "int" and value.dtype == np.uint64 and n and value.max() >= 2**63:
        raise OutputError(f"{where} holds an integer too large for 64 bits ({value.max()}); return floats")
    # NaN-only: the first element decides whether to look at the rest (one comparison in the usual case)
    if kind == "float" and n and value[0] != value[0] and np.isnan(value).all():
        raise OutputError(f"{where} is NaN for every sequence; a NaN-only output is a bug in the model")
    seen = kinds.setdefault(key, kind)
    if seen.endswith("]"):
        raise OutputError(
            f"{where} is 1-D but earlier blocks returned an n × steps trajectory; return the same shape every time"
        )
    if seen != kind:
        if "bool" in (seen, kind):
            raise OutputError(f"{where} is {kind} after {seen} in earlier blocks; return the same type every time")
        kinds[key] = "float"  # ints and floats together are one numeric column, as for one-at-a-time models
    return value


def _checked_series(value: np.ndarray, n: int, key: str, kinds: dict[str, str], where: str) -> np.ndarray:
    """An ``n × steps`` trajectory block as float64, or an OutputError naming the output (same rules as one-at-a-time)."""
    rows, steps = value.shape
    if rows != n:
        raise OutputError(
            f"{where} has shape {value.shape}; a trajectory must be an array of shape (n, steps) with n = {n}"
        )
    if value.dtype.kind not in "biuf":
        raise OutputError(
            f"{where} has dtype {value.dtype}; a trajectory must hold numbers (float, int or bool arrays)"
        )
    if steps == 0:
        raise OutputError(f"{where} has 0 steps; a trajectory needs at least one step")
    cap = max_steps()
    if steps > cap:
        raise OutputError(
            f"{where} has {steps} steps, more than the cap of {cap}; return fewer steps or raise ANCHO_MAX_STEPS"
        )
    kind = trajectory_kind(steps)
    seen = kinds.setdefault(key, kind)
    if seen != kind:
        raise OutputError(
            f"{where} is {kind} after {seen} in earlier blocks; a trajectory has the same length every time"
        )
    return value.astype(np.float64, copy=False)
