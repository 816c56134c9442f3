"""Tables of the PDF reports: a name column that wraps, then number columns that never do.

A number broken over two lines (``0.0052713`` / ``4``) reads as two numbers,
so number columns are always as wide as their widest text. When they do not
fit across the page, the table is set in a smaller type, and if even the
smallest is too wide it is split into several tables, each repeating the
name column.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape

if TYPE_CHECKING:
    from reportlab.platypus import LongTable

#: type sizes (points) a table may be set in, the usual one first; smaller ones only when it would not fit
SIZES = (7.5, 7.0, 6.5, 6.0)
#: a cell's left plus right padding, and one point of slack so a number exactly as wide still fits on one line
PAD = 7.0
#: the least width (points) the name column keeps before columns are split off into another table
NAME_MIN = 60.0


@functools.lru_cache(maxsize=8)
def cell_styles(size: float = SIZES[0]) -> dict:
    """Paragraph styles of body and header cells, left- and right-aligned, at type ``size``."""
    from reportlab.lib.styles import ParagraphStyle

    leading = size + 2
    return {
        "cell": ParagraphStyle("cell", fontName="DejaVu", fontSize=size, leading=leading),
        "cellr": ParagraphStyle("cellr", fontName="DejaVu", fontSize=size, leading=leading, alignment=2),
        "head": ParagraphStyle("head", fontName="DejaVu-Bold", fontSize=size, leading=leading),
        "headr": ParagraphStyle("headr", fontName="DejaVu-Bold", fontSize=size, leading=leading, alignment=2),
    }


def table(
    rows: list[list], widths: list[float], numeric_from: int = 1, header: bool = True, size: float = SIZES[0]
) -> LongTable:
    """A LongTable of text cells (wrapped in Paragraphs) that repeats its header row on every page."""
    from reportlab.lib import colors
    from reportlab.platypus import LongTable, Paragraph, TableStyle

    st = cell_styles(size)
    cells = []
    for i, row in enumerate(rows):
        head = header and i == 0
        cells.append(
            [
                Paragraph(
                    escape(str(v)).replace("\n", "<br/>"),
                    st[("head" if head else "cell") + ("" if j < numeric_from else "r")],
                )
                for j, v in enumerate(row)
            ]
        )
    t = LongTable(cells, colWidths=widths, repeatRows=1 if header else 0, hAlign="LEFT")
    style = [
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("TOPPADDING", (0, 0), (-1, -1), 2),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
        ("LEFTPADDING", (0, 0), (-1, -1), 3),
        ("RIGHTPADDING", (0, 0), (-1, -1), 3),
        ("LINEBELOW", (0, -1), (-1, -1), 0.5, colors.HexColor("#999999")),
    ]
    if header:
        style += [
            ("LINEBELOW", (0, 0), (-1, 0), 0.8, colors.HexColor("#333333")),
            ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eef1f5")),
        ]
    style += [
        ("BACKGROUND", (0, r), (-1, r), colors.HexColor("#f7f7f7")) for r in range(2 if header else 1, len(rows), 2)
    ]
    t.setStyle(TableStyle(style))
    return t


def column_widths(rows: list[list], size: float = SIZES[0]) -> list[float]:
    """Each column's widest text (the header row in bold) plus padding, at type ``size``."""
    from reportlab.pdfbase.pdfmetrics import stringWidth

    return [
        max(stringWidth(str(row[j]), "DejaVu-Bold" if i == 0 else "DejaVu", size) for i, row in enumerate(rows)) + PAD
        for j in range(len(rows[0]))
    ]


def number_tables(rows: list[list], width: float, name_min: float = NAME_MIN) -> list[LongTable]:
    """``rows`` (a header, then a name and numbers per row) as tables ``width`` points wide whose numbers never wrap.

    The name column takes what the numbers leave, at least ``name_min``; in the largest of :data:`SIZES` that
    fits, else in the smallest, split into tables of as many number columns as fit, each with the name column.
    """
    for size in SIZES:
        need = column_widths(rows, size)[1:]
        if sum(need) + name_min <= width:
            return [table(rows, [width - sum(need)] + need, size=size)]
    groups: list[list[int]] = []
    for j, w in enumerate(need, start=1):
        if groups and sum(need[k - 1] for k in groups[-1]) + w + name_min <= width:
            groups[-1].append(j)
        else:
            groups.append([j])
    tables = []
    for group in groups:
        widths = [need[k - 1] for k in group]
        if sum(widths) + name_min > width:  # one column wider than the page: only an interval's space may break
            widths = [w * (width - name_min) / sum(widths) for w in widths]
        cols = [0, *group]
        tables.append(table([[row[k] for k in cols] for row in rows], [width - sum(widths), *widths], size=size))
    return tables
