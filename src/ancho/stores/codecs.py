"""Each float column's compression in a chunk file, chosen from a sample of its values.

Why: at a batch model's tens of nanoseconds a sequence, compressing a chunk is
as costly as computing it, and what zstd buys depends on the values. Measured
on 1M-row float64 columns in one process (Parquet, plain encoding; ns a row to
write, bytes a row; docs/benchmarks.md, "Batch models", eleventh pass):

===============================  ============  ============  ===========
column                           zstd −1       LZ4           none
===============================  ============  ============  ===========
uniform random values            12.4 / 8.01   7.3 / 8.04    6.6 / 8.00
Black–Scholes payoffs (half 0)   21.5 / 3.99   17.6 / 4.40   6.6 / 8.00
integer-valued random walk       22.7 / 1.22   12.7 / 1.66   6.8 / 8.00
===============================  ============  ============  ===========

Continuous outputs (times, costs, prices) do not compress: zstd is pure cost
there. Where many values repeat (zeros, small integers) it earns its keep, and
LZ4 comes close at less cost when the repeats are long runs (it also reads
back faster: 6.4 against 11.6 ns a row for the payoffs). So a column is
stored uncompressed when zstd saves under 5% of its sample, with LZ4 when
LZ4's bytes are within 15% of zstd's, else with zstd: LZ4's 36% more bytes
for the walk are the disk a trajectory of counts would lose. The sample is
the column's first :data:`SAMPLE` values, compressed both ways (~0.15 ms a
column, ~0.15 ns a row of a 1M-row chunk). Readers see no difference: every
codec is lossless and each file names its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..columns import to_numpy

if TYPE_CHECKING:
    import pyarrow as pa

#: chunks of fewer rows keep zstd for every column (their files are small and their codecs' set-up dominates)
CHOOSE_FROM = 65_536
#: values of a column compressed both ways to choose its codec
SAMPLE = 16_384
#: a column whose sample zstd shrinks to more than this fraction of its bytes is stored uncompressed
PLAIN_ABOVE = 0.95
#: LZ4 is chosen when its bytes are at most this many times zstd's
LZ4_WITHIN = 1.15
#: zstd's level for chunk files: level −1 cost ~20% less CPU to write than the default for ~3% more bytes
ZSTD_LEVEL = -1


def leaf_paths(schema: pa.Schema) -> dict[str, str]:
    """Each column's Parquet leaf path (what per-column options are keyed by) by its name."""
    import pyarrow as pa

    return {f.name: f"{f.name}.list.element" if pa.types.is_fixed_size_list(f.type) else f.name for f in schema}


def float_values(column: pa.ChunkedArray, count: int) -> np.ndarray | None:
    """Up to ``count`` of a float64 (or fixed-size list of float64) column's first values; None for other types."""
    import pyarrow as pa

    kind = column.type
    if pa.types.is_fixed_size_list(kind):
        kind = kind.value_type
    if not pa.types.is_float64(kind) or column.num_chunks == 0:
        return None
    first = column.chunk(0)
    if pa.types.is_fixed_size_list(first.type):
        first = first.flatten()
    if first.null_count:
        return None
    return to_numpy(first.slice(0, count))  # (not ``Array.to_numpy``: it imports pandas, see ``columns.py``)


def choose(values: np.ndarray) -> str:
    """The codec for a column whose first values are ``values``: "none", "lz4" or "zstd" (see the module's text)."""
    import pyarrow as pa

    raw = values.nbytes
    if raw == 0:
        return "zstd"
    data = np.ascontiguousarray(values)
    small = pa.Codec("zstd", ZSTD_LEVEL).compress(data).size
    if small > PLAIN_ABOVE * raw:
        return "none"
    if not _has_lz4():
        return "zstd"
    fast = pa.Codec("lz4").compress(data).size
    return "lz4" if fast <= LZ4_WITHIN * small else "zstd"


def _has_lz4() -> bool:
    """Whether this pyarrow compresses LZ4 (a build may leave it out)."""
    import pyarrow as pa

    return bool(pa.Codec.is_available("lz4"))


def column_codecs(table: pa.Table) -> dict[str, str] | None:
    """Each leaf's codec for ``table``'s chunk file, or None (zstd for all) under :data:`CHOOSE_FROM` rows."""
    if table.num_rows < CHOOSE_FROM:
        return None
    paths = leaf_paths(table.schema)
    codecs = {}
    for name, path in paths.items():
        values = float_values(table.column(name), SAMPLE)
        codecs[path] = "zstd" if values is None else choose(values)
    return codecs
