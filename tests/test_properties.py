"""Property-based tests (Hypothesis) of everything that parses untrusted text: parameters, targets,
precision goals and model archives. Each parser either returns a well-formed value or raises Ancho's
own error for bad input (which the CLI prints as one line and the server answers as a 4xx); nothing
else may escape, and an archive never writes outside its destination.
"""

from __future__ import annotations

import io
import math
import os
import tarfile
import warnings
import zipfile
from typing import Literal

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import ancho
from ancho.errors import ExpressionError, ParameterError
from ancho.expressions import Goal, Target
from ancho.sources.extract import ArchiveError, extract

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


class Everything(ancho.Model):
    n: int = 3
    x: float = 0.5
    flag: bool = False
    label: str = "a"
    weights: list[float] = [1.0, 2.0]
    mode: Literal["fast", "exact"] = "fast"

    def sequence(self, rng):
        return {"y": rng.random()}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=10,
)


@SETTINGS
@given(
    st.dictionaries(
        st.sampled_from(["n", "x", "flag", "label", "weights", "mode", "other", "N"]), json_values | st.text()
    )
)
def test_parameters_from_any_json_or_text_are_converted_or_refused_by_name(params):
    try:
        resolved = Everything.resolve_params(params)
    except ParameterError as exc:
        assert any(f"'{name}'" in str(exc) for name in params), str(exc)
        return
    assert type(resolved["n"]) is int and type(resolved["x"]) is float and type(resolved["flag"]) is bool
    assert type(resolved["label"]) is str and resolved["mode"] in ("fast", "exact")
    assert all(isinstance(w, float) for w in resolved["weights"])


@SETTINGS
@given(st.integers(min_value=-(10**300), max_value=10**300))
def test_integers_survive_the_command_line(i):
    assert Everything.resolve_params({"n": str(i)})["n"] == i
    assert Everything.resolve_params({"n": f"  {i}  "})["n"] == i


@SETTINGS
@given(st.floats(allow_nan=False))
def test_floats_survive_the_command_line(x):
    assert Everything.resolve_params({"x": repr(x)})["x"] == x


names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True)
numbers = st.floats(allow_nan=False, allow_infinity=False, width=64)


@SETTINGS
@given(st.text(max_size=40))
def test_any_text_is_a_target_or_a_clear_error(text):
    try:
        t = Target.parse(text)
    except ExpressionError as exc:
        assert "target" in str(exc)
        return
    assert t.op in (">=", "<=", ">", "<", "==", "!=") and not math.isnan(t.value)
    assert Target.parse(t.expr) == t  # the normalised form reads back the same


@SETTINGS
@given(names, st.sampled_from([">=", "<=", ">", "<", "==", "!="]), numbers, st.sampled_from(["", " "]))
def test_well_formed_targets_parse_and_count_hits(name, op, value, space):
    t = Target.parse(f"{name}{space}{op}{space}{value!r}")
    assert (t.output, t.op, t.value) == (name, op, value)
    column = np.array([value - 1.0, value, value + 1.0, np.nan])
    hits, n = t.hits(column)
    assert n == 3 and 0 <= hits <= 3


@SETTINGS
@given(st.text(max_size=60))
def test_any_text_is_a_goal_or_a_clear_error(text):
    try:
        g = Goal.parse(text)
    except ExpressionError as exc:
        assert "precision goal" in str(exc)
        return
    assert g.statistic in ("mean", "p") and g.width > 0 and math.isfinite(g.width)
    assert (g.target is None) == (g.statistic == "mean")


@SETTINGS
@given(names, st.floats(min_value=1e-12, max_value=1e12), st.booleans())
def test_well_formed_goals_parse(name, width, relative):
    g = Goal.parse(f"mean({name})+-{width!r}{'%' if relative else ''}")
    assert g.output == name and g.relative == relative
    assert math.isclose(g.width, width / 100 if relative else width, rel_tol=1e-12)


# -- archives -------------------------------------------------------------------------------------

member_names = st.one_of(
    st.from_regex(r"[a-z]{1,8}(/[a-z]{1,8}){0,2}\.py", fullmatch=True),
    st.sampled_from(
        ["../escape.py", "/abs.py", "a/../../escape.py", "..", "./ok.py", "a//b.py", "C:/win.py", "a\\..\\..\\x.py"]
    ),
    st.text(min_size=1, max_size=30),
)
kinds = st.sampled_from(["file", "dir", "symlink", "hardlink", "fifo"])
link_targets = st.sampled_from(["ok.py", "../outside", "/etc/passwd", "a/b.py", "."])


def _tar(members) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, kind, target in members:
            info = tarfile.TarInfo(name)
            data = b""
            if kind == "file":
                data = b"x = 1\n"
                info.size = len(data)
            else:
                info.type = {
                    "dir": tarfile.DIRTYPE,
                    "symlink": tarfile.SYMTYPE,
                    "hardlink": tarfile.LNKTYPE,
                    "fifo": tarfile.FIFOTYPE,
                }[kind]
                info.linkname = target
            tar.addfile(info, io.BytesIO(data) if data else None)
    return buf.getvalue()


def _zip(members) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buf, "w") as z:
        warnings.simplefilter("ignore")  # duplicate names are part of the test
        for name, kind, target in members:
            info = zipfile.ZipInfo(name + ("/" if kind == "dir" and not name.endswith("/") else ""))
            if kind == "symlink":
                info.external_attr = 0o120777 << 16
                z.writestr(info, target)
            else:
                z.writestr(info, b"" if kind == "dir" else b"x = 1\n")
    return buf.getvalue()


def _inside(root: str, path: str) -> bool:
    real, root = os.path.realpath(path), os.path.realpath(root)
    return real == root or real.startswith(root + os.sep)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(st.tuples(member_names, kinds, link_targets), min_size=1, max_size=6), st.sampled_from(["tar.gz", "zip"])
)
def test_archives_unpack_inside_their_folder_or_are_refused(tmp_path_factory, members, kind):
    assume(all("\x00" not in name for name, _, _ in members))
    base = tmp_path_factory.mktemp("x")
    dest = base / "dest"
    try:
        data = _tar(members) if kind == "tar.gz" else _zip(members)
    except (ValueError, UnicodeEncodeError):
        assume(False)
    before = set(os.listdir(base))
    try:
        extract(data, dest)
    except ArchiveError as exc:
        assert str(exc)
    after = set(os.listdir(base))
    assert after - before <= {"dest"}  # nothing beside the destination
    for folder, dirs, files in os.walk(base):
        for entry in dirs + files:
            path = os.path.join(folder, entry)
            if os.path.islink(path):
                assert _inside(str(dest), path), f"a link that leaves the archive: {path} -> {os.readlink(path)}"
