"""A study's PDF report: the study and its design, the points table, pictures, sensitivity and comparisons.

Laid out with the run report's pieces (:mod:`.pdf`: fonts, styles, tables,
"page X of Y"). The points table can have thousands of rows and many
columns, so it is drawn with plain text cells (no per-cell paragraphs: 2,000
points render in seconds, not minutes), and split two ways: across pages
with its header row repeated on each, and, when the outputs do not fit
across the page, into several tables that each repeat the point and its
parameters. Pictures follow the number of parameters the design varies (see
:mod:`.study_figures`).
"""

from __future__ import annotations

from typing import BinaryIO

from ..present import interval as ci
from ..present import number as fmt
from ..stores.base import Store
from .pdf import _numbered_canvas, _p, _space, _styles, _table, document, figure_blocks, image, mm
from .study_facts import StudyReportData, design_rows, gather_study, point_cells, study_rows
from .tables import number_tables

#: scalar outputs and targets drawn against the parameters (the points table has them all)
PICTURED = 24
#: significant digits of the points table's numbers
DIGITS = 5


def write_study_pdf(
    store: Store, study_id: str, sink: BinaryIO, owner: str | None = None, baseline: int | None = None
) -> None:
    """Write the report of ``study_id`` to ``sink`` (NotFound if ``owner`` is given and is not the study's)."""
    render_study(gather_study(store, study_id, owner, baseline), sink)


def render_study(data: StudyReportData, sink: BinaryIO) -> None:
    r = data.record
    doc = document(sink, f"Ancho report: {r.model} study {r.id}", f"study {r.id} of {r.model}", "Ancho")
    st = _styles()
    width = doc.width
    story: list = [
        _p(r.model or "Model", st["title"]),
        _p(f"Ancho study report · study {r.id} · {r.status}", st["subtitle"]),
    ]
    if data.doc:
        story.append(_p(data.doc, st["doc"]))
    if r.status != "succeeded":
        story.append(_p(f"The study {r.status}" + (f": {r.error.rstrip('.')}." if r.error else ".") + " Points without results "
                        "show – in the table and are left out of the pictures.", st["warn"]))  # fmt: skip
    story.append(_p("Study", st["h2"]))
    story.append(
        _table([[k, v] for k, v in study_rows(data)], [34 * mm, width - 34 * mm], numeric_from=2, header=False)
    )
    story.append(_p("Design", st["h2"]))
    story.append(
        _table([[k, v] for k, v in design_rows(data)], [34 * mm, width - 34 * mm], numeric_from=2, header=False)
    )
    story += _points_section(data, width)
    story += _pictures_section(data, width)
    story += _sensitivity_section(data, width)
    story += _comparison_section(data, width)
    doc.build(story, canvasmaker=_numbered_canvas(f"study {r.id}"))


def _text_width(text: str, bold: bool = False) -> float:
    from reportlab.pdfbase.pdfmetrics import stringWidth

    return stringWidth(text, "DejaVu-Bold" if bold else "DejaVu", 7.5) + 7.0


def _points_section(data: StudyReportData, width: float) -> list:
    """The points table, split into column groups that fit the page, each repeating its header on every page."""
    st = _styles()
    out: list = [
        _p("Points", st["h2"]),
        _p(
            "One row per point: the design's parameters, each output's mean with its 95% confidence interval "
            "and each target's probability with its interval.",
            st["body"],
        ),
        _space(2),
    ]
    if not len(data.frame):
        return out + [_p("The study has no points.", st["body"])]
    head, rows = point_cells(data, data.outputs, data.targets, DIGITS)
    fixed = 1 + len(data.parameters)  # the point and its parameters: in every column group
    widths = [max([_text_width(head[j], True)] + [_text_width(row[j]) for row in rows]) for j in range(len(head))]
    groups: list[list[int]] = []
    room = width - sum(widths[:fixed])
    for j in range(fixed, len(head), 2):  # a statistic and its interval stay together
        pair = widths[j] + widths[j + 1]
        if groups and sum(widths[k] for k in groups[-1]) + pair <= room:
            groups[-1] += [j, j + 1]
        else:
            groups.append([j, j + 1])
    for k, group in enumerate(groups or [[]]):
        cols = list(range(fixed)) + group
        if len(groups) > 1:
            out.append(_p(f"Points, table {k + 1} of {len(groups)}", st["h3"]))
        out.append(
            _plain_table(
                [[head[j] for j in cols]] + [[row[j] for j in cols] for row in rows],
                [widths[j] for j in cols],
                fixed,
                width,
            )
        )
        out.append(_space(3))
    return out


def _plain_table(rows: list[list[str]], widths: list[float], numeric_from: int, width: float):
    """A LongTable of plain strings (fast for thousands of rows), header repeated on every page."""
    from reportlab.lib import colors
    from reportlab.platypus import LongTable, TableStyle

    if sum(widths) > width:  # too many parameters for one line: shrink all and let the text clip
        widths = [w * width / sum(widths) for w in widths]
    t = LongTable(rows, colWidths=widths, repeatRows=1, hAlign="LEFT")
    t.setStyle(
        TableStyle(
            [
                ("FONT", (0, 0), (-1, -1), "DejaVu", 7.5, 9.5),
                ("FONT", (0, 0), (-1, 0), "DejaVu-Bold", 7.5, 9.5),
                ("ALIGN", (numeric_from, 0), (-1, -1), "RIGHT"),
                ("TOPPADDING", (0, 0), (-1, -1), 1.5),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5),
                ("LEFTPADDING", (0, 0), (-1, -1), 3),
                ("RIGHTPADDING", (0, 0), (-1, -1), 3),
                ("LINEBELOW", (0, 0), (-1, 0), 0.8, colors.HexColor("#333333")),
                ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eef1f5")),
                ("ROWBACKGROUNDS", (0, 1), (-1, -1), [colors.white, colors.HexColor("#f7f7f7")]),
                ("LINEBELOW", (0, -1), (-1, -1), 0.5, colors.HexColor("#999999")),
            ]
        )
    )
    return t


def _pictures_section(data: StudyReportData, width: float) -> list:
    """Each output and target against the design's parameters, then each trajectory's mean paths."""
    from . import study_figures as sf

    st = _styles()
    params = data.parameters
    done = data.frame.dropna(subset=[c for c in data.frame.columns if c.endswith(".mean")] or None, how="all")
    series = [(f"{n}.mean", f"{n}.ci95_low", f"{n}.ci95_high", n) for n in data.outputs]
    series += [(f"p({e})", f"p({e}).ci95_low", f"p({e}).ci95_high", f"p({e})") for e in data.targets]
    series = series[:PICTURED]
    out: list = []
    if params and len(done) and series:
        if len(params) == 1:
            intro, size = (
                f"Each output's mean and each target's probability against {params[0]}, with 95% intervals.",
                sf.WIDE,
            )
            draw = lambda s: sf.against_one(done, params[0], s[:3], s[3])  # noqa: E731
        elif len(params) == 2:
            intro, size = f"Each output's mean over {params[0]} and {params[1]}.", sf.TALL
            draw = lambda s: sf.heatmap(done, params, s[0], s[3])  # noqa: E731
        else:
            intro, size = (
                "Parallel coordinates: one line per point through its parameters, coloured by the mean.",
                sf.TALL,
            )
            draw = lambda s: sf.parallel(done, params, s[0], s[3])  # noqa: E731
        heading = [_p("Pictures", st["h2"]), _p(intro, st["body"])]
        out += figure_blocks(heading, (draw(s) for s in series), width, size)
    colour = None
    if params and data.frame[params[0]].map(lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)).all():
        colour = {int(p): float(v) for p, v in zip(data.frame["point"], data.frame[params[0]])}
    heading = [
        _p("Mean paths", st["h2"]),
        _p(
            "Each point's mean path of each trajectory output" + (f", coloured by {params[0]}." if colour else "."),
            st["body"],
        ),
    ]
    pngs = (sf.mean_paths(name, paths, colour) for name, paths in data.paths.items())
    return out + figure_blocks(heading, pngs, width, sf.WIDE)


def _sensitivity_section(data: StudyReportData, width: float) -> list:
    """Per output and target: the indices as bars with intervals and as a table, the noise share, the warning."""
    from reportlab.platypus import KeepTogether

    from . import study_figures as sf

    sens = data.summary.get("sensitivity") or {}
    if not sens:
        return []
    st = _styles()
    heading: list = [
        _p("Sensitivity", st["h2"]),
        _p(
            "Which parameters move each output: Sobol first-order (S1) and total (ST) indices, or Morris mu_star and "
            "sigma, with bootstrap 95% intervals. The noise share is the part of the variance between points that "
            "is replication noise (0: none; 1: the points do not differ beyond noise).",
            st["body"],
        ),
    ]
    out: list = []
    for name, entry in sens.items():
        keys = ["S1", "ST"] if entry.get("method") == "sobol" else ["mu_star", "sigma"]
        rows = [["parameter"] + [h for k in keys for h in ((k, "95% CI") if k != "sigma" else (k,))]]
        for param in (entry.get(keys[0]) or {}).keys():
            row = [param]
            for k in keys:
                v = (entry.get(k) or {}).get(param)
                v = v if isinstance(v, dict) else {"value": v}
                row += [fmt(v.get("value"), 4)] + ([ci(v.get("ci95"), 4)] if k != "sigma" else [])
            rows.append(row)
        block = [
            _p(name, st["h3"]),
            image(sf.sensitivity_bars(name, entry), width, sf.WIDE),
            *number_tables(rows, width),
        ]
        if entry.get("noise_share") is not None:
            block.append(_p(f"Noise share: {fmt(entry['noise_share'], 3)}", st["body"]))
        if entry.get("warning"):
            block.append(_p(f"Warning: {entry['warning']}", st["warn"]))
        out.append(KeepTogether(heading + block if not out else block))  # the heading never ends a page alone
    return out


def _comparison_section(data: StudyReportData, width: float) -> list:
    """Every point against the baseline point: paired differences with intervals, the significant ones marked."""
    from reportlab.platypus import KeepTogether

    from . import study_figures as sf

    comp = data.comparison
    if comp is None:
        return []
    st = _styles()
    heading: list = [
        _p(f"Comparison with point {data.baseline}", st["h2"]),
        _p(
            "Each point minus the baseline point, on common random numbers (paired sequence by sequence): the "
            "difference with its 95% interval and Holm-adjusted p-value; * marks p < 0.05.",
            st["body"],
        ),
    ]
    if not comp["comparisons"]:
        return heading + [_p("No other point has succeeded yet.", st["body"])]
    out: list = []
    names = list(dict.fromkeys(n for c in comp["comparisons"] for n in c["outputs"]))
    keyed = [(n, lambda c, n=n: c["outputs"].get(n)) for n in names]
    keyed += [
        (f"p({e})", lambda c, i=i: c["targets"][i] if len(c["targets"]) > i else None)
        for i, e in enumerate(data.targets)
    ]
    for label, get in keyed[:PICTURED]:
        rows = [["point", "difference", "95% CI", "p (Holm)", ""]]
        drawn = []
        for c in comp["comparisons"]:
            d = get(c)
            if not d:
                continue
            p = d.get("p_value_holm", d.get("p_value"))
            rows.append(
                [
                    str(c["point"]),
                    fmt(d.get("difference")),
                    ci(d.get("ci95")),
                    fmt(p, 3),
                    "*" if p is not None and p < 0.05 else "",
                ]
            )
            drawn.append((c["point"], d.get("difference"), d.get("ci95") or [None, None]))
        block = [_p(label, st["h3"]), image(sf.differences(label, drawn), width, sf.WIDE)]
        out.append(KeepTogether(heading + block if not out else block))  # the heading never ends a page alone
        out += number_tables(rows, width)
    return out
