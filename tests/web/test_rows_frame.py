"""The site's pictures of one row per item (a run's targets, a study's sensitivity and comparison, two runs'
differences) share one frame (web/charts.py ``_frame`` with ``_rows_layout``): each is labelled for screen readers
(role, an ``aria-label`` that is its title and description, ``<title>``, ``<desc>``), grows a row at a time, and
leaves its longest label the room it needs."""

from __future__ import annotations

import pytest

from ancho.web.charts import MB, MT, W, targets_svg
from ancho.web.compare import Difference, differences_svg
from ancho.web.study_charts import comparison_svg, sensitivity_svg

from .test_charts import SVG, parse


def targets(n: int):
    return targets_svg([{"expr": f"x>{k}", "probability": 0.1 * k, "ci95": [0.1 * k - 0.05, 0.1 * k + 0.05]} for k in range(1, n + 1)])  # fmt: skip


def sensitivity(n: int):
    params = [f"a{k}" for k in range(n)]
    return sensitivity_svg(
        "x", {"method": "morris", "mu_star": {p: {"value": 1.0, "ci95": [0.5, 1.5]} for p in params}}
    )


def comparison(n: int):
    return comparison_svg("x", [(k, 0.1 * k, 0.1 * k - 0.05, 0.1 * k + 0.05) for k in range(1, n + 1)], 0)


def runs_differences(n: int):
    return differences_svg([Difference(f"y{k}", False, 1.0, 1.5, 0.5, 0.2, 0.8) for k in range(n)])


#: (picture of n rows, its role, the height of one row, what its title is)
PICTURES = [
    (targets, "img", 34, "Target probabilities"),
    (sensitivity, "img", 26, "Sensitivity of x"),
    (comparison, "img", 26, "x: each point minus point 0"),
    (runs_differences, "group", 44, "Differences between the runs"),
]


@pytest.mark.parametrize("draw, role, row_h, title", PICTURES, ids=[p[3] for p in PICTURES])
def test_each_row_picture_is_labelled_and_grows_by_its_rows(draw, role, row_h, title):
    one, three = parse(draw(1)), parse(draw(3))
    for svg in (one, three):
        assert svg.get("role") == role and svg.get("class") == "chart"
        assert svg.find(f"{SVG}title").text == title
        desc = svg.find(f"{SVG}desc").text
        assert desc and svg.get("aria-label") == f"{title}. {desc}"
    heights = [float(svg.get("viewBox").split()[3]) for svg in (one, three)]
    assert heights[1] - heights[0] == 2 * row_h
    assert heights[0] <= MT + row_h + MB  # no more room than one row and the axis


@pytest.mark.parametrize("draw", [p[0] for p in PICTURES], ids=[p[3] for p in PICTURES])
def test_labels_sit_left_of_the_marks_inside_the_picture(draw):
    svg = parse(draw(2))
    labels = [t for t in svg.iter(f"{SVG}text") if t.get("text-anchor") == "end" and t.get("class") == "tick"]
    marks = [float(c.get("cx")) for c in svg.iter(f"{SVG}circle")] + [float(r.get("x")) for r in svg.iter(f"{SVG}rect")]
    assert labels and marks
    for t in labels:
        x = float(t.get("x"))
        assert len(t.text) * 8 <= x + 8 <= W  # room for the label's characters at 8 px each
        assert x < min(marks)
