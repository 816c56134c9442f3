"""A study page's pictures and table, from hand-made summaries: what each picture draws, where, and its text."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from ancho.web.charts import MB, ML, MR, MT, H, W
from ancho.web.studies import PAGE_ROWS, _sorted_page, study_data
from ancho.web.study_charts import (
    MAX_LINES,
    MAX_MARKS,
    MAX_PATHS,
    MAX_ROWS,
    PATHS_TOP,
    band_svg,
    comparison_svg,
    heatmap_svg,
    parallel_svg,
    paths_svg,
    sensitivity_svg,
)

from .test_chart_labels import assert_readable

NS = "{http://www.w3.org/2000/svg}"


def parse(markup) -> ET.Element:
    return ET.fromstring(str(markup).replace("<svg ", '<svg xmlns="http://www.w3.org/2000/svg" ', 1))


def point(k: int, params: dict, mean: float | None, low=None, high=None, prob: float | None = None) -> dict:
    outputs = {} if mean is None else {"x": {"mean": mean, "ci95": [low, high], "std": 1.0, "count": 10}}
    targets = [] if prob is None else [{"expr": "x>1", "probability": prob, "ci95": [prob / 2, (1 + prob) / 2]}]
    return {"point": k, "run": f"r{k}", "params": params, "status": "succeeded", "sequences": 10,
            "outputs": outputs, "targets": targets, "custom": {}, "failures": 0}  # fmt: skip


def summary(params: list[str], points: list[dict], **extra) -> dict:
    return {"design": {"kind": "grid", "parameters": params, "points": len(points)}, "points": points, **extra}


def test_one_parameter_draws_mean_band_and_probability_in_parameter_order():
    pts = [point(0, {"a": 3.0}, 30, 29, 31, 0.3), point(1, {"a": 1.0}, 10, 9, 11, 0.1), point(2, {"a": 2.0}, 20, 19, 21, 0.2)]  # fmt: skip
    data = study_data(summary(["a"], pts))
    assert [f.caption.split(" against")[0] for f in data.figures] == ["Mean of x", "Probability of x>1"]
    svg = str(data.figures[0].svg)
    dots = [(float(x), float(y)) for x, y in re.findall(r'class="dot" cx="([\d.]+)" cy="([\d.]+)"', svg)]
    # sorted by a: the smallest at the left edge, the largest at the right; y grows downwards as the mean grows
    assert [x for x, _ in dots] == [ML, (ML + W - MR) / 2, W - MR]
    assert dots[0][1] > dots[1][1] > dots[2][1]
    span = H - MB - MT  # the intervals run 9 to 31; the y range is theirs widened to round numbers, 5 to 35
    assert dots[0][1] == round(H - MB - span * 5 / 30, 2) and dots[2][1] == round(H - MB - span * 25 / 30, 2)
    assert "at 3 values of a, from 10 to 30" in svg
    prob = str(data.figures[1].svg)
    assert "Probability of x&gt;1 against a" in prob and ">100%<" in prob  # a probability's axis is 0 to 1


def test_one_parameter_axis_holds_the_intervals_inside_the_plot():
    # k does not move with mu (the review's "mean of k against mu"): the means are one value, the intervals wide;
    # the axis ran exactly from the lowest interval end to the highest, so whiskers and band filled the plot
    svg = parse(band_svg("mu", "k", [0, 0.5, 1], [2.9755] * 3, [2.9008686] * 3, [3.0501314] * 3))
    whiskers = [e for e in svg.iter(f"{NS}line") if e.get("class") == "whisker"]
    assert len(whiskers) == 3
    for w in whiskers:
        top, bottom = sorted((float(w.get("y1")), float(w.get("y2"))))
        assert MT < top and bottom < H - MB
    band = [tuple(map(float, p.split(","))) for p in svg.find(f"{NS}polygon").get("points").split()]
    assert all(MT < py < H - MB for _, py in band)


def test_choices_are_placed_in_order_of_appearance():
    svg = str(band_svg("k", "x", ["b", "a", "b2"], [1.0, 2.0, 3.0], [0.5, 1.5, 2.5], [1.5, 2.5, 3.5]))
    assert re.findall(r'<text class="tick"[^>]*text-anchor="middle">([^<]+)</text>', svg) == ["a", "b", "b2"]


def test_two_parameters_on_a_grid_draw_one_cell_each_darker_for_higher():
    xs, ys = [1, 1, 2, 2], [10, 20, 10, 20]
    svg = str(heatmap_svg("a", "b", "x", xs, ys, [0.0, 1.0, 2.0, 4.0]))
    shades = [float(s) for s in re.findall(r'<rect class="heat"[^>]*fill-opacity="([\d.]+)"', svg)]
    assert shades == [round(0.12 + 0.88 * share, 3) for share in (0, 0.25, 0.5, 1)]
    widths = {w for w in re.findall(r'<rect class="heat"[^>]*width="([\d.]+)"', svg)}
    assert len(widths) == 1 and float(widths.pop()) == (W - MR - ML) / 2  # two columns fill the plot
    scattered = str(heatmap_svg("a", "b", "x", [0.1, 0.7, 0.3], [5.0, 1.0, 2.0], [1.0, 2.0, 3.0]))
    assert scattered.count('<circle class="heat"') == 3 and '<rect class="heat"' not in scattered


def test_parallel_coordinates_cap_the_lines_and_say_so():
    n = MAX_LINES * 3
    cols = {p: [float(i % (k + 2)) for i in range(n)] for k, p in enumerate(("a", "b", "c"))}
    svg = str(parallel_svg(["a", "b", "c"], "x", cols, [float(i) for i in range(n)]))
    assert svg.count('<polyline class="pc"') == MAX_LINES and f"({MAX_LINES} of {n} drawn)" in svg
    assert svg.count('<line class="axis"') == 4  # three parameters and the output


def test_comparison_marks_exactly_the_intervals_that_leave_zero():
    rows = [(1, 0.5, 0.1, 0.9), (2, 0.2, -0.1, 0.5), (3, -0.4, -0.6, -0.2), (4, 0.0, None, None)]
    svg = str(comparison_svg("x", rows, 0))
    marks = re.findall(r'<circle class="dot ([a-z]*)"[^>]*><title>point (\d)', svg)
    assert marks == [("significant", "1"), ("", "2"), ("significant", "3"), ("", "4")]
    assert "2 differ significantly" in svg


def test_sensitivity_bars_hold_each_index_and_interval():
    entry = {"method": "sobol", "S1": {"a": {"value": 0.6, "ci95": [0.5, 0.7]}, "b": {"value": 0.1, "ci95": [0.0, 0.2]}},
             "ST": {"a": {"value": 0.7, "ci95": [0.6, 0.8]}, "b": {"value": 0.2, "ci95": [0.1, 0.3]}}}  # fmt: skip
    svg = str(sensitivity_svg("x", entry))
    assert re.findall(r"<title>(\w+ \w+): ([\d.]+), 95% CI ([\d.]+) to ([\d.]+)</title>", svg) == [
        ("a S1", "0.6", "0.5", "0.7"), ("a ST", "0.7", "0.6", "0.8"), ("b S1", "0.1", "0", "0.2"), ("b ST", "0.2", "0.1", "0.3"),
    ]  # fmt: skip
    morris = {"method": "morris", "mu_star": {"a": {"value": 2.0, "ci95": [1.0, 3.0]}}, "sigma": {"a": 0.5}}
    assert "a mu_star: 2, 95% CI 1 to 3" in str(sensitivity_svg("x", morris))


def test_table_sorts_missing_values_last_and_pages():
    pts = [point(k, {"a": float(k % 7)}, None if k % 5 == 0 else float(-k)) for k in range(PAGE_ROWS + 30)]
    data = study_data(summary(["a"], pts))
    first, pages = _sorted_page(data, "x.mean", "desc", 1)
    assert pages == 2 and len(first) == PAGE_ROWS and first[0]["point"] == 1
    last, _ = _sorted_page(data, "x.mean", "desc", 9)  # past the end: the last page
    assert all(r["x.mean"] is None for r in last[-26:]) and len(last) == 30
    same, _ = _sorted_page(data, "nonsense", "asc", 1)
    assert [r["point"] for r in same] == list(range(PAGE_ROWS))


def test_many_points_are_marked_sparingly_so_the_page_stays_small():
    n = 2000
    xs = [k / n for k in range(n)]
    svg = str(band_svg("a", "x", xs, xs, [x - 0.01 for x in xs], [x + 0.01 for x in xs]))
    assert svg.count('<circle class="dot"') == MAX_MARKS and f"({MAX_MARKS} of them marked)" in svg
    assert len(svg) < 60_000
    rows = [(k, float(k % 50) - 20, float(k % 50) - 21, float(k % 50) - 19) for k in range(n)]
    forest = str(comparison_svg("x", rows, 0))
    drawn = [int(p) for p in re.findall(r"<title>point (\d+):", forest)]
    assert len(drawn) == MAX_ROWS and drawn == sorted(drawn)
    # the largest |difference| is 29 (k % 50 == 49); every drawn point's is at least any left out's
    assert min(abs(k % 50 - 20) for k in drawn) >= max(abs(k % 50 - 20) for k in range(n) if k not in drawn)


def test_mean_paths_are_capped_and_shaded():
    paths = [(f"point {k}", [float(k * t) for t in range(1000)], k / 199) for k in range(200)]
    svg = str(paths_svg("walk", paths))
    lines = re.findall(
        r'<polyline class="mpath" points="([^"]+)" stroke-opacity="([\d.]+)" stroke-width="([\d.]+)"', svg
    )
    assert len(lines) == MAX_PATHS and f"({MAX_PATHS} of 200 drawn)" in svg
    assert all(len(points.split()) == MAX_LINES for points, _, _ in lines)
    # the faintest line is still plain, the strongest solid and thicker; drawn faintest first (the strongest on top)
    assert (float(lines[0][1]), float(lines[-1][1])) == (0.4, 1.0) and float(lines[0][2]) < float(lines[-1][2])
    assert [float(o) for _, o, _ in lines] == sorted(float(o) for _, o, _ in lines)


def ticks_and_lines(markup) -> tuple[dict[str, float], list[list[float]]]:
    """A mean-path picture's y tick labels (text: y) and its lines' y coordinates."""
    svg = parse(markup)
    yt = {t.text: float(t.get("y")) - 4 for t in svg.iter(f"{NS}text") if t.get("text-anchor") == "end"}
    lines = [p for p in svg.iter(f"{NS}polyline") if p.get("class") == "mpath"]
    return yt, [[float(xy.split(",")[1]) for xy in p.get("points").split()] for p in lines]


def drifts(top: float, noise: float = 0.3) -> list[tuple[str, list[float], float]]:
    """Mean paths drift * t over 101 steps for drift 0, 1 and 2 (the last ending at ``top``), a little noisy."""
    t = np.arange(101)
    noisy = np.random.default_rng(3).normal(0, noise, (3, 101))
    return [(f"point {k}, drift = {d}", (top / 200 * d * t + noisy[k]).tolist(), k / 2) for k, d in enumerate((0, 1, 2))]  # fmt: skip


@pytest.mark.parametrize("top", [200.0, 198.0, 201.0])
def test_mean_path_ticks_cover_the_lines_up_to_a_round_top(top):
    # lines reaching 200 (or 198, or a hair past it) end level with a 200 tick at the top of the plot, not above 150
    yt, lines = ticks_and_lines(paths_svg("walk", drifts(top)))
    assert list(yt) == ["0", "50", "100", "150", "200"]
    ys = [y for line in lines for y in line]
    # the outermost ticks at the plot's edges, or a few pixels inside when a noisy line passes them by that much
    assert PATHS_TOP <= yt["200"] <= PATHS_TOP + 3 and H - MB - 3 <= yt["0"] <= H - MB
    assert PATHS_TOP <= min(ys) and max(ys) <= H - MB  # every line inside the plot, its highest and lowest values
    assert abs(min(ys) - yt["200"]) <= 3 and abs(max(ys) - yt["0"]) <= 3  # level with the outermost ticks


def test_mean_path_ticks_cover_a_range_between_round_values():
    # 37 to 161: the ticks run from the round value at or below the lowest to the one at or above the highest
    yt, lines = ticks_and_lines(paths_svg("walk", [("p", [37.0, 80.0, 161.0], 1.0)]))
    assert list(yt) == ["0", "50", "100", "150", "200"]
    assert yt["0"] == H - MB and yt["200"] == PATHS_TOP and yt["0"] > max(lines[0]) and yt["200"] < min(lines[0])


def test_mean_paths_have_a_key_naming_the_faintest_and_strongest_line():
    markup = str(paths_svg("walk", drifts(200.0), ("drift = 0", "drift = 2")))
    svg = parse(markup)
    lines = [p for p in svg.iter(f"{NS}polyline") if p.get("class") == "mpath"]
    keys = [line for line in svg.iter(f"{NS}line") if line.get("class") == "mpath"]
    texts = [t for t in svg.iter(f"{NS}text") if t.get("class") == "tick key"]
    assert [t.text for t in texts] == ["drift = 0", "drift = 2"]
    assert [k.find(f"{NS}title").text for k in keys] == ["faintest line: drift = 0", "strongest line: drift = 2"]
    style = [(p.get("stroke-opacity"), p.get("stroke-width")) for p in (*keys, lines[0], lines[-1])]
    assert style[0] == style[2] and style[1] == style[3]  # each sample is drawn as its line is
    assert float(style[0][0]) >= 0.4 and float(style[0][1]) < float(style[1][1])  # plain, and thinner
    # above the plot, left to right from its left edge, apart; the description names both ends for screen readers
    assert all(float(t.get("y")) < PATHS_TOP - 8 for t in texts)
    assert "the faintest, thinnest line is drift = 0, the strongest, thickest drift = 2" in svg.find(f"{NS}desc").text
    assert_readable(markup)
    # without names for its ends, the key shows the faintest and strongest paths' labels
    default = [
        t.text for t in parse(paths_svg("walk", drifts(200.0))).iter(f"{NS}text") if t.get("class") == "tick key"
    ]
    assert default == ["point 0, drift = 0", "point 2, drift = 2"]


def test_a_long_key_is_cut_whole_in_its_tooltip():
    name = "a_rather_long_parameter_name_for_label_testing"
    markup = paths_svg("walk", drifts(200.0), (f"{name} = 0.001234", f"{name} = 1,234"))
    svg = parse(markup)
    texts = [t for t in svg.iter(f"{NS}text") if t.get("class") == "tick key"]
    assert [t.find(f"{NS}title").text for t in texts] == [f"{name} = 0.001234", f"{name} = 1,234"]
    assert all(t.find(f"{NS}title").tail.endswith("…") for t in texts)
    assert_readable(markup)
