"""Running one chunk of sequences and packing the outputs into columns.

This is the hot loop of every executor (local worker processes and Spark
tasks alike), so it does as little as possible per sequence: rewind the
stream, call ``sequence``, check the output names with one dict-view
comparison, keep the dict. Types are checked and columns built once per
chunk, with NumPy.
"""

from __future__ import annotations

import os
import pickle
import re
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import OutputError
from .model import batch_block
from .recent import kept
from .streams import StreamFactory

if TYPE_CHECKING:
    from .expressions import Target

#: column kinds and the NumPy dtype each is stored as
KIND_DTYPES = {"bool": np.dtype(bool), "int": np.dtype(np.int64), "float": np.dtype(np.float64)}

#: the longest trajectory a sequence may return, unless ``ANCHO_MAX_STEPS`` says otherwise: a runaway loop appending
#: to a list would otherwise fill the store (a million steps × a million sequences is 8 TB)
MAX_STEPS = 100_000
#: the most outputs a model may return, and the longest name one may have: a page, a table or a report has a column
#: and a label for each (a model returning 10,000 outputs, or a name 100,000 characters long, is a bug, or an attack on
#: a server's summaries and reports); a trajectory holds many values under one name
MAX_OUTPUTS = 1_000
MAX_NAME_LENGTH = 100
_SERIES_KIND = re.compile(r"^float\[(\d+)\]$")


def trajectory_kind(steps: int) -> str:
    """The schema kind of a trajectory output: ``float[STEPS]`` (trajectories are always stored as float64)."""
    return f"float[{steps}]"


def trajectory_steps(kind: str) -> int | None:
    """The number of steps of a trajectory kind (``float[120]`` → 120); None for a scalar kind."""
    m = _SERIES_KIND.match(kind)
    return int(m.group(1)) if m else None


def output_name(name: object) -> bool:
    """Whether ``name`` may name an output: an identifier of at most :data:`MAX_NAME_LENGTH` characters, not
    ``sequence`` (the results' own column)."""
    return isinstance(name, str) and len(name) <= MAX_NAME_LENGTH and name.isidentifier() and name != "sequence"


def odd_outputs(kinds: dict[str, str]) -> str | None:
    """What is wrong with the outputs ``kinds`` (name → kind) a worker reported, or None: too many, a name that is
    no output's, a kind that is no column's (a worker's own check ran where model code runs, which may replace it)."""
    if len(kinds) > MAX_OUTPUTS:
        return f"{len(kinds):,} outputs; at most {MAX_OUTPUTS:,} are kept"
    for name, kind in kinds.items():
        if type(name) is not str or not output_name(name) or not known_kind(kind):
            return (
                f"an output {str(name)[:120]!r} of kind {str(kind)[:40]!r}: output names are identifiers of at most "
                f"{MAX_NAME_LENGTH} characters (not 'sequence'), kinds bool, int, float or float[N]"
            )
    lengths = [steps for kind in kinds.values() if (steps := trajectory_steps(kind))]
    if sum(lengths) > (cap := max_steps()):
        # (the summary holds eight numbers a step: 1,000 trajectories of 100,000 steps would be 800M numbers, a
        # record of ~15 GB that no driver, and no server, can hold)
        return (
            f"{len(lengths):,} trajectories of {sum(lengths):,} steps together; a run's trajectories may hold at most "
            f"{cap:,} steps together (ANCHO_MAX_STEPS): return fewer or shorter trajectories"
        )
    return None


def known_kind(kind: object) -> bool:
    """Whether ``kind`` is a column kind: bool, int, float or a trajectory's ``float[N]``."""
    return type(kind) is str and (kind in KIND_DTYPES or trajectory_steps(kind) is not None)


def kind_dtype(kind: str) -> np.dtype:
    """The NumPy dtype of a column of ``kind`` (a trajectory's values are float64)."""
    return np.dtype(np.float64) if trajectory_steps(kind) is not None else KIND_DTYPES[kind]


def max_steps() -> int:
    """The cap on a trajectory's length: ``ANCHO_MAX_STEPS`` (a positive integer) or :data:`MAX_STEPS`."""
    text = os.environ.get("ANCHO_MAX_STEPS", "").strip()
    if text.isdigit() and int(text) > 0:
        return int(text)
    return MAX_STEPS


@dataclass
class Failure:
    """A sequence that raised: kept so users can see and reproduce it."""

    sequence: int
    error: str  # "ExceptionType: message"
    traceback: str = ""

    def to_dict(self) -> dict:
        return {"sequence": self.sequence, "error": self.error, "traceback": self.traceback}


@dataclass
class ChunkResult:
    """What an executor returns for sequences ``start..stop-1``: columnar, never one object per sequence."""

    start: int
    stop: int
    sequences: np.ndarray  # int64, the sequences that succeeded, ascending
    columns: dict[str, np.ndarray]
    failures: list[Failure] = field(default_factory=list)
    seconds: float = 0.0  # time spent computing (not queueing or transferring)

    @property
    def size(self) -> int:
        return self.stop - self.start

    @property
    def failed(self) -> int:
        return len(self.failures)

    def kinds(self) -> dict[str, str]:
        return {name: column_kind(col) for name, col in self.columns.items()}

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        """Pickled with its columns as (dtype, shape, bytes) (:func:`_packed`): small ones copied into the pickle,
        large ones as buffers a worker's reply sends beside it. Why not as arrays: the driver unpickles a reply naming
        no NumPy constructor (a forged dtype made an object array of raw pointers; ``executors/wire.py``); and a
        study's tiny point's three 50-row columns cost ~22 µs a chunk to pickle as arrays, ~10 as bytes (four-chunk
        replies, 87 → 41 µs)."""
        columns = {name: _packed(col) for name, col in self.columns.items()}
        return _chunk_result, (self.start, self.stop, _packed(self.sequences), columns, self.failures, self.seconds)


#: columns under this many bytes are pickled as bytes (the wire's own line between in and out of band)
SMALL_COLUMN = 64 << 10


def _packed(column: np.ndarray) -> tuple[str, tuple[int, ...], Any]:
    """A column as its dtype's string, its shape and its bytes (a buffer when large: out of band on the wire)."""
    if column.dtype.kind not in "biuf":  # (numbers and bools only: never an object's pointers)
        raise TypeError(f"a column of dtype {column.dtype} does not cross between processes: numbers and bools do")
    if column.nbytes < SMALL_COLUMN:
        return column.dtype.str, column.shape, column.tobytes()
    return column.dtype.str, column.shape, pickle.PickleBuffer(np.ascontiguousarray(column).data)


def _column_of(packed: Any) -> np.ndarray:
    """The column :func:`_packed` packed, writable; ValueError for anything else (a reply is written by a process
    that runs model code: only a number or bool dtype, whole dimensions, and bytes that fill them exactly)."""
    if type(packed) is not tuple or len(packed) != 3 or type(packed[0]) is not str or type(packed[1]) is not tuple:
        raise ValueError("a column is not (dtype, shape, bytes)")
    dtype, shape, raw = np.dtype(packed[0]), packed[1], packed[2]
    if dtype.kind not in "biuf" or dtype.fields is not None or dtype.subdtype is not None:
        raise ValueError(f"a column of dtype {dtype} does not cross between processes")
    if not all(type(n) is int and n >= 0 for n in shape):
        raise ValueError(f"a column's shape {shape!r} is not whole dimensions")
    if type(raw) is bytes:  # (in the pickle: copied, so writable as an array is)
        raw = bytearray(raw)
    elif not isinstance(raw, bytearray | np.ndarray):  # (an out-of-band buffer: the driver's own array)
        raise ValueError(f"a column's bytes are a {type(raw).__name__}")
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


def _chunk_result(
    start: int, stop: int, sequences: Any, columns: dict[str, Any], failures: list[Failure], seconds: float
) -> ChunkResult:
    return ChunkResult(start, stop, _column_of(sequences), {n: _column_of(c) for n, c in columns.items()}, failures,
                       seconds)  # fmt: skip


@dataclass
class StoredChunk:
    """Sequences ``start..stop-1`` that the executor's task ran *and wrote to the run's store itself*.

    What the engine needs of a chunk without its columns: the range, the
    column kinds (the run's schema), the failure count and the first failure
    (for the error message; all are in the store), the compute time, and the
    per-output :class:`~ancho.stats.Tally` a precision goal needs (empty
    when the run has none). The task sends it only once the chunk is marked
    done in the store.
    """

    start: int
    stop: int
    rows: int
    column_kinds: dict[str, str]
    failed: int = 0
    failures: list[Failure] = field(default_factory=list)  # the first failure only
    seconds: float = 0.0
    tallies: dict = field(default_factory=dict)  # output name -> ancho.stats.Tally
    #: a local worker's chunk: its first scalar output's values (:func:`first_scalar`), which the driver gathers for
    #: the summary as chunks land (ancho.stores.landed) instead of reading them back from the file; 8 bytes a row
    #: through the pipe cost less than decoding them again (docs/benchmarks.md, "Batch models")
    first: np.ndarray | None = None
    #: the chunk itself, columns and all, when the driver asked to keep it (a study's tiny point, summarised from
    #: memory: reading its file back cost more than its columns through the pipe; docs/benchmarks.md, "Studies")
    kept: ChunkResult | None = None

    def __getstate__(self) -> dict[str, Any]:  # ``first`` as a column crosses (see ChunkResult.__reduce__)
        return {**self.__dict__, "first": None if self.first is None else _packed(self.first)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        first = state.get("first")
        self.__dict__.update({**state, "first": None if first is None else _column_of(first)})

    @classmethod
    def of(
        cls, result: ChunkResult, tally: Sequence[Target] | None = None, first: bool = False, keep: bool = False
    ) -> StoredChunk:
        """What the driver gets of ``result`` once its writer stored it; ``tally``: the targets of the run's
        precision goal (None: the run has none, no tallies); ``first``: send the first scalar output's values;
        ``keep``: send the whole chunk back too (:attr:`kept`)."""
        from .stats import chunk_tallies

        tallies = {} if tally is None else chunk_tallies(result.columns, list(tally))
        name = first_scalar(result.kinds()) if first else None
        return cls(
            result.start,
            result.stop,
            len(result.sequences),
            result.kinds(),
            len(result.failures),
            result.failures[:1],
            result.seconds,
            tallies,
            None if name is None else result.columns[name],
            result if keep else None,
        )

    @property
    def size(self) -> int:
        return self.stop - self.start

    def kinds(self) -> dict[str, str]:
        return dict(self.column_kinds)


def first_scalar(kinds: dict[str, str]) -> str | None:
    """The first output that is not a trajectory: the one the summary's column gathering takes (None: none)."""
    return next((name for name, kind in kinds.items() if trajectory_steps(kind) is None), None)


def column_kind(column: np.ndarray) -> str:
    """The schema kind of a chunk column: ``bool``/``int``/``float``, or ``float[STEPS]`` for a 2-D trajectory."""
    if column.ndim == 2:
        return trajectory_kind(column.shape[1])
    return dtype_kind(column.dtype)


def dtype_kind(dtype: np.dtype) -> str:
    kind = _KINDS.get(dtype.kind)  # (by NumPy's one-letter kind: np.issubdtype took ~2 µs, per column of every chunk)
    return "float" if kind is None else kind


_KINDS = {"b": "bool", "i": "int", "u": "int"}


def run_chunk(model, streams: StreamFactory, start: int, stop: int, name: str = "") -> ChunkResult:
    """Run sequences ``start..stop-1`` of ``model`` and return their outputs as columns.

    A sequence that raises is recorded as a :class:`Failure`; outputs that are
    not a mapping of numbers/bools, or whose names change, raise
    :class:`OutputError` naming the sequence and output, because that is a
    bug in the model rather than bad luck in one replication.
    """
    name = name or type(model).__name__
    seq = model.sequence
    at = streams.at
    rows: list[dict] = []
    append = rows.append
    ids: list[int] = []
    failures: list[Failure] = []
    keys = None
    t0 = time.perf_counter()
    for i in range(start, stop):
        try:
            out = seq(at(i))
        except (Exception, SystemExit) as exc:  # a failing replication is data, not a crash (nor a worker's exit)
            # the traceback starts in the user's code: this loop's own frame is left out
            tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__ and exc.__traceback__.tb_next))
            failures.append(Failure(i, f"{type(exc).__name__}: {exc}", tb))
            continue
        if keys is None:
            keys = check_names(out, f"sequence {i}", name)
        elif out.keys() != keys:
            raise_changed_names(out, keys, f"sequence {i}", name)
        append(out)
        ids.append(i)
    seconds = time.perf_counter() - t0
    columns = _columns(rows, ids, keys, name) if rows else {}
    if ids and len(ids) == stop - start:
        sequences = np.arange(start, stop, dtype=np.int64)
    else:
        sequences = np.array(ids, dtype=np.int64)
    return ChunkResult(start, stop, sequences, columns, failures, seconds)


def check_names(out, what: str, name: str):
    """The output names of the first result of a chunk (``what``: "sequence 5", "block 2 (…)"), or an OutputError."""
    if not isinstance(out, dict):
        if hasattr(out, "keys") and hasattr(out, "__getitem__"):
            raise OutputError(
                f"{what} of {name} returned a {type(out).__name__}; return a plain dict of output name → number or bool"
            )
        raise OutputError(
            f'{what} of {name} returned {type(out).__name__}, not a mapping; return a dict such as {{"x": 1.0}}'
        )
    if not out:
        raise OutputError(f"{what} of {name} returned an empty dict; return at least one output")
    if len(out) > MAX_OUTPUTS:
        raise OutputError(
            f"{what} of {name} returned {len(out):,} outputs; at most {MAX_OUTPUTS:,} are kept (return a trajectory, "
            "an n × steps array, for many values of one kind)"
        )
    for k in out:
        if not output_name(k):
            shown = (
                repr(k)
                if not isinstance(k, str) or len(k) <= MAX_NAME_LENGTH
                else f"{k[:40]!r}… ({len(k):,} characters)"
            )
            raise OutputError(
                f"{what} of {name} returned the output name {shown}; output names must be identifiers of at most "
                f"{MAX_NAME_LENGTH} characters, and not 'sequence'"
            )
    return out.keys()


def raise_changed_names(out, keys, what: str, name: str):
    if not isinstance(out, dict):
        raise OutputError(f"{what} of {name} returned {type(out).__name__}, not a dict like earlier sequences")
    new = sorted(set(out) - set(keys))
    missing = sorted(set(keys) - set(out))
    diff = "; ".join(
        part
        for part in (
            f"output '{new[0]}' is new" if new else "",
            f"output '{missing[0]}' is missing" if missing else "",
        )
        if part
    )
    raise OutputError(f"{what} of {name} returned different outputs than earlier sequences: {diff}")


_BOOL_TYPES = (bool, np.bool_)


def _columns(rows: list[dict], ids: list[int], keys, name: str) -> dict[str, np.ndarray]:
    columns = {}
    for key in keys:
        values = [r[key] for r in rows]
        columns[key] = _column(values, ids, key, name)
    return columns


_SERIES_TYPES = (list, tuple, np.ndarray)


def _column(values: list, ids: list[int], key: str, name: str) -> np.ndarray:
    types = set(map(type, values))
    if any(issubclass(t, _SERIES_TYPES) for t in types):
        return _series_column(values, ids, key, name)
    if types <= {bool, np.bool_}:
        return np.array(values, dtype=bool)
    if any(issubclass(t, _BOOL_TYPES) for t in types):
        # a bool mixed with numbers: name the first sequence where the type changed
        first_is_bool = isinstance(values[0], _BOOL_TYPES)
        for seq_id, v in zip(ids, values):
            if isinstance(v, _BOOL_TYPES) != first_is_bool:
                raise OutputError(
                    f"output '{key}' of {name} changed type at sequence {seq_id}: "
                    f"{type(v).__name__} after {type(values[0]).__name__}; return the same type every time"
                )
    for t in types:
        if not (issubclass(t, (int, float, np.integer, np.floating))):
            seq_id, v = next((s, v) for s, v in zip(ids, values) if type(v) is t)
            raise OutputError(
                f"output '{key}' of sequence {seq_id} of {name} is {t.__name__} ({v!r:.40}); outputs must be numbers or bools"
            )
    if all(issubclass(t, (int, np.integer)) for t in types):
        try:
            return np.array(values, dtype=np.int64)
        except OverflowError:
            seq_id, v = next((s, v) for s, v in zip(ids, values) if not -(2**63) <= v < 2**63)
            raise OutputError(
                f"output '{key}' of sequence {seq_id} of {name} is an integer too large for 64 bits ({v}); return a float"
            ) from None
    # ints and floats together are one numeric column: promoted to float (``max(x, 0)`` returns either)
    return np.array(values, dtype=np.float64)


def _series_column(values: list, ids: list[int], key: str, name: str) -> np.ndarray:
    """A trajectory output as a 2-D float64 array (sequences × steps), or an OutputError naming sequence and output.

    Each value is checked on its own (a few µs per sequence): ``np.array(values, float)`` alone would accept
    numeric strings ("1") and report ragged lengths without saying which sequence changed them.
    """
    first = None
    cap = max_steps()
    rows = []
    for seq_id, v in zip(ids, values):
        where = f"output '{key}' of sequence {seq_id} of {name}"
        if not isinstance(v, _SERIES_TYPES):
            raise OutputError(
                f"{where} is {type(v).__name__} while other sequences of the chunk returned a series for it; "
                "return a list of numbers every time (or a number every time)"
            )
        a = np.asarray(v) if not isinstance(v, np.ndarray) else v
        if a.dtype == object or a.ndim != 1:
            what = f"a nested series of shape {a.shape}" if a.ndim > 1 else "a series with non-numbers or nested lists"
            raise OutputError(f"{where} is {what}; a trajectory must be a flat list or 1-D array of numbers")
        if a.dtype.kind not in "biuf":
            sample = a[0] if a.size else ""
            raise OutputError(
                f"{where} holds {a.dtype.name} values ({sample!r:.40}); a trajectory must hold numbers (or bools) only"
            )
        if len(a) > cap:
            raise OutputError(
                f"{where} has {len(a)} steps, more than the cap of {cap}; "
                "return fewer steps (e.g. every k-th) or raise ANCHO_MAX_STEPS"
            )
        if first is None:
            first = len(a)
        elif len(a) != first:
            raise OutputError(
                f"{where} has {len(a)} steps but earlier sequences returned {first}; "
                "a trajectory must have the same length in every sequence of a run"
            )
        rows.append(a)
    if first == 0:
        raise OutputError(f"output '{key}' of {name} is an empty series; a trajectory needs at least one step")
    return np.array(rows, dtype=np.float64).reshape(len(rows), first or 0)


#: this thread's stream factories by seed: runners of one seed share one (a study's points share its seed, and a
#: worker runs one chunk at a time, each sequence rewinding the generator first; building one cost ~30 µs a point)
_STREAMS = threading.local()
_STREAMS_KEPT = 8


def _shared_streams(seed: int) -> StreamFactory:
    factories: OrderedDict[int, StreamFactory] | None = getattr(_STREAMS, "kept", None)
    if factories is None:
        factories = _STREAMS.kept = OrderedDict()
    return kept(factories, seed, lambda: StreamFactory(seed), _STREAMS_KEPT)


class ChunkRunner:
    """A model instance prepared in a worker (parameters set, ``setup`` called) plus its streams.

    A batch model (one that defines ``sequences``) runs through
    :func:`ancho.batch.run_batch_chunk` in fixed blocks of its ``block``;
    every executor gets that path by using this class.
    """

    def __init__(self, cls, params: dict, seed: int):
        self.model = cls(**params)
        self.model.setup()
        self.streams = _shared_streams(seed)
        self.name = cls.__name__
        self.block = batch_block(cls)

    def run(self, start: int, stop: int) -> ChunkResult:
        if self.block:
            from .batch import run_batch_chunk

            return run_batch_chunk(self.model, self.streams, start, stop, self.block, self.name)
        return run_chunk(self.model, self.streams, start, stop, self.name)


def failure_message(result: ChunkResult | StoredChunk, failures: int, allowed: int, done: int) -> str:
    """The error of a run whose failed sequences are more than ``allowed`` of the ``done`` so far, naming the first
    in ``result`` (when every one failed, allowing failures would not help: the error is what to fix)."""
    first = result.failures[0]
    if failures >= done:
        count = f"every sequence so far failed: {failures:,}" if failures > 1 else "the first sequence"
        return f"sequence {first.sequence} failed: {first.error} ({count})"
    allowance = f"--max-failures allows {allowed}" if allowed else "allow some with --max-failures N"
    return f"sequence {first.sequence} failed: {first.error} ({failures} failure{'s' if failures != 1 else ''}; {allowance})"
