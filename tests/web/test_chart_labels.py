"""Chart text stays inside the picture and apart, at the largest size the stylesheet gives it (phones).

Boxes are the server's own width estimate (:mod:`ancho.web.labels`); test_browser measures them in Chromium.
"""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from ancho.plotdata import Fan, histogram
from ancho.web.charts import H, W, _axes, _left, _Scale, convergence_svg, fan_svg, histogram_svg
from ancho.web.labels import (
    TICK_PX,
    TITLE_PX,
    compact,
    fit_ticks,
    fits,
    label,
    left_margin,
    shorten,
    text_width,
    tick_room,
)
from ancho.web.study_charts import band_svg, parallel_svg, paths_svg

NS = "{http://www.w3.org/2000/svg}"
LONG = "a_rather_long_output_name_for_label_testing_purposes"


def parse(markup) -> ET.Element:
    return ET.fromstring(str(markup).replace("<svg ", '<svg xmlns="http://www.w3.org/2000/svg" ', 1))


def shown(t: ET.Element) -> str:
    """A text element's visible text (its tooltip left out)."""
    return (t.find(f"{NS}title").tail if t.find(f"{NS}title") is not None else t.text) or ""


def boxes(svg: ET.Element) -> list[tuple[str, float, float, float, float]]:
    """(text, x0, x1, y0, y1) of every text element, rotated axis titles turned."""
    out = []
    for t in svg.iter(f"{NS}text"):
        text = shown(t)
        px = TITLE_PX if t.get("class") == "axis-label" else TICK_PX
        w = text_width(text, px)
        x, y = float(t.get("x")), float(t.get("y"))
        anchor = t.get("text-anchor") or "start"
        x0 = x - w / 2 if anchor == "middle" else x - w if anchor == "end" else x
        if t.get("transform", "").startswith("rotate(-90"):
            out.append((text, x - px * 0.8, x + px * 0.25, y - w / 2, y + w / 2))
        else:
            out.append((text, x0, x0 + w, y - px * 0.8, y + px * 0.25))
    return out


def assert_readable(markup, height: float = H) -> list[str]:
    svg = parse(markup)
    found = boxes(svg)
    for text, x0, x1, y0, y1 in found:
        assert 0 <= x0 and x1 <= W and 0 <= y0 and y1 <= height, (text, x0, x1, y0, y1)
    for a, b in itertools.combinations(found, 2):
        apart = a[2] <= b[1] or b[2] <= a[1] or a[4] <= b[3] or b[4] <= a[3]
        assert apart, (a, b)
    return [b[0] for b in found]


def test_compact_counts():
    assert [compact(v) for v in (0, 5000, 9999, 10_000, 400_000, 1.2e6, 2.5e6, 2e7, 1e9, 1.5e10)] == [
        "0", "5,000", "9,999", "10k", "400k", "1.2M", "2.5M", "20M", "1B", "15B",
    ]  # fmt: skip


@pytest.mark.parametrize("power", range(0, 10))
def test_histogram_count_labels_fit_up_to_a_billion(power):
    top = 10**power
    counts = [top // 7, top // 3, top, top // 2, top // 9]
    hist = {"kind": "float", "edges": [0.0, 0.2, 0.4, 0.6, 0.8, 1.0], "counts": counts, "nonfinite": 0}
    texts = assert_readable(histogram_svg("payoff", hist))
    assert "sequences" in texts


@pytest.mark.parametrize("power", range(1, 10))
def test_running_mean_sequence_labels_fit_up_to_a_billion(power):
    n = np.unique(np.geomspace(1, 10**power, 200).round().astype(np.int64)).tolist()
    mean = [1.2e6 + 1e5 / (k + 1) for k in range(len(n))]
    conv = {"n": n, "mean": mean, "low": [m - 2e4 for m in mean], "high": [m + 2e4 for m in mean]}
    texts = assert_readable(convergence_svg("payoff", conv))
    assert "1" in texts and ("10" in texts or "100" in texts)


def test_twenty_million_sequences_read_as_round_counts():
    n = np.unique(np.geomspace(1, 20_000_000, 200).round().astype(np.int64)).tolist()
    conv = {"n": n, "mean": [1.0] * len(n), "low": [0.9] * len(n), "high": [1.1] * len(n)}
    texts = assert_readable(convergence_svg("x", conv))
    assert "10M" in texts and "10,000,000" not in texts
    hist = histogram(np.arange(20_000_000) % 1000 / 1000.0, "float", bins=4)
    texts = assert_readable(histogram_svg("x", hist))
    assert "4M" in texts and not any(",000,000" in t for t in texts)  # 5M a bar: ticks 0, 2M, 4M


def test_long_names_are_cut_with_the_whole_name_in_a_tooltip():
    n = list(range(1, 101))
    conv = {"n": n, "mean": [1e6 + k for k in n], "low": [1e6 + k - 3 for k in n], "high": [1e6 + k + 3 for k in n]}
    markup = convergence_svg(LONG, conv)
    assert_readable(markup)
    titles = [t for t in parse(markup).iter(f"{NS}text") if t.get("class") == "axis-label"]
    cut = [t for t in titles if t.find(f"{NS}title") is not None]
    assert cut and cut[0].find(f"{NS}title").text == f"mean of {LONG}" and shown(cut[0]).endswith("…")
    assert_readable(band_svg("mu", LONG, [0, 0.5, 1], [1.0e7, 1.1e7, 1.2e7], [0.9e7] * 3, [1.3e7] * 3))


@pytest.mark.parametrize("params", [["a", "b", "c"], ["mu", "lam", "steps", "sigma", "rate", "days"]])
@pytest.mark.parametrize("name", ["x", "max(walk)>=10", LONG])
def test_parallel_coordinates_labels_stay_in_and_apart(params, name):
    rng = np.random.default_rng(2)
    cols = {p: rng.uniform(-0.123456, 4.56789, 30).tolist() for p in params}
    markup = parallel_svg(params, name, cols, rng.normal(-0.5, 3.0, 30).tolist())
    texts = assert_readable(markup)
    assert any(t.startswith("mean of") for t in texts)
    # every axis's value labels are whole numbers as fmt writes them, the rightmost too (or carry it in a tooltip)
    svg = parse(markup)
    values = [t for t in svg.iter(f"{NS}text") if t.get("text-anchor") is None]
    assert len(values) == 2 * (len(params) + 1)


def test_fit_ticks_thins_and_keeps_inside():
    marks = [(x, "1,000,000") for x in (10.0, 60.0, 110.0, 160.0, 550.0)]
    kept = fit_ticks(marks, 2, W - 2)
    assert kept[0][0] == 10.0 and len(kept) < len(marks)
    half = text_width("1,000,000") / 2
    assert all(2 + half <= cx <= W - 2 - half for _, cx, _ in kept)


# -- a label its margin was sized for is drawn whole ------------------------------------------------------------------
def y_labels(markup) -> list[tuple[str, bool]]:
    """(shown text, cut) of a chart's y tick labels (right-aligned ticks): cut when it ends in … or has a tooltip."""
    svg = parse(markup)
    found = [t for t in svg.iter(f"{NS}text") if t.get("class") == "tick" and t.get("text-anchor") == "end"]
    return [(shown(t), t.find(f"{NS}title") is not None or shown(t).endswith("…")) for t in found]


def fan_of(lo: float, hi: float, steps: int = 20) -> Fan:
    line = np.linspace(lo, hi, steps).tolist()
    return Fan("wealth", steps, 100, list(range(steps)), *[line] * 8)


def conv_of(lo: float, hi: float) -> dict:
    n = list(range(1, 201))
    mean = np.linspace(lo, hi, 200).tolist()
    return {"n": n, "mean": mean, "low": mean, "high": mean}


def hist_of(top: int) -> dict:
    return {"kind": "float", "edges": [0.0, 0.5, 1.0], "counts": [top // 2, top], "nonfinite": 0}


def path_of(lo: float, hi: float) -> list:
    return [("point 0", np.linspace(lo, hi, 30).tolist(), 1.0)]


#: a chart and its widest y tick label: six-character labels were cut one hundredth of a unit short (97.24 − 34 is
#: 63.2399…, under their width of 63.24; a run page's fan chart read "40,00…", its running mean "50,50…"); every
#: width of label the site writes is here
LINE = [-1_000.0, -500.0, -200.0]
TINY = [0.0, 1e-4, 3e-4]
AXES = [
    pytest.param(lambda: fan_svg(fan_of(0, 40_000)), "40,000", id="fan 40,000"),
    pytest.param(lambda: fan_svg(fan_of(-1_000, -200)), "-1,000", id="fan -1,000"),
    pytest.param(lambda: fan_svg(fan_of(0, 100_000)), "100,000", id="fan 100,000"),
    pytest.param(lambda: convergence_svg("x", conv_of(50_400, 50_600)), "50,500", id="mean 50,500"),
    pytest.param(lambda: convergence_svg("x", conv_of(-0.0004, 0.0001)), "-0.0004", id="mean -0.0004"),
    pytest.param(lambda: band_svg("mu", "x", [0, 1, 2], LINE, LINE, LINE), "-1,000", id="band -1,000"),
    pytest.param(lambda: band_svg("mu", "x", [0, 1, 2], TINY, TINY, TINY), "0.0001", id="band 0.0001"),
    pytest.param(lambda: paths_svg("x", path_of(0, 3e-4)), "0.0001", id="paths 0.0001"),
    pytest.param(lambda: paths_svg("x", path_of(0, 1.5e-5)), "1.500e-05", id="paths 1.5e-05"),
    pytest.param(lambda: histogram_svg("x", hist_of(20_000_000)), "20M", id="counts 20M"),
    pytest.param(lambda: histogram_svg("x", hist_of(400_000)), "400k", id="counts 400k"),
    pytest.param(lambda: histogram_svg("x", hist_of(8_000)), "8,000", id="counts 8,000"),
]


@pytest.mark.parametrize(("chart", "widest"), AXES)
def test_the_widest_y_label_of_an_axis_is_drawn_whole(chart, widest):
    markup = chart()
    found = y_labels(markup)
    assert (widest, False) in found, found
    assert not any(cut for _, cut in found), found
    assert max(text_width(t) for t, _ in found) == text_width(widest)
    assert_readable(markup)


@pytest.mark.parametrize("widest", ["0", "-5", "200", "20M", "40,000", "-1,000", "0.0001", "1.5e-05", "-1.500e-05"])
def test_a_margin_sized_for_labels_holds_every_one_of_them(widest):
    yt = [(0.0, "0"), (1.0, widest)]
    left = _left(yt)
    assert fits(text_width(widest), tick_room(left)) and shorten(widest, tick_room(left)) == widest
    ticks = [t for t in _axes(_Scale(0, 1, left, W - 16), _Scale(0, 1, 236, 16), [], yt) if t.startswith("<text")]
    assert ticks[-1].endswith(f">{widest}</text>") and "<title>" not in ticks[-1]


def test_a_label_genuinely_too_wide_is_still_cut_whole_in_its_tooltip():
    # a hundredth of a unit short of a six-character label's 63.24 is too little room
    assert shorten("40,000", 63.23) == "40,0…" and shorten("40,000", 63.24) == "40,000"
    assert not fits(63.25, 63.24) and fits(63.24, 63.24) and fits(63.24, 97.24 - 34)
    # what is cut is cut to the room it has: five characters and the ellipsis fill a six-character room
    assert shorten("100,000", 97.24 - 34) == "100,0…"
    assert label("100,000", 63.24, class_="tick") == '<text class="tick"><title>100,000</title>100,0…</text>'
    # a margin is capped at 200 units: a tick label wider than that leaves is cut, its whole text in its tooltip
    name = "a tick label far too long for any margin"
    left = left_margin([name], 64)
    assert left == 200 and not fits(text_width(name), tick_room(left))
    text = [t for t in _axes(_Scale(0, 1, left, W - 16), _Scale(0, 1, 236, 16), [], [(0.0, name)]) if "<text" in t]
    assert f"<title>{name}</title>" in text[0] and "…</text>" in text[0]


def test_ticks_exactly_a_gap_apart_are_all_kept():
    # 129.26 − 31.62 is 97.63999…, a hair under the first label's end plus the gap (97.64): both kept, not thinned
    marks = [(60.02, "0.0001"), (129.26, "0.0001")]
    assert [p for p, _, _ in fit_ticks(marks, 2, W - 2)] == [60.02, 129.26]
    assert len(fit_ticks([(60.02, "0.0001"), (129.25, "0.0001")], 2, W - 2)) == 1  # a hundredth closer: thinned
