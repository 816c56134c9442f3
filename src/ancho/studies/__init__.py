"""Studies: many runs of one model over a design, and comparisons of runs on common random numbers.

``designs`` chooses the points, ``comparison`` compares two runs output by
output. Running a study (``ancho.study``) is wired into the engine on top of
these.
"""

from .comparison import compare_frames, holm
from .designs import MAX_POINTS, Design, Range, grid, lhs, morris, points, random, sobol

__all__ = [
    "MAX_POINTS",
    "Design",
    "Range",
    "compare_frames",
    "grid",
    "holm",
    "lhs",
    "morris",
    "points",
    "random",
    "sobol",
]
