"""Chart text stays inside the picture and apart, at the largest size the stylesheet gives it (phones).

Boxes are the server's own width estimate (:mod:`ancho.web.labels`); test_browser measures them in Chromium.
"""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from ancho.plotdata import histogram
from ancho.web.charts import H, W, convergence_svg, histogram_svg
from ancho.web.labels import TICK_PX, TITLE_PX, compact, fit_ticks, text_width
from ancho.web.study_charts import band_svg, parallel_svg

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
