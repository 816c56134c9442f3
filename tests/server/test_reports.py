"""GET …/report.pdf and …/notebook.ipynb on a real server, and ``ancho report`` against it."""

from __future__ import annotations

import json
import subprocess

import nbformat
import pytest

from ..conftest import CI, run_cli
from ..reports.test_reports import POPPLER, execute, images, outputs_text, shows
from .conftest import detail_text, is_json_error, submit, tar_gz, upload_id, wait_run

pytestmark = pytest.mark.skipif(not CI and not POPPLER, reason="poppler-utils (pdftotext) reads the PDFs back")

#: 40 outputs: 5,000 sequences are more values (5,000 × 41) than a notebook embeds, so it fetches them
WIDE = '''
import ancho


class Wide(ancho.Model):
    """Forty outputs."""

    def sequence(self, rng):
        return {f"y{i:02d}": float(rng.random() * (i + 1)) for i in range(40)}
'''


def pdf_text(data: bytes) -> str:
    return subprocess.run(
        ["pdftotext", "-layout", "-", "-"], input=data, capture_output=True, check=True
    ).stdout.decode()


@pytest.fixture(scope="module")
def wide_run(alice) -> str:
    upload = upload_id(alice, tar_gz({"model.py": WIDE}), "wide.tar.gz")
    run_id = submit(alice, {"model": {"upload": upload, "entry": "model.py:Wide"}, "sequences": 5000, "seed": 8})
    assert wait_run(alice, run_id)["status"] == "succeeded"
    return run_id


@pytest.fixture(scope="module")
def failed_run(alice, flaky_upload) -> str:
    run_id = submit(alice, {"model": {"upload": flaky_upload}, "params": {"rate": 0.5}, "sequences": 300, "seed": 5})
    assert wait_run(alice, run_id)["status"] == "failed"
    return run_id


def test_pdf_report_of_a_run(alice, finished_run):
    r = alice.get(f"/runs/{finished_run}/report.pdf")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/pdf" and r.content.startswith(b"%PDF")
    text = pdf_text(r.content)
    summary = alice.get(f"/runs/{finished_run}/summary").json()
    flat = " ".join(text.split())
    assert finished_run in flat and "Gambler's ruin" in flat and "upload " in flat and "rounds>=30" in flat
    line = next(x for x in text.splitlines() if x.split() and x.split()[0] == "rounds")
    assert shows(line.split()[1], summary["outputs"]["rounds"]["mean"])
    assert "/sources/trees/" not in flat  # no server folders in it


@pytest.mark.parametrize("name", ["report.pdf", "notebook.ipynb"])
def test_reports_are_the_owners_only(alice, bob, anonymous, finished_run, name):
    r = bob.get(f"/runs/{finished_run}/{name}")
    assert r.status_code == 404 and is_json_error(r)
    r = anonymous.get(f"/runs/{finished_run}/{name}")
    assert r.status_code == 401 and is_json_error(r)
    r = alice.get(f"/runs/nosuchrun/{name}")
    assert r.status_code == 404 and is_json_error(r) and "nosuchrun" in detail_text(r)


def test_notebook_of_a_small_run_embeds_its_results(server, alice, finished_run):
    r = alice.get(f"/runs/{finished_run}/notebook.ipynb")
    assert r.status_code == 200, r.text
    nb = nbformat.reads(r.text, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["ancho"] == {"run": finished_run, "data": "embed"}
    assert server.tokens["alice"] not in r.text


def test_reports_of_a_failed_run(alice, failed_run):
    r = alice.get(f"/runs/{failed_run}/report.pdf")
    assert r.status_code == 200, r.text
    text = " ".join(pdf_text(r.content).split())
    assert "failed" in text and "ZeroDivisionError" in text and "Failures" in text
    r = alice.get(f"/runs/{failed_run}/notebook.ipynb")
    assert r.status_code == 200 and "ZeroDivisionError" in r.text


def test_pdf_of_a_run_with_many_outputs(alice, wide_run):
    r = alice.get(f"/runs/{wide_run}/report.pdf", timeout=300)
    assert r.status_code == 200, r.text
    text = pdf_text(r.content)
    assert all(f"y{i:02d}" in text for i in range(40))
    assert "page 1 of " in text


@pytest.mark.slow
def test_notebook_of_a_large_run_fetches_results_with_the_readers_token(server, alice, wide_run, tmp_path, monkeypatch):
    r = alice.get(f"/runs/{wide_run}/notebook.ipynb")
    assert r.status_code == 200, r.text
    assert server.tokens["alice"] not in r.text  # notebooks get shared; the token comes from the environment
    nb = nbformat.reads(r.text, as_version=4)
    assert nb.metadata["ancho"]["data"] == "api" and server.url in r.text
    path = tmp_path / "wide.ipynb"
    path.write_text(r.text)
    monkeypatch.delenv("ANCHO_URL", raising=False)
    monkeypatch.delenv("ANCHO_TOKEN", raising=False)
    with pytest.raises(Exception, match="ANCHO_TOKEN"):  # without a token it says what to set
        execute(path)
    monkeypatch.setenv("ANCHO_TOKEN", server.tokens["alice"])
    ran = execute(path)
    text = outputs_text(ran)
    assert "[5000 rows x 41 columns]" in text
    mean = alice.get(f"/runs/{wide_run}/summary").json()["outputs"]["y39"]["mean"]
    assert shows(text, mean)
    assert images(ran) == 24  # the first 24 outputs are plotted


@pytest.mark.slow
def test_notebook_of_a_small_run_executes(alice, finished_run, tmp_path):
    path = tmp_path / "gambler.ipynb"
    path.write_text(alice.get(f"/runs/{finished_run}/notebook.ipynb").text)
    text = outputs_text(execute(path))
    assert "[3000 rows x 3 columns]" in text
    assert shows(text, alice.get(f"/runs/{finished_run}/summary").json()["outputs"]["rounds"]["mean"])


@pytest.mark.slow
def test_cli_downloads_reports_from_the_server(server, finished_run, tmp_path):
    pdf, nb = tmp_path / "r.pdf", tmp_path / "r.ipynb"
    env = {"ANCHO_URL": server.url, "ANCHO_TOKEN": server.tokens["alice"]}
    done = run_cli("report", finished_run, "--pdf", str(pdf), "--notebook", str(nb), env=env)
    assert done.returncode == 0, done.stderr
    assert pdf.read_bytes().startswith(b"%PDF") and finished_run in pdf_text(pdf.read_bytes())
    assert json.loads(nb.read_text())["metadata"]["ancho"]["run"] == finished_run
    done = run_cli(
        "report", finished_run, "--pdf", str(tmp_path / "b.pdf"), env={**env, "ANCHO_TOKEN": server.tokens["bob"]}
    )
    assert done.returncode != 0 and f"no run '{finished_run}'" in done.stderr and not (tmp_path / "b.pdf").exists()
