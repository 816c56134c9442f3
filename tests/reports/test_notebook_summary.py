"""A run notebook's summary cell: the run's summary read back exactly, and cheap to load however long its trajectories.

A 100,000-step trajectory's summary is a million numbers; written as a Python literal its cell was 45 MB, took
seconds and a GB to compile and over a minute to run in Jupyter. It is JSON read with ``json.loads`` now, with long
per-step arrays packed as base64 float64 (``PER_STEP``).
"""

from __future__ import annotations

import ast
import json

import nbformat
import pytest

import ancho
from ancho.reports import write_notebook
from ancho.reports.notebook import PACK_STEPS, build_notebook, json_literal

from .test_reports import execute, images, outputs_text

LONG = f'''
class Long(ancho.Model):
    """A Gaussian walk of {3 * PACK_STEPS} steps whose step 7 is never finite, and its end."""

    steps: int = {3 * PACK_STEPS}
    block = 8

    def sequences(self, rng, n):
        path = np.cumsum(rng.standard_normal((n, self.steps)), axis=1)
        path[:, 7] = np.nan
        path[0, 0] = -0.0
        return {{"path": path, "final": path[:, -1]}}
'''


@pytest.fixture
def long_run(store, write_model):
    return ancho.run(f"{write_model(LONG)}:Long", sequences=40, seed=6, workers=1, store=store).record


def setup_cell(nb) -> str:
    return next(c.source for c in nb.cells if c.cell_type == "code" and "summary = " in c.source)


def constants(code: str) -> int:
    """How many literal constants the code has: a summary written as a Python literal has one per number."""
    return sum(isinstance(node, ast.Constant) for node in ast.walk(ast.parse(code)))


def test_a_long_trajectorys_summary_is_packed_not_a_python_literal_and_reads_back_exactly(store, long_run):
    summary = long_run.summary
    stats = summary["trajectories"]["path"]
    assert stats["steps"] == 3 * PACK_STEPS and stats["mean"][7] is None  # a step with no finite value
    numbers = sum(len(v) for v in stats.values() if isinstance(v, list))
    code = setup_cell(build_notebook(store, long_run.id))
    assert "summary = json.loads(r'''" in code and "PER_STEP = {" in code
    assert all(f'"{key}": null' in code for key, v in stats.items() if isinstance(v, list))  # each array packed
    assert constants(code) < 100  # not one per number
    assert len(code) < 12 * numbers  # base64 float64: 10.7 characters a number (as a Python literal: over 20)
    namespace: dict = {}
    exec(compile(code, "setup", "exec"), namespace)  # plain Python: the cell uses no IPython syntax
    assert namespace["summary"] == summary
    assert json.dumps(namespace["summary"]) == json.dumps(summary)  # bit for bit (repr), -0.0 and None included


def test_a_short_trajectorys_summary_stays_readable_json(store, write_model):
    model = write_model(LONG.replace(f"steps: int = {3 * PACK_STEPS}", "steps: int = 30"))
    record = ancho.run(f"{model}:Long", sequences=40, seed=6, workers=1, store=store).record
    code = setup_cell(build_notebook(store, record.id))
    assert "PER_STEP" not in code and "import base64" not in code
    assert '\n "trajectories": {\n  "path": {\n   "steps": 30,' in code  # laid out a key a line, like pprint
    namespace: dict = {}
    exec(compile(code, "setup", "exec"), namespace)
    assert json.dumps(namespace["summary"]) == json.dumps(record.summary)


def test_json_literal_reads_back_any_json_value():
    value = {
        "text": "it's a 'quote' ''' and \"double\", a \\ backslash, \\u0027 and é\n",
        "numbers": [0.1, -0.0, 1e-300, 5e300, 2**60, None, True],
        "empty": {},
        "nested": [{"a": [1.5] * 40}, []],
        "nan": float("nan"),
    }
    code = json_literal(value)
    back = eval(code, {"json": json})
    assert json.dumps(back) == json.dumps(value)


@pytest.mark.slow
def test_a_long_trajectorys_notebook_executes_with_its_exact_summary(store, long_run, tmp_path):
    path = tmp_path / "long.ipynb"
    assert write_notebook(store, long_run.id, path) == [path]
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("print('SUMMARY', json.dumps(summary))"))
    nbformat.write(nb, path)
    nb = execute(path)
    assert images(nb) == 2  # final's histogram and running mean, path's fan
    line = next(x for x in outputs_text(nb).splitlines() if x.startswith("SUMMARY "))
    assert line.removeprefix("SUMMARY ") == json.dumps(long_run.summary)
