"""The PDF's layout promises: numbers never wrap and read as ``ancho show`` prints them; plot titles never overlap."""

from __future__ import annotations

import math

import pytest

import ancho
from ancho.reports import write_pdf
from ancho.reports.tables import SIZES, number_tables

from ..conftest import run_cli
from .test_reports import CI, POPPLER, pdf_text

LONG = "a_rather_long_output_name_for_label_testing_purposes"

MULTI = f'''
class Multi(ancho.Model):
    """Outputs from tiny to millions, one with a long name: numbers of many widths in one table."""

    def sequences(self, rng, n):
        x = rng.normal(0.0, 1.0, n)
        return {{"x": x, "k": rng.poisson(3.0, n).astype(np.int64), "{LONG}": x * 1e6}}
'''


def _numbers_on_one_line(tables) -> None:
    """Every cell after the name column lays out on one line at the width its table gives it."""
    for t in tables:
        widths = t._colWidths
        for row in t._cellvalues:
            for width, cell in list(zip(widths, row))[1:]:
                cell.wrap(width - 6, 1000)  # the cells' left and right padding
                assert len(cell.blPara.lines) == 1, (cell.text, width)


def test_number_columns_keep_their_width_and_the_name_column_wraps():
    from ancho.reports.pdf import _register_fonts

    _register_fonts()
    head = ["output", "mean", "95% CI", "std", "min", "p5", "p50", "p95", "max", "count"]
    row = [LONG, "5,271.3", "[-8,516.1, 19,059]", "994,800", "-3,884,600", "-1,626,500", "8,768.2", "1,643,900"]
    row += ["4,278,600", "20,000"]
    tables = number_tables([head, row, ["x", "0.0052713", *row[2:]]], 493.0)
    assert len(tables) == 1 and sum(tables[0]._colWidths) == pytest.approx(493.0)
    _numbers_on_one_line(tables)

    # wider numbers: a smaller type first, then the columns split into tables that each repeat the names
    wide = [head, [LONG] + ["-1.2345e+300"] * 9]
    smaller = number_tables(wide, 560.0)
    assert len(smaller) == 1 and smaller[0]._cellvalues[1][1].style.fontSize < SIZES[0]
    _numbers_on_one_line(smaller)
    split = number_tables(wide, 300.0)
    assert len(split) > 1
    assert [c for t in split for c in (p.text for p in t._cellvalues[0][1:])] == head[1:]  # every column, once
    assert all(t._cellvalues[1][0].text == LONG and sum(t._colWidths) <= 300.0 + 1e-9 for t in split)
    _numbers_on_one_line(split)


@pytest.mark.skipif(not CI and not POPPLER, reason="poppler-utils (pdftotext) are needed to read the PDF back")
def test_summary_table_prints_each_number_as_ancho_show_does(home, store, write_model, tmp_path):
    model = write_model(MULTI)
    run = ancho.run(f"{model}:Multi", sequences=20_000, seed=5, store=store)
    path = tmp_path / "multi.pdf"
    with path.open("wb") as sink:
        write_pdf(store, run.run_id, sink)
    text = " ".join(pdf_text(path, 1, 2).split())
    shown = run_cli("show", run.run_id, env={"ANCHO_URL": "", "COLUMNS": "250"})
    assert shown.returncode == 0, shown.stderr
    rows = {line.split()[0]: line.split()[1:] for line in shown.stdout.splitlines() if line.split()[:1]}
    for name in ("x", "k", LONG):
        numbers = " ".join(rows[name])  # mean, 95% CI, std, min, p5, p50, p95, max, count as the terminal has them
        assert numbers in text, (name, numbers)
    # and they are right: the mean of N(0, 1) and of Poisson(3), within 4 standard errors
    assert abs(run.summary["outputs"]["x"]["mean"]) < 4 / math.sqrt(20_000)
    assert abs(run.summary["outputs"]["k"]["mean"] - 3.0) < 4 * math.sqrt(3.0 / 20_000)


def _title_boxes(fig):
    """The left titles of the figure's panels, as their boxes in pixels after drawing."""
    import matplotlib.text

    renderer = fig.canvas.get_renderer()
    titles = [ax.get_title(loc="left") for ax in fig.axes]
    found = [t for t in fig.findobj(matplotlib.text.Text) if t.get_text() and t.get_text() in titles]
    assert len(found) == 2, titles
    return [t.get_window_extent(renderer) for t in found], titles


@pytest.mark.parametrize(
    "name",
    ["x", LONG, "walk_" * 60, "q" * 250, "price in $ and € over $ two years with spaces between many words " * 2],
)
def test_the_two_plot_titles_never_overlap_or_leave_the_figure(name):
    import numpy as np

    from ancho.plotdata import fan
    from ancho.reports import figures

    hist = {"edges": [0.0, 0.5, 1.0], "counts": [3, 4], "kind": "float", "nonfinite": 3108}
    conv = {"n": [1, 10, 100], "mean": [0.1, 0.2, 0.3], "low": [0.0, 0.1, 0.2], "high": [0.2, 0.3, 0.4]}
    fig = figures.new_figure()
    keys = ("mean", "ci95_low", "ci95_high", "p5", "p25", "p50", "p75", "p95")
    fans = fan(name, {"steps": 2, "count": 7, **{k: [0.0, 1.0] for k in keys}}, np.array([[0.0, 1.0]]), [0])
    for draw in (lambda: figures.output_figure(name, {"histogram": hist, "convergence": conv}, fig=fig),
                 lambda: figures.fan_figure(fans, fig=fig)):  # fmt: skip
        draw()
        (left, right), titles = _title_boxes(fig)
        assert not left.overlaps(right), titles
        page = fig.bbox
        for box in (left, right):
            assert page.x0 <= box.x0 and box.x1 <= page.x1 and box.y1 <= page.y1, (titles, box, page)
        if len(name) <= 60:  # short enough to be shown whole, wrapped
            assert all(name in t.replace("\n", "") for t in titles), titles
        else:
            assert all(len(t.splitlines()) <= figures.TITLE_LINES for t in titles), titles
