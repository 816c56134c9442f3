"""Each float column of a large chunk file gets the codec its values earn (none, LZ4 or zstd), every file reads back
exactly, and choosing never loads pandas."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

from ancho.chunk import ChunkResult
from ancho.columns import to_arrow
from ancho.stores import codecs
from ancho.stores.chunk_layout import chunk_files
from ancho.stores.chunk_writer import UNCOMPRESSED_ROWS, write_chunk_file

N = codecs.CHOOSE_FROM


def _columns(n: int = N) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    z = rng.standard_normal(n)
    return {
        # a continuous output: random mantissas, nothing for a compressor to find
        "uniform": rng.random(n),
        # Black–Scholes payoffs: half exactly 0, the rest continuous
        "payoff": np.maximum(100 * np.exp(0.2 * z) - 100, 0.0),
        # an integer-valued walk stored as floats: few distinct values, short repeats
        "walk": np.cumsum(np.where(z > 0, 1.0, -1.0)),
        "count": rng.integers(0, 5, n),
        "flag": z > 0,
        # a trajectory (sequences × steps) of the walk's kind
        "path": np.cumsum(np.where(rng.standard_normal((n, 4)) > 0, 1.0, -1.0), axis=1),
    }


def _file(tmp_path, columns: dict[str, np.ndarray], fail: int | None = None):
    n = len(next(iter(columns.values())))
    keep = np.arange(n) != fail
    sequences = np.arange(n, dtype=np.int64)[keep]
    result = ChunkResult(0, n, sequences, {k: v[keep] for k, v in columns.items()})
    write_chunk_file(tmp_path, result, False, tmp_path)
    ((_, _, path),) = chunk_files(tmp_path)
    return path, result


def _codecs(path) -> dict[str, str]:
    meta = pq.ParquetFile(path).metadata
    group = meta.row_group(0)
    return {group.column(i).path_in_schema: group.column(i).compression for i in range(meta.num_columns)}


def test_each_float_column_gets_the_codec_its_values_earn(tmp_path):
    path, _ = _file(tmp_path, _columns())
    assert _codecs(path) == {
        "uniform": "UNCOMPRESSED",  # zstd would save under 5%
        "payoff": "LZ4",  # LZ4 within 15% of zstd's bytes
        "walk": "ZSTD",  # LZ4 stores far more (~36% here)
        "count": "ZSTD",  # ints and bools: dictionary-encoded, zstd as before
        "flag": "ZSTD",
        "path.list.element": "ZSTD",  # a trajectory's values, by their leaf's path
    }


def _rule(values: np.ndarray) -> str:
    """The module's rule, from the two codecs' sizes measured here."""
    import pyarrow as pa

    raw = values.nbytes
    small = len(pa.Codec("zstd", -1).compress(values).to_pybytes())
    fast = len(pa.Codec("lz4").compress(values).to_pybytes())
    return "none" if small > 0.95 * raw else "lz4" if fast <= 1.15 * small else "zstd"


def test_the_rule_on_its_own():
    rng = np.random.default_rng(3)
    cases = [rng.random(codecs.SAMPLE), np.zeros(codecs.SAMPLE), np.repeat(rng.random(codecs.SAMPLE // 8), 8)]
    cases += [v[: codecs.SAMPLE].astype(np.float64).ravel() for v in _columns().values()]
    chosen = [codecs.choose(v) for v in cases]
    assert chosen == [_rule(v) for v in cases]
    assert {"none", "lz4", "zstd"} <= set(chosen)
    assert codecs.choose(np.empty(0)) == "zstd"


@pytest.mark.parametrize("fail", [None, 5])
def test_every_codec_reads_back_exactly(tmp_path, fail):
    columns = _columns()
    path, result = _file(tmp_path, columns, fail)
    table = pq.read_table(path)
    assert ("sequence" in table.column_names) == (fail is not None)
    for name, values in result.columns.items():
        assert table.column(name).combine_chunks().equals(to_arrow(values)), name


def test_small_chunks_keep_zstd_for_every_column(tmp_path):
    path, _ = _file(tmp_path, {k: v[: N - 1] for k, v in _columns().items()})
    assert set(_codecs(path).values()) == {"ZSTD"}
    assert UNCOMPRESSED_ROWS < N  # (and tiny ones none at all: tests/studies/test_packed_cost.py)


def test_a_column_whose_first_values_are_null_free_floats_only(tmp_path):
    import pyarrow as pa

    table = pa.table({"x": pa.array([1.5, None] * (N // 2)), "s": pa.array(["a"] * N)})
    assert codecs.column_codecs(table) == {"x": "zstd", "s": "zstd"}


def test_choosing_never_loads_pandas(tmp_path):
    code = (
        "import sys, numpy as np\n"
        "from ancho.chunk import ChunkResult\n"
        "from ancho.stores.chunk_writer import write_chunk_file\n"
        "from pathlib import Path\n"
        f"n = {N}\n"
        "r = ChunkResult(0, n, np.arange(n), {'x': np.random.default_rng(1).random(n)})\n"
        f"write_chunk_file(Path({str(tmp_path)!r}), r, False, 'here')\n"
        "print('pandas' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_a_pyarrow_without_lz4_keeps_zstd(monkeypatch):
    monkeypatch.setattr(codecs, "_has_lz4", lambda: False)
    payoff = _columns()["payoff"][: codecs.SAMPLE]
    assert codecs.choose(payoff) == "zstd"
