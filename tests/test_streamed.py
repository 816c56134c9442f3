"""A column too long to hold is summarised from its blocks, in passes: the summary :func:`ancho.stats.describe` gives
in memory, bit for bit, whatever the data and however the blocks are cut, in a bounded number of passes."""

import numpy as np
import pytest

import ancho
from ancho import stats, streamed
from ancho.expressions import Target

RNG = np.random.default_rng(20261207)
COLUMNS = {
    "normal": RNG.standard_normal(1_500_001),
    "payoffs, half exactly 0": np.maximum(RNG.standard_normal(1_200_000) * 10, 0.0),
    "a tenth NaN": np.where(RNG.random(800_000) < 0.1, np.nan, RNG.random(800_000)),
    "integers with ties": RNG.integers(0, 20, 900_000),
    "integer-valued walk": np.cumsum(RNG.integers(-1, 2, 1_000_000)).astype(float),
    "periodic (a strided sample sees one value)": np.tile(np.arange(65536.0), 20),
    "descending runs": np.tile(np.arange(50_000.0, 0, -1), 17),
    "all NaN": np.full(300_000, np.nan),
    "infinities": np.concatenate([RNG.random(400_000), [np.inf, -np.inf, np.inf]]),
    "constant": np.full(600_000, 3.5),
    "one value": np.array([2.0]),
}


def passes_over(column: np.ndarray, size: int, count: list[int]):
    def blocks():
        count.append(1)
        return (column[i : i + size] for i in range(0, column.size, size))

    return blocks


#: (GATHER, SAMPLE): the defaults, and small ones that make every column take several narrowing passes
SETTINGS = [(streamed.GATHER, streamed.SAMPLE), (1000, 1024), (5000, 256)]


@pytest.mark.parametrize("gather,sample", SETTINGS, ids=["defaults", "small", "tiny sample"])
@pytest.mark.parametrize("name", list(COLUMNS))
def test_a_column_described_from_its_blocks_is_described_as_in_memory(monkeypatch, name, gather, sample):
    monkeypatch.setattr(streamed, "GATHER", gather)
    monkeypatch.setattr(streamed, "SAMPLE", sample)
    column = COLUMNS[name]
    kind = "int" if column.dtype.kind == "i" else "float"
    expected = stats.describe(column.copy(), kind)
    for size in (65_537, 1 << 20):  # (blocks cut across the moments' fixed blocks, and not)
        got = streamed.describe_blocks(passes_over(column, size, []), kind)
        assert repr(got) == repr(expected)  # (repr: NaN-free, so exact; and the same types)


def test_bools_are_described_from_their_counts():
    column = RNG.random(700_001) < 0.3
    for values in (column, np.zeros(5, dtype=bool), np.ones(9, dtype=bool), np.zeros(0, dtype=bool)):
        count: list[int] = []
        got = streamed.describe_blocks(passes_over(values, 10_000, count), "bool")
        assert repr(got) == repr(stats.describe(values.copy(), "bool"))
        assert len(count) == 1


def test_targets_count_their_hits_block_by_block_in_the_descriptions_first_pass():
    column = COLUMNS["a tenth NaN"]
    targets = [Target.parse(expr) for expr in ("x>0.5", "x<=0.25", "x==0")]
    for describe in (True, False):
        count: list[int] = []
        described, rows = streamed.summarise_blocks(passes_over(column, 100_000, count), "float", targets, describe)
        assert rows == [stats.target_summary(target, column) for target in targets]
        if describe:
            assert repr(described) == repr(stats.describe(column.copy(), "float"))
        else:
            assert described is None and len(count) == 1  # (the targets alone: one pass for all three)


def test_a_long_column_takes_three_passes_or_fewer():
    """One for the moments and a sample, one to bracket each percentile's rank, one to gather a bracket: with a sample
    of 65,536 values a bracket holds ~2% of a column, gathered whole up to 1,048,576 values (50M values); beyond, one
    pass more narrows it ~50-fold (docs/summary.md). Here the same at a smaller scale: 2,000,000 values, a sample of
    4,096 (a bracket ~8%: 160,000) and brackets gathered up to 200,000 values; then gathered up to 20,000 only."""
    column = RNG.standard_normal(2_000_000)
    for gather, most in ((200_000, 3), (20_000, 4)):
        count: list[int] = []
        streamed.GATHER, streamed.SAMPLE = gather, 4096
        try:
            streamed.describe_blocks(passes_over(column, 1 << 18, count), "float")
        finally:
            streamed.GATHER, streamed.SAMPLE = SETTINGS[0]
        assert len(count) <= most


class Wide(ancho.Model):
    """A batch model with every scalar kind: a long float column with ties, an integer and a bool."""

    block = 4096

    def sequences(self, rng, n):
        z = rng.standard_normal(n)
        return {"payoff": np.maximum(z, 0.0), "k": (z * 3).astype(np.int64), "hit": z > 1.0}


def test_a_run_too_long_to_hold_summarises_from_the_store_as_a_short_one_does(monkeypatch, tmp_path):
    """The same run, once with the column held and once with a budget of 8 bytes: the same summary and plots, and the
    second never gathered a column (so the driver holds a block, not 8 bytes a sequence)."""
    from ancho.plotdata import run_plots

    targets = ["payoff>1.5", "k<=-2", "hit==1"]
    held = ancho.run(Wide, sequences=600_000, seed=3, workers=2, targets=targets, store=str(tmp_path / "a"))
    calls: list[str] = []
    summarise_blocks = streamed.summarise_blocks
    monkeypatch.setattr(streamed, "BUDGET", 8)
    monkeypatch.setattr(
        streamed,
        "summarise_blocks",
        lambda blocks, kind, *a, **k: calls.append(kind) or summarise_blocks(blocks, kind, *a, **k),
    )
    from ancho.stores.landed import LandedColumn

    assert not LandedColumn(600_000).ok
    sent: list[bool] = []  # (nor did the workers send its values: they would only be dropped)
    add = LandedColumn.add
    monkeypatch.setattr(
        LandedColumn, "add", lambda self, r: (sent.append(getattr(r, "first", None) is not None), add(self, r))
    )
    passed = ancho.run(Wide, sequences=600_000, seed=3, workers=2, targets=targets, store=str(tmp_path / "b"))
    assert sorted(calls) == ["bool", "float", "int"]
    assert sent and not any(sent)
    assert repr(passed.summary["outputs"]) == repr(held.summary["outputs"])
    assert passed.summary["targets"] == held.summary["targets"]
    read: list[str] = []
    monkeypatch.setattr(type(passed.store), "read_column", lambda *a: read.append(a[-1]))  # (never called)
    from_blocks = run_plots(passed.store, passed.run_id)
    assert not read
    monkeypatch.undo()
    assert repr(from_blocks) == repr(run_plots(held.store, held.run_id))


def test_the_memory_a_column_may_take_is_set_in_bytes_or_binary_multiples(monkeypatch):
    from ancho.errors import InputError

    for text, value in (("", streamed.BUDGET), ("4096", 4096), ("64K", 65536), ("512m", 512 << 20), (" 2G ", 2 << 30)):
        monkeypatch.setenv("ANCHO_COLUMN_MEMORY", text)
        assert streamed.budget() == value
    assert streamed.too_long((2 << 27) + 1) and not streamed.too_long(2 << 27)  # (8 bytes a value: 2 GiB)
    for bad in ("1.5G", "-1", "lots", "G"):
        monkeypatch.setenv("ANCHO_COLUMN_MEMORY", bad)
        with pytest.raises(InputError, match="ANCHO_COLUMN_MEMORY must be a whole number of bytes"):
            streamed.budget()


def test_reading_ahead_gives_the_same_blocks_in_order_and_leaves_no_thread():
    import threading

    column = COLUMNS["normal"]
    count: list[int] = []
    alive = threading.active_count()
    read = streamed.ahead(passes_over(column, 100_000, count))
    for _ in range(2):
        assert np.array_equal(np.concatenate(list(read())), column)
    assert len(count) == 2 and threading.active_count() == alive
    assert list(streamed.ahead(lambda: iter([]))()) == []
    first = next(iter(read()))  # (a pass left early: its thread ends too)
    assert first.size == 100_000
    assert repr(streamed.describe_blocks(read, "float")) == repr(stats.describe(column.copy(), "float"))
