"""The run page's trajectory fan charts, over HTTP from a real server, checked against exact per-step quantiles.

The model's path is a deterministic ramp plus standard normal noise: at step
t every value is t + Z, so the per-step median is t, the 50% band is
t ± 0.6745 and the 90% band t ± 1.6449 (normal quantiles), and the mean is t
with a 95% half-width of about 1.96/√n. The chart's polygons are read back
into data units through its own axis ticks and compared with those closed
forms within 4 standard errors of a sample quantile (plus half a pixel).
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from ..server.conftest import submit, tar_gz, upload_id, wait_run
from .conftest import Page

pytestmark = pytest.mark.slow  # a server per session

RAMP = '''
import ancho


class Ramp(ancho.Model):
    """Step t of each path is t plus standard normal noise."""

    steps: int = 30

    def sequence(self, rng):
        noise = rng.standard_normal(self.steps)
        return {"path": [float(t + z) for t, z in enumerate(noise)], "end": float(self.steps - 1 + noise[-1])}
'''

N = 4000
STEPS = 30
#: standard normal quantiles and density there, for the standard error of a sample quantile: √(q(1−q)/n) / φ(z_q)
Z = {0.05: -1.6448536, 0.25: -0.6744898, 0.5: 0.0, 0.75: 0.6744898, 0.95: 1.6448536}


def quantile_tolerance(q: float) -> float:
    density = math.exp(-(Z[q] ** 2) / 2) / math.sqrt(2 * math.pi)
    return 4 * math.sqrt(q * (1 - q) / N) / density


@pytest.fixture(scope="module")
def api(site):
    import httpx

    with httpx.Client(
        base_url=site.url + "/api/v1", timeout=60, headers={"Authorization": f"Bearer {site.tokens['alice']}"}
    ) as client:
        yield client


@pytest.fixture(scope="module")
def ramp_run(api) -> str:
    upload = upload_id(api, tar_gz({"model.py": RAMP}), "ramp.tar.gz")
    run_id = submit(api, {"model": {"upload": upload}, "sequences": N, "seed": 21})
    assert wait_run(api, run_id)["status"] == "succeeded"
    return run_id


def fan_svg(html: str, name: str) -> ET.Element:
    found = re.search(rf'<svg class="chart"[^>]*aria-label="Fan chart of {name}\..*?</svg>', html, re.S)
    assert found, "no fan chart on the page"
    return ET.fromstring(found.group(0))


def y_axis(svg: ET.Element):
    """Data value of an SVG y coordinate, from the chart's own y tick labels (right-aligned at the left axis)."""
    ticks = [
        (float(t.text.replace(",", "")), float(t.get("y")) - 4)
        for t in svg.iter("text")
        if t.get("class") == "tick" and t.get("text-anchor") == "end"
    ]
    assert len(ticks) >= 2
    (v0, y0), (v1, y1) = ticks[0], ticks[-1]
    per_px = (v1 - v0) / (y1 - y0)
    return lambda y: v0 + (y - y0) * per_px, abs(per_px)


def x_axis(svg: ET.Element):
    ticks = [
        (float(t.text.replace(",", "")), float(t.get("x")))
        for t in svg.iter("text")
        if t.get("class") == "tick" and t.get("text-anchor") == "middle"
    ]
    (v0, x0), (v1, x1) = ticks[0], ticks[-1]
    return lambda x: v0 + (x - x0) * (v1 - v0) / (x1 - x0)


def band(svg: ET.Element, css: str, to_step, to_value) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A band polygon as (steps, low edge, high edge) in data units."""
    poly = next(p for p in svg.iter("polygon") if p.get("class") == css)
    pts = [tuple(map(float, xy.split(","))) for xy in poly.get("points").split()]
    half = len(pts) // 2
    upper, lower = pts[:half], pts[half:][::-1]
    steps = np.array([to_step(x) for x, _ in upper])
    return steps, np.array([to_value(y) for _, y in lower]), np.array([to_value(y) for _, y in upper])


def test_fan_chart_bands_match_the_exact_per_step_quantiles(site, ramp_run, api):
    page = Page(site)
    try:
        page.sign_in(site.tokens["alice"])
        r = page.http.get(f"/runs/{ramp_run}")
    finally:
        page.close()
    assert r.status_code == 200
    assert 'id="trajectories-h"' in r.text and "Fan chart of" in r.text
    svg = fan_svg(r.text, "path")
    assert svg.get("role") == "group" and svg.find("title").text == "Fan chart of path"
    to_value, per_px = y_axis(svg)
    to_step = x_axis(svg)
    pixel = per_px * 0.5 + 0.01  # coordinates are rounded to 0.01 px; ticks to 4 digits

    steps, low, high = band(svg, "fan50", to_step, to_value)
    assert np.allclose(steps, np.arange(STEPS), atol=0.05)
    t = np.arange(STEPS)
    assert np.all(np.abs(low - (t + Z[0.25])) <= quantile_tolerance(0.25) + pixel)
    assert np.all(np.abs(high - (t + Z[0.75])) <= quantile_tolerance(0.75) + pixel)
    _, low, high = band(svg, "fan90", to_step, to_value)
    assert np.all(np.abs(low - (t + Z[0.05])) <= quantile_tolerance(0.05) + pixel)
    assert np.all(np.abs(high - (t + Z[0.95])) <= quantile_tolerance(0.95) + pixel)
    median = next(p for p in svg.iter("polyline") if p.get("class") == "median")
    values = np.array([to_value(float(xy.split(",")[1])) for xy in median.get("points").split()])
    assert values.size == STEPS and np.all(np.abs(values - t) <= quantile_tolerance(0.5) + pixel)
    # the mean's band: centred on t (4 standard errors of a mean of n unit-variance values), 1.96/√n wide
    _, low, high = band(svg, "meanband", to_step, to_value)
    assert np.all(np.abs((low + high) / 2 - t) <= 4 / math.sqrt(N) + pixel)
    assert np.all(np.abs((high - low) / 2 - 1.96 / math.sqrt(N)) <= 0.15 * 1.96 / math.sqrt(N) + pixel)

    # the sample paths are the first five sequences' stored values (the REST API's)
    paths = [p for p in svg.iter("polyline") if p.get("class") == "path"]
    assert [p.find("title").text for p in paths] == [f"sequence {i}" for i in range(5)]
    stored = api.get(f"/runs/{ramp_run}/trajectories/path", params={"offset": 0, "limit": 5}).json()
    for line, values in zip(paths, stored["values"]):
        drawn = np.array([to_value(float(xy.split(",")[1])) for xy in line.get("points").split()])
        assert np.allclose(drawn, values, atol=pixel)

    # keyboard and screen readers: focusable probes that read a step's numbers; a table of a few steps
    probes = [g for g in svg.iter("g") if g.get("class") == "probe"]
    assert 2 <= len(probes) <= 12 and all(g.get("tabindex") == "0" and g.get("aria-label") for g in probes)
    last = probes[-1].get("aria-label")
    assert last.startswith(f"step {STEPS - 1}: median ")
    assert float(re.search(r"median (-?[\d.]+)", last).group(1)) == pytest.approx(
        STEPS - 1, abs=quantile_tolerance(0.5)
    )
    assert 'class="fan-table"' in r.text and f"/api/v1/runs/{ramp_run}/trajectories/path?format=csv" in r.text
    # scalar outputs keep their histogram; the trajectory gets no histogram or running mean of its own
    assert "Distribution of end" in r.text and "Distribution of path" not in r.text


def test_fan_chart_is_cached_and_hidden_from_other_users(site, ramp_run):
    alice, bob = Page(site), Page(site)
    try:
        alice.sign_in(site.tokens["alice"])
        first = alice.http.get(f"/runs/{ramp_run}").text
        # with the run's stored values moved away, a second view still draws its paths: from the plot cache
        chunks = site.home / "runs" / ramp_run / "chunks"
        aside = chunks.with_name("chunks-aside")
        chunks.rename(aside)
        try:
            again = alice.http.get(f"/runs/{ramp_run}").text
        finally:
            aside.rename(chunks)
        assert ET.tostring(fan_svg(first, "path")) == ET.tostring(fan_svg(again, "path"))
        assert len([p for p in fan_svg(again, "path").iter("polyline") if p.get("class") == "path"]) == 5
        bob.sign_in(site.tokens["bob"])
        other = bob.http.get(f"/runs/{ramp_run}")
        assert other.status_code == 404 and "Fan chart" not in other.text
    finally:
        alice.close()
        bob.close()
