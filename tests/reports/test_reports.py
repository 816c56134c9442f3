"""Reports of local runs: the PDF (read back with pdftotext, rendered with pdftoppm) and the notebook (run with nbclient)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import ancho
from ancho.errors import RunFailed
from ancho.reports import write_notebook, write_pdf
from ancho.reports.facts import gather, model_doc
from ancho.reports.notebook import EMBED_MAX_VALUES, build_notebook

from ..conftest import CI, EXAMPLES, run_cli

#: CI installs poppler-utils (.ci/run), so there a missing tool fails the tests instead of skipping them
POPPLER = bool(shutil.which("pdftotext") and shutil.which("pdftoppm"))
pytestmark = pytest.mark.skipif(
    not CI and not POPPLER, reason="poppler-utils (pdftotext, pdftoppm) are needed to read the PDFs back"
)

WIDE = '''
class Wide(ancho.Model):
    """Sixty outputs ≥ 0, with a long-named one: a summary table that needs several pages."""

    width: int = 60

    def sequence(self, rng):
        out = {f"x{i:02d}": float(rng.gamma(1 + i % 7)) for i in range(self.width)}
        out["a_rather_long_output_name_that_has_to_wrap_inside_its_table_cell"] = int(rng.integers(0, 5))
        return out
'''

BROKEN = '''
class Broken(ancho.Model):
    """Fails now and then: a run that ends in failure."""

    rate: float = 0.05

    def sequence(self, rng):
        x = rng.random()
        if x < self.rate:
            raise ValueError(f"draw {x:.4f} below the rate")
        return {"x": x, "hit": bool(x > 0.5)}
'''


def pdf_text(path: Path, *pages: int) -> str:
    args = ["pdftotext", "-layout"]
    if pages:
        args += ["-f", str(pages[0]), "-l", str(pages[-1])]
    return subprocess.run([*args, str(path), "-"], capture_output=True, text=True, check=True).stdout


def shows(text: str, value: float) -> bool:
    """Whether ``text`` has a decimal number equal to ``value`` to two decimals."""
    return any(round(float(tok), 2) == round(value, 2) for tok in re.findall(r"-?\d+\.\d+", text.replace(",", "")))


def page_count(path: Path) -> int:
    info = subprocess.run(["pdfinfo", str(path)], capture_output=True, text=True, check=True).stdout
    return int(re.search(r"^Pages:\s+(\d+)", info, re.M).group(1))


def render_pages(path: Path, out: Path) -> list[Path]:
    """Every page as a PNG (pdftoppm fails on a broken PDF)."""
    subprocess.run(["pdftoppm", "-r", "50", "-png", str(path), str(out / "page")], check=True, capture_output=True)
    return sorted(out.glob("page-*.png"))


def ink(png: Path) -> tuple[float, int]:
    """The share of non-white pixels of a page, and how many distinct colours it has (figures bring many)."""
    import numpy as np
    from PIL import Image

    pixels = np.asarray(Image.open(png).convert("RGB")).reshape(-1, 3)
    return float(np.mean(pixels.min(axis=1) < 255)), len(np.unique(pixels, axis=0))


@pytest.fixture
def gambler_run(store):
    results = ancho.run(
        str(EXAMPLES / "gambler.py"),
        params={"stake": 3, "goal": 10, "p": 0.45},
        sequences=3000,
        seed=3,
        workers=2,
        store=store,
        targets=["rounds>=30"],
    )
    return results.record


def test_pdf_states_the_run_and_its_numbers_as_the_summary_gives_them(store, gambler_run, tmp_path):
    path = tmp_path / "report.pdf"
    with open(path, "wb") as fh:
        write_pdf(store, gambler_run.id, fh)
    text = pdf_text(path)
    summary = gambler_run.summary
    flat = " ".join(text.split())
    for expected in (
        gambler_run.id,
        "Gambler",
        "Gambler's ruin: bet 1 per round until broke or at the goal.",
        gambler_run.source_hash,
        "Seed 3",
        "3,000",
        ancho.__version__,
        "rounds>=30",
        "median_rounds_when_won",
    ):
        assert expected in flat, expected
    rows = {
        line.split()[0]: line.split()
        for line in text.splitlines()
        if line.split() and line.split()[0] in ("won", "rounds")
    }
    for name in ("won", "rounds"):
        shown = float(rows[name][1])
        assert f"{shown:.2f}" == f"{summary['outputs'][name]['mean']:.2f}", (name, rows[name])
        assert rows[name][-1] == f"{summary['outputs'][name]['count']:,}"
    target_line = next(line for line in text.splitlines() if line.strip().startswith("rounds>=30"))
    assert shows(target_line.split()[1], summary["targets"][0]["probability"])
    assert f"{summary['custom']['median_rounds_when_won']:g}" in flat
    n = page_count(path)
    for i in range(1, n + 1):
        assert f"page {i} of {n}" in pdf_text(path, i)


def test_pdf_pages_render_with_the_figures(store, gambler_run, tmp_path):
    path = tmp_path / "report.pdf"
    with open(path, "wb") as fh:
        write_pdf(store, gambler_run.id, fh)
    pages = render_pages(path, tmp_path)
    assert len(pages) == page_count(path) >= 2
    shares = [ink(p) for p in pages]
    assert all(share > 0.01 for share, _ in shares)  # no blank page
    assert max(colours for _, colours in shares) > 200  # the histograms and bands are drawn


@pytest.mark.slow
def test_many_outputs_split_the_summary_table_over_pages_with_its_header(store, write_model, tmp_path):
    results = ancho.run(str(write_model(WIDE, "wide.py")), sequences=400, seed=1, workers=2, store=store)
    path = tmp_path / "wide.pdf"
    with open(path, "wb") as fh:
        write_pdf(store, results.run_id, fh)
    n = page_count(path)
    assert n > 61 // 4  # a figure per output, four to a page
    text = pdf_text(path)
    for name in results.summary["outputs"]:
        if name.startswith("x"):
            assert re.search(rf"^\s*{name}\s", text, re.M), name
    assert "a_rather_long_outp" in text  # wrapped inside its cell
    table_pages = [i for i in range(1, n + 1) if re.search(r"^\s*x\d\d\s+\d", pdf_text(path, i), re.M)]
    assert len(table_pages) >= 2
    for i in table_pages:  # the header row repeats on every page the table spans
        assert re.search(r"output\s+mean\s+95% CI\s+std", pdf_text(path, i)), i
    assert len(render_pages(path, tmp_path)) == n
    assert "Sixty outputs ≥ 0" in text


def test_a_failed_run_reports_its_error_stored_sequences_and_failures(store, write_model, tmp_path):
    with pytest.raises(RunFailed):
        ancho.run(str(write_model(BROKEN, "broken.py")), sequences=2000, seed=2, workers=2, store=store)
    record = store.list_runs()[0]
    assert record.status == "failed" and record.summary is None
    data = gather(store, record.id)
    path = tmp_path / "failed.pdf"
    with open(path, "wb") as fh:
        write_pdf(store, record.id, fh)
    text = " ".join(pdf_text(path).split())
    assert "failed" in text and "ValueError: draw" in text and "Failures" in text
    assert "max_failures" in text.replace("-", "_") or "max failures" in text
    if data.partial:  # chunks stored before the failure are summarised, and said to be partial
        assert "stored before it ended" in text
        assert shows(text, data.summary["outputs"]["x"]["mean"])
    assert render_pages(path, tmp_path)


def test_a_run_whose_every_sequence_failed_still_has_a_report(store, write_model, tmp_path):
    with pytest.raises(RunFailed):
        ancho.run(
            str(write_model(BROKEN, "broken.py")), params={"rate": 1.0}, sequences=50, seed=2, workers=1, store=store
        )
    record = store.list_runs()[0]
    path = tmp_path / "nothing.pdf"
    with open(path, "wb") as fh:
        write_pdf(store, record.id, fh)
    text = " ".join(pdf_text(path).split())
    assert "nothing to summarise" in text and "ValueError" in text
    nb = build_notebook(store, record.id)
    assert "ValueError" in json.dumps(nb)


def test_docstring_is_read_from_the_unchanged_source_without_running_it(store, write_model):
    path = write_model(
        '''
class Quiet(ancho.Model):
    """Says what it is: ±1 steps, ≥ 0."""

    def sequence(self, rng):
        return {"x": 1.0}
''',
        "quiet.py",
    )
    record = ancho.run(str(path), sequences=10, seed=1, workers=1, store=store).record
    assert model_doc(record) == "Says what it is: ±1 steps, ≥ 0."  # recorded with the run
    store.update_run(record.id, spec={})  # as runs made before local runs recorded the model's description
    assert model_doc(store.get_run(record.id)) == "Says what it is: ±1 steps, ≥ 0."  # read from the unchanged file
    path.write_text(path.read_text() + "\n# edited since\n")
    assert model_doc(store.get_run(record.id)) == ""  # another file now: its docstring may not be this run's
    assert model_doc(record) == "Says what it is: ±1 steps, ≥ 0."  # the recorded one stays the run's


# -- notebooks ----------------------------------------------------------------------
def execute(path: Path):
    """Run every cell of the notebook at ``path`` with a python3 kernel, in its folder; return the executed notebook."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    NotebookClient(nb, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(path.parent)}}).execute()
    return nb


def outputs_text(nb) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            assert out["output_type"] != "error", out
            parts.append(out.get("text", "") + out.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


def images(nb) -> int:
    return sum("image/png" in out.get("data", {}) for cell in nb.cells for out in cell.get("outputs", []))


@pytest.mark.slow
def test_notebook_of_a_small_run_embeds_the_data_and_executes(store, gambler_run, tmp_path):
    path = tmp_path / "gambler.ipynb"
    assert write_notebook(store, gambler_run.id, path) == [path]
    assert not (tmp_path / "gambler.parquet").exists()
    nb = execute(path)
    text = outputs_text(nb)
    assert "[3000 rows x 3 columns]" in text
    assert shows(text, gambler_run.summary["outputs"]["rounds"]["mean"])
    assert "median_rounds_when_won" in text and "rounds>=30" in text
    assert images(nb) == 2  # won, rounds


@pytest.mark.slow
def test_notebook_of_a_large_run_reads_the_parquet_file_beside_it(store, tmp_path):
    sequences = EMBED_MAX_VALUES // 3 + 1000  # sequence, won, rounds: just over the embedding limit
    record = ancho.run(
        str(EXAMPLES / "gambler.py"),
        params={"stake": 2, "goal": 4},
        sequences=sequences,
        seed=5,
        workers=2,
        store=store,
    ).record
    folder = tmp_path / "out"
    folder.mkdir()
    files = write_notebook(store, record.id, folder / "big.ipynb")
    assert files == [folder / "big.ipynb", folder / "big.parquet"]
    assert (folder / "big.ipynb").stat().st_size < 100_000  # the rows are not in it
    text = outputs_text(execute(folder / "big.ipynb"))
    assert f"[{sequences} rows x 3 columns]" in text
    assert shows(text, record.summary["outputs"]["rounds"]["mean"])


@pytest.mark.slow
def test_notebook_of_a_failed_run_executes(store, write_model, tmp_path):
    with pytest.raises(RunFailed):
        ancho.run(str(write_model(BROKEN, "broken.py")), sequences=2000, seed=2, workers=2, store=store)
    record = store.list_runs()[0]
    text = outputs_text(execute(write_notebook(store, record.id, tmp_path / "failed.ipynb")[0]))
    assert "ValueError" in text


# -- the command --------------------------------------------------------------------
@pytest.mark.slow
def test_cli_writes_both_reports(home, tmp_path):
    done = run_cli("run", str(EXAMPLES / "gambler.py"), "-n", "2000", "--seed", "4", "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    pdf, nb = tmp_path / "r.pdf", tmp_path / "r.ipynb"
    done = run_cli("report", summary["run"], "--pdf", str(pdf), "--notebook", str(nb), env={"ANCHO_URL": ""})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(pdf), str(nb)]
    assert shows(pdf_text(pdf), summary["outputs"]["rounds"]["mean"])
    assert json.loads(nb.read_text())["metadata"]["ancho"] == {"run": summary["run"], "data": "embed"}


def test_cli_report_errors_name_what_to_fix(home, tmp_path):
    done = run_cli("report", "nosuchrun", "--pdf", str(tmp_path / "x.pdf"), env={"ANCHO_URL": ""})
    assert done.returncode != 0 and "nosuchrun" in done.stderr and not (tmp_path / "x.pdf").exists()
    done = run_cli("report", "nosuchrun", env={"ANCHO_URL": ""})
    assert done.returncode != 0 and "--pdf FILE" in done.stderr
    done = run_cli("report", "nosuchrun", "--pdf", str(tmp_path / "missing" / "x.pdf"), env={"ANCHO_URL": ""})
    assert done.returncode != 0 and "ancho: error:" in done.stderr


def test_rendered_reports_are_kept_and_rendered_once_for_concurrent_requests():
    import threading
    import time

    from ancho.reports.cache import RenderedCache

    cache, calls = RenderedCache(max_bytes=10), []

    def render():
        calls.append(1)
        time.sleep(0.2)
        return b"12345"

    threads = [threading.Thread(target=cache.get, args=("a", render)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and cache.get("a", render) == b"12345" and len(calls) == 1
    cache.get("b", lambda: b"67890")
    cache.get("c", lambda: b"abcde")  # over 10 bytes: the least recently used ("a") goes
    assert cache.get("a", lambda: b"fresh") == b"fresh"
    assert cache.get("big", lambda: b"x" * 11) == b"x" * 11 and "big" not in cache._items


def test_outputs_with_nan_and_infinities(store, write_model, tmp_path):
    odd = write_model(
        '''
class Odd(ancho.Model):
    """NaN, infinities and a constant."""

    def sequence(self, rng):
        x = rng.random()
        return {"x": float("nan") if x < 0.1 else (float("inf") if x > 0.95 else x), "one": 1.0}
''',
        "odd.py",
    )
    record = ancho.run(str(odd), sequences=500, seed=1, workers=1, store=store).record
    path = tmp_path / "odd.pdf"
    with open(path, "wb") as fh:
        write_pdf(store, record.id, fh)
    text = pdf_text(path)
    assert record.summary["outputs"]["x"]["mean"] is None  # an infinite mean is null in the summary…
    assert re.search(r"^\s*x\s+–", text, re.M)  # …and a dash in the table
    assert render_pages(path, tmp_path)
    nb = build_notebook(store, record.id)
    assert "nan" in json.dumps(nb) and "inf" in json.dumps(nb)
