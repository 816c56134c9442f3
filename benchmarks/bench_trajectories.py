"""Trajectory outputs: what they cost to store, the driver's memory on a big run, and the per-step summary's time.

    .venv/bin/python benchmarks/bench_trajectories.py [--cassandra URL] [--sequences 1000000] [--steps 1000]
        [--workers 2] [--storage-sequences 20000] [--storage-steps 100] [--skip-big]

1. **Storage per value** — one run of a batch model returning a trajectory ``walk`` of ``--storage-steps``
   steps *and the same values* as scalar outputs ``w000``, ``w001``, … (the baseline, same run, same chunks):
   bytes per value on disk in the embedded store (each Parquet column chunk's compressed size, from the
   files' metadata), and with ``--cassandra`` the blob bytes, CQL rows and partitions per million values in
   Cassandra. Then the write time per value of each form: the same chunk written as a trajectory only and
   as scalars only, each into a fresh run, interleaved (median of 3).
2. **Driver memory** — ``--sequences`` × ``--steps`` (default 1,000,000 × 1,000) of an integer-valued ±1
   random walk (stored as float64; paths that compress as real ones do, unlike uniform noise, which would
   take 8 GB on disk) on the embedded store with ``--workers``, in a child process: its peak RSS
   (``VmHWM``) after the run, summary included, against the same child's VmHWM before the run.
3. **Per-step summary** — of that run's trajectory (``ancho.trajectories.trajectory_summary``: the mean and
   its interval in one pass, exact percentiles in step blocks of 64 MB), against the baseline of reading the
   values alone (one pass of ``Store.iter_column``).

No timing is asserted; results go to docs/benchmarks.md ("Trajectories").
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

from _common import base_parser, cleanup, fmt, header, load_note, scratch_home, table

WALK = '''
import numpy as np
import ancho


class Walk(ancho.Model):
    """An integer-valued ±1 random walk, n paths at a time."""

    steps: int = 1000
    copies: bool = False  # also return every step as a scalar output (the storage baseline)

    def sequences(self, rng, n):
        walk = np.cumsum(rng.integers(0, 2, (n, self.steps), dtype=np.int8) * 2 - 1, axis=1, dtype=np.int32)
        out = {"walk": walk.astype(np.float64)}
        if self.copies:
            out.update((f"w{k:03d}", out["walk"][:, k].copy()) for k in range(self.steps))
        return out
'''


def model_file(folder: Path) -> str:
    path = folder / "walk.py"
    path.write_text(WALK)
    return str(path)


def vm(field: str) -> int:
    """A ``/proc/self/status`` figure in bytes (VmHWM, VmRSS)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


# -- 1. storage -------------------------------------------------------------------------------------------
def parquet_bytes(store, run_id: str) -> tuple[int, int]:
    """Compressed bytes of the trajectory column and of the scalar copies, over the run's chunk files."""
    import pyarrow.parquet as pq

    traj = scal = 0
    for path in store.results(run_id).paths:
        meta = pq.ParquetFile(path).metadata
        for g in range(meta.num_row_groups):
            group = meta.row_group(g)
            for c in range(group.num_columns):
                col = group.column(c)
                top = col.path_in_schema.split(".")[0]
                if top == "walk":
                    traj += col.total_compressed_size
                elif top.startswith("w"):
                    scal += col.total_compressed_size
    return traj, scal


def cassandra_bytes(store, run_id: str) -> dict[str, tuple[int, int, int]]:
    """Per form: (blob bytes, CQL rows, partitions) in the ``blocks`` table."""
    results = store._results_for_run(run_id)
    out = {"trajectory": [0, 0, set()], "scalars": [0, 0, set()]}
    rows = store.session.execute(
        f"SELECT chunk_start, name, data FROM {results.ks}.blocks WHERE run_id = %s ALLOW FILTERING", (run_id,)
    )
    for r in rows:
        form = out["trajectory" if r.name.startswith("walk") else "scalars"]
        form[0] += len(r.data)
        form[1] += 1
        form[2].add((r.chunk_start, r.name))
    return {k: (v[0], v[1], len(v[2])) for k, v in out.items()}


def scratch_catalog(url: str) -> str:
    """``url`` with a fresh catalog keyspace of its own (dropped at the end)."""
    base = url.split("?", 1)[0].rstrip("/")
    if base.count("/") > 2:
        base = base.rsplit("/", 1)[0]
    return f"{base}/tbench{uuid.uuid4().hex[:8]}"


def write_times(store, make_run, chunk, reps: int = 3) -> tuple[float, float]:
    """Seconds to write ``chunk`` as a trajectory only, and as scalars only (fresh runs, interleaved; medians)."""
    from ancho.chunk import ChunkResult

    walk = chunk.columns["walk"]
    forms = {
        "trajectory": {"walk": walk},
        "scalars": {f"w{k:03d}": walk[:, k].copy() for k in range(walk.shape[1])},
    }
    times: dict[str, list[float]] = {k: [] for k in forms}
    for _ in range(reps):
        for name, columns in forms.items():
            run_id = make_run()
            t = time.perf_counter()
            store.write_chunk(run_id, ChunkResult(chunk.start, chunk.stop, chunk.sequences, columns))
            store.completed_ranges(run_id)  # (Cassandra: waits for the done marker)
            times[name].append(time.perf_counter() - t)
            store.delete_run(run_id)
    return tuple(sorted(v)[len(v) // 2] for v in times.values())  # type: ignore[return-value]


def storage(args, folder: Path) -> list[list]:
    import ancho
    from ancho.stores.base import RunRecord

    n, s = args.storage_sequences, args.storage_steps
    values = n * s
    stores = [("embedded", str(folder / "home"))] + (
        [("cassandra", scratch_catalog(args.cassandra))] if args.cassandra else []
    )
    rows = []
    for name, url in stores:
        res = ancho.run(model_file(folder), {"steps": s, "copies": True}, sequences=n, seed=1, workers=2, store=url)
        store = res.store
        if name == "embedded":
            traj, scal = parquet_bytes(store, res.run_id)
            extra = ("", "")
        else:
            found = cassandra_bytes(store, res.run_id)
            (traj, t_rows, t_parts), (scal, s_rows, s_parts) = found["trajectory"], found["scalars"]
            extra = (
                f"{t_rows * 1e6 / values:.0f} rows, {t_parts * 1e6 / values:.0f} partitions",
                f"{s_rows * 1e6 / values:.0f} rows, {s_parts * 1e6 / values:.0f} partitions",
            )
        from ancho.chunk import ChunkResult

        seqs = store.read_column(res.run_id, "sequence")
        one = ChunkResult(0, len(seqs), seqs, {"walk": store.read_column(res.run_id, "walk")})  # the whole run

        def make_run(store=store) -> str:
            run_id = f"b{uuid.uuid4().hex[:12]}"
            store.create_run(RunRecord(id=run_id, owner="bench", model="Walk"))
            return run_id

        t_traj, t_scal = write_times(store, make_run, one)
        per = len(seqs) * s
        rows.append([name, "trajectory", f"{traj / values:.3f}", extra[0], f"{t_traj / per * 1e9:.1f}"])
        rows.append([name, f"{s} scalar outputs", f"{scal / values:.3f}", extra[1], f"{t_scal / per * 1e9:.1f}"])
        rows.append([name, "ratio trajectory / scalars", f"{traj / scal:.3f}", "", f"{t_traj / t_scal:.3f}"])
        store.delete_run(res.run_id)
        if name == "cassandra":
            store.drop_catalog()
            store.close()
    return rows


def partition_sizes(url: str, steps: int, sequences: int, reps: int = 3) -> list[list[str]]:
    """Cassandra: one trajectory chunk written and read back with 4, 16 and 64 blocks per partition (interleaved)."""
    import numpy as np

    from ancho.chunk import ChunkResult
    from ancho.stores import cassandra_blocks
    from ancho.stores.base import RunRecord
    from ancho.stores.cassandra import CassandraStore

    store = CassandraStore.from_url(scratch_catalog(url))
    rng = np.random.default_rng(1)
    walk = np.cumsum(rng.integers(0, 2, (sequences, steps)) * 2 - 1, axis=1).astype(np.float64)
    chunk = ChunkResult(0, sequences, np.arange(sequences, dtype=np.int64), {"walk": walk})
    kept = cassandra_blocks.PART_BLOCKS
    times: dict[int, list[tuple[float, float]]] = {pb: [] for pb in (4, 16, 64)}
    try:
        for _ in range(reps):
            for pb in times:
                cassandra_blocks.PART_BLOCKS = pb  # (read at call time by part_name/part_names)
                run_id = f"p{uuid.uuid4().hex[:12]}"
                store.create_run(RunRecord(id=run_id, owner="bench", model="Walk", schema={"walk": f"float[{steps}]"}))
                t = time.perf_counter()
                store.write_chunk(run_id, chunk)
                store.completed_ranges(run_id)
                w = time.perf_counter() - t
                t = time.perf_counter()
                back = store.read_column(run_id, "walk")
                r = time.perf_counter() - t
                assert np.array_equal(back, walk)
                store.delete_run(run_id)
                times[pb].append((w, r))
    finally:
        cassandra_blocks.PART_BLOCKS = kept
        store.drop_catalog()
        store.close()
    values = sequences * steps
    rows = []
    for pb, ts in times.items():
        w = sorted(t[0] for t in ts)[len(ts) // 2]
        r = sorted(t[1] for t in ts)[len(ts) // 2]
        rows.append([f"{pb} ({pb * 128} KiB)", f"{w / values * 1e9:.1f}", f"{r / values * 1e9:.1f}"])
    return rows


# -- 2 and 3. the big run, in a child ----------------------------------------------------------------------
def big_child(args) -> None:
    """The run and the summaries, in this (child) process; prints one JSON line."""
    import numpy as np

    import ancho
    from ancho.trajectories import trajectory_summary

    folder = Path(args.child)
    before = vm("VmHWM")
    t = time.perf_counter()
    res = ancho.run(
        model_file(folder),
        {"steps": args.steps},
        sequences=args.sequences,
        seed=3,
        workers=args.workers,
        store=str(folder / "home"),
    )
    run_s = time.perf_counter() - t
    peak = vm("VmHWM")
    store, run_id = res.store, res.run_id
    t = time.perf_counter()
    rows = 0
    for block in store.iter_column(run_id, "walk"):
        rows += len(block)
    read_s = time.perf_counter() - t
    t = time.perf_counter()
    summary, _ = trajectory_summary(lambda: store.iter_column(run_id, "walk"), [], **expected(rows))
    summary_s = time.perf_counter() - t
    mean = np.asarray(summary["mean"])
    disk = sum(p.stat().st_size for p in (folder / "home").rglob("*.parquet"))
    chunks = len(store.completed_ranges(run_id))
    print(
        json.dumps(
            {
                "before": before,
                "peak": peak,
                "after_summary": vm("VmHWM"),
                "run_s": run_s,
                "read_s": read_s,
                "summary_s": summary_s,
                "rows": rows,
                "chunks": chunks,
                "disk": disk,
                "max_abs_mean": float(np.abs(mean).max()),
                "status": res.status,
            }
        )
    )


def big(args, folder: Path) -> dict:
    child = folder / "big"
    child.mkdir()
    cmd = [
        sys.executable,
        __file__,
        "--child",
        str(child),
        "--sequences",
        str(args.sequences),
        "--steps",
        str(args.steps),
        "--workers",
        str(args.workers),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"the big run failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def expected(rows: int) -> dict:
    """The row count a run's summary passes (its gathering rides on the mean's pass), where this tree takes it."""
    import inspect

    from ancho.trajectories import trajectory_summary

    return {"expected_rows": rows} if "expected_rows" in inspect.signature(trajectory_summary).parameters else {}


def main() -> None:
    p = base_parser(__doc__.splitlines()[0])
    p.add_argument("--cassandra", default="", help="a cassandra:// URL: measure the Cassandra store too")
    p.add_argument("--sequences", type=int, default=1_000_000)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--storage-sequences", type=int, default=20_000)
    p.add_argument("--storage-steps", type=int, default=100)
    p.add_argument("--skip-big", action="store_true", help="only the storage figures")
    p.add_argument("--child", default="", help=argparse_hidden())
    args = p.parse_args()
    if args.child:
        big_child(args)
        return
    header("Trajectories")
    folder = scratch_home("traj")
    try:
        print(f"1. storage: {args.storage_sequences:,} sequences × {args.storage_steps} steps, same run")
        print(
            table(
                storage(args, folder),
                ["store", "form", "bytes/value", "Cassandra layout per 1M values", "write ns/value"],
            )
        )
        if args.cassandra:
            n, steps = 20_000, 1000
            print(f"\n1b. Cassandra: one chunk of {n:,} × {steps} steps, blocks per partition (median of 3)")
            print(
                table(
                    partition_sizes(args.cassandra, steps, n), ["blocks/partition", "write ns/value", "read ns/value"]
                )
            )
        if not args.skip_big:
            free = os.statvfs(folder)
            print(
                f"\n2-3. {args.sequences:,} × {args.steps} steps, {args.workers} workers (free disk {free.f_bavail * free.f_frsize / 1e9:.0f} GB)"
            )
            r = big(args, folder)
            values = r["rows"] * args.steps
            print(
                table(
                    [
                        ["driver VmHWM before the run", fmt(r["before"] / 1e6) + " MB"],
                        ["driver VmHWM after the run (summary included)", fmt(r["peak"] / 1e6) + " MB"],
                        [
                            "run, end to end",
                            f"{r['run_s']:.1f} s ({r['chunks']} chunks, {r['disk'] / values:.3f} bytes/value on disk)",
                        ],
                        ["reading the values alone (one pass)", f"{r['read_s']:.1f} s"],
                        [
                            "per-step summary (mean, interval, p5..p95)",
                            f"{r['summary_s']:.1f} s ({r['summary_s'] / r['read_s']:.1f}× the read)",
                        ],
                        ["driver VmHWM after the summary again", fmt(r["after_summary"] / 1e6) + " MB"],
                        ["status / |mean| max over steps", f"{r['status']} / {r['max_abs_mean']:.3f}"],
                    ],
                    ["figure", "value"],
                )
            )
        print(f"\nload after: {load_note()}")
    finally:
        cleanup(folder)


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
