"""How a column of a chunk becomes Cassandra cells and partitions, and back: blocks of little-endian numbers.

Kept apart from :mod:`.cassandra_results` (which sends and fetches them) because the layout is one decision
with its own figures (docs/cassandra.md): ``BLOCK`` values per cell (128 KiB), and for a trajectory,
flattened row by row, ``PART_BLOCKS`` blocks per partition (2 MiB).
"""

from __future__ import annotations

import math

import numpy as np

from ..chunk import KIND_DTYPES, trajectory_steps

#: values per block: 128 KiB for a number column (Cassandra's guidance: cells well under 1 MB)
BLOCK = 16_384
#: blocks per partition of a trajectory column: 16 × 128 KiB = 2 MiB (Cassandra's guidance: partitions of a few
#: MB at most): as fast as 4 with a quarter of the partitions, 64 slower (bench_trajectories.py, docs/benchmarks.md)
PART_BLOCKS = 16

_LE = {"int": np.dtype("<i8"), "float": np.dtype("<f8")}


def encode(values: np.ndarray, kind: str) -> list[bytes]:
    """A column as blocks of ``BLOCK`` values: little-endian numbers (a trajectory's row by row), or bools packed 8
    per byte."""
    if kind == "bool":
        return [np.packbits(values[i : i + BLOCK], bitorder="little").tobytes() for i in range(0, len(values), BLOCK)]
    raw = np.ascontiguousarray(values, dtype=_LE["float" if trajectory_steps(kind) else kind]).reshape(-1)
    return [raw[i : i + BLOCK].tobytes() for i in range(0, len(raw), BLOCK)]


def decode(blocks: list[bytes], kind: str, rows: int) -> np.ndarray:
    """The column of ``rows`` values (rows × steps for a trajectory) that :func:`encode` cut into ``blocks``."""
    if kind == "bool":
        out = np.empty(rows, dtype=bool)
        for i, data in enumerate(blocks):
            part = np.unpackbits(
                np.frombuffer(data, dtype=np.uint8), count=min(BLOCK, rows - i * BLOCK), bitorder="little"
            )
            out[i * BLOCK : i * BLOCK + len(part)] = part
        return out
    steps = trajectory_steps(kind)
    values = rows * (steps or 1)
    # filled block by block into one array: no joined copy of the blocks (a trajectory chunk can be large)
    flat = np.empty(values, dtype=_LE["float" if steps else kind])
    pos = 0
    for data in blocks:
        take = min(len(data) // 8, values - pos)
        flat[pos : pos + take] = np.frombuffer(data, dtype=flat.dtype, count=take)
        pos += take
    if pos != values:
        raise ValueError(f"{pos} of {values} values")
    native = flat.astype(np.float64 if steps else KIND_DTYPES[kind], copy=False)
    return native.reshape(rows, steps) if steps else native


def block_count(kind: str, rows: int) -> int:
    """How many blocks a column of ``rows`` values of ``kind`` takes."""
    return math.ceil(rows * (trajectory_steps(kind) or 1) / BLOCK)


def part_name(name: str, kind: str, block: int) -> str:
    """The ``blocks`` partition (its ``name``) holding block ``block`` of a column: a trajectory's is cut every
    PART_BLOCKS blocks, a scalar column's is the column's name (≤ 16 blocks in a chunk of ≤ 262,144 rows)."""
    return f"{name}#{block // PART_BLOCKS}" if trajectory_steps(kind) else name


def part_names(name: str, kind: str, rows: int) -> list[str]:
    """Every ``blocks`` partition of a column of ``rows`` values of ``kind``, in block order."""
    if not trajectory_steps(kind):
        return [name]
    return [f"{name}#{p}" for p in range(max(1, math.ceil(block_count(kind, rows) / PART_BLOCKS)))]
