"""Fan-chart numbers (plotdata.fan, first_paths) and their SVG, and the comparison picture: exact inputs, exact checks."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import numpy as np

from ancho.plotdata import FAN_STEPS, Fan, fan, fan_steps, first_paths
from ancho.server.schemas import Comparison
from ancho.web.charts import FAN_PROBES, fan_rows, fan_svg
from ancho.web.compare import differences, differences_svg


def parse(markup) -> ET.Element:
    return ET.fromstring(str(markup))


def summary_entry(steps: int) -> dict:
    """A trajectory summary whose step t has median t, quartiles t ± 1, p5/p95 t ± 2, mean t + 0.5 ± 0.1."""
    t = np.arange(steps, dtype=float)
    return {
        "steps": steps,
        "count": 100,
        "mean": (t + 0.5).tolist(),
        "ci95_low": (t + 0.4).tolist(),
        "ci95_high": (t + 0.6).tolist(),
        "p5": (t - 2).tolist(),
        "p25": (t - 1).tolist(),
        "p50": t.tolist(),
        "p75": (t + 1).tolist(),
        "p95": (t + 2).tolist(),
    }


def test_fan_takes_the_summarys_numbers_at_evenly_spread_steps():
    f = fan("wealth", summary_entry(1000), np.arange(3000.0).reshape(3, 1000), [7, 8, 9])
    assert f.total_steps == 1000 and f.count == 100
    assert f.steps[0] == 0 and f.steps[-1] == 999 and len(f.steps) == FAN_STEPS
    assert np.all(np.diff(f.steps) > 0)
    s = np.array(f.steps, dtype=float)
    assert f.median == s.tolist() and f.p25 == (s - 1).tolist() and f.p95 == (s + 2).tolist()
    assert f.mean == (s + 0.5).tolist() and f.mean_low == (s + 0.4).tolist() and f.mean_high == (s + 0.6).tolist()
    assert f.path_sequences == [7, 8, 9] and f.paths[1] == (1000 + s).tolist()
    assert fan_steps(30).tolist() == list(range(30))


def test_fan_keeps_missing_steps_missing():
    entry = summary_entry(5)
    entry["p50"][2] = None
    f = fan("x", entry, np.array([[0.0, np.nan, 2.0, 3.0, 4.0]]), [0])
    assert f.median[2] is None and f.paths[0][1] is None
    entry["p5"] = entry["p5"][:3]  # a summary of another length: not drawn rather than misplaced
    assert fan("x", entry).p5 == [None] * 5


def y_axis(svg: ET.Element):
    ticks = [
        (float(t.text.replace(",", "")), float(t.get("y")) - 4)
        for t in svg.iter("text")
        if t.get("class") == "tick" and t.get("text-anchor") == "end"
    ]
    (v0, y0), (v1, y1) = ticks[0], ticks[-1]
    return lambda y: v0 + (y - y0) * (v1 - v0) / (y1 - y0)


def edges(svg: ET.Element, css: str, to_value) -> tuple[list[float], list[float]]:
    poly = next(p for p in svg.iter("polygon") if p.get("class") == css)
    ys = [float(xy.split(",")[1]) for xy in poly.get("points").split()]
    half = len(ys) // 2
    return [to_value(y) for y in ys[half:][::-1]], [to_value(y) for y in ys[:half]]


def test_fan_svg_draws_each_band_where_the_numbers_say():
    f = fan("wealth", summary_entry(50), np.array([np.arange(50.0) + 3]), [0])
    svg = parse(fan_svg(f))
    to_value = y_axis(svg)
    t = np.arange(50.0)
    for css, lo, hi in (("fan90", -2, 2), ("fan50", -1, 1), ("meanband", 0.4, 0.6)):
        low, high = edges(svg, css, to_value)
        assert np.allclose(low, t + lo, atol=0.01) and np.allclose(high, t + hi, atol=0.01), css
    median = next(p for p in svg.iter("polyline") if p.get("class") == "median")
    assert np.allclose([to_value(float(p.split(",")[1])) for p in median.get("points").split()], t, atol=0.01)
    path = next(p for p in svg.iter("polyline") if p.get("class") == "path")
    assert path.find("title").text == "sequence 0"
    assert np.allclose([to_value(float(p.split(",")[1])) for p in path.get("points").split()], t + 3, atol=0.01)
    probes = [g for g in svg.iter("g") if g.get("class") == "probe"]
    assert len(probes) == FAN_PROBES and all(g.get("tabindex") == "0" for g in probes)
    assert probes[-1].get("aria-label") == (
        "step 49: median 49, 50% of paths 48 to 50, 90% 47 to 51; mean 49.5 (95% CI 49.4 to 49.6)"
    )
    assert svg.get("role") == "group" and "50 steps" in svg.find("desc").text
    rows = fan_rows(f)
    assert rows[0].step == 0 and rows[-1].step == 49 and rows[-1].p95 == 51


def test_fan_svg_breaks_lines_at_missing_steps_and_escapes_names():
    entry = summary_entry(10)
    entry["p50"][4] = None
    svg = parse(fan_svg(fan("<b>&", entry, np.array([[1.0] * 3 + [np.nan] + [1.0] * 6]), [5])))
    assert len([p for p in svg.iter("polyline") if p.get("class") == "median"]) == 2
    assert len([p for p in svg.iter("polyline") if p.get("class") == "path"]) == 2
    assert svg.find("title").text == "Fan chart of <b>&"
    nothing = Fan("x", 0, 0, [], [], [], [], [], [], [], [], [])
    assert fan_svg(nothing) is None


def test_first_paths_reads_only_the_first_chunks(tmp_path, monkeypatch):
    import ancho

    monkeypatch.setenv("ANCHO_HOME", str(tmp_path))
    model = tmp_path / "walk.py"
    model.write_text(
        "import ancho\nimport numpy as np\n\n\nclass Walk(ancho.Model):\n"
        "    def sequence(self, rng):\n        return {'w': np.cumsum(rng.choice([-1, 1], size=8)).tolist()}\n"
    )
    results = ancho.run(str(model), sequences=2000, seed=1, workers=1)
    store = results.store
    read = []

    class Counting:  # the real store, counting the batches it hands out
        def __getattr__(self, name):
            return getattr(store, name)

        def iter_batches(self, run_id, columns=None):
            for batch in store.iter_batches(run_id, columns):
                read.append(batch.num_rows)
                yield batch

    values, numbers = first_paths(Counting(), results.run_id, "w", 5)
    assert numbers == [0, 1, 2, 3, 4]
    assert np.array_equal(values, results.trajectory("w")[:5])
    assert sum(read) < 2000 and len(read) <= 1 + 5 // max(read[0], 1)


COMPARISON = {
    "a": "A",
    "b": "B",
    "paired": True,
    "sequences": 100,
    "outputs": {
        "up": {"mean_a": 1.0, "mean_b": 3.0, "difference": 2.0, "ci95": [1.5, 2.5], "variance_reduction": 4.0},
        "flat": {"mean_a": 5.0, "mean_b": 5.01, "difference": 0.01, "ci95": [-0.2, 0.22]},
        "down": {"mean_a": 1e6, "mean_b": 9e5, "difference": -1e5, "ci95": [-1.2e5, -0.8e5]},
        "lonely": {"mean_a": 1.0, "mean_b": 1.0, "difference": 0.0, "ci95": None},
    },
    "targets": [{"expr": "up>2", "probability_a": 0.2, "probability_b": 0.6, "difference": 0.4, "ci95": [0.3, 0.5]}],
}


def test_differences_mark_the_intervals_that_leave_zero():
    rows = differences(Comparison.model_validate(COMPARISON))
    assert [(r.name, r.target, r.significant) for r in rows] == [
        ("up", False, True),
        ("flat", False, False),
        ("down", False, True),
        ("lonely", False, False),
        ("up>2", True, True),
    ]
    assert rows[0].variance_reduction == 4.0
    svg = parse(differences_svg(rows))
    dots = [c for c in svg.iter("circle")]
    assert len(dots) == 5 and [c.get("class") for c in dots].count("diff significant") == 3
    labels = [g.get("aria-label") for g in svg.iter("g")]
    assert labels[4] == "P(up>2): b − a = 0.4, 95% CI 0.3 to 0.5; significant"
    assert labels[1].endswith("; not significant")
    # each row on its own scale centred on no difference: every dot sits within its row's half and on the right side
    zero = [float(line.get("x1")) for line in svg.iter("line") if line.get("class") == "zero"]
    assert len(set(zero)) == 1
    cx = [float(c.get("cx")) for c in dots]
    assert cx[0] > zero[0] and cx[2] < zero[0] and cx[3] == zero[0]
    assert re.search(r"3 significant", svg.find("desc").text)
    assert differences_svg([]) is None
