"""GET /api/v1/studies/{id}/report.pdf and …/notebook.ipynb on the real session server, and ``ancho report STUDY --url``."""

from __future__ import annotations

import json

import nbformat
import pytest

from ..conftest import CI, run_cli
from ..reports.test_reports import POPPLER, execute, images, outputs_text, shows
from .conftest import detail_text, is_json_error
from .test_reports import pdf_text
from .test_studies import submit_study, wait_study

pytestmark = pytest.mark.skipif(not CI and not POPPLER, reason="poppler-utils (pdftotext) reads the PDFs back")


@pytest.fixture(scope="module")
def study(alice, gambler_upload) -> str:
    """A finished grid study of alice's: p over two values, 1,500 sequences per point."""
    body = {
        "model": {"upload": gambler_upload, "entry": "model.py:Gambler"},
        "design": {"grid": {"p": [0.45, 0.55]}},
        "params": {"stake": 3, "goal": 10},
        "sequences": 1500,
        "seed": 11,
        "targets": ["rounds>=30"],
    }
    study_id = submit_study(alice, body)
    assert wait_study(alice, study_id)["status"] == "succeeded"
    return study_id


def test_pdf_report_of_a_study(alice, study):
    r = alice.get(f"/studies/{study}/report.pdf")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/pdf" and r.content.startswith(b"%PDF")
    text = pdf_text(r.content)
    assert study in " ".join(text.split())
    points = alice.get(f"/studies/{study}/points").json()["points"]
    for row in points:
        line = next(x for x in text.splitlines() if x.split()[:1] == [str(row["point"])] and "[" in x)
        assert shows(line, row["won.mean"]) and shows(line, row["rounds.mean"]) and shows(line, row["won.ci95_low"])
    r = alice.get(f"/studies/{study}/report.pdf", params={"baseline": 1})
    assert r.status_code == 200 and "Comparison with point 1" in " ".join(pdf_text(r.content).split())


@pytest.mark.parametrize("name", ["report.pdf", "notebook.ipynb"])
def test_study_reports_are_the_owners_only(alice, bob, anonymous, study, finished_run, name):
    r = bob.get(f"/studies/{study}/{name}")
    assert r.status_code == 404 and is_json_error(r) and study in detail_text(r)
    r = anonymous.get(f"/studies/{study}/{name}")
    assert r.status_code == 401 and is_json_error(r)
    r = alice.get(f"/studies/nosuchstudy/{name}")
    assert r.status_code == 404 and is_json_error(r) and "nosuchstudy" in detail_text(r)
    r = alice.get(f"/studies/{finished_run}/{name}")  # a run id given as a study
    assert r.status_code == 404 and is_json_error(r) and "is a run, not a study" in detail_text(r)
    r = bob.get(f"/studies/{finished_run}/{name}")  # another user's run: nothing said about it
    assert r.status_code == 404 and "is a run" not in detail_text(r)


@pytest.mark.parametrize("baseline", ["2", "-1", "first"])
def test_a_bad_baseline_is_a_4xx_naming_it(alice, study, baseline):
    r = alice.get(f"/studies/{study}/report.pdf", params={"baseline": baseline})
    assert r.status_code == 422 and is_json_error(r) and "baseline" in detail_text(r)


@pytest.mark.slow
def test_study_notebook_executes_against_the_server(server, alice, study, tmp_path, monkeypatch):
    r = alice.get(f"/studies/{study}/notebook.ipynb")
    assert r.status_code == 200, r.text
    assert server.tokens["alice"] not in r.text
    nb = nbformat.reads(r.text, as_version=4)
    assert nb.metadata["ancho"] == {"study": study, "data": "api"}
    path = tmp_path / "study.ipynb"
    path.write_text(r.text)
    monkeypatch.setenv("ANCHO_TOKEN", server.tokens["alice"])
    monkeypatch.setenv("ANCHO_URL", server.url)
    executed = execute(path)
    text = outputs_text(executed)
    assert "[1500 rows x 3 columns]" in text  # load_point: a point's sequences, fetched with the reader's token
    points = alice.get(f"/studies/{study}/points").json()["points"]
    assert shows(text, points[1]["rounds.mean"]) and images(executed) == 3


@pytest.mark.slow
def test_cli_downloads_a_studys_reports(server, study, finished_run, tmp_path):
    pdf, nb = tmp_path / "s.pdf", tmp_path / "s.ipynb"
    env = {"ANCHO_URL": server.url, "ANCHO_TOKEN": server.tokens["alice"]}
    done = run_cli("report", study, "--pdf", str(pdf), "--notebook", str(nb), "--baseline", "0", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(pdf), str(nb)]
    text = " ".join(pdf_text(pdf.read_bytes()).split())
    assert study in text and "Comparison with point 0" in text
    assert json.loads(nb.read_text())["metadata"]["ancho"] == {"study": study, "data": "api"}
    done = run_cli("report", study, "--pdf", str(tmp_path / "b.pdf"), env={**env, "ANCHO_TOKEN": server.tokens["bob"]})
    assert done.returncode != 0 and study in done.stderr and not (tmp_path / "b.pdf").exists()
    done = run_cli("report", finished_run, "--pdf", str(tmp_path / "r.pdf"), "--baseline", "0", env=env)
    assert done.returncode != 0 and "is a run" in done.stderr and not (tmp_path / "r.pdf").exists()
