"""Comparisons against closed forms: paired coverage and variance reduction, Welch against SciPy, Newcombe against his tables."""

import math

import numpy as np
import pytest
from scipy import stats

from ancho.errors import ExpressionError
from ancho.studies import compare_frames, holm
from ancho.studies.comparison import LazyColumns, newcombe_independent, newcombe_paired

FIXED = {"a", "b", "paired", "sequences", "outputs", "targets"}


def _pair(rng, n, sa=1.0, sb=1.5, rho=0.8, mu_a=0.0, mu_b=0.3):
    za, zo = rng.standard_normal(n), rng.standard_normal(n)
    a = mu_a + sa * za
    b = mu_b + sb * (rho * za + math.sqrt(1 - rho * rho) * zo)
    return a, b


def test_shape_is_design_md_and_paired_on_the_same_seed():
    rng = np.random.default_rng(0)
    a, b = _pair(rng, 1000)
    seq = np.arange(1000)
    out = compare_frames(
        "A",
        "B",
        7,
        7,
        {"sequence": seq, "x": a, "won": a > 0},
        {"sequence": seq, "x": b, "won": b > 0},
        ["x>=1", "won"],
    )
    assert FIXED <= set(out) and out["a"] == "A" and out["b"] == "B" and out["paired"] is True
    assert out["sequences"] == 1000
    x = out["outputs"]["x"]
    assert {"mean_a", "mean_b", "difference", "ci95", "variance_reduction"} <= set(x)
    assert x["difference"] == pytest.approx(b.mean() - a.mean())
    assert out["outputs"]["won"]["mean_a"] == pytest.approx((a > 0).mean())  # bools as 0/1
    assert [t["expr"] for t in out["targets"]] == ["x>=1", "won==1"]
    t = out["targets"][0]
    assert {"expr", "probability_a", "probability_b", "difference", "ci95"} <= set(t)
    assert t["difference"] == pytest.approx((b >= 1).mean() - (a >= 1).mean())


def test_paired_ci_covers_the_true_difference_about_95_percent():
    rng = np.random.default_rng(12)
    reps, n, covered = 2000, 50, 0
    for _ in range(reps):
        a, b = _pair(rng, n)
        lo, hi = compare_frames("A", "B", 1, 1, {"sequence": np.arange(n), "x": a}, {"sequence": np.arange(n), "x": b})[
            "outputs"
        ]["x"]["ci95"]
        covered += lo <= 0.3 <= hi
    # binomial sd of the coverage at 95%: sqrt(.95 * .05 / 2000) = 0.0049; allow 4 sd
    assert abs(covered / reps - 0.95) < 4 * math.sqrt(0.95 * 0.05 / reps)


def test_variance_reduction_matches_the_closed_form():
    sa, sb, rho = 1.0, 1.5, 0.8
    a, b = _pair(np.random.default_rng(3), 200_000, sa, sb, rho)
    out = compare_frames(
        "A", "B", 5, 5, {"sequence": np.arange(a.size), "x": a}, {"sequence": np.arange(b.size), "x": b}
    )
    want = (sa**2 + sb**2) / (sa**2 + sb**2 - 2 * rho * sa * sb)
    assert out["outputs"]["x"]["variance_reduction"] == pytest.approx(want, rel=0.03)


def test_pairs_aligned_on_common_sequences_and_unpaired_on_different_seeds():
    a = np.arange(10.0)
    b = a + 1.0
    out = compare_frames(
        "A",
        "B",
        1,
        1,
        {"sequence": np.arange(10), "x": a},
        {"sequence": np.array([9, 7, 5, 3, 1, 0]), "x": b[[9, 7, 5, 3, 1, 0]]},
    )
    assert out["paired"] and out["sequences"] == 6
    assert out["outputs"]["x"]["difference"] == 1.0 and out["outputs"]["x"]["ci95"] == [1.0, 1.0]
    assert out["outputs"]["x"]["variance_reduction"] is None  # var(b - a) = 0
    unpaired = compare_frames("A", "B", 1, 2, {"sequence": np.arange(10), "x": a}, {"sequence": np.arange(10), "x": b})
    assert unpaired["paired"] is False and unpaired["outputs"]["x"]["variance_reduction"] is None


def test_welch_matches_scipy():
    rng = np.random.default_rng(4)
    a, b = rng.normal(0, 1, 40), rng.normal(0.5, 3, 25)
    out = compare_frames("A", "B", 1, 2, {"sequence": np.arange(40), "x": a}, {"sequence": np.arange(25), "x": b})
    ref = stats.ttest_ind(b, a, equal_var=False)
    ci = ref.confidence_interval(0.95)
    assert out["outputs"]["x"]["ci95"] == pytest.approx([ci.low, ci.high], rel=1e-9)
    assert out["outputs"]["x"]["p_value"] == pytest.approx(ref.pvalue, rel=1e-9)


def test_paired_ci_matches_scipy_paired_t():
    a, b = _pair(np.random.default_rng(9), 30)
    out = compare_frames("A", "B", 1, 1, {"sequence": np.arange(30), "x": a}, {"sequence": np.arange(30), "x": b})
    ref = stats.ttest_rel(b, a)
    ci = ref.confidence_interval(0.95)
    assert out["outputs"]["x"]["ci95"] == pytest.approx([ci.low, ci.high], rel=1e-9)
    assert out["outputs"]["x"]["p_value"] == pytest.approx(ref.pvalue, rel=1e-9)


# Newcombe RG, "Improved confidence intervals for the difference between binomial proportions based on
# paired data", Stat Med 1998;17:2635-2650, Table II, method 10: (e, f, g, h) -> limits for (f - g)/n.
NEWCOMBE_PAIRED = [
    (36, 12, 2, 0, 0.0569, 0.3404),
    (20, 12, 2, 16, 0.0562, 0.3292),
    (18, 12, 2, 18, 0.0562, 0.3290),
    (36, 14, 0, 0, 0.1528, 0.4167),
    (35, 14, 0, 1, 0.1461, 0.4175),
    (18, 14, 0, 18, 0.1441, 0.3963),
    (2, 97, 1, 0, 0.8721, 0.9854),
    (1, 97, 1, 1, 0.8736, 0.9850),
    (0, 29, 1, 0, 0.6666, 0.9882),
    (2, 98, 0, 0, 0.9178, 0.9945),
    (1, 98, 0, 1, 0.9171, 0.9916),
    (0, 30, 0, 0, 0.8395, 1.0),
    (54, 0, 0, 0, -0.0664, 0.0664),
    (53, 0, 0, 1, -0.0729, 0.0729),
    (30, 0, 0, 24, -0.0358, 0.0358),
    (29, 0, 0, 25, -0.0354, 0.0354),
    (28, 0, 0, 26, -0.0352, 0.0352),
    (27, 0, 0, 27, -0.0351, 0.0351),
]
# Newcombe RG, "Interval estimation for the difference between independent proportions: comparison of
# eleven methods", Stat Med 1998;17:873-890, Table II, method 10: k1/n1 - k2/n2.
NEWCOMBE_INDEPENDENT = [
    (56, 70, 48, 80, 0.0524, 0.3339),
    (9, 10, 3, 10, 0.1705, 0.8090),
    (6, 7, 2, 7, 0.0582, 0.8062),
    (5, 56, 0, 29, -0.0381, 0.1926),
    (0, 10, 0, 20, -0.1611, 0.2775),
    (0, 10, 0, 10, -0.2775, 0.2775),
    (10, 10, 0, 20, 0.6791, 1.0),
    (10, 10, 0, 10, 0.6075, 1.0),
]


@pytest.mark.parametrize("e, f, g, h, low, high", NEWCOMBE_PAIRED)
def test_newcombe_paired_published_values(e, f, g, h, low, high):
    assert newcombe_paired(e, f, g, h) == pytest.approx((low, high), abs=1e-4)  # printed to 4 decimals


@pytest.mark.parametrize("k1, n1, k2, n2, low, high", NEWCOMBE_INDEPENDENT)
def test_newcombe_independent_published_values(k1, n1, k2, n2, low, high):
    assert newcombe_independent(k1, n1, k2, n2) == pytest.approx((low, high), abs=1e-4)


def test_target_rows_use_newcombe_with_b_first():
    # 36 both, 12 only in B, 2 only in A, 0 neither: Newcombe's first example, difference b - a = 0.2
    hit_a = np.array([1] * 36 + [0] * 12 + [1] * 2, dtype=bool)
    hit_b = np.array([1] * 36 + [1] * 12 + [0] * 2, dtype=bool)
    seq = np.arange(50)
    out = compare_frames("A", "B", 3, 3, {"sequence": seq, "won": hit_a}, {"sequence": seq, "won": hit_b}, ["won"])
    t = out["targets"][0]
    assert t["difference"] == pytest.approx(0.2) and t["ci95"] == pytest.approx([0.0569, 0.3404], abs=1e-4)
    # independent runs of 70 and 80 sequences: Newcombe's 56/70 - 48/80 with b the 70
    ua = np.array([1] * 48 + [0] * 32, dtype=bool)
    ub = np.array([1] * 56 + [0] * 14, dtype=bool)
    out = compare_frames(
        "A", "B", 1, 2, {"sequence": np.arange(80), "won": ua}, {"sequence": np.arange(70), "won": ub}, ["won"]
    )
    assert out["targets"][0]["ci95"] == pytest.approx([0.0524, 0.3339], abs=1e-4)


def test_lazy_columns_read_one_output_at_a_time():
    reads = []
    data = {"x": np.arange(5.0), "y": np.ones(5)}

    def read(name):
        reads.append(name)
        return data[name]

    cols = LazyColumns(np.arange(5), ["x", "y"], read)
    out = compare_frames("A", "B", 1, 1, cols, {"sequence": np.arange(5), **data})
    assert set(out["outputs"]) == {"x", "y"} and reads == ["x", "y"]


def test_target_on_an_output_not_in_both_runs_is_an_error():
    with pytest.raises(ExpressionError, match="'speed'"):
        compare_frames(
            "A",
            "B",
            1,
            1,
            {"sequence": np.arange(3), "x": np.ones(3)},
            {"sequence": np.arange(3), "x": np.ones(3)},
            ["speed>1"],
        )


def test_holm_adjusted_p_values():
    # m = 4: sorted 0.01, 0.02, 0.03, 0.04 -> 0.04, max(0.04, 0.06), max(0.06, 0.06), max(0.06, 0.04)
    assert holm([0.03, 0.01, 0.04, 0.02]) == pytest.approx([0.06, 0.04, 0.06, 0.06])
    assert holm([0.5, None, 0.9]) == [1.0, None, 1.0]
    assert holm([]) == []


def test_a_constant_difference_has_no_variance_reduction_despite_rounding():
    """b = a + 0.3 in floats differs from 0.3 by rounding only: an exact interval, no 1e32-fold 'reduction'."""
    a = np.random.default_rng(3).normal(0.0, 1000.0, 4000)  # many binades: rounding varies
    b = a + 0.3
    assert np.var(b - a) > 0  # the rounding this test is about
    seq = np.arange(a.size)
    x = compare_frames("A", "B", 1, 1, {"sequence": seq, "x": a}, {"sequence": seq, "x": b}, [])["outputs"]["x"]
    assert x["variance_reduction"] is None
    assert x["ci95"] == [x["difference"], x["difference"]]
    assert x["difference"] == pytest.approx(0.3, abs=1e-12) and x["p_value"] == 0.0


def test_a_shifted_long_walk_is_a_constant_difference():
    """A 100,000-step walk and the same walk with a drift, each summed step by step (as a model does): the final
    values differ by 0.5 × 100,000 up to the walks' own accumulated rounding (~1e-13 of their size), which once
    read as a 1e24-fold variance reduction."""
    z = np.random.default_rng(5).standard_normal((200, 100_000))
    a = np.cumsum(z, axis=1)[:, -1]
    b = np.cumsum(z + 0.5, axis=1)[:, -1]
    assert np.var(b - a) > 0
    seq = np.arange(a.size)
    x = compare_frames("A", "B", 1, 1, {"sequence": seq, "x": a}, {"sequence": seq, "x": b}, [])["outputs"]["x"]
    assert x["variance_reduction"] is None and x["difference"] == pytest.approx(50_000, rel=1e-12)


def walks(seed: int, drift: float, n: int = 400, steps: int = 30) -> dict:
    z = np.random.default_rng(seed).standard_normal((n, steps))
    path = np.cumsum(z + drift, axis=1)
    return {"sequence": np.arange(n), "path": path, "final": path[:, -1]}


def test_targets_on_trajectories_reduce_them_as_runs_do():
    """``max(path)>=10`` compared paired: each run's probability is the share of its paths that reach 10, the
    difference b − a the paired one; ``last(path)`` is ``final``."""
    a, b = walks(1, 0.0), walks(1, 0.3)
    out = compare_frames("A", "B", 1, 1, a, b, ["max(path)>=10", "last(path)>2", "final>2"])
    rows = {row["expr"]: row for row in out["targets"]}
    assert list(rows) == ["max(path)>=10", "last(path)>2", "final>2"] and list(out["outputs"]) == ["final"]
    ha, hb = a["path"].max(axis=1) >= 10, b["path"].max(axis=1) >= 10
    assert rows["max(path)>=10"]["probability_a"] == ha.mean() and rows["max(path)>=10"]["probability_b"] == hb.mean()
    assert rows["max(path)>=10"]["difference"] == pytest.approx(hb.mean() - ha.mean())
    assert {k: v for k, v in rows["last(path)>2"].items() if k != "expr"} == {
        k: v for k, v in rows["final>2"].items() if k != "expr"
    }


def test_trajectory_targets_of_the_wrong_shape_are_errors_naming_the_target():
    a, b = walks(1, 0.0), walks(1, 0.3)
    for targets, index, needle in [
        (["final>0", "path>5"], 1, "output 'path' is a trajectory; use max(path), min(path) or last(path)"),
        (["max(final)>5"], 0, "max() takes a trajectory, but output 'final' is a single number per sequence"),
    ]:
        for columns in (a, b), (lazy(a), lazy(b)):
            with pytest.raises(ExpressionError, match=needle.replace("(", r"\(").replace(")", r"\)")) as caught:
                compare_frames("A", "B", 1, 1, *columns, targets)
            assert caught.value.index == index and str(caught.value).startswith("target '")


def lazy(columns: dict, read: list | None = None) -> LazyColumns:
    def reading(name):
        if read is not None:
            read.append(name)
        return columns[name]

    kinds = {"path": f"float[{columns['path'].shape[1]}]", "final": "float"}
    blocks = lambda name: (columns[name][i : i + 64] for i in range(0, len(columns[name]), 64))  # noqa: E731
    return LazyColumns(columns["sequence"], list(kinds), reading, kinds, blocks)


def test_trajectories_are_never_read_whole_when_their_kinds_are_known():
    """Comparing two runs of long trajectories reads their scalar outputs only; a target on a trajectory reduces
    it chunk by chunk: the same numbers as from whole columns."""
    a, b = walks(1, 0.0), walks(1, 0.3)
    read: list[str] = []
    got = compare_frames("A", "B", 1, 1, lazy(a, read), lazy(b, read), ["max(path)>=10", "final>2"])
    assert sorted(read) == ["final", "final"]
    assert got == compare_frames("A", "B", 1, 1, a, b, ["max(path)>=10", "final>2"])
