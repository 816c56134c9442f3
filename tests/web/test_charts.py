"""The run page's SVG plots: well-formed, faithful to plotdata's numbers, safe with odd data."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest

from ancho.plotdata import convergence, histogram
from ancho.web.charts import convergence_svg, fmt, histogram_svg, targets_svg, ticks

SVG = "{http://www.w3.org/2000/svg}"


def parse(markup) -> ET.Element:
    return ET.fromstring(str(markup).replace("<svg ", '<svg xmlns="http://www.w3.org/2000/svg" ', 1))


@pytest.mark.parametrize("lo, hi", [(0, 1), (0, 2543), (-3.2, 17.9), (0.0012, 0.0019), (1e6, 1e6 + 3)])
def test_ticks_are_round_and_inside(lo, hi):
    t = ticks(lo, hi, 5)
    assert 2 <= len(t) <= 11
    assert all(lo - 1e-9 <= v <= hi + 1e-9 for v in t)
    steps = np.diff(t)
    assert np.allclose(steps, steps[0])
    mantissa = steps[0] / 10 ** np.floor(np.log10(steps[0]))
    assert round(mantissa, 6) in (1, 2, 5, 10)


def test_fmt():
    assert fmt(None) == "–"
    assert fmt(3000) == "3,000" and fmt(3.0) == "3"
    assert fmt(0.11666) == "0.1167" and fmt(17.3333) == "17.33"
    assert fmt(1.5e-5) == "1.500e-05" and fmt(float("nan")) == "nan"


def test_histogram_bars_count_every_finite_sequence():
    rng = np.random.default_rng(1)
    values = rng.normal(size=5000)
    values[:7] = np.nan
    svg = parse(histogram_svg("x", histogram(values, "float")))
    bars = svg.findall(f"{SVG}rect")
    counts = [int(b.find(f"{SVG}title").text.split(": ")[1].split()[0].replace(",", "")) for b in bars]
    assert sum(counts) == 4993
    assert "7 NaN or infinite values not shown" in svg.find(f"{SVG}desc").text
    assert all(float(b.get("height")) >= 0 for b in bars)


def test_bool_and_narrow_integer_histograms_label_their_values():
    svg = parse(histogram_svg("won", histogram(np.array([True, False, True]), "bool")))
    assert [b.find(f"{SVG}title").text for b in svg.findall(f"{SVG}rect")] == [
        "false: 1 sequences (33.3%)",
        "true: 2 sequences (66.7%)",
    ]
    svg = parse(histogram_svg("k", histogram(np.array([3, 3, 4, 6]), "int")))
    assert [b.find(f"{SVG}title").text.split(":")[0] for b in svg.findall(f"{SVG}rect")] == ["3", "4", "5", "6"]


def test_convergence_band_and_line():
    rng = np.random.default_rng(2)
    conv = convergence(rng.exponential(size=20_000), "float")
    svg = parse(convergence_svg("x", conv))
    assert svg.find(f"{SVG}polygon").get("class") == "band"
    line = svg.find(f"{SVG}polyline").get("points").split()
    assert len(line) == len(conv["n"])
    assert f"ending at {fmt(conv['mean'][-1])}" in svg.find(f"{SVG}desc").text
    for point in line:  # inside the plot area however wide the first intervals are
        x, y = map(float, point.split(","))
        assert 0 <= x <= 560 and 0 <= y <= 280


def test_nothing_to_draw():
    assert histogram_svg("x", histogram(np.array([np.nan, np.inf]), "float")) is None
    assert convergence_svg("x", convergence(np.array([1.0]), "float")) is None
    assert targets_svg([{"expr": "x>1", "probability": None, "ci95": None}]) is None
    constant = parse(histogram_svg("c", histogram(np.full(10, 2.5), "float")))
    assert len(constant.findall(f"{SVG}rect")) == 1


def test_names_are_escaped():
    svg = str(targets_svg([{"expr": "a<b&c", "probability": 0.25, "ci95": [0.2, 0.3]}]))
    assert "a&lt;b&amp;c" in svg and "a<b" not in svg
    parse(svg)
    assert "<script" not in str(histogram_svg("<script>", histogram(np.arange(5.0), "float")))
