"""The Cassandra store: ingest rate against the raw driver, one row per sequence, and reading 1,000,000 results back.

    .venv/bin/python benchmarks/bench_cassandra.py [--url cassandra://…] [--sequences 1000000] [--chunk 262144] [--reps 5]
        [--spark spark://127.0.0.1:7077 [--spark-sequences 1000000] [--spark-only]]

The URL defaults to ``$ANCHO_TEST_CASSANDRA_URL`` (``scripts/services start cassandra`` prints it).
Everything is written to a scratch catalog keyspace that is dropped at the end.

Results are a gambler-like run: ``x`` float64 (incompressible), ``won``
bool, ``rounds`` int64, every sequence succeeded (so ``sequence`` is not
stored), cut into chunks of ``--chunk`` sequences as the engine hands them
to the store.

1. **Ingest** — ``CassandraStore.write_chunk`` for every chunk of a fresh
   run, until the last chunk is acknowledged and marked done (encoding the
   columns into blocks, each chunk's column list and done marker), against the **baseline**: the raw driver writing
   the *same* ``blocks`` rows (already encoded, so the baseline pays nothing
   for encoding) with ``execute_concurrent_with_args`` and the same
   concurrency, into the same table. Interleaved repetition by repetition.
   Goal: store ≥ 0.9 × baseline (sequence results per second).
2. **One CQL row per sequence** — the design not taken: the raw driver
   writing ``(run_id, sequence) → x, won, rounds`` rows with
   ``execute_concurrent_with_args`` (concurrency 100), for ``--row-sample``
   sequences; sequence results per second against the store's.
3. **Read-back** — ``read_frame`` (all columns) and ``read_column('x')`` of
   the 1,000,000-sequence run, against the embedded store (SQLite + Parquet
   under /tmp) holding the same chunks, read the same way.
4. **Spark tasks writing directly** (``--spark MASTER``; ``--spark-only``
   skips 1–3) — ``ancho.run`` of ``--spark-sequences`` trivial sequences with
   three outputs (``models/outputs.py``) on the Spark cluster into this
   Cassandra store, end to end (summary in the driver, as for any run below
   20M sequences), with the tasks writing their chunks themselves
   (``writes="auto"``, the default) against the **baseline**: the same run
   with the columns sent back to the driver, which writes them
   (``writes="driver"``). Interleaved; outputs checked equal; the bytes the
   driver received from the tasks are reported too.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402
import numpy as np  # noqa: E402

from ancho.chunk import ChunkResult  # noqa: E402
from ancho.stores.base import RunRecord  # noqa: E402

SCHEMA = {"x": "float", "won": "bool", "rounds": "int"}


def make_chunks(n: int, size: int) -> list[ChunkResult]:
    rng = np.random.default_rng(7)
    out = []
    for a in range(0, n, size):
        b = min(n, a + size)
        m = b - a
        cols = {"x": rng.random(m), "won": rng.random(m) < 0.3, "rounds": (rng.geometric(0.05, m) + 2).astype(np.int64)}
        out.append(ChunkResult(a, b, np.arange(a, b, dtype=np.int64), cols))
    return out


def new_run(store, tag: str) -> str:
    run_id = f"{tag}{uuid.uuid4().hex[:10]}"
    store.create_run(RunRecord(id=run_id, owner="bench", model="Bench"))
    store.update_run(run_id, schema=SCHEMA)
    return run_id


def ingest_store(store, chunks) -> tuple[float, str]:
    run_id = new_run(store, "s")
    t0 = time.perf_counter()
    for c in chunks:
        store.write_chunk(run_id, c)
    store._results_for_run(run_id).flush()  # until every chunk is acknowledged and marked done
    t = time.perf_counter() - t0
    assert len(store.completed_ranges(run_id)) == len(chunks)
    return t, run_id


def ingest_raw(store, chunks, concurrency: int) -> float:
    """The same block rows, pre-encoded, written by the driver alone."""
    from cassandra.concurrent import execute_concurrent_with_args

    from ancho.stores.cassandra_results import WRITE_CONCURRENCY

    assert concurrency == WRITE_CONCURRENCY
    results = store._results_of("bench")
    run_id = f"raw{uuid.uuid4().hex[:10]}"
    rows = []
    for c in chunks:
        rows.extend(results.block_rows(run_id, c)[0])
    t0 = time.perf_counter()
    execute_concurrent_with_args(
        results.session, results._block, rows, concurrency=concurrency, raise_on_first_error=True
    )
    return time.perf_counter() - t0


def per_sequence_rows(store, chunks, sample: int) -> float:
    from cassandra.concurrent import execute_concurrent_with_args

    ks = store.add_owner("bench")
    store.session.execute(
        f"CREATE TABLE IF NOT EXISTS {ks}.per_sequence (run_id text, bucket int, sequence bigint, x double, won boolean, "
        "rounds bigint, PRIMARY KEY ((run_id, bucket), sequence))",
        timeout=120,
    )
    stmt = store.session.prepare(
        f"INSERT INTO {ks}.per_sequence (run_id, bucket, sequence, x, won, rounds) VALUES (?, ?, ?, ?, ?, ?)"
    )
    c = chunks[0]
    run_id = uuid.uuid4().hex[:10]
    rows = [
        (run_id, int(i) // 65_536, int(i), float(x), bool(w), int(r))
        for i, x, w, r in zip(
            c.sequences[:sample], c.columns["x"][:sample], c.columns["won"][:sample], c.columns["rounds"][:sample]
        )
    ]
    t0 = time.perf_counter()
    execute_concurrent_with_args(store.session, stmt, rows, concurrency=100, raise_on_first_error=True)
    return time.perf_counter() - t0


def spark_writes(store, master: str, n: int, reps: int) -> dict:
    """Section 4: a Spark run on Cassandra, tasks writing (default) vs the driver writing (baseline); interleaved."""
    import ancho
    from ancho.executors.spark import SparkExecutor

    model = str(C.MODELS / "outputs.py") + ":Outputs"
    direct, via = SparkExecutor(master).start(), SparkExecutor(master, writes="driver")
    for ex in (direct, via):  # untimed: shipping the model, the probe, the cost estimate, lazy imports
        ancho.run(model, sequences=20_000, seed=1, executor=ex, store=store)
    times: dict[str, list[float]] = {"tasks": [], "driver": []}
    received: dict[str, int] = {}
    for rep in range(reps):
        outputs = {}
        for name, ex in (("tasks", direct), ("driver", via)) if rep % 2 == 0 else (("driver", via), ("tasks", direct)):
            t = time.perf_counter()
            r = ancho.run(model, sequences=n, seed=rep + 2, executor=ex, store=store)
            times[name].append(time.perf_counter() - t)
            received[name] = ex.last_received
            outputs[name] = r.summary["outputs"]
            assert ex.last_writes == "tasks" if name == "tasks" else ex.last_writes.startswith("driver"), ex.last_writes
            store.delete_run(r.run_id)
        assert outputs["tasks"] == outputs["driver"], "the two runs differ"
        print(
            f"  rep {rep + 1}: tasks write {times['tasks'][-1]:.2f} s, driver writes {times['driver'][-1]:.2f} s",
            file=sys.stderr,
            flush=True,
        )
    tw, dw = C.med(times["tasks"]), C.med(times["driver"])
    ratios = [d / t for t, d in zip(times["tasks"], times["driver"])]
    print(f"Spark run of {n:,} trivial sequences (3 outputs) into Cassandra, end to end, {direct.workers} Spark cores")
    print(
        C.table(
            [
                ["tasks write (writes='auto')", tw, min(times["tasks"]), n / tw, C.med(ratios), received["tasks"]],
                ["driver writes (baseline)", dw, min(times["driver"]), n / dw, 1.0, received["driver"]],
            ],
            ["", "seconds (median)", "min", "sequences/s", "× baseline rate", "bytes to driver"],
        )
    )
    print(f"tasks / driver rate per repetition: {', '.join(f'{r:.2f}' for r in ratios)}\n")
    return {
        "spark_tasks_write_s": C.stat(times["tasks"]),
        "spark_driver_writes_s": C.stat(times["driver"]),
        "spark_ratios": ratios,
        "spark_bytes_to_driver": received,
        "spark_sequences": n,
    }


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    p = C.base_parser(__doc__.splitlines()[0])
    p.add_argument(
        "--url", default=os.environ.get("ANCHO_TEST_CASSANDRA_URL", "cassandra://cassandra:cassandra@127.0.0.1:9042")
    )
    p.add_argument("--sequences", type=int, default=1_000_000)
    p.add_argument("--chunk", type=int, default=262_144)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--row-sample", type=int, default=50_000)
    p.add_argument("--spark", metavar="MASTER", help="also time a Spark run with tasks writing vs the driver writing")
    p.add_argument("--spark-sequences", type=int, default=1_000_000)
    p.add_argument("--spark-only", action="store_true", help="with --spark: skip the store measurements (1-3)")
    args = p.parse_args()

    from ancho.stores.cassandra import CassandraStore
    from ancho.stores.cassandra_results import BLOCK, WRITE_CONCURRENCY
    from ancho.stores.embedded import EmbeddedStore

    C.header(
        "Cassandra store",
        f"{args.sequences:,} sequences (x float, won bool, rounds int) in chunks of {args.chunk:,}; "
        f"blocks of {BLOCK:,} values; write concurrency {WRITE_CONCURRENCY}",
    )
    base = args.url.split("?", 1)[0].rstrip("/")
    if base.count("/") > 2:
        base = base.rsplit("/", 1)[0]
    store = CassandraStore.from_url(f"{base}/bench{uuid.uuid4().hex[:8]}")
    home = C.scratch_home("cassandra")
    try:
        spark = spark_writes(store, args.spark, args.spark_sequences, args.reps) if args.spark else {}
        if args.spark_only:
            print(C.load_note())
            C.write_json(args.json, spark)
            return
        chunks = make_chunks(args.sequences, args.chunk)
        n = args.sequences
        ingest_raw(store, chunks[:1], WRITE_CONCURRENCY)  # warm up: prepared statements, connections, JIT
        _, warm = ingest_store(store, chunks[:1])
        store.read_frame(warm)  # imports pandas, once
        store_t, raw_t, runs = [], [], []
        for rep in range(args.reps):  # alternating which goes first: neither always meets the other's flushes
            if rep % 2:
                raw_t.append(ingest_raw(store, chunks, WRITE_CONCURRENCY))
            t, run_id = ingest_store(store, chunks)
            store_t.append(t)
            runs.append(run_id)
            if not rep % 2:
                raw_t.append(ingest_raw(store, chunks, WRITE_CONCURRENCY))
        ratios = [r / s for s, r in zip(store_t, raw_t)]
        rows = [
            ["store.write_chunk", C.med(store_t), min(store_t), n / C.med(store_t), C.med(ratios)],
            ["raw driver, same rows (baseline)", C.med(raw_t), min(raw_t), n / C.med(raw_t), 1.0],
        ]
        print("Ingest")
        print(C.table(rows, ["", "seconds (median)", "min", "sequence results/s", "× baseline rate"]))
        print(
            f"store / baseline rate per repetition: {', '.join(f'{r:.2f}' for r in ratios)}; "
            f"goal ≥ 0.9: {'met' if C.med(ratios) >= 0.9 else 'NOT met'}\n"
        )

        seq_t = [per_sequence_rows(store, chunks, args.row_sample) for _ in range(3)]
        per_row_rate = args.row_sample / C.med(seq_t)
        print("One CQL row per sequence (raw driver, execute_concurrent, concurrency 100)")
        print(
            C.table(
                [
                    [
                        f"{args.row_sample:,} rows",
                        C.med(seq_t),
                        min(seq_t),
                        per_row_rate,
                        per_row_rate / (n / C.med(store_t)),
                    ]
                ],
                ["", "seconds (median)", "min", "sequence results/s", "× store rate"],
            )
        )
        print()

        embedded = EmbeddedStore(home)
        emb_id = new_run(embedded, "e")
        for c in chunks:
            embedded.write_chunk(emb_id, c)
        run_id = runs[-1]
        frame_c, frame_e, col_c, col_e = [], [], [], []
        for _ in range(args.reps):
            frame_c.append(timed(lambda: store.read_frame(run_id)))
            frame_e.append(timed(lambda: embedded.read_frame(emb_id)))
            col_c.append(timed(lambda: store.read_column(run_id, "x")))
            col_e.append(timed(lambda: embedded.read_column(emb_id, "x")))
        assert store.read_frame(run_id).equals(embedded.read_frame(emb_id))
        print(f"Read-back of {n:,} results")
        print(
            C.table(
                [
                    ["read_frame, Cassandra", C.med(frame_c), min(frame_c), C.med(frame_c) / C.med(frame_e)],
                    ["read_frame, embedded (baseline)", C.med(frame_e), min(frame_e), 1.0],
                    ["read_column('x'), Cassandra", C.med(col_c), min(col_c), C.med(col_c) / C.med(col_e)],
                    ["read_column('x'), embedded (baseline)", C.med(col_e), min(col_e), 1.0],
                ],
                ["", "seconds (median)", "min", "× embedded"],
            )
        )
        print()
        print(C.load_note())
        C.write_json(
            args.json,
            {
                "ingest_store_s": C.stat(store_t),
                "ingest_raw_s": C.stat(raw_t),
                "ratios": ratios,
                "per_sequence_rows_s": C.stat(seq_t),
                "row_sample": args.row_sample,
                "read_frame_cassandra_s": C.stat(frame_c),
                "read_frame_embedded_s": C.stat(frame_e),
                "read_column_cassandra_s": C.stat(col_c),
                "read_column_embedded_s": C.stat(col_e),
                "sequences": n,
                "chunk": args.chunk,
                "block": BLOCK,
                **spark,
            },
        )
    finally:
        store.drop_catalog()
        store.close()
        C.cleanup(home)


if __name__ == "__main__":
    main()
