"""Designs: sizes, values inside their ranges, stratification, reproducibility, and every bad input as a one-line design error."""

import numpy as np
import pandas as pd
import pytest

import ancho
from ancho.errors import Field, FieldError
from ancho.studies import Design, grid, lhs, morris, points, random, sobol


class Shop(ancho.Model):
    p: float = 0.5
    goal: int = 10
    policy: str = "fifo"
    fast: bool = False

    def sequence(self, rng):
        return {"x": rng.random()}


def _design_error(call, *words):
    with pytest.raises(FieldError) as info:
        call()
    assert info.value.field is Field.DESIGN
    msg = str(info.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, msg
    return msg


def test_grid_is_the_product_of_its_values():
    pts = grid(p=[0.45, 0.5, 0.55], goal=[10, 20]).points(Shop)
    assert len(pts) == 6
    assert pts[0] == {"p": 0.45, "goal": 10} and pts[-1] == {"p": 0.55, "goal": 20}
    assert {(d["p"], d["goal"]) for d in pts} == {(p, g) for p in (0.45, 0.5, 0.55) for g in (10, 20)}
    assert grid(goal=["3", 4.0]).points(Shop) == [{"goal": 3}, {"goal": 4}]  # converted by the parameter's type
    assert grid(p=[0.45, 0.5], goal=[10, 20]).describe()["points"] == 4


def test_lhs_hits_each_stratum_once_per_parameter():
    n = 50
    pts = lhs(n, seed=3, p=(0.0, 1.0), goal=(0, n - 1)).points(Shop)
    strata = sorted(int(d["p"] * n) for d in pts)
    assert strata == list(range(n))
    assert sorted(d["goal"] for d in pts) == list(range(n))  # ints: one stratum per whole number


@pytest.mark.parametrize("second, per", [(False, lambda d: d + 2), (True, lambda d: 2 * d + 2)])
def test_sobol_size_and_values_inside_ranges(second, per):
    design = sobol(16, seed=1, calc_second_order=second, p=(0.2, 0.4), goal=(5, 9), policy=["fifo", "lifo"])
    pts = design.points(Shop)
    assert len(pts) == 16 * per(3) == design.describe()["points"]
    assert all(0.2 <= d["p"] <= 0.4 and 5 <= d["goal"] <= 9 and d["policy"] in ("fifo", "lifo") for d in pts)
    assert all(isinstance(d["goal"], int) for d in pts)
    problem = design.describe()["problem"]
    assert problem["names"] == ["p", "goal", "policy"] and problem["num_vars"] == 3


def test_morris_shape_and_levels():
    design = morris(10, levels=4, seed=2, p=(0.0, 0.3), goal=(1, 4))
    pts = design.points(Shop)
    assert len(pts) == 10 * 3
    assert design.unit_sample().shape == (30, 2)
    assert {round(d["p"], 12) for d in pts} <= {0.0, 0.1, 0.2, 0.3}
    assert {d["goal"] for d in pts} <= {1, 2, 3, 4}


def test_ints_inclusive_and_choices():
    pts = random(2000, seed=5, goal=(1, 3), policy=["fifo", "lifo", "random"], fast=[True, False]).points(Shop)
    assert {d["goal"] for d in pts} == {1, 2, 3}
    assert {d["policy"] for d in pts} == {"fifo", "lifo", "random"}
    assert {d["fast"] for d in pts} == {True, False}
    counts = np.bincount([d["goal"] for d in pts])[1:]
    assert counts.min() > 550  # each of 3 values about 667 times


def test_seed_recorded_and_regenerates_the_points():
    design = lhs(20, p=(0.0, 1.0)).seeded(7)
    described = design.describe()
    again = Design.from_dict({"lhs": {"n": 20, "ranges": {"p": [0.0, 1.0]}, "seed": described["seed"]}})
    assert again.points(Shop) == design.points(Shop)
    assert lhs(20, p=(0.0, 1.0)).seeded(7).seed == described["seed"]  # derived from the study seed alone
    assert lhs(20, p=(0.0, 1.0)).seeded(8).seed != described["seed"]
    assert lhs(20, seed=11, p=(0.0, 1.0)).seeded(7).seed == 11  # its own seed wins


@pytest.mark.parametrize(
    "design",
    [
        grid(p=[0.45, 0.5], goal=[10]),
        random(8, seed=1, p=(0.4, 0.6), policy=["fifo", "lifo"]),
        lhs(8, seed=1, goal=(1, 5)),
        sobol(8, seed=1, calc_second_order=True, p=(0.4, 0.6)),
        morris(4, levels=6, seed=1, p=(0.4, 0.6)),
        points([{"p": 0.45}, {"p": 0.5}]),
    ],
)
def test_rest_body_round_trip(design):
    body = design.to_dict()
    assert list(body) == [design.kind]
    assert Design.from_dict(body) == design
    assert Design.from_dict(body).points(Shop) == design.points(Shop)


def test_rest_shapes_from_design_md():
    assert Design.from_dict({"grid": {"p": [0.45, 0.5]}}).points(Shop) == [{"p": 0.45}, {"p": 0.5}]
    d = Design.from_dict({"lhs": {"n": 64, "ranges": {"p": [0.4, 0.6]}}})
    assert d.ranges["p"].low == 0.4 and d.n == 64
    m = Design.from_dict({"morris": {"trajectories": 20, "levels": 4, "ranges": {"p": [0.4, 0.6]}}})
    assert m.size == 40


def test_points_from_dataframe_and_csv(tmp_path):
    frame = pd.DataFrame({"p": [0.1, 0.2], "goal": [3, 4]})
    assert points(frame).points(Shop) == [{"p": 0.1, "goal": 3}, {"p": 0.2, "goal": 4}]
    path = tmp_path / "pts.csv"
    path.write_text("p,goal,policy\n0.1,3,fifo\n0.2,4,lifo\n")
    assert points(path).points(Shop) == [
        {"p": 0.1, "goal": 3, "policy": "fifo"},
        {"p": 0.2, "goal": 4, "policy": "lifo"},
    ]


def test_none_and_empty_strings_in_given_rows_are_values_blank_table_cells_are_gaps(tmp_path):
    class Tagged(ancho.Model):
        tag: str = "x"
        note: str | None = "y"

        def sequence(self, rng):
            return {"x": 1.0}

    assert points([{"tag": "", "note": None}]).points(Tagged) == [{"tag": "", "note": None}]
    gap = tmp_path / "blank.csv"
    gap.write_text("tag,note\na,\n")
    _design_error(lambda: points(gap), "point 0", "'note'")
    _design_error(lambda: points(pd.DataFrame({"tag": ["a", None]})), "point 1", "'tag'")


def test_bad_inputs_each_name_the_culprit(tmp_path):
    _design_error(lambda: grid(q=[1]).points(Shop), "'q'", "known parameters")
    _design_error(lambda: grid(goal=[10, 1.5]).points(Shop), "'goal'", "int")
    _design_error(lambda: grid(p=["lots"]).points(Shop), "'p'")
    _design_error(lambda: lhs(4, seed=1, p=(0.6, 0.4)).points(Shop), "'p'", "below")
    _design_error(lambda: lhs(4, seed=1, goal=(3, 3)).points(Shop), "'goal'", "below")
    _design_error(lambda: lhs(4, seed=1, policy=("a", "b")).points(Shop), "'policy'", "choices")
    _design_error(lambda: grid(), "no parameters")
    _design_error(lambda: grid(p=[]), "'p'", "empty")
    _design_error(lambda: points([]).points(Shop), "no points")
    _design_error(lambda: lhs(0, p=(0, 1)), "at least 1")
    _design_error(lambda: random(4), "no ranges")
    _design_error(lambda: grid(p=list(np.linspace(0, 1, 1000)), goal=list(range(101))).points(Shop), "101,000", "cap")
    _design_error(lambda: lhs(50, seed=1, p=(0, 1)).points(Shop, max_points=10), "50", "10")
    msg = _design_error(lambda: sobol(100, p=(0, 1)), "n=100", "64", "128")
    assert "power of two" in msg
    _design_error(lambda: morris(5, levels=3, p=(0, 1)), "levels")
    bad = tmp_path / "unknown.csv"
    bad.write_text("p,speed\n0.1,3\n")
    _design_error(lambda: points(bad).points(Shop), "'speed'")
    gap = tmp_path / "gap.csv"
    gap.write_text("p,goal\n0.1,3\n0.2,\n")
    _design_error(lambda: points(gap).points(Shop), "point 1", "'goal'")
    _design_error(lambda: points(pd.DataFrame({"p": [0.1, None]})).points(Shop), "point 1", "'p'")
    _design_error(lambda: points(tmp_path / "missing.csv"), "missing.csv")
    _design_error(lambda: Design.from_dict({"factorial": {}}), "design must be one of")
    _design_error(lambda: Design.from_dict({"lhs": {"n": 8, "ranges": {"p": [0, 1]}, "size": 3}}), "'size'")
