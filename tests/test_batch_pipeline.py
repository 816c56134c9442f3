"""The pipeline around batch models: block-aligned chunk plans, chunk files' encodings, the per-block time limit,
and custom summaries that never read the results they ignore."""

from __future__ import annotations

import json
import time

import numpy as np
import pyarrow.parquet as pq

import ancho
from ancho import engine
from ancho.chunk import ChunkResult
from ancho.custom import apply_summaries, reads_results
from ancho.engine import Plan
from ancho.executors.local import LocalExecutor
from ancho.stores.embedded import EmbeddedStore


class Blocks(ancho.Model):
    block = 1000

    def sequences(self, rng, n):
        return {"x": rng.standard_normal(n), "k": np.arange(n) % 3, "hit": rng.random(n) < 0.5}


class SlowBlock(ancho.Model):
    """Its second call (block 1, sequences 10..19, with one worker running the blocks in order) never ends."""

    block = 10
    calls = 0

    def sequences(self, rng, n):
        self.calls += 1
        if self.calls == 2:
            time.sleep(10**6)
        return {"x": np.ones(n)}


def drain(plan: Plan) -> list[tuple[int, int]]:
    chunks = []
    while (c := plan.next()) is not None:
        chunks.append((c.start, c.stop))
        plan.measure(ChunkResult(c.start, c.stop, np.arange(c.start, c.stop), {}, [], c.size * 30e-9))
    return chunks


def test_batch_plan_chunks_are_whole_blocks_from_one_block_up():
    chunks = drain(Plan([(0, 10_000_000)], workers=2, block=4096))
    sizes = [b - a for a, b in chunks]
    assert sizes[0] == 4096
    assert all(a % 4096 == 0 for a, _ in chunks)  # every chunk starts on a block edge: no block computed twice
    assert all(b % 4096 == 0 for _, b in chunks[:-1]) and chunks[-1][1] == 10_000_000
    assert max(sizes) > engine.MAX_CHUNK and max(sizes) <= engine.MAX_BATCH_CHUNK
    assert sum(sizes) == 10_000_000


def test_batch_plan_realigns_after_an_unaligned_start_and_rounds_fixed_sizes():
    chunks = drain(Plan([(5000, 20_000)], workers=1, block=4096))
    assert chunks[0][0] == 5000 and chunks[0][1] % 4096 == 0  # the first chunk ends on a block edge
    assert all(a % 4096 == 0 for a, _ in chunks[1:])
    fixed = drain(Plan([(0, 20_000)], workers=1, chunk_size=lambda left, workers: 777, block=1000))
    assert fixed[0] == (0, 1000) and all(a % 1000 == 0 for a, _ in fixed)
    plain = drain(Plan([(0, 1000)], workers=1))  # one-at-a-time models: unchanged
    assert plain[0] == (0, engine.INITIAL_CHUNK)


def test_full_chunk_files_leave_out_the_sequence_and_store_floats_without_a_dictionary(tmp_path):
    store = EmbeddedStore(tmp_path)
    res = ancho.run(Blocks, sequences=5500, seed=3, workers=1, store=store)
    files = sorted((tmp_path / "runs" / res.run_id / "chunks").glob("*.parquet"))
    assert files
    meta = pq.ParquetFile(files[-1]).metadata.row_group(0)
    encodings = {meta.column(i).path_in_schema: meta.column(i).encodings for i in range(meta.num_columns)}
    assert "sequence" not in encodings  # every sequence of the file's range has its row: the name says which
    assert not any("DICTIONARY" in e for e in encodings["x"])
    assert any("DICTIONARY" in e for e in encodings["k"])  # small ints keep their dictionary
    # lossless: the stored columns are the computed ones
    runner_cols = ancho.chunk.ChunkRunner(Blocks, {}, 3).run(0, 5500)
    frame = res.frame
    assert np.array_equal(frame.sequence.to_numpy(), np.arange(5500))
    for name in ("x", "k", "hit"):
        assert np.array_equal(frame[name].to_numpy(), runner_cols.columns[name])


def test_the_time_limit_applies_per_block_of_a_batch_model(tmp_path):
    limits = json.dumps({"timeout": 1, "grace": 2})
    t0 = time.monotonic()
    res = ancho.run(
        SlowBlock,
        sequences=30,
        seed=1,
        workers=1,
        max_failures=100,
        store=EmbeddedStore(tmp_path),
        executor=LocalExecutor(1, env={"ANCHO_LIMITS": limits}),
    )
    assert time.monotonic() - t0 < 30
    failures = res.failures
    assert [f.sequence for f in failures] == list(range(10, 20))  # the whole second block, no other sequence
    assert failures[0].error == "TimeoutError: timed out after 1 s (the time limit per block of a batch model)"


def test_summaries_that_ignore_results_never_read_them():
    reads = []

    def load():
        import pandas as pd

        reads.append(1)
        return pd.DataFrame({"sequence": [0, 1], "x": [1.0, 3.0]})

    class M(ancho.Model):
        def sequence(self, rng):
            return {"x": 1.0}

        @ancho.summary
        def constant(self, results):
            return 42

        @ancho.summary
        def via_locals(self, results):
            return len(locals()["results"])

        @ancho.summary
        def mean(self, results):
            return float(results.x.mean())

    m = M()
    assert not reads_results(m.constant) and reads_results(m.via_locals) and reads_results(m.mean)
    assert apply_summaries(m, load, ["constant"]) == {"constant": 42} and reads == []
    assert apply_summaries(m, load, ["constant", "via_locals", "mean"]) == {
        "constant": 42,
        "via_locals": 2,
        "mean": 2.0,
    }
    assert reads == [1]  # read once, for the summaries that use it
