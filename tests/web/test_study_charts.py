"""A study page's pictures and table, from hand-made summaries: what each picture draws, where, and its text."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from ancho.web.charts import MB, ML, MR, MT, H, W
from ancho.web.studies import PAGE_ROWS, _sorted_page, study_data
from ancho.web.study_charts import (
    MAX_LINES,
    MAX_MARKS,
    MAX_PATHS,
    MAX_ROWS,
    band_svg,
    comparison_svg,
    heatmap_svg,
    parallel_svg,
    paths_svg,
    sensitivity_svg,
)

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
    lines = re.findall(r'<polyline class="pc" points="([^"]+)" stroke-opacity="([\d.]+)"', svg)
    assert len(lines) == MAX_PATHS and f"({MAX_PATHS} of 200 drawn)" in svg
    assert all(len(points.split()) == MAX_LINES for points, _ in lines)
    assert float(lines[0][1]) == 0.2 and float(lines[-1][1]) == 1.0
