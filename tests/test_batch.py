"""Batch models (``sequences(rng, n)``): right answers, the reproducibility promise, and bad input.

Sequence i of a batch model with block B is element i − k·B of
``sequences(reference_generator(seed, k·B), B)``, k = i // B, whatever the
workers, chunking, executor, rerun or run length: each test below attacks
one of those, through the real engine and real worker processes.
"""

from __future__ import annotations

import math
import re
import sys

import numpy as np
import pytest

import ancho
from ancho.batch import run_batch_chunk
from ancho.chunk import ChunkRunner
from ancho.errors import ModelError, OutputError, RunFailed
from ancho.executors.local import LocalExecutor
from ancho.model import describe_model
from ancho.streams import StreamFactory, reference_generator

from .conftest import EXAMPLES, run_cli

sys.path.insert(0, str(EXAMPLES))
from option import BSCall, EuropeanOption, black_scholes  # noqa: E402

Z_TOL = 4.0


class SmallBlock(BSCall):
    """BSCall with a block of 1,000 (so runs of a few hundred thousand cross many blocks)."""

    block = 1000


class FixedChunks(LocalExecutor):
    """The local executor cutting every batch into chunks of ``size`` (not a multiple of any block used here)."""

    def __init__(self, workers: int, size: int):
        super().__init__(workers)
        self.size = size

    def chunk_size(self, total: int, workers: int) -> int:
        return self.size


def run(model, tmp_path, **kw):
    kw.setdefault("seed", 11)
    kw.setdefault("workers", 2)
    return ancho.run(model, store=str(tmp_path / "store"), **kw)


def frame(results):
    return results.frame.reset_index(drop=True)


# -- right answers ---------------------------------------------------------------------------------


def test_both_option_models_agree_with_black_scholes(tmp_path):
    exact = black_scholes(100.0, 105.0, 0.05, 0.2, 1.0)["call"]
    one = run(EuropeanOption, tmp_path, params={"K": 105.0}, sequences=100_000)
    batch = run(BSCall, tmp_path, sequences=1_000_000)
    for res, name in ((one, "call"), (batch, "payoff")):
        out = res.summary["outputs"][name]
        assert abs(out["mean"] - exact) <= Z_TOL * out["sem"], (name, out["mean"], exact, out["sem"])
    assert batch.summary["custom"]["black_scholes_call"] == pytest.approx(exact)


def test_describe_records_kind_and_block(tmp_path):
    d = describe_model(BSCall)
    assert d["kind"] == "batch" and d["block"] == BSCall.block
    assert describe_model(EuropeanOption)["kind"] == "sequence" and describe_model(EuropeanOption)["block"] is None
    res = run(SmallBlock, tmp_path, sequences=2000)
    assert res.record.spec["info"]["block"] == 1000  # reproducible after the class changes its default
    assert res.record.block == 1000 and run(EuropeanOption, tmp_path, sequences=10).record.block is None


# -- reproducibility -------------------------------------------------------------------------------


def test_same_results_for_workers_chunks_executors_and_reruns(tmp_path):
    n = 23_456  # not a multiple of the block: the last block is computed whole and cut
    base = frame(run(SmallBlock, tmp_path, sequences=n, workers=1))
    assert list(base.sequence) == list(range(n))
    for other in (
        run(SmallBlock, tmp_path, sequences=n, workers=2),
        run(SmallBlock, tmp_path, sequences=n, workers=1),  # a rerun
        run(SmallBlock, tmp_path, sequences=n, executor=FixedChunks(2, 777)),  # chunks across block boundaries
        run(SmallBlock, tmp_path, sequences=n, executor=FixedChunks(1, 5000)),
    ):
        assert frame(other).equals(base)
    # in-process chunking that never lines up with blocks: the same columns
    runner = ChunkRunner(SmallBlock, {}, 11)
    edges = [0, 1, 999, 1000, 1001, 2500, 7000, 7001, 15_000, n]
    pieces = [runner.run(a, b) for a, b in zip(edges, edges[1:])]
    assert np.array_equal(np.concatenate([p.sequences for p in pieces]), np.arange(n))
    assert np.array_equal(np.concatenate([p.columns["payoff"] for p in pieces]), base.payoff.to_numpy())


def test_first_200k_of_300k_equal_a_200k_run(tmp_path):
    short = frame(run(BSCall, tmp_path, sequences=200_000))  # 200,000 = 48.8 blocks of 4,096
    long = frame(run(BSCall, tmp_path, sequences=300_000))
    assert short.equals(long.iloc[:200_000].reset_index(drop=True))


def test_one_sequence_reproduced_by_hand(tmp_path):
    seed, i = 5, 12_345
    res = run(BSCall, tmp_path, seed=seed, sequences=20_000)
    B = BSCall.block
    k = i // B
    by_hand = BSCall().sequences(reference_generator(seed, k * B), B)["payoff"][i - k * B]
    assert frame(res).payoff[i] == by_hand


# -- summaries, targets, goals ----------------------------------------------------------------------


def test_targets_summaries_and_precision_goal(tmp_path):
    exact = black_scholes(100.0, 105.0, 0.05, 0.2, 1.0)
    res = run(
        BSCall, tmp_path, sequences=10_000, targets=["payoff>0"], until="mean(payoff)+-0.02", max_sequences=5_000_000
    )
    out = res.summary["outputs"]["payoff"]
    assert out["ci95"][1] - out["mean"] <= 0.02 and out["count"] > 10_000
    assert abs(out["mean"] - exact["call"]) <= Z_TOL * out["sem"]
    p = res.summary["targets"][0]
    assert abs(p["probability"] - exact["in_the_money"]) <= Z_TOL * math.sqrt(
        p["probability"] * (1 - p["probability"]) / out["count"]
    )
    assert len(res.column("payoff")) == out["count"] == res.summary["sequences"]


# -- failures -------------------------------------------------------------------------------------


class FailingBlocks(ancho.Model):
    """Raises for about a third of its blocks (decided by the block's own stream, so reproducibly)."""

    block = 100

    def sequences(self, rng, n):
        if rng.random() < 0.3:
            raise ValueError("unlucky block")
        return {"x": rng.random(n)}


def test_a_failing_block_records_a_failure_per_sequence(tmp_path):
    res = run(FailingBlocks, tmp_path, sequences=2_050, max_failures=2_050, executor=FixedChunks(2, 333))
    failed = sorted(f.sequence for f in res.failures)
    blocks = sorted({s // 100 for s in failed})
    assert blocks and len(failed) == res.summary["failures"] == sum(min(100, 2050 - b * 100) for b in blocks)
    assert all(f.error == "ValueError: unlucky block" and "unlucky block" in f.traceback for f in res.failures)
    assert set(frame(res).sequence).isdisjoint(failed) and len(frame(res)) + len(failed) == 2_050
    with pytest.raises(RunFailed, match="unlucky block"):
        run(FailingBlocks, tmp_path, sequences=2_050, max_failures=10)


# -- bad input ---------------------------------------------------------------------------------------


def batch_model(body, **attrs):
    return type("Bad", (ancho.Model,), {"sequences": body, **attrs})


BAD = [
    (
        lambda self, rng, n: {"x": rng.random(n - 1)},
        "output 'x' of Bad, block 0 (sequences 0–9), has shape (9,); return a 1-D array of length n = 10",
    ),
    (lambda self, rng, n: {"x": 1.5}, "output 'x' of Bad, block 0 (sequences 0–9), is a scalar (float)"),
    (lambda self, rng, n: {"x": rng.random((n - 1, 3))}, "a trajectory must be an array of shape (n, steps)"),
    (lambda self, rng, n: {"x": rng.random((n, 3, 2))}, "has shape (10, 3, 2)"),
    (lambda self, rng, n: {"x": np.array(["a"] * n)}, "has dtype <U1; outputs must be numbers or bools"),
    (lambda self, rng, n: {"x": np.array([None] * n)}, "has dtype object"),
    (
        lambda self, rng, n: {"x": np.full(n, np.nan)},
        "output 'x' of Bad, block 0 (sequences 0–9), is NaN for every sequence",
    ),
    (lambda self, rng, n: [rng.random(n)], "block 0 (sequences 0–9) of Bad returned list, not a mapping"),
    (
        lambda self, rng, n: {"x" if rng.random() < 0.5 else "y": rng.random(n)},
        "returned different outputs than earlier sequences",
    ),
    (
        lambda self, rng, n: {"x": rng.random(n) < 0.5 if rng.random() < 0.5 else rng.random(n)},
        "after bool in earlier blocks",
    ),
]


@pytest.mark.parametrize(
    "body, message",
    BAD,
    ids=[
        "length",
        "scalar",
        "2-D",
        "3-D",
        "strings",
        "objects",
        "nan-only",
        "not-a-dict",
        "names-change",
        "bool-then-float",
    ],
)
def test_bad_outputs_are_one_line_errors(body, message):
    model = batch_model(body, block=10)()
    with pytest.raises(OutputError) as err:
        run_batch_chunk(model, StreamFactory(3), 0, 200, 10, "Bad")
    assert message in str(err.value) and "\n" not in str(err.value)


class FakeDims(np.ndarray):
    """An array that says it is 1-D whatever its shape."""

    @property
    def ndim(self):
        return 1


class Boom(np.ndarray):
    def __getitem__(self, key):
        raise RuntimeError("boom")


class HostileArray:
    def __array__(self, dtype=None, copy=None):
        raise ValueError("hostile __array__")

    def __len__(self):
        return 10


class Huge:
    def __len__(self):
        return 10**12

    def __getitem__(self, i):
        return 0.0


class MissingKeys(dict):
    def __getitem__(self, key):
        raise KeyError(key)


class ExitingKeys(dict):
    def __getitem__(self, key):
        raise SystemExit(0)


class Unsayable(Exception):
    def __str__(self):
        raise RuntimeError("no")


class UnsayableKeys(dict):
    def __getitem__(self, key):
        raise Unsayable()


HOSTILE = [
    # a subclass is read as the array it holds, never through its own methods: a 3-step trajectory; no boom
    (lambda self, rng, n: {"x": np.zeros((n, 3)).view(FakeDims)}, None),
    (lambda self, rng, n: {"x": np.zeros(n).view(Boom)}, None),
    (lambda self, rng, n: {"x": HostileArray()}, "the outputs of Bad, block 0 (sequences 0–9), could not be read: "
     "ValueError: hostile __array__"),
    (lambda self, rng, n: {"x": Huge()}, "the outputs of Bad, block 0 (sequences 0–9), could not be read:"),
    (lambda self, rng, n: MissingKeys(x=rng.random(n)), "the outputs of Bad, block 0 (sequences 0–9), could not be "
     "read: KeyError: 'x'"),
    (lambda self, rng, n: ExitingKeys(x=rng.random(n)), "could not be read: SystemExit: 0"),
    (lambda self, rng, n: UnsayableKeys(x=rng.random(n)), "could not be read: Unsayable: (its message could not be "
     "read)"),
    (lambda self, rng, n: {"x": np.ma.masked_all(n)}, "output 'x' of Bad, block 0 (sequences 0–9), is a masked array"),
    (lambda self, rng, n: {f"o{i}": rng.random(n) for i in range(1_001)}, "block 0 (sequences 0–9) of Bad returned "
     "1,001 outputs; at most 1,000 are kept"),
    (lambda self, rng, n: {"a" * 101: rng.random(n)}, "returned the output name 'aaaa"),
]  # fmt: skip


@pytest.mark.parametrize(
    "body, message",
    HOSTILE,
    ids=[
        "fake-ndim",
        "subclass-getitem",
        "array-raises",
        "huge-len",
        "dict-getitem",
        "dict-exits",
        "unsayable",
        "masked",
        "many",
        "long-name",
    ],
)
def test_hostile_outputs_are_one_line_errors_naming_the_model_and_block(body, message):
    model = batch_model(body, block=10)()
    if message is None:
        result = run_batch_chunk(model, StreamFactory(3), 0, 20, 10, "Bad")
        assert type(result.columns["x"]) is np.ndarray and len(result.columns["x"]) == 20
        return
    with pytest.raises(OutputError) as err:
        run_batch_chunk(model, StreamFactory(3), 0, 20, 10, "Bad")
    assert message in str(err.value) and "\n" not in str(err.value) and len(str(err.value)) < 600, str(err.value)


def test_a_model_calling_sys_exit_records_failures_instead_of_ending_its_worker(tmp_path):
    import sys

    def body(self, rng, n):
        if rng.random() < 0.3:
            sys.exit(0)
        return {"x": rng.random(n)}

    res = run(batch_model(body, block=100), tmp_path, sequences=2_000, max_failures=2_000)
    assert res.summary["failures"] > 0 and res.record.retries == 0
    assert {f.error for f in res.failures} == {"SystemExit: 0"}
    assert len(frame(res)) + res.summary["failures"] == 2_000


def test_a_block_out_of_memory_says_that_a_smaller_block_needs_less():
    def body(self, rng, n):
        raise MemoryError(f"Unable to allocate 3.05 GiB for an array with shape ({n}, 100000)")

    res = run_batch_chunk(batch_model(body, block=4096)(), StreamFactory(1), 0, 10, 4096, "Walk")
    assert len(res.failures) == 10
    assert res.failures[0].error == (
        "MemoryError: Unable to allocate 3.05 GiB for an array with shape (4096, 100000); "
        "a block is 4,096 sequences at once: a smaller `block` on Walk needs less memory"
    )


def test_a_run_whose_every_sequence_fails_says_what_failed_not_to_allow_failures(tmp_path):
    """Every block out of memory: allowing failures cannot help, so the run's error says every sequence failed and
    keeps the block's advice (it said '(100 failures; allow some with --max-failures N)')."""

    def body(self, rng, n):
        raise MemoryError(f"Unable to allocate 3.05 GiB for an array with shape ({n}, 100000)")

    with pytest.raises(RunFailed) as caught:
        run(batch_model(body, block=100), tmp_path, sequences=1_000, workers=1)
    message = str(caught.value)
    assert re.fullmatch(
        r"sequence \d+ failed: MemoryError: Unable to allocate 3\.05 GiB for an array with shape \(100, 100000\); "
        r"a block is 100 sequences at once: a smaller `block` on Bad needs less memory "
        r"\(every sequence so far failed: [\d,]+\)",
        message,
    ), message


def test_a_run_whose_blocks_weigh_too_much_says_which_block_to_set():
    """A 100,000-step trajectory at the default block: 4,096 × 100,000 × 8 bytes = 3.1 GiB a block; a power-of-two
    block of at most 32 MiB: 32 sequences (24.4 MiB)."""
    from ancho.kinds import block_advice

    advice = block_advice({"path": "float[100000]"}, 4096, "Walk")
    assert advice == (
        "model Walk: one block of 4,096 sequences is 3.1 GB of outputs; every sequences() call computes a whole "
        "block, even for a shorter run. Set `block = 32` on the class (24.4 MB a block; a run's results depend on "
        "its block: docs/models.md)"
    )
    assert block_advice({"x": "float", "w": "float[1000]"}, 4096, "W") is None  # 31.3 MiB: nothing to say
    assert block_advice({"w": "float[1000]"}, 65_536, "W").startswith("model W: one block of 65,536 sequences is 500")
    assert "Set `block = 1` " in block_advice({"w": "float[16777216]"}, 4096, "W")  # (never 0)
    assert block_advice({"path": "float[100000]"}, None, "OneAtATime") is None


def test_the_warning_reaches_the_user_once_a_run(tmp_path, monkeypatch, caplog):
    import ancho.kinds

    # a sequence is 200 steps + 1 value = 1,608 bytes: a block of 64 is 102,912 bytes (100.5 KiB), past 100,000;
    # 32 MiB / 1,608 = 20,867 sequences, whose power of two below is 16,384 (26,345,472 bytes, 25.1 MiB)
    monkeypatch.setattr(ancho.kinds, "BIG_BLOCK_BYTES", 100_000)

    def body(self, rng, n):
        return {"path": rng.random((n, 200)), "x": rng.random(n)}

    with caplog.at_level("WARNING", logger="ancho.engine"):
        res = run(batch_model(body, block=64), tmp_path, sequences=1_000)
    said = [r.getMessage() for r in caplog.records if r.name == "ancho.engine"]
    assert res.record.status == "succeeded"
    assert said == [
        "model Bad: one block of 64 sequences is 100.5 KB of outputs; every sequences() call computes a whole block, "
        "even for a shorter run. Set `block = 16,384` on the class (25.1 MB a block; a run's results depend on its "
        "block: docs/models.md)"
    ]


def test_bad_output_fails_the_run_with_that_error(tmp_path):
    with pytest.raises(OutputError, match="output 'x' of Bad.*is a scalar"):
        run(batch_model(lambda self, rng, n: {"x": 0.0}), tmp_path, sequences=100)


def test_mixed_ints_and_floats_are_one_float_column():
    model = batch_model(lambda self, rng, n: {"x": rng.integers(0, 5, n) if rng.random() < 0.5 else rng.random(n)})()
    res = run_batch_chunk(model, StreamFactory(3), 0, 200, 10, "Bad")
    assert res.columns["x"].dtype == np.float64 and len(res.columns["x"]) == 200


@pytest.mark.parametrize(
    "attrs, message",
    [
        (
            {"sequence": lambda self, rng: {"x": 1.0}, "sequences": lambda self, rng, n: {"x": rng.random(n)}},
            "model Both defines both sequence and sequences; keep one",
        ),
        ({}, "model Both defines neither sequence(self, rng) nor sequences(self, rng, n)"),
        ({"sequences": lambda self, rng, n: {}, "block": 0}, "model Both: block = 0; it must be a whole number"),
        ({"sequences": lambda self, rng, n: {}, "block": "big"}, "model Both: block = 'big'"),
    ],
)
def test_model_kind_errors(tmp_path, attrs, message):
    cls = type("Both", (ancho.Model,), attrs)
    with pytest.raises(ModelError) as err:
        describe_model(cls)
    assert message in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ModelError, match="Both"):
        run(cls, tmp_path, sequences=10)


def test_a_numpy_whole_number_is_a_block(tmp_path):
    cls = type("Np", (ancho.Model,), {"sequences": lambda self, rng, n: {"x": rng.random(n)}, "block": np.int64(100)})
    info = describe_model(cls)
    assert info["block"] == 100 and type(info["block"]) is int
    res = run(cls, tmp_path, sequences=250)
    assert res.record.block == 100 and len(frame(res)) == 250
    with pytest.raises(ModelError, match="block = np.True_|block = True"):
        describe_model(type("B", (ancho.Model,), {"sequences": lambda self, rng, n: {}, "block": np.bool_(True)}))


def test_the_cli_shows_the_block_a_batch_run_ran_with(tmp_path):
    env = {"ANCHO_HOME": str(tmp_path / "home")}
    done = run_cli("run", f"{EXAMPLES / 'option.py'}:BSCall", "-n", "10000", "--seed", "3", env=env)
    assert done.returncode == 0, done.stderr
    assert "block 4,096" in done.stdout.splitlines()[0]
    one = run_cli("run", str(EXAMPLES / "option.py"), "-n", "100", "--seed", "3", env=env)
    assert one.returncode == 0 and "block" not in one.stdout.splitlines()[0]


# -- Spark ---------------------------------------------------------------------------------------------


@pytest.mark.spark
@pytest.mark.slow
def test_batch_run_on_spark_equals_local(tmp_path, spark_url):
    local = frame(run(SmallBlock, tmp_path, sequences=50_000))
    spark = frame(run(SmallBlock, tmp_path, sequences=50_000, executor=spark_url))
    assert spark.equals(local)
