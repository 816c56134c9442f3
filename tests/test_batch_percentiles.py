"""The summary's percentiles (ancho.percentiles.percentiles) are ``np.percentile``'s, bit for bit, for every kind of column."""

from __future__ import annotations

import numpy as np
import pytest

from ancho.percentiles import PERCENTILES, percentiles
from ancho.stats import describe


def _columns():
    rng = np.random.default_rng(20)
    for n in [*range(1, 40), 97, 1000, 4096, 100_003]:
        yield f"normal {n}", rng.standard_normal(n)
        yield f"payoff {n}", np.maximum(rng.lognormal(0, 0.3, n) - 1.05, 0.0)  # many exact ties at 0
        yield f"int {n}", rng.integers(-(2**62), 2**62, size=n)
        yield f"small int {n}", rng.integers(0, 4, size=n)
        yield f"bool {n}", (rng.random(n) < 0.3).view(np.uint8)  # how describe passes a bool column
    yield "infinities", np.array([-np.inf, -1.0, 0.0, 2.5, np.inf, np.inf])
    yield "all inf", np.full(7, np.inf)
    yield "signed zeros", np.array([0.0, -0.0, 0.0, -0.0, 1e-300])
    yield "huge", np.array([1.7e308, -1.7e308, 1.7e308, 3.0])
    yield "subnormal", np.array([5e-324, 1e-323, 0.0, 2e-323])


@pytest.mark.parametrize("name,column", list(_columns()), ids=lambda v: v if isinstance(v, str) else "")
def test_percentiles_are_numpys_bit_for_bit(name, column):
    with np.errstate(invalid="ignore"):  # inf - inf: NaN in both, as describe reports it (null)
        expected = np.percentile(column.copy(), PERCENTILES)
        got = percentiles(column.copy())
    assert got.dtype == expected.dtype and got.shape == expected.shape
    assert got.tobytes() == expected.tobytes(), (name, got, expected)


@pytest.mark.parametrize("sample", [1 << 16, 400, 8])
@pytest.mark.parametrize("name,column", list(_columns()), ids=lambda v: v if isinstance(v, str) else "")
def test_percentiles_selected_without_sorting_are_numpys(name, column, sample, monkeypatch):
    """A long column has its order statistics selected between brackets from a sorted sample: every column here
    goes that way (SELECT_FROM lowered; a sample of 400 makes brackets open
    at the ends, one of 8 brackets that miss, so the fallback runs too), with the same numbers (bit for bit but for a zero's sign)."""
    import ancho.percentiles

    monkeypatch.setattr(ancho.percentiles, "SELECT_FROM", 2)
    monkeypatch.setattr(ancho.percentiles, "SAMPLE", sample)
    monkeypatch.setattr(ancho.percentiles, "BLOCK", 1000)  # (several blocks a pass on the longer columns)
    with np.errstate(invalid="ignore"):
        expected = np.percentile(column.copy(), PERCENTILES)
        got = percentiles(column.copy())
    if name == "signed zeros":  # -0.0 == 0.0: either may be picked at the tie
        assert np.array_equal(got, expected)
    else:
        assert got.dtype == expected.dtype and got.tobytes() == expected.tobytes(), (name, got, expected)


@pytest.mark.parametrize(
    "column",
    [
        np.tile(np.arange(64.0), 4096),  # every 64th value the same: a sample of one value, brackets that miss
        np.repeat(np.arange(8.0), 32768)[::-1].copy(),  # sorted descending, long runs of ties
        np.r_[np.zeros(200_000), np.ones(62_144)],  # nearly all tied at the low end
    ],
    ids=["periodic", "descending runs", "tied low"],
)
def test_selection_is_exact_where_the_sample_misleads(column, monkeypatch):
    import ancho.percentiles

    monkeypatch.setattr(ancho.percentiles, "SELECT_FROM", 2)
    monkeypatch.setattr(ancho.percentiles, "SAMPLE", 4096)
    monkeypatch.setattr(ancho.percentiles, "BLOCK", 4099)
    expected = np.percentile(column, PERCENTILES)
    assert percentiles(column.copy()).tobytes() == expected.tobytes()


def test_the_rows_of_a_matrix_are_selected_each_as_a_column(monkeypatch):
    """describe_many stacks equal-length columns as rows: long rows are selected one by one, the same numbers."""
    import ancho.percentiles

    monkeypatch.setattr(ancho.percentiles, "SELECT_FROM", 100)
    rng = np.random.default_rng(8)
    matrix = np.stack([rng.standard_normal(5000), np.maximum(rng.standard_normal(5000), 0), rng.random(5000)])
    expected = np.percentile(matrix, PERCENTILES, axis=1).T
    assert percentiles(matrix.copy()).tobytes() == np.ascontiguousarray(expected).tobytes()


def test_an_error_on_the_helper_thread_is_raised_in_the_caller():
    from ancho.threads import on_halves

    def fail(half):
        if half[0] == 0:
            raise MemoryError("no room for the first half")
        return half.size

    with pytest.raises(MemoryError, match="first half"):
        on_halves(fail, np.arange(10), "test")
    assert on_halves(len, np.arange(11), "test") == (5, 6)
    steps = np.arange(12).reshape(2, 6)  # (a step block: the halves are its first and last steps)
    first, second = on_halves(lambda part: part.tolist(), steps, "test", axis=1)
    assert first == [[0, 1, 2], [6, 7, 8]] and second == [[3, 4, 5], [9, 10, 11]]


def test_a_long_column_selected_gives_numpys_percentiles():
    rng = np.random.default_rng(4)
    column = np.maximum(rng.lognormal(0, 0.3, (1 << 21) + 5) - 1.05, 0.0)  # above SELECT_FROM, many ties at 0
    out = describe(column.copy(), "float")
    assert [out[f"p{q}"] for q in PERCENTILES] == np.percentile(column, PERCENTILES).tolist()
    flags = column > 0.1  # a long bool column: its percentiles are 0 or 1
    out = describe(flags.copy(), "bool")
    assert [out[f"p{q}"] for q in PERCENTILES] == np.percentile(flags.view(np.uint8), PERCENTILES).tolist()


def test_a_partitioned_column_holds_the_same_floats_after():
    """The order keys are made and undone in place: the column is reordered, never changed (negative values,
    infinities and subnormals included), and the rows of a matrix each keep their own values."""
    rng = np.random.default_rng(7)
    column = np.concatenate([rng.standard_normal(5_000) * 1e-300, [-np.inf, np.inf, -5e-324, 5e-324, 0.0]])
    before = np.sort(column)
    percentiles(column)
    assert np.sort(column).tobytes() == before.tobytes() and not np.array_equal(column, before)
    matrix = rng.standard_normal((3, 1_000))
    rows = np.sort(matrix, axis=1)
    assert percentiles(matrix).tobytes() == np.percentile(rows, PERCENTILES, axis=1).T.tobytes()
    assert np.sort(matrix, axis=1).tobytes() == rows.tobytes()


def test_a_column_of_signed_zeros_reports_numpys_values():
    """Order keys put −0.0 below 0.0: at a tie the zero reported may differ in sign (documented), never in value."""
    rng = np.random.default_rng(3)
    column = np.where(rng.random(10_003) < 0.5, -0.0, 0.0)  # (p25, p75: weight 0.5, the upper zero reported)
    column[rng.random(column.size) < 0.1] = 1.0
    assert percentiles(column.copy()).tolist() == np.percentile(column, PERCENTILES).tolist()


def test_percentiles_of_a_known_sample():
    """Closed form: of 0..100 (shuffled), the q-th percentile is q exactly; of 0..10, q/10."""
    rng = np.random.default_rng(1)
    assert percentiles(rng.permutation(101).astype(float)).tolist() == [5.0, 25.0, 50.0, 75.0, 95.0]
    assert percentiles(rng.permutation(11)).tolist() == [0.5, 2.5, 5.0, 7.5, 9.5]


def test_describe_leaves_nan_out_and_matches_numpy():
    column = np.array([3.0, np.nan, 1.0, 2.0, np.nan, 10.0])
    out = describe(column.copy(), "float")
    expected = np.percentile([1.0, 2.0, 3.0, 10.0], PERCENTILES)
    assert [out[f"p{q}"] for q in PERCENTILES] == expected.tolist()
    assert out["count"] == 4 and out["min"] == 1.0 and out["max"] == 10.0


@pytest.mark.parametrize("nans", [0, 1, 500, "all"])
def test_describe_of_a_float_column_is_numpys_of_its_non_nan_values(nans):
    """min, max, mean and percentiles of the values left once NaNs are dropped, exactly; count without them."""
    x = np.random.default_rng(9).normal(1, 2, size=10_000)
    if nans == "all":
        x[:] = np.nan
    elif nans:
        x[np.random.default_rng(1).choice(x.size, nans, replace=False)] = np.nan
    kept = x[~np.isnan(x)]
    out = describe(x.copy(), "float")
    assert out["count"] == kept.size
    if kept.size == 0:
        assert out["mean"] is None and out["min"] is None
        return
    assert out["min"] == kept.min() and out["max"] == kept.max()
    assert out["mean"] == float(np.mean(kept))
    assert [out[f"p{q}"] for q in PERCENTILES] == np.percentile(kept, PERCENTILES).tolist()


def test_ahead_gives_every_item_in_order_and_raises_errors_in_the_caller():
    import threading

    from ancho.threads import ahead

    made_on: list[str] = []

    def items():
        for i in range(5):
            made_on.append(threading.current_thread().name)
            yield i

    assert list(ahead(items(), "test-ahead")) == [0, 1, 2, 3, 4]
    assert all(name.startswith("test-ahead") for name in made_on)

    def failing():
        yield 1
        raise OSError("chunk file gone")

    got = []
    with pytest.raises(OSError, match="chunk file gone"):
        for item in ahead(failing(), "test-ahead"):
            got.append(item)
    assert got == [1]
    early = ahead(items(), "test-ahead")
    assert next(early) == 0
    early.close()  # (a caller that stops: the helper's one item more is made, then the helper ends)
    assert list(ahead(iter([]), "test-ahead")) == []
