"""Which file format for the embedded store's chunks: write and read-one-column cost, file size.

    .venv/bin/python benchmarks/bench_store_formats.py [--rows 200000] [--reps 7] [--fsync]

One chunk like a gambler run's: ``sequence`` int64 (0..N-1), ``x`` float64
(uniform, incompressible), ``won`` bool, ``rounds`` int64 (small,
geometric-like). Each format writes the chunk to a file under /tmp and
reads back the one column ``x`` into a NumPy array (what a summary does,
column by column). Times include building the Arrow table from NumPy
columns (the store's own path) and exclude fsync unless ``--fsync``
(the store fsyncs every chunk; that cost is the disk's, the same for every
format, and is shown separately).

Baseline in the same run: the raw columns written with ``ndarray.tofile``
and one column read with ``np.fromfile`` (memory bandwidth + page cache).

Arrow arrays are built with ``pa.Array.from_buffers`` rather than
``pa.table(dict_of_ndarrays)``: the latter imports pandas (~1 s) the first
time, which is a start-up cost, not a per-row one; it is measured once on
its own in a subprocess.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.feather as feather  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402


def make_columns(n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    return {
        "sequence": np.arange(n, dtype=np.int64),
        "x": rng.random(n),
        "won": rng.random(n) < 0.3,
        "rounds": (rng.geometric(0.05, n) + 2).astype(np.int64),
    }


def arrow_array(v: np.ndarray):
    v = np.ascontiguousarray(v)
    if v.dtype == np.bool_:
        return pa.Array.from_buffers(pa.bool_(), len(v), [None, pa.py_buffer(np.packbits(v, bitorder="little"))])
    return pa.Array.from_buffers(pa.from_numpy_dtype(v.dtype), len(v), [None, pa.py_buffer(v)])


def to_table(cols: dict[str, np.ndarray]) -> pa.Table:
    return pa.Table.from_arrays([arrow_array(v) for v in cols.values()], names=list(cols))


def numpy_x(arr) -> np.ndarray:
    """Column x (float64, no nulls) as NumPy without ``to_numpy`` (which imports pandas in pyarrow 26)."""
    if isinstance(arr, pa.ChunkedArray):
        return np.concatenate([numpy_x(c) for c in arr.chunks]) if arr.num_chunks != 1 else numpy_x(arr.chunk(0))
    return np.frombuffer(arr.buffers()[1], dtype=np.float64, count=len(arr), offset=arr.offset * 8)


def _sync(fh, fsync: bool) -> None:
    if fsync:
        fh.flush()
        os.fsync(fh.fileno())


def fmt_parquet(codec: str):
    def write(cols, path, fsync):
        with open(path, "wb") as fh:
            pq.write_table(to_table(cols), fh, compression=codec)
            _sync(fh, fsync)

    def read(path):
        return numpy_x(pq.ParquetFile(path).read(columns=["x"]).column(0))

    return write, read


def fmt_feather(codec: str):
    def write(cols, path, fsync):
        with open(path, "wb") as fh:
            feather.write_feather(to_table(cols), fh, compression=codec)
            _sync(fh, fsync)

    def read(path):
        # memory-mapped: only column x's buffers are read (and decompressed)
        table = feather.read_table(str(path), columns=["x"], memory_map=True)
        return numpy_x(table.column(0)).copy()

    return write, read


def fmt_sqlite():
    def write(cols, path, fsync):
        db = sqlite3.connect(path, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={'FULL' if fsync else 'OFF'}")
        db.execute(
            "CREATE TABLE IF NOT EXISTS results (sequence INTEGER PRIMARY KEY, x REAL, won INTEGER, rounds INTEGER)"
        )
        db.execute("BEGIN")
        db.executemany(
            "INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?)",
            zip(cols["sequence"].tolist(), cols["x"].tolist(), cols["won"].tolist(), cols["rounds"].tolist()),
        )
        db.execute("COMMIT")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.close()

    def read(path):
        db = sqlite3.connect(path)
        try:
            n = db.execute("SELECT count(*) FROM results").fetchone()[0]
            return np.fromiter(
                (r[0] for r in db.execute("SELECT x FROM results ORDER BY sequence")), dtype=np.float64, count=n
            )
        finally:
            db.close()

    return write, read


def fmt_raw():
    def write(cols, path, fsync):
        Path(path).mkdir(exist_ok=True)
        for name, v in cols.items():
            with open(Path(path) / name, "wb") as fh:
                v.tofile(fh)
                _sync(fh, fsync)

    def read(path):
        return np.fromfile(Path(path) / "x", dtype=np.float64)

    return write, read


FORMATS = {
    "raw .tofile (baseline)": fmt_raw(),
    "Parquet zstd (chosen)": fmt_parquet("zstd"),
    "Parquet snappy": fmt_parquet("snappy"),
    "Parquet none": fmt_parquet("none"),
    "Arrow IPC/Feather lz4": fmt_feather("lz4"),
    "Arrow IPC/Feather none": fmt_feather("uncompressed"),
    "SQLite rows (WAL)": fmt_sqlite(),
}


def batch_chunk(n: int) -> dict[str, np.ndarray]:
    """A batch model's chunk: ``sequence`` ascending int64 and the Black–Scholes call payoff (≈60% exact zeros)."""
    z = np.random.default_rng(7).standard_normal(n)
    st = 100.0 * np.exp((0.05 - 0.02) + 0.2 * z)
    return {"sequence": np.arange(n, dtype=np.int64), "payoff": np.exp(-0.05) * np.maximum(st - 105.0, 0.0)}


#: Parquet writer settings compared on a batch chunk: (label, ``pq.write_table`` keywords); "plain" is the store's
#: layout (no dictionary for floats, ``sequence`` delta-encoded), "no stats" leaves out the min/max statistics
_PLAIN = {"use_dictionary": [], "column_encoding": {"sequence": "DELTA_BINARY_PACKED"}}
BATCH_OPTIONS: list[tuple[str, dict]] = [
    ("dictionary (pyarrow default), zstd", {"compression": "zstd"}),
    ("plain, zstd level 3", {**_PLAIN, "compression": "zstd", "compression_level": 3}),
    ("plain, zstd (default level)", {**_PLAIN, "compression": "zstd"}),
    ("plain, zstd, no stats", {**_PLAIN, "compression": "zstd", "write_statistics": False}),
    ("plain, zstd level -1", {**_PLAIN, "compression": "zstd", "compression_level": -1}),
    ("plain, lz4", {**_PLAIN, "compression": "lz4"}),
    ("plain, snappy", {**_PLAIN, "compression": "snappy"}),
    ("plain, snappy, no stats", {**_PLAIN, "compression": "snappy", "write_statistics": False}),
    ("plain, floats snappy, sequence zstd", {**_PLAIN, "compression": {"sequence": "zstd", "payoff": "snappy"}}),
    ("plain, none", {**_PLAIN, "compression": "none"}),
]


def batch_options(n: int, reps: int, folder: Path) -> list[list]:
    """CPU ns per row to write one batch chunk (table built from NumPy, no fsync) and to read ``payoff`` back, and
    bytes per row, per writer setting. CPU seconds (``process_time``): steadier than wall time on a shared machine."""
    cols = batch_chunk(n)
    rows = []
    for label, kw in BATCH_OPTIONS:
        path = folder / "batch.parquet"
        writes, reads = [], []
        for _ in range(reps + 1):  # the first is a warm-up
            t = time.process_time()
            pq.write_table(to_table(cols), path, **kw)
            writes.append(time.process_time() - t)
            t = time.process_time()
            back = pq.read_table(path, columns=["payoff"]).column(0).to_numpy()
            reads.append(time.process_time() - t)
        assert np.array_equal(back, cols["payoff"]), label
        full = pq.read_table(path)
        assert all(np.array_equal(full.column(k).to_numpy(), v) for k, v in cols.items()), label
        rows.append([label, C.med(writes[1:]) / n * 1e9, min(writes[1:]) / n * 1e9, min(reads[1:]) / n * 1e9])
        rows[-1].append(size_of(path) / n)
        path.unlink()
    return rows


def size_of(path: Path) -> int:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.iterdir())
    return path.stat().st_size


def remove(path: Path) -> None:
    if path.is_dir():
        for f in path.iterdir():
            f.unlink()
        path.rmdir()
    elif path.exists():
        path.unlink()
    for extra in (Path(str(path) + "-wal"), Path(str(path) + "-shm")):
        extra.unlink(missing_ok=True)


def first_table_cost() -> dict[str, float]:
    """One-time cost of building the first Arrow table from NumPy, in a fresh process (pa.table vs from_buffers)."""
    code = (
        "import time, sys, numpy as np, pyarrow as pa\n"
        "v = np.arange(8.0)\n"
        "t = time.perf_counter()\n"
        "{stmt}\n"
        "print(time.perf_counter() - t, 'pandas' in sys.modules)\n"
    )
    stmts = {
        "pa.table({'x': ndarray})": "pa.table({'x': v})",
        "pa.Array.from_buffers": "pa.Table.from_arrays([pa.Array.from_buffers(pa.float64(), len(v), [None, pa.py_buffer(v)])], names=['x'])",
    }
    out = {}
    for name, stmt in stmts.items():
        times = []
        for _ in range(3):
            r = subprocess.run(
                [sys.executable, "-c", code.format(stmt=stmt)], capture_output=True, text=True, env=C.child_env()
            )
            secs, pandas = r.stdout.split()
            times.append(float(secs))
        out[name] = (C.med(times), pandas == "True")
    return out


def main() -> None:
    p = C.base_parser(__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=200_000)
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--fsync", action="store_true", help="fsync every write (as the store does)")
    p.add_argument(
        "--batch-rows",
        type=int,
        default=0,
        help="only compare Parquet writer settings on one batch chunk of this many rows (docs/benchmarks.md uses 262144)",
    )
    a = p.parse_args()
    if a.batch_rows:
        main_batch(a)
        return
    n = a.rows
    C.header(
        "bench_store_formats: one chunk, write + read one column",
        f"{n:,} rows (sequence int64, x float64, won bool, rounds int64), {a.reps} repetitions, "
        f"fsync {'on' if a.fsync else 'off'}",
    )
    cols = make_columns(n)
    folder = C.scratch_home("formats")
    res: dict[str, dict[str, list[float]]] = {}
    sizes: dict[str, int] = {}
    try:
        for write, read in FORMATS.values():  # untimed warm-up of every code path
            path = folder / "warm"
            write(cols, path, False)
            read(path)
            remove(path)
        for _rep in range(a.reps):
            for k, (name, (write, read)) in enumerate(FORMATS.items()):
                path = folder / f"f{k}"
                t = time.perf_counter()
                write(cols, path, a.fsync)
                tw = time.perf_counter() - t
                sizes[name] = size_of(path)
                t = time.perf_counter()
                x = read(path)
                tr = time.perf_counter() - t
                assert np.array_equal(x, cols["x"]), name
                remove(path)
                r = res.setdefault(name, {"write": [], "read": []})
                r["write"].append(tw / n * 1e6)
                r["read"].append(tr / n * 1e6)
        # fsync cost alone: the same Parquet zstd write with and without fsync
        fs = {"off": [], "on": []}
        w, _ = FORMATS["Parquet zstd (chosen)"]
        for _ in range(a.reps):
            for mode in ("off", "on"):
                path = folder / "fs"
                t = time.perf_counter()
                w(cols, path, mode == "on")
                fs[mode].append((time.perf_counter() - t) * 1e3)
                remove(path)
    finally:
        C.cleanup(folder)

    base = res["Parquet zstd (chosen)"]
    raw = res["raw .tofile (baseline)"]
    rows = []
    for name, r in res.items():
        rows.append(
            [
                name,
                C.med(r["write"]),
                min(r["write"]),
                C.med(r["read"]),
                min(r["read"]),
                sizes[name] / n,
                sizes[name] / sizes["Parquet zstd (chosen)"],
                C.med(r["write"]) / C.med(raw["write"]),
                C.med(r["write"]) / C.med(base["write"]),
            ]
        )
    print("µs per row (median, min); size in bytes per row")
    print(
        C.table(
            rows,
            [
                "format",
                "write med",
                "write min",
                "read x med",
                "read x min",
                "B/row",
                "size × zstd",
                "write × raw",
                "write × zstd",
            ],
        )
    )
    print(
        f"\nfsync of one {n:,}-row Parquet zstd chunk: write {C.med(fs['off']):.1f} ms without, {C.med(fs['on']):.1f} ms with fsync "
        f"(+{(C.med(fs['on']) - C.med(fs['off'])) / n * 1e3:.3f} µs/row at this chunk size)"
    )
    ftc = first_table_cost()
    print("\nfirst Arrow table from NumPy in a fresh process (one-time cost):")
    print(C.table([[k, v[0] * 1e3, str(v[1])] for k, v in ftc.items()], ["call", "ms", "imports pandas"]))
    print(C.load_note())
    C.write_json(
        a.json,
        {
            "benchmark": "store_formats",
            "rows": n,
            "fsync": a.fsync,
            "results": {k: {m: C.stat(v) for m, v in r.items()} for k, r in res.items()},
            "bytes": sizes,
            "fsync_ms": {k: C.stat(v) for k, v in fs.items()},
            "first_table_s": {k: v[0] for k, v in ftc.items()},
        },
    )


def main_batch(a) -> None:
    """Writer settings for a batch model's chunk (the store's ``write_chunk`` choice, docs/benchmarks.md)."""
    n = a.batch_rows
    C.header(
        "bench_store_formats --batch-rows: Parquet writer settings on one batch chunk",
        f"{n:,} rows (sequence int64 ascending, payoff float64 ≈60% zeros), {a.reps} repetitions, no fsync",
    )
    folder = C.scratch_home("formats-batch")
    try:
        rows = batch_options(n, a.reps, folder)
    finally:
        C.cleanup(folder)
    print("CPU ns per row to write (table from NumPy + Parquet) and to read payoff back, bytes per row;")
    print("every setting reads back identical")
    print(C.table(rows, ["setting", "write med", "write min", "read min", "B/row"]))
    print(C.load_note())
    C.write_json(a.json, {"benchmark": "store_formats_batch", "rows": n, "results": rows})


if __name__ == "__main__":
    main()
