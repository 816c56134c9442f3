"""The study commands end to end: ``ancho study``, resume after SIGKILL, ``studies``, ``show``/``export``, ``compare``."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import ANCHO, run_cli
from tests.studies.test_study import SLOW

GAMBLER = str(Path(__file__).resolve().parents[2] / "examples" / "gambler.py")


def test_study_json_is_the_summary_and_export_gives_the_points(home):
    out = run_cli("study", GAMBLER, "--grid", "p=0.45,0.5", "--param", "stake=3", "-n", "200", "--seed", "4",
                  "--target", "rounds>=30", "--workers", "1", "--json")  # fmt: skip
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert (summary["status"], summary["params"], len(summary["points"])) == ("succeeded", {"stake": 3}, 2)
    shown = run_cli("show", summary["study"], "--json")
    assert json.loads(shown.stdout) == summary
    csv = run_cli("export", summary["study"]).stdout.splitlines()
    assert csv[0].startswith("point,p,won.mean,") and len(csv) == 3
    assert summary["study"] in run_cli("studies").stdout
    # and as tables: a row per point, its varied parameter, status and each output's mean (as ``ancho show RUN``)
    text = run_cli("show", summary["study"]).stdout
    header = next(line.split() for line in text.splitlines() if line.split()[:1] == ["point"])
    assert header[:3] == ["point", "p", "status"], text
    for point in summary["points"]:
        row = next(line.split() for line in text.splitlines() if line.split()[:1] == [str(point["point"])])
        cells = dict(zip(header, row, strict=False))
        assert cells["p"] == f"{point['params']['p']:g}" and cells["status"] == "succeeded", text
        assert cells["won"] == f"{point['outputs']['won']['mean']:.5g}", text
    assert "params every point shares: stake=3" in text


def test_bad_input_is_one_line_naming_the_option(home, tmp_path):
    bad = tmp_path / "points.csv"
    bad.write_text("p,q\n0.4,1\n")
    cases = {
        ("--sobol", "100", "--range", "p=0.4:0.6"): "--sobol",
        ("--random", "4", "--range", "p=0.6:0.4"): "--random",
        ("--grid", "goal=a,b"): "--grid: design value for 'goal'",
        ("--points", str(bad)): "--points",
        ("--grid", "p="): "--grid 'p=' is not NAME=V1,V2",
        ("--lhs", "0", "--range", "p=0.4:0.6"): "--lhs",
    }
    for args, expected in cases.items():
        out = run_cli("study", GAMBLER, *args)
        assert out.returncode != 0 and expected in out.stderr, (args, out.stderr)
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert run_cli("studies", "--json").stdout.strip() == "[]"


def test_compare_paired_and_unpaired_variance_reduction(home):
    def run(p, seed):
        out = run_cli("run", GAMBLER, "--param", f"p={p}", "--param", "stake=5", "--param", "goal=10", "-n", "4000",
                      "--seed", str(seed), "--workers", "1", "--json")  # fmt: skip
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)["run"]

    a, b, c = run(0.45, 7), run(0.5, 7), run(0.5, 8)
    paired = json.loads(run_cli("compare", a, b, "--target", "rounds>=30", "--json").stdout)
    assert paired["paired"] is True and paired["outputs"]["won"]["variance_reduction"] > 1
    assert paired["targets"][0]["expr"] == "rounds>=30"
    unpaired = json.loads(run_cli("compare", a, c, "--json").stdout)
    assert unpaired["paired"] is False and unpaired["outputs"]["won"]["variance_reduction"] is None
    # the paired interval is narrower for the same difference
    width = lambda r: r["outputs"]["won"]["ci95"][1] - r["outputs"]["won"]["ci95"][0]  # noqa: E731
    assert width(paired) < width(unpaired)
    # and as tables: the heading, each output's two means and difference as the JSON has them
    text = run_cli("compare", a, b, "--target", "rounds>=30").stdout
    assert text.startswith(f"{b} − {a}  ·  paired (same seed)  ·  4,000 sequences"), text
    won = next(line.split() for line in text.splitlines() if line.startswith("won "))
    o = paired["outputs"]["won"]
    assert won[1:4] == [f"{o['mean_a']:.5g}", f"{o['mean_b']:.5g}", f"{o['difference']:+.5g}"], text


def test_resume_after_sigkill_keeps_finished_points(home, write_model):
    """Killed once two points have succeeded: ten points, so that eight (~5 s) are still to run while a loaded
    machine's ``ancho studies`` polls (with six, ~2.4 s were left: it failed once on a 2-core machine under load)."""
    path = write_model(SLOW)
    args = [ANCHO, "study", str(path), "--grid", "x=0,1,2,3,4,5,6,7,8,9", "-p", "pause=0.002"]
    args += ["-n", "300", "--seed", "2", "--workers", "1"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 60
    study = None
    while time.time() < deadline:
        out = run_cli("studies", "--json")
        records = json.loads(out.stdout or "[]")
        if records and sum(p["status"] == "succeeded" for p in records[0]["points"]) >= 2:
            study = records[0]
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert study is not None
    before = json.loads(run_cli("studies", "--json").stdout)[0]
    assert before["status"] == "running"
    kept = {p["point"]: p["run"] for p in before["points"] if p["status"] == "succeeded"}
    out = run_cli("study", "--resume", before["id"], "--workers", "1", "--json")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["status"] == "succeeded" and all(p["sequences"] == 300 for p in summary["points"])
    for point, run in kept.items():
        assert summary["points"][point]["run"] == run
        assert json.loads(run_cli("show", run, "--json").stdout)["sequences"] == 300


def test_compare_targets_on_a_trajectory(home, write_model):
    """Two runs of a batch walk (a drift of 0 and of 0.3, the same seed): ``max(path)>=10`` is compared paired, each
    probability the share of stored paths reaching 10 (checked against the runs' own stored paths); a bare
    trajectory target is a one-line error saying how to reduce it."""
    from ancho.stores import open_store

    path = write_model(
        """
        class Walk(ancho.Model):
            drift: float = 0.0
            block = 64

            def sequences(self, rng, n):
                path = np.cumsum(rng.standard_normal((n, 50)) + self.drift, axis=1)
                return {"path": path, "final": path[:, -1]}
        """
    )
    ids = []
    for drift in ("0", "0.3"):
        out = run_cli("run", str(path), "-n", "500", "--seed", "3", "-p", f"drift={drift}", "--json")
        assert out.returncode == 0, out.stderr
        ids.append(json.loads(out.stdout)["run"])
    got = json.loads(run_cli("compare", *ids, "--target", "max(path)>=10", "--json").stdout)
    (row,) = got["targets"]
    store = open_store(str(home))
    reach = [(store.read_column(i, "path").max(axis=1) >= 10).mean() for i in ids]
    assert got["paired"] and row["expr"] == "max(path)>=10" and [row["probability_a"], row["probability_b"]] == reach
    assert reach[1] > reach[0] and row["difference"] == pytest.approx(reach[1] - reach[0])
    bad = run_cli("compare", *ids, "--target", "path>5")
    assert bad.returncode == 2 and "use max(path), min(path) or last(path)" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr
