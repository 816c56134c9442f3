"""Batch models (``sequences(rng, n)``) on the real session server: uploaded, run in the sandbox, studied, compared
and reported like any other model, with the same answers as a local run, the same isolation, and bad batch models
refused or failed with one line that names them, never a 5xx.

The model is the example itself (examples/option.py:BSCall), checked against the Black–Scholes closed form.
"""

from __future__ import annotations

import io
import sys

import nbformat
import numpy as np
import pyarrow.parquet as pq
import pytest

import ancho

from ..conftest import EXAMPLES
from .conftest import detail_text, is_json_error, submit, tar_gz, upload_id, wait_run
from .test_studies import submit_study, wait_study

sys.path.insert(0, str(EXAMPLES))
from option import BSCall, black_scholes  # noqa: E402

OPTION = (EXAMPLES / "option.py").read_text()
N = 200_000
SEED = 21
PARAMS = {"k": 100.0, "sigma": 0.25}
Z = 4.0  # tolerance: 4 standard errors


def closed_form(**params) -> float:
    p = {"s0": 100.0, "k": 105.0, "r": 0.05, "sigma": 0.2, "t": 1.0, **params}
    return black_scholes(p["s0"], p["k"], p["r"], p["sigma"], p["t"])["call"]


@pytest.fixture(scope="module")
def option(alice) -> dict:
    return {"upload": upload_id(alice, tar_gz({"option.py": OPTION}), "option.tar.gz"), "entry": "option.py:BSCall"}


@pytest.fixture(scope="module")
def batch_run(alice, option) -> str:
    run_id = submit(alice, {"model": option, "params": PARAMS, "sequences": N, "seed": SEED, "targets": ["payoff>0"]})
    view = wait_run(alice, run_id)
    assert view["status"] == "succeeded", view
    return run_id


def test_a_sandboxed_batch_run_prices_the_call(alice, batch_run):
    summary = alice.get(f"/runs/{batch_run}/summary").json()
    payoff = summary["outputs"]["payoff"]
    assert summary["sequences"] == payoff["count"] == N and summary["failures"] == 0
    assert abs(payoff["mean"] - closed_form(**PARAMS)) < Z * payoff["sem"], payoff
    assert summary["custom"]["black_scholes_call"] == pytest.approx(closed_form(**PARAMS), rel=1e-12)
    view = alice.get(f"/runs/{batch_run}").json()
    assert view["progress"] == {"done": N, "total": N}


def test_the_block_a_batch_run_ran_with_is_shown(alice, batch_run, finished_run, option):
    """Its results depend on it (docs/reproducibility.md): the run view, the listing, the model's description and
    the reports say it; a one-at-a-time run has none."""
    assert alice.get(f"/runs/{batch_run}").json()["block"] == 4096
    assert alice.get(f"/runs/{finished_run}").json()["block"] is None
    listed = {r["id"]: r["block"] for r in alice.get("/runs", params={"limit": 1000}).json()}
    assert listed[batch_run] == 4096 and listed[finished_run] is None
    model = alice.post("/inspect", json={"model": option}).json()
    assert (model["name"], model["kind"], model["block"]) == ("BSCall", "batch", 4096)
    notebook = alice.get(f"/runs/{batch_run}/notebook.ipynb").text
    assert "| Block | 4,096 sequences a call" in notebook
    assert "| Block |" not in alice.get(f"/runs/{finished_run}/notebook.ipynb").text


def test_the_server_stores_what_a_local_run_stores(alice, batch_run, tmp_path):
    """Sandboxed on the server or unsandboxed here, chunked however each executor chose: the same sequences."""
    local = ancho.run(BSCall, params=PARAMS, sequences=N, seed=SEED, workers=2, store=str(tmp_path / "store"))
    r = alice.get(f"/runs/{batch_run}/results", params={"format": "parquet"})
    assert r.status_code == 200, r.text
    table = pq.read_table(io.BytesIO(r.content))
    assert np.array_equal(table.column("sequence").to_numpy(), np.arange(N))
    assert np.array_equal(table.column("payoff").to_numpy(), local.frame["payoff"].to_numpy())
    served = alice.get(f"/runs/{batch_run}/summary").json()["outputs"]["payoff"]
    assert served == local.summary["outputs"]["payoff"]
    page = alice.get(f"/runs/{batch_run}/results", params={"offset": N - 2, "limit": 5}).json()
    assert [row["sequence"] for row in page["results"]] == [N - 2, N - 1] and page["next"] is None


def test_reports_of_a_batch_run(alice, batch_run):
    pdf = alice.get(f"/runs/{batch_run}/report.pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF"), pdf.text[:200]
    nb = alice.get(f"/runs/{batch_run}/notebook.ipynb")
    assert nb.status_code == 200, nb.text[:200]
    notebook = nbformat.reads(nb.text, as_version=4)
    nbformat.validate(notebook)
    assert batch_run in nb.text and "payoff" in nb.text


def test_a_batch_run_is_its_owners_only(bob, anonymous, batch_run):
    paths = ("", "/summary", "/results", "/results?format=parquet", "/report.pdf", "/notebook.ipynb", "/failures")
    for path in paths:
        r = bob.get(f"/runs/{batch_run}{path}")
        assert r.status_code == 404 and is_json_error(r), (path, r.status_code)
        assert batch_run in r.text
        assert anonymous.get(f"/runs/{batch_run}{path}").status_code == 401, path


def test_a_study_of_a_batch_model_and_a_paired_comparison(alice, option):
    body = {
        "model": option,
        "design": {"grid": {"k": [95.0, 105.0]}},
        "params": {"sigma": 0.25},
        "sequences": 100_000,
        "seed": 7,
    }
    study_id = submit_study(alice, body)
    assert wait_study(alice, study_id)["status"] == "succeeded"
    points = alice.get(f"/studies/{study_id}/summary").json()["points"]
    for point in points:
        payoff = point["outputs"]["payoff"]
        exact = closed_form(k=point["params"]["k"], sigma=0.25)
        assert abs(payoff["mean"] - exact) < Z * payoff["sem"], (point["params"], payoff, exact)
    a, b = (p["run"] for p in points)
    c = alice.get(f"/runs/{a}/compare/{b}").json()
    assert c["paired"] is True and c["sequences"] == 100_000
    diff = c["outputs"]["payoff"]
    exact = closed_form(k=105.0, sigma=0.25) - closed_form(k=95.0, sigma=0.25)
    half = (diff["ci95"][1] - diff["ci95"][0]) / 2  # 1.96 standard errors of the paired difference
    assert abs(diff["difference"] - exact) < Z * half / 1.96, (diff, exact)
    assert diff["variance_reduction"] > 10  # shared streams: the same normals priced at both strikes


BAD = {
    "wrong_length": (
        "def sequences(self, rng, n):\n        return {'x': rng.random(n - 1)}",
        "run",
        "output 'x' of Bad",
    ),
    "strings": (
        "def sequences(self, rng, n):\n        return {'x': np.array(['a'] * n)}",
        "run",
        "output 'x' of Bad",
    ),
    "both_kinds": (
        "def sequence(self, rng):\n        return {'x': 1.0}\n\n    def sequences(self, rng, n):\n"
        "        return {'x': rng.random(n)}",
        "submit",
        "bad",
    ),
    "huge_block": (
        "block = 10**12\n\n    def sequences(self, rng, n):\n        return {'x': rng.random(n)}",
        "submit",
        "block",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_batch_models_are_one_line_errors_naming_the_model(alice, case):
    body, when, says = BAD[case]
    source = f"import numpy as np\nimport ancho\n\n\nclass Bad(ancho.Model):\n    {body}\n"
    upload = upload_id(alice, tar_gz({"model.py": source}), "bad.tar.gz")
    r = alice.post("/runs", json={"model": {"upload": upload, "entry": "model.py:Bad"}, "sequences": 10_000})
    if when == "submit":
        assert r.status_code == 422 and is_json_error(r), r.text
        assert says in detail_text(r) and "\n" not in detail_text(r), r.text
        return
    assert r.status_code == 201, r.text
    view = wait_run(alice, r.json()["id"])
    assert view["status"] == "failed" and says in view["error"] and "\n" not in view["error"].strip(), view


FORGED = """
import ancho
import ancho.loading


def forged(cls):
    return {"name": 5, "doc": None, "parameters": "x", "summaries": 7, "kind": "evil", "block": "8"}


ancho.loading.describe_model = forged


class Forged(ancho.Model):
    def sequences(self, rng, n):
        return {"x": rng.random(n)}
"""


def test_a_forged_model_description_is_a_422_not_a_5xx(alice):
    """The description of a model comes from the worker that read it, where the model's code ran first: whatever it
    claims, the request is refused with a 422 naming the model, and nothing is queued."""
    upload = upload_id(alice, tar_gz({"model.py": FORGED}), "forged.tar.gz")
    model = {"upload": upload, "entry": "model.py:Forged"}
    before = len(alice.get("/runs", params={"limit": 1000}).json())
    for r in (alice.post("/inspect", json={"model": model}), alice.post("/runs", json={"model": model})):
        assert r.status_code == 422 and is_json_error(r), (r.status_code, r.text)
    assert len(alice.get("/runs", params={"limit": 1000}).json()) == before
