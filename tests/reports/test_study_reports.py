"""Reports of local studies (read back with pdftotext, run with nbclient) and trajectory fan charts in run reports."""

from __future__ import annotations

import json
import math
import re

import pytest

import ancho
from ancho.errors import InputError, NotFound
from ancho.reports import write_notebook, write_pdf, write_study_notebook, write_study_pdf
from ancho.reports.study_facts import gather_study
from ancho.reports.study_notebook import build_study_notebook

from ..conftest import EXAMPLES, run_cli
from .test_reports import CI, POPPLER, execute, images, outputs_text, page_count, pdf_text, render_pages, shows

pytestmark = pytest.mark.skipif(
    not CI and not POPPLER, reason="poppler-utils (pdftotext, pdftoppm) are needed to read the PDFs back"
)

TINY = '''
class Tiny(ancho.Model):
    """One normal draw around x: a cheap model for studies with many points."""

    x: float = 0.0
    y: float = 0.0
    z: float = 0.0

    def sequence(self, rng):
        return {"v": self.x + self.y - self.z + rng.normal()}
'''

WALK = '''
class Walk(ancho.Model):
    """A ±1 random walk of 30 steps, and its end value: a trajectory output."""

    steps: int = 30
    drift: float = 0.0

    def sequence(self, rng):
        path = np.cumsum(np.where(rng.random(self.steps) < 0.5 + self.drift, 1.0, -1.0))
        return {"walk": path.tolist(), "end": float(path[-1])}
'''


def ruin(stake: int, goal: int, p: float) -> float:
    """The closed-form probability of going broke from ``stake`` before reaching ``goal`` (examples/gambler.py)."""
    if p == 0.5:
        return 1 - stake / goal
    r = (1 - p) / p
    return 1 - (1 - r**stake) / (1 - r**goal)


@pytest.fixture
def grid_study(store):
    return ancho.study(
        str(EXAMPLES / "gambler.py"),
        design=ancho.grid(p=[0.45, 0.5, 0.55]),
        params={"stake": 3, "goal": 10},
        sequences=2000,
        seed=7,
        workers=2,
        store=store,
        targets=["rounds>=30"],
    )


def test_study_pdf_holds_each_points_numbers(store, grid_study, tmp_path):
    path = tmp_path / "study.pdf"
    with path.open("wb") as sink:
        write_study_pdf(store, grid_study.study_id, sink)
    text = pdf_text(path)
    flat = " ".join(text.split())
    assert grid_study.study_id in flat and "Gambler" in flat and "grid" in flat and "rounds>=30" in flat
    frame = grid_study.frame
    assert len(frame) == 3
    for row in frame.to_dict(orient="records"):
        # the point's row: its number, p, then each output's mean and interval and the target's probability
        line = next(x for x in text.splitlines() if x.split()[:2] == [str(row["point"]), f"{row['p']:g}"])
        for column in ("won.mean", "won.ci95_low", "won.ci95_high", "rounds.mean", "rounds.ci95_low"):
            assert shows(line, row[column]), (column, line)
        # and the numbers are right: P(won) = 1 - ruin, within 4 standard errors of the closed form
        exact = 1 - ruin(3, 10, row["p"])
        assert abs(row["won.mean"] - exact) <= 4 * math.sqrt(exact * (1 - exact) / 2000)
        assert any(shows(x, row["p(rounds>=30)"]) for x in text.splitlines() if x.split()[:1] == [str(row["point"])])
    assert "Pictures" in text and "against p" in flat


def test_a_200_point_table_splits_across_pages_with_its_header(store, write_model, tmp_path):
    model = write_model(TINY)
    study = ancho.study(
        f"{model}:Tiny", design=ancho.points([{"x": k} for k in range(200)]), sequences=8, seed=1, store=store
    )
    path = tmp_path / "study.pdf"
    with path.open("wb") as sink:
        write_study_pdf(store, study.study_id, sink)
    pages = page_count(path)
    seen: list[int] = []
    table_pages = 0
    for page in range(1, pages + 1):
        lines = pdf_text(path, page).splitlines()
        rows = [int(x.split()[0]) for x in lines if re.match(r"^\s*\d+\s+\d+(\.\d+)?\s", x)]
        if not rows:
            continue
        table_pages += 1
        head = next(i for i, x in enumerate(lines) if x.split()[:3] == ["point", "x", "v"])  # the header, repeated
        assert head < min(i for i, x in enumerate(lines) if re.match(r"^\s*\d+\s+\d+(\.\d+)?\s", x))
        seen += rows
    assert table_pages >= 4  # ~55 rows a page
    assert seen == list(range(200))  # every point once, in order, none lost at a page break
    v = study.frame["v.mean"]
    text = pdf_text(path)
    assert all(shows(text, m) for m in v.iloc[[0, 99, 199]])


@pytest.mark.slow
@pytest.mark.parametrize("varied", [2, 3])
def test_two_parameters_draw_a_heatmap_and_more_parallel_coordinates(store, write_model, tmp_path, varied):
    model = write_model(TINY)
    ranges = {"x": (0.0, 1.0), "y": (0.0, 2.0), "z": (-1.0, 1.0)}
    design = ancho.lhs(12, **dict(list(ranges.items())[:varied]))
    study = ancho.study(f"{model}:Tiny", design=design, sequences=20, seed=2, store=store)
    path = tmp_path / "study.pdf"
    with path.open("wb") as sink:
        write_study_pdf(store, study.study_id, sink)
    flat = " ".join(pdf_text(path).split())
    assert ("mean over x and y" in flat) if varied == 2 else ("Parallel coordinates" in flat)
    assert render_pages(path, tmp_path)  # every page renders


@pytest.mark.slow
def test_sobol_study_reports_sensitivity_and_comparisons_with_a_baseline(store, write_model, tmp_path):
    model = write_model(TINY)
    study = ancho.study(
        f"{model}:Tiny", design=ancho.sobol(8, x=(0.0, 4.0), y=(0.0, 0.1)), sequences=50, seed=3, store=store
    )
    data = gather_study(store, study.study_id, baseline=0)
    path = tmp_path / "study.pdf"
    with path.open("wb") as sink:
        write_study_pdf(store, study.study_id, sink, baseline=0)
    text = pdf_text(path)
    flat = " ".join(text.split())
    sens = study.summary["sensitivity"]["v"]
    assert "Sensitivity" in flat and "Noise share" in flat
    row = next(x for x in text.splitlines() if x.split()[:1] == ["x"] and "[" in x)
    assert shows(row, sens["S1"]["x"]["value"]) and shows(row, sens["ST"]["x"]["value"])
    if sens.get("warning"):
        assert " ".join(sens["warning"].split()[:6]) in flat
    assert "Comparison with point 0" in flat
    part = text[text.index("Comparison with point 0") :]
    for c in data.comparison["comparisons"]:
        d = c["outputs"]["v"]
        line = next(x for x in part.splitlines() if x.split()[:1] == [str(c["point"])])
        assert shows(line, d["difference"]) and shows(line, d["ci95"][0]) and shows(line, d["ci95"][1])
        assert line.rstrip().endswith("*") == (d["p_value_holm"] < 0.05)
    with pytest.raises(InputError, match="give a point from 0 to"):
        gather_study(store, study.study_id, baseline=len(study.frame))


FRAIL = '''
class Frail(ancho.Model):
    """Fails above x = 1.5; eight outputs, more than fit across a page with their intervals."""

    x: float = 0.0

    def sequence(self, rng):
        if self.x > 1.5:
            raise ValueError("x too large")
        return {f"out{k}": self.x * k + rng.normal() for k in range(8)}
'''


def test_a_failed_study_and_a_wide_points_table(store, write_model, tmp_path):
    model = write_model(FRAIL)
    study = ancho.study(f"{model}:Frail", design=ancho.grid(x=[0, 1, 2]), sequences=30, seed=1, store=store)
    assert study.status == "failed"
    study_id = study.study_id
    path = tmp_path / "frail.pdf"
    with path.open("wb") as sink:
        write_study_pdf(store, study_id, sink, baseline=0)
    text = pdf_text(path)
    flat = " ".join(text.split())
    assert "The study failed" in flat and "x too large" in flat
    groups = int(re.search(r"Points, table 1 of (\d+)", flat).group(1))
    assert groups >= 2  # eight means with intervals do not fit across A4
    heads = [x.split() for x in text.splitlines() if x.split()[:2] == ["point", "x"]]
    assert len(heads) == groups  # each column group repeats the point and its parameters
    assert {t for h in heads for t in h if t.startswith("out")} == {f"out{k}" for k in range(8)}
    failed = [x.split() for x in text.splitlines() if x.split()[:2] == ["2", "2"]]
    assert len(failed) == groups and all(set(row[2:]) == {"–"} for row in failed)  # no results: dashes, no numbers


def test_a_run_id_is_not_a_study(store, grid_study):
    run_id = grid_study.runs[0].run_id
    with pytest.raises(NotFound, match="is a run, not a study"):
        gather_study(store, run_id)
    with pytest.raises(NotFound, match="no study 'nosuch'"):
        gather_study(store, "nosuch")


@pytest.mark.slow
def test_study_notebook_executes_and_loads_a_point(store, grid_study, tmp_path):
    path = tmp_path / "study.ipynb"
    assert write_study_notebook(store, grid_study.study_id, path) == [path]
    nb = execute(path)
    assert nb.metadata["ancho"] == {"study": grid_study.study_id, "data": "local"}
    text = outputs_text(nb)
    assert "[2000 rows x 3 columns]" in text  # load_point(0): the first point's sequences
    assert shows(text, grid_study.frame["rounds.mean"].iloc[1])  # the points table
    assert images(nb) == 3  # won, rounds, p(rounds>=30) against p


# -- trajectories in run reports ------------------------------------------------------
@pytest.fixture
def walk_run(store, write_model):
    model = write_model(WALK)
    return ancho.run(f"{model}:Walk", sequences=400, seed=5, store=store)


def test_run_pdf_has_a_fan_chart_per_trajectory(store, walk_run, tmp_path):
    path = tmp_path / "walk.pdf"
    with path.open("wb") as sink:
        write_pdf(store, walk_run.run_id, sink)
    flat = " ".join(pdf_text(path).split())
    assert "Trajectories" in flat and "50% band (p25 to p75)" in flat
    assert render_pages(path, tmp_path)


@pytest.mark.slow
def test_run_notebook_with_a_trajectory_executes_and_draws_its_fan(store, walk_run, tmp_path):
    path = tmp_path / "walk.ipynb"
    write_notebook(store, walk_run.run_id, path)
    nb = execute(path)
    text = outputs_text(nb)
    assert "[400 rows x 2 columns]" in text  # sequence and end: the trajectory is in the fan's cell, not the CSV
    assert images(nb) == 2  # end's histogram and running mean, walk's fan
    paths = json.loads(json.dumps(nb.cells[-4].source))  # the fan cell holds the first sequences' paths
    assert "PATHS" in paths


@pytest.mark.slow
def test_a_study_of_trajectories_draws_each_points_mean_path(store, write_model, tmp_path):
    model = write_model(WALK)
    drifts = [-0.1, 0.0, 0.1]
    study = ancho.study(f"{model}:Walk", design=ancho.grid(drift=drifts), sequences=500, seed=4, store=store)
    data = gather_study(store, study.study_id)
    paths = data.paths["walk"]
    assert [p.point for p in paths] == [0, 1, 2] and all(p.steps == list(range(30)) for p in paths)
    for p, drift in zip(paths, drifts):
        # a ±1 walk with P(+1) = 0.5 + drift: after k steps, mean k·2·drift and variance k·(1 - (2·drift)²)
        mu = 2 * drift
        for step in (0, 9, 29):
            k = step + 1
            assert abs(p.mean[step] - k * mu) <= 4 * math.sqrt(k * (1 - mu * mu) / 500)
    path = tmp_path / "walks.pdf"
    with path.open("wb") as sink:
        write_study_pdf(store, study.study_id, sink)
    flat = " ".join(pdf_text(path).split())
    assert "Mean paths" in flat and "coloured by drift" in flat
    assert render_pages(path, tmp_path)
    notebook = tmp_path / "walks.ipynb"
    write_study_notebook(store, study.study_id, notebook)
    nb = execute(notebook)
    assert images(nb) == 2  # end against drift, and walk's mean paths
    assert shows(outputs_text(nb), study.frame["end.mean"].iloc[2])


@pytest.mark.slow
@pytest.mark.parametrize("lengths", [(20, 10), (10, 20)])
def test_study_notebook_keeps_each_points_trajectory_length(store, write_model, tmp_path, lengths):
    """A parameter may set a trajectory's length: point 1's path was cut to point 0's, or the notebook crashed."""
    import nbformat

    model = write_model(WALK)
    study = ancho.study(
        f"{model}:Walk",
        design=ancho.grid(steps=list(lengths)),
        params={"drift": 0.1},
        sequences=500,
        seed=3,
        store=store,
    )
    assert build_study_notebook(store, study.study_id, "api", api_url="http://127.0.0.1:1")  # the server's too
    path = tmp_path / "walks.ipynb"
    write_study_notebook(store, study.study_id, path)
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(
        nbformat.v4.new_code_cell(
            "print('LENGTHS', json.dumps({p: [STEPS['walk'][p], MEAN_PATHS['walk'][p]] for p in MEAN_PATHS['walk']}))"
        )
    )
    nb.cells[-1].source = "import json\n" + nb.cells[-1].source
    nbformat.write(nb, path)
    nb = execute(path)
    assert images(nb) == 2  # end against steps, and walk's mean paths
    line = next(x for x in outputs_text(nb).splitlines() if x.startswith("LENGTHS "))
    drawn = json.loads(line.removeprefix("LENGTHS "))
    for point, n in enumerate(lengths):
        steps, mean = drawn[str(point)]
        assert steps == list(range(n)) and len(mean) == n
        # a ±1 walk with P(+1) = 0.6: after k steps, mean 0.2·k and variance 0.96·k
        assert abs(mean[-1] - 0.2 * n) <= 4 * math.sqrt(0.96 * n / 500)


# -- the command ----------------------------------------------------------------------
@pytest.mark.slow
def test_cli_writes_a_studys_pdf_and_notebook(home, store, grid_study, tmp_path):
    pdf, nb = tmp_path / "s.pdf", tmp_path / "s.ipynb"
    sid = grid_study.study_id
    done = run_cli("report", sid, "--pdf", str(pdf), "--notebook", str(nb), env={"ANCHO_URL": ""})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(pdf), str(nb)]
    assert shows(pdf_text(pdf), grid_study.frame["rounds.mean"].iloc[0])
    assert json.loads(nb.read_text())["metadata"]["ancho"] == {"study": sid, "data": "local"}
    done = run_cli("report", sid, "--pdf", str(tmp_path / "x.pdf"), "--baseline", "9", env={"ANCHO_URL": ""})
    assert done.returncode != 0 and "baseline 9" in done.stderr and not (tmp_path / "x.pdf").exists()
    run_id = grid_study.runs[0].run_id
    done = run_cli("report", run_id, "--pdf", str(tmp_path / "x.pdf"), "--baseline", "0", env={"ANCHO_URL": ""})
    assert done.returncode != 0 and "is a run" in done.stderr and not (tmp_path / "x.pdf").exists()
