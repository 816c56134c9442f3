import math

import numpy as np
import pytest

from ancho.plotdata import convergence, histogram
from ancho.stats import describe


def test_histogram_counts_every_finite_value_and_sets_nonfinite_apart():
    x = np.array([0.1, 0.2, 0.2, 0.9, np.nan, np.inf])
    h = histogram(x, "float", bins=4)
    assert sum(h["counts"]) == 4 and h["nonfinite"] == 2
    assert h["edges"][0] == pytest.approx(0.1) and h["edges"][-1] == pytest.approx(0.9)


def test_histogram_of_narrow_integers_has_one_bar_per_value():
    h = histogram(np.array([3, 3, 4, 7]), "int")
    assert h["edges"] == [2.5, 3.5, 4.5, 5.5, 6.5, 7.5]
    assert h["counts"] == [2, 1, 0, 0, 1]


def test_histogram_of_wide_integers_puts_as_many_integers_in_every_bar():
    # 0..119 five times each: 120 integers in 40 bars is 3 integers, 15 values, a bar; fractional edges (119/40
    # wide) held 2 or 3 integers by turns, a comb over a flat distribution
    h = histogram(np.repeat(np.arange(120), 5), "int", bins=40)
    assert h["edges"] == [-0.5 + 3 * k for k in range(41)]
    assert h["counts"] == [15] * 40


def test_histogram_of_wide_integers_ends_past_the_largest_value_when_it_must():
    # 61..161 (101 integers) in at most 40 bars: 3 a bar, 34 bars, the last holding 160, 161 (and 162, never seen)
    column = np.concatenate([np.arange(61, 162), np.array([61, 100, 161, 161])])
    h = histogram(column, "int", bins=40)
    edges = np.array(h["edges"])
    assert edges[0] == 60.5 and edges[-1] == 162.5 and len(h["counts"]) == 34
    assert set(np.diff(edges)) == {3.0}
    expected = [3] * 34
    expected[0] += 1  # 61
    expected[(100 - 61) // 3] += 1
    expected[-1] = 2 + 2  # 160, 161 and 161 twice more
    assert h["counts"] == expected
    assert sum(h["counts"]) == column.size


def test_histogram_of_bools_and_constants():
    assert histogram(np.array([True, False, True]), "bool")["counts"] == [1, 2]
    assert histogram(np.array([2.0, 2.0]), "float")["counts"] == [2]
    assert histogram(np.array([], dtype=float), "float")["counts"] == []


@pytest.mark.parametrize("kind", ["float", "int", "bool"])
def test_convergence_ends_at_the_summary(kind):
    rng = np.random.default_rng(1)
    x = {"float": rng.normal(1e6, 0.5, 5000), "int": rng.integers(0, 50, 5000), "bool": rng.random(5000) < 0.3}[kind]
    c = convergence(x, kind)
    s = describe(x.copy(), kind)
    assert c["n"][0] == 1 and c["n"][-1] == 5000 and len(c["n"]) <= 200
    assert c["n"] == sorted(set(c["n"]))
    assert c["mean"][-1] == pytest.approx(s["mean"], rel=1e-9)
    assert c["low"][-1] == pytest.approx(s["ci95"][0], rel=1e-6)
    assert c["high"][-1] == pytest.approx(s["ci95"][1], rel=1e-6)


def test_convergence_skips_nan_and_has_no_band_for_one_value():
    c = convergence(np.array([np.nan, 2.0, 4.0]), "float")
    assert c["n"] == [1, 2, 3]
    assert c["mean"][0] is None and c["mean"][1] == 2.0 and c["mean"][2] == 3.0
    assert c["low"][1] is None and math.isfinite(c["low"][2])


@pytest.mark.parametrize("kind", ["float", "int", "bool"])
def test_plots_do_not_depend_on_how_the_column_is_cut(kind):
    """The histogram and the running sums go block by block (a run too long to hold is read so): the same numbers
    as the whole column's, bit for bit, the sums carried from block to block in the same order of additions."""
    from ancho.plotdata import column_plots

    rng = np.random.default_rng(8)
    column = {
        "float": np.where(rng.random(300_001) < 0.01, np.nan, rng.standard_normal(300_001) * 1e3 + 1e6),
        "int": rng.integers(-5, 40, 300_001),
        "bool": rng.random(300_001) < 0.3,
    }[kind]
    whole = {"histogram": histogram(column, kind), "convergence": convergence(column, kind)}
    for size in (7_777, 65_536, 100_003):
        cut = column_plots(lambda s=size: (column[i : i + s] for i in range(0, column.size, s)), kind)
        assert repr(cut) == repr(whole)
