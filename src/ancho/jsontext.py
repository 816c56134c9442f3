"""JSON text of records, as the standard library reads it back, written ~3× faster.

Why: a study writes a run record a point (2,000 for a 2,000-point study) and rewrites its own 250 KB record
several times while it runs; ``json.dumps`` of one tiny point's record took ~26 µs of the driver's CPU (most of it
the summary's floats printed shortest-round-trip), a tenth of the driver's time a point. orjson writes the same
data in ~2 µs, but it writes NaN and ±inf as ``null`` where the standard library keeps them (as ``NaN`` and
``Infinity``, which it reads back): a model's parameter default may well be ``inf``. So its text is read back
(~3 µs) and used only if it says the same as the data; anything else (a non-finite float, a tuple, an integer
over 64 bits, a type orjson does not take) is written by the standard library, as before. Floats are written
shortest-round-trip either way, so a value reads back bit-identical whichever wrote it (tests/test_jsontext.py).
"""

from __future__ import annotations

import json
import re
from typing import Any

try:
    import orjson
except ImportError:  # (a model's own environment holds the worker's packages only: it writes no record)
    orjson = None  # type: ignore[assignment]


def dumps(data: Any) -> str:
    """``json.dumps(data)`` as it reads back: the same values, in a shorter text (no spaces)."""
    if orjson is not None:
        try:
            text = orjson.dumps(data)
        except TypeError:
            pass
        else:
            if orjson.loads(text) == data:
                return text.decode()
    return json.dumps(data)


#: how the text :func:`dumps` took from orjson begins: a dict's first key, a name, then ``:`` and no space (the
#: standard library always writes ``": "``)
_ORJSON_TEXT = re.compile(r'\{"[A-Za-z_][A-Za-z0-9_]*":[^ ]')


def loads(text: str) -> Any:
    """``json.loads(text)`` of a record's text :func:`dumps` wrote, read by orjson where that is the same: in text
    orjson wrote, which :func:`dumps` checked reads back as its data (orjson would read an integer over 64 bits as a
    float, and refuse NaN: the standard library wrote those). A 15 MB record of long trajectories: 0.08 s, not 0.34."""
    if orjson is not None and _ORJSON_TEXT.match(text):
        return orjson.loads(text)
    return json.loads(text)


#: nesting of a plain value (lists in lists…) taken from a worker: deeper than any summary or default, shallow
#: enough that checking it, and JSON writers after, never exhaust the stack (a forged reply can nest without end)
MAX_DEPTH = 100


def plain(value: Any, tuples: bool = False, depth: int = 0) -> bool:
    """Whether ``value`` is JSON's: None, bool, int, float, str, and lists (tuples too, given ``tuples``) and
    str-keyed dicts of them, nested at most :data:`MAX_DEPTH` deep.

    What crosses from a worker to the driver as data (summary values, a model's description) is checked with it
    on both sides: in the worker, to name what a summary function returned; in the driver, because a model's code
    ran in the worker and could have sent anything the reply unpickler takes."""
    t = type(value)
    if value is None or t is bool or t is int or t is float or t is str:
        return True
    if depth >= MAX_DEPTH:
        return False
    if t is list or tuples and t is tuple:
        return all(plain(v, tuples, depth + 1) for v in value)
    if t is dict:
        return all(type(k) is str and plain(v, tuples, depth + 1) for k, v in value.items())
    return False
