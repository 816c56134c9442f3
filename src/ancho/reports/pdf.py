"""A run's PDF report (ReportLab): what ran, the summary, targets, custom summaries, plots per output, failures.

Laid out with ReportLab's flowables so long content flows over pages:
tables are ``LongTable``s that repeat their header row on every page they
split over (a model with hundreds of outputs), names wrap inside their
cell, each output's figure stays whole on one page, and every page has
"page X of Y" in its footer. Text is set in DejaVu Sans (shipped with
Matplotlib), so docstrings, parameters and expressions in any script
(≥, ±, accents, Greek) print as written, which ReportLab's built-in fonts
do not.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, BinaryIO
from xml.sax.saxutils import escape

from ..present import SUMMARY_COLUMNS, summary_cell
from ..present import interval as ci
from ..present import number as fmt
from ..stores.base import Store
from .facts import ReportData, gather, run_rows
from .tables import number_tables
from .tables import table as _table

if TYPE_CHECKING:
    from reportlab.platypus import Paragraph

    from ..plotdata import Fan

#: a millimetre in PDF points (what reportlab.lib.units.mm holds)
mm = 72 / 25.4
#: traceback lines kept per traceback shown (the last ones: where it raised)
TRACEBACK_LINES = 12
#: tracebacks shown: the first failure of each distinct exception type, up to this many
DISTINCT_TRACEBACKS = 3

_fonts_lock = threading.Lock()
_fonts_ready = False


def write_pdf(store: Store, run_id: str, sink: BinaryIO, owner: str | None = None) -> None:
    """Write the report of ``run_id`` to ``sink`` (NotFound if ``owner`` is given and is not the run's)."""
    from ..plotdata import run_fans, run_plots

    data = gather(store, run_id, owner)
    plots = run_plots(store, run_id) if data.stored else {}
    fans = run_fans(store, run_id, data.summary) if data.stored else []
    render(data, plots, sink, fans)


def _register_fonts() -> None:
    global _fonts_ready
    with _fonts_lock:
        if _fonts_ready:
            return
        from pathlib import Path

        import matplotlib
        from reportlab.lib.fonts import addMapping
        from reportlab.pdfbase import pdfmetrics
        from reportlab.pdfbase.ttfonts import TTFont

        folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
        for name, file in (
            ("DejaVu", "DejaVuSans.ttf"),
            ("DejaVu-Bold", "DejaVuSans-Bold.ttf"),
            ("DejaVu-Oblique", "DejaVuSans-Oblique.ttf"),
            ("DejaVuMono", "DejaVuSansMono.ttf"),
        ):
            pdfmetrics.registerFont(TTFont(name, str(folder / file)))
        addMapping("DejaVu", 0, 0, "DejaVu")
        addMapping("DejaVu", 1, 0, "DejaVu-Bold")
        addMapping("DejaVu", 0, 1, "DejaVu-Oblique")
        addMapping("DejaVu", 1, 1, "DejaVu-Bold")
        _fonts_ready = True


@functools.lru_cache(maxsize=1)
def _styles():
    from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet

    base = getSampleStyleSheet()
    s = {
        "title": ParagraphStyle(
            "title", parent=base["Title"], fontName="DejaVu-Bold", fontSize=18, leading=22, alignment=0, spaceAfter=2
        ),
        "subtitle": ParagraphStyle(
            "subtitle", parent=base["Normal"], fontName="DejaVu", fontSize=10, textColor="#555555", spaceAfter=8
        ),
        "h2": ParagraphStyle(
            "h2", parent=base["Heading2"], fontName="DejaVu-Bold", fontSize=13, leading=16, spaceBefore=10, spaceAfter=4
        ),
        "h3": ParagraphStyle(
            "h3", parent=base["Heading3"], fontName="DejaVu-Bold", fontSize=10, leading=13, spaceBefore=6, spaceAfter=2
        ),
        "body": ParagraphStyle("body", parent=base["Normal"], fontName="DejaVu", fontSize=9, leading=12),
        "doc": ParagraphStyle(
            "doc", parent=base["Normal"], fontName="DejaVu-Oblique", fontSize=9.5, leading=13, spaceAfter=6
        ),
        "code": ParagraphStyle(
            "code", parent=base["Code"], fontName="DejaVuMono", fontSize=6.5, leading=8, leftIndent=6
        ),
        "warn": ParagraphStyle(
            "warn", parent=base["Normal"], fontName="DejaVu-Bold", fontSize=9, leading=12, textColor="#a33a00"
        ),
    }
    return s


def _p(text, style) -> Paragraph:
    from reportlab.platypus import Paragraph

    return Paragraph(escape(str(text)).replace("\n", "<br/>"), style)


def _numbered_canvas(label: str):
    """A canvas class that writes "page X of Y" once the page count is known (ReportLab's two-pass idiom)."""
    from reportlab.pdfgen.canvas import Canvas

    class NumberedCanvas(Canvas):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._pages = []

        def showPage(self):
            self._pages.append(dict(self.__dict__))
            self._startPage()

        def save(self):
            total = len(self._pages)
            for state in self._pages:
                self.__dict__.update(state)
                self.setFont("DejaVu", 7.5)
                self.setFillColorRGB(0.4, 0.4, 0.4)
                width = self._pagesize[0]
                self.drawString(18 * mm, 10 * mm, f"Ancho report · {label}")
                self.drawRightString(width - 18 * mm, 10 * mm, f"page {self._pageNumber} of {total}")
                super().showPage()
            super().save()

    return NumberedCanvas


def document(sink: BinaryIO, title: str, subject: str, creator: str):
    """An A4 ReportLab document with the reports' margins and fonts (build it with :func:`_numbered_canvas`)."""
    _register_fonts()
    from reportlab import rl_config
    from reportlab.lib.pagesizes import A4

    # images as binary streams, not ASCII85 text: smaller files, and ReportLab encodes A85 in pure Python
    rl_config.useA85 = 0
    from reportlab.platypus import SimpleDocTemplate

    return SimpleDocTemplate(
        sink,
        pagesize=A4,
        leftMargin=18 * mm,
        rightMargin=18 * mm,
        topMargin=16 * mm,
        bottomMargin=18 * mm,
        title=title,
        author="Ancho",
        subject=subject,
        creator=creator,
    )


def render(data: ReportData, plots: dict, sink: BinaryIO, fans: Sequence[Fan] = ()) -> None:
    """Lay out ``data``, the plot numbers of each output and the fan of each trajectory into a PDF written to ``sink``."""
    r = data.record
    doc = document(sink, f"Ancho report: {r.model} run {r.id}", f"run {r.id} of {r.model}", f"Ancho {r.ancho_version}")
    story = _story(data, plots, list(fans), doc.width)
    doc.build(story, canvasmaker=_numbered_canvas(f"run {r.id}"))


def _story(data: ReportData, plots: dict, fans: list[Fan], width: float) -> list:
    from reportlab.platypus import Spacer

    st = _styles()
    r = data.record
    story: list = [
        _p(f"{r.model or 'Model'}", st["title"]),
        _p(f"Ancho report · run {r.id} · {r.status}", st["subtitle"]),
    ]
    if data.doc:
        story.append(_p(data.doc, st["doc"]))
    if r.status != "succeeded":
        reason = f"The run {r.status}" + (f": {r.error}" if r.error and r.status != "cancelled" else ".")
        story.append(_p(reason, st["warn"]))
        if data.partial:
            story.append(
                _p(
                    f"The tables and plots below describe the {data.stored:,} sequences stored before it ended; "
                    "they are not the run's summary.",
                    st["body"],
                )
            )
        story.append(Spacer(1, 2 * mm))

    story.append(_p("Run", st["h2"]))
    story.append(_table([[k, v] for k, v in run_rows(r)], [32 * mm, width - 32 * mm], numeric_from=2, header=False))
    story.append(_p("Parameters", st["h2"]))
    if r.params:
        story.append(
            _table(
                [["parameter", "value"]] + [[k, fmt(v)] for k, v in r.params.items()],
                [60 * mm, width - 60 * mm],
                numeric_from=2,
            )
        )
    else:
        story.append(_p("This model has no parameters.", st["body"]))

    story += _summary_section(data, width)
    story += _figures_section(data, plots, width)
    story += _trajectories_section(fans, width)
    story += _failures_section(data, width)
    return story


def _summary_section(data: ReportData, width: float) -> list:

    st = _styles()
    summary = data.summary
    out: list = [_p("Summary" + (" of the stored sequences" if data.partial else ""), st["h2"])]
    if summary is None:
        out.append(_p("No sequence results were stored, so there is nothing to summarise.", st["body"]))
        return out
    out.append(
        _p(
            f"{summary['sequences']:,} sequences, seed {summary['seed']}, {summary.get('failures') or 0:,} failed. "
            "Means with their 95% confidence interval (Student t; Wilson for true/false outputs), "
            "standard deviation and percentiles.",
            st["body"],
        )
    )
    out.append(_space(2))
    rows = [["output", *SUMMARY_COLUMNS]]
    for name, s in summary["outputs"].items():
        rows.append([name] + [summary_cell(s, column) for column in SUMMARY_COLUMNS])
    out += number_tables(rows, width)
    if summary.get("targets"):
        out.append(_p("Targets", st["h3"]))
        out.append(
            _p(
                "The probability that a sequence's output meets each threshold, with its 95% (Wilson) interval.",
                st["body"],
            )
        )
        out.append(_space(2))
        rows = [["target", "probability", "95% CI"]] + [
            [t["expr"], fmt(t["probability"], 5), ci(t["ci95"], 5)] for t in summary["targets"]
        ]
        out += number_tables(rows, width)
    if summary.get("until"):
        u = summary["until"]
        state = "met" if u["met"] else f"NOT met: the run stopped at its cap of {u['max_sequences']:,} sequences"
        out.append(_p("Precision goal", st["h3"]))
        out.append(
            _p(
                f"{u['expr']}: 95% CI half-width {fmt(u['half_width'])} for a goal of {fmt(u['goal'])}: {state}.",
                st["body"],
            )
        )
    if summary.get("custom"):
        out.append(_p("Custom summaries", st["h3"]))
        out.append(
            _table(
                [["summary", "value"]] + [[k, fmt(v)] for k, v in summary["custom"].items()],
                [60 * mm, width - 60 * mm],
                numeric_from=2,
            )
        )
    return out


def _space(height_mm: float):
    from reportlab.platypus import Spacer

    return Spacer(1, height_mm * mm)


def image(png: bytes, width: float, size: tuple[float, float]):
    """A PNG as a flowable ``width`` points wide, with the figure's aspect (``size`` in inches)."""
    import io

    from reportlab.platypus import Image

    return Image(io.BytesIO(png), width=width, height=width * size[1] / size[0])


def figure_blocks(heading: list, pngs: Iterable[bytes], width: float, size: tuple[float, float]) -> list:
    """One block per figure, each kept whole on a page, the section's ``heading`` with the first so it never
    ends a page alone; the figures are drawn as the blocks are made (one figure's PNG in memory at a time)."""
    from reportlab.platypus import KeepTogether

    out: list = []
    for png in pngs:
        block = [_space(2), image(png, width, size)]
        out.append(KeepTogether(heading + block if not out else block))
    return out


def _figures_section(data: ReportData, plots: dict, width: float) -> list:
    """One block per output: a heading and its two plots, kept together on one page."""
    from . import figures

    if not plots:
        return []
    st = _styles()
    heading = [
        _p("Outputs", st["h2"]),
        _p(
            "Per output: the distribution of its values over all sequences, and the running mean in sequence "
            "order with its 95% confidence band: a band that has settled shows enough sequences were run.",
            st["body"],
        ),
    ]
    fig = figures.new_figure()
    pngs = (figures.output_figure(name, p, fig=fig) for name, p in plots.items())
    return figure_blocks(heading, pngs, width, figures.SIZE)


def _trajectories_section(fans: list[Fan], width: float) -> list:
    """One block per trajectory output: its fan chart and its first sequences' paths, kept together on one page."""
    from . import figures

    if not fans:
        return []
    st = _styles()
    heading = [
        _p("Trajectories", st["h2"]),
        _p(
            "Per trajectory output, step by step: the median, the 50% band (p25 to p75) and the 90% band (p5 to p95) "
            "of the sequences' values, the mean with its 95% confidence band (dashed), and, on the right, the "
            "first sequences' own paths.",
            st["body"],
        ),
    ]
    fig = figures.new_figure()
    return figure_blocks(heading, (figures.fan_figure(f, fig=fig) for f in fans), width, figures.SIZE)


def _failures_section(data: ReportData, width: float) -> list:
    """A table of the first failed sequences and their errors, then one traceback per distinct exception type."""
    from reportlab.platypus import KeepTogether, Preformatted

    r = data.record
    if not r.failures:
        return []
    st = _styles()
    listed = data.failures
    out: list = [
        _p("Failures", st["h2"]),
        _p(
            f"{r.failures:,} {'sequence' if r.failures == 1 else 'sequences'} raised an exception "
            f"(the run allowed {r.max_failures:,})."
            + (f" The first {len(listed)} are listed." if len(listed) < r.failures else ""),
            st["body"],
        ),
    ]
    if not listed:
        return out
    rows = [["sequence", "error"]] + [[f"{f.sequence}", f.error] for f in listed]
    out += [_space(2), _table(rows, [22 * mm, width - 22 * mm], numeric_from=2)]
    seen: set[str] = set()
    for f in listed:
        kind = f.error.partition(":")[0]
        if kind in seen or not f.traceback.strip() or len(seen) >= DISTINCT_TRACEBACKS:
            continue
        seen.add(kind)
        lines = f.traceback.rstrip().splitlines()
        if len(lines) > TRACEBACK_LINES:
            lines = ["…"] + lines[-TRACEBACK_LINES:]
        out.append(
            KeepTogether(
                [
                    _p(f"Traceback of sequence {f.sequence} ({kind})", st["h3"]),
                    Preformatted("\n".join(lines), st["code"], maxLineLength=130, newLineChars=""),
                ]
            )
        )
    return out
