"""`ancho run`, `runs`, `show`, `export` as a user types them (real subprocesses)."""

import json

import pyarrow.parquet as pq
import pytest

from ..conftest import EXAMPLES, run_cli

GAMBLER = str(EXAMPLES / "gambler.py")


def test_run_json_prints_exactly_the_summary(home):
    p = run_cli(
        "run",
        GAMBLER,
        "--sequences",
        "2000",
        "--seed",
        "3",
        "--param",
        "stake=3",
        "-p",
        "goal=10",
        "-p",
        "p=0.45",
        "--target",
        "rounds>=30",
        "--json",
    )
    assert p.returncode == 0, p.stderr
    summary = json.loads(p.stdout)
    assert p.stdout.count("\n") == 1
    assert summary["sequences"] == 2000 and summary["seed"] == 3
    assert summary["params"] == {"stake": 3, "goal": 10, "p": 0.45}
    assert summary["targets"][0]["expr"] == "rounds>=30"
    shown = run_cli("show", summary["run"], "--json")
    assert json.loads(shown.stdout) == summary


def test_run_prints_tables_and_runs_lists_it(home):
    p = run_cli("run", GAMBLER, "-n", "500", "--seed", "1", "-t", "rounds>=30")
    assert p.returncode == 0, p.stderr
    assert (
        "rounds" in p.stdout
        and "95% CI" in p.stdout
        and "rounds>=30" in p.stdout
        and "median_rounds_when_won" in p.stdout
    )
    listed = run_cli("runs")
    assert "Gambler" in listed.stdout and "succeeded" in listed.stdout
    records = json.loads(run_cli("runs", "--json").stdout)
    assert records[0]["status"] == "succeeded" and records[0]["done"] == 500
    assert "summary" not in records[0]  # (a listing: `ancho show RUN --json` has it)


def test_run_a_folder_and_a_class(home, two_models):
    folder = two_models
    p = run_cli("run", f"{folder}:A", "-n", "50", "--json")
    assert p.returncode == 0, p.stderr
    assert list(json.loads(p.stdout)["outputs"]) == ["a"]
    p = run_cli("run", str(folder), "-n", "50")
    assert p.returncode == 2 and "several models" in p.stderr and ":ClassName" in p.stderr


def test_run_and_show_draw_each_trajectory(home, write_model):
    """A batch model whose every sequence's path is its step number, doubled on odd sequences: the mean path is
    1.5 × the step exactly (a rising line), first 0, last 1.5 × 9, highest at the last step."""
    path = write_model(
        """
        class Ramp(ancho.Model):
            def sequences(self, rng, n):
                return {"path": np.outer(np.resize([1.0, 2.0], n), np.arange(10.0))}
        """
    )
    p = run_cli("run", str(path), "-n", "1000")
    assert p.returncode == 0, p.stderr
    row = next(line for line in p.stdout.splitlines() if line.startswith("path"))
    assert row.split() == ["path", "10", "▁▂▃▃▄▅▆▆▇█", "0", "13.5", "13.5", "9", "1,000"], p.stdout
    assert "outputs" not in p.stdout  # (no number outputs: no empty table)
    run_id = json.loads(run_cli("runs", "--json").stdout)[0]["id"]
    assert row in run_cli("show", run_id).stdout


def test_a_batch_model_with_heavy_blocks_is_told_which_block_to_set(home, write_model):
    """16,384 sequences × 2,100 steps × 8 bytes = 262.5 MiB a block, past 256 MiB: the advice is a power of two
    under 32 MiB a block (1,024: 16.4 MiB), on stderr in the terminal's own words; stdout stays the summary."""
    path = write_model(
        """
        class Heavy(ancho.Model):
            block = 16_384

            def sequences(self, rng, n):
                return {"path": np.zeros((n, 2_100))}
        """
    )
    p = run_cli("run", str(path), "-n", "10", "-w", "1", "--json")
    assert p.returncode == 0, p.stderr
    assert p.stderr.splitlines() == [
        "ancho: warning: model Heavy: one block of 16,384 sequences is 262.5 MB of outputs; every sequences() call "
        "computes a whole block, even for a shorter run. Set `block = 1,024` on the class (16.4 MB a block; a run's "
        "results depend on its block: docs/models.md)"
    ]
    assert json.loads(p.stdout)["trajectories"]["path"]["count"] == 10


def test_export_csv_and_parquet(home, tmp_path):
    summary = json.loads(run_cli("run", GAMBLER, "-n", "300", "--seed", "2", "--json").stdout)
    run_id = summary["run"]
    csv = run_cli("export", run_id, "--format", "csv").stdout.splitlines()
    assert csv[0] == "sequence,won,rounds" and len(csv) == 301
    assert csv[1].split(",")[0] == "0" and csv[1].split(",")[1] in ("true", "false")
    out = tmp_path / "r.parquet"
    assert run_cli("export", run_id, "--format", "parquet", "-o", str(out)).returncode == 0
    table = pq.read_table(out)
    assert table.num_rows == 300 and table.column_names == ["sequence", "won", "rounds"]
    assert table.column("rounds").to_pylist() == [int(line.split(",")[2]) for line in csv[1:]]


def one_line_error(p, *needles):
    assert p.returncode != 0
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("ancho: error: "), p.stderr
    for n in needles:
        assert n in lines[0], lines[0]


@pytest.mark.parametrize(
    "args,needles",
    [
        (["-p", "stak=3"], ["unknown parameter 'stak'", "did you mean 'stake'"]),
        (["-p", "stake=three"], ["parameter 'stake' expects int, got 'three'"]),
        (["-p", "stake"], ["--param 'stake' is not NAME=VALUE"]),
        (["--sequences", "0"], ["sequences must be between 1"]),
        (["--sequences", "-5"], ["sequences must be between 1"]),
        (["--target", "rounds=>3"], ["cannot read target 'rounds=>3'"]),
        (["--target", "nope>=3"], ["target 'nope>=3' names output 'nope'", "won, rounds"]),
        (["--until", "mean(rounds)"], ["cannot read precision goal"]),
        (["--store", "cassandra://u:p@127.0.0.1:1"], []),
    ],
)
def test_bad_options_are_one_line_errors(home, args, needles):
    p = run_cli("run", GAMBLER, "-n", "100", *args)
    one_line_error(p, *needles)


@pytest.mark.parametrize(
    "code,needles",
    [
        ("x = 1\n", ["no ancho.Model subclass found"]),
        (
            "class M(ancho.Model):\n    def sequence(self, rng)\n        return {}\n",
            ["syntax error in model file 'model.py' line"],
        ),
        ("import not_a_module_xyz\n", ["failed to import (line", "ModuleNotFoundError"]),
        (
            "class M(ancho.Model):\n    def sequence(self, rng):\n        return [1]\n",
            ["of M returned list, not a mapping"],
        ),
        (
            "class M(ancho.Model):\n    def sequence(self, rng):\n        return {'x': 'a'}\n",
            ["output 'x' of sequence", "of M is str"],
        ),
        (
            "class M(ancho.Model):\n    def sequence(self, rng):\n        return {'x': 1/0}\n",
            ["failed: ZeroDivisionError: division by zero", "(every sequence so far failed: "],
        ),
    ],
)
def test_bad_models_are_one_line_errors_and_never_succeed(home, write_model, code, needles):
    path = write_model(code)
    p = run_cli("run", str(path), "-n", "20")
    one_line_error(p, *needles)
    records = json.loads(run_cli("runs", "--json").stdout)
    assert all(r["status"] != "succeeded" for r in records)


def test_missing_path_and_run(home):
    one_line_error(run_cli("run", "/nonexistent/model.py"), "model path '/nonexistent/model.py' does not exist")
    for args in (["show", "nope"], ["export", "nope"], ["export", "../../etc", "--format", "csv"]):
        one_line_error(run_cli(*args), f"no run or study '{args[1]}'", "ancho runs", "ancho studies")
    one_line_error(run_cli("export", "x", "--format", "xml"), "--format 'xml'")


def test_failed_run_is_shown_with_its_reason(home, write_model):
    path = write_model("class M(ancho.Model):\n    def sequence(self, rng):\n        return {'x': 1/0}\n")
    run_cli("run", str(path), "-n", "20")
    run_id = json.loads(run_cli("runs", "--json").stdout)[0]["id"]
    p = run_cli("show", run_id)
    assert p.returncode == 1 and "ZeroDivisionError" in p.stdout
    p = run_cli("show", run_id, "--failures")
    assert ": ZeroDivisionError: division by zero" in p.stdout and "1/0" in p.stdout
    assert "chunk.py" not in p.stdout  # the traceback starts in the user's code


def test_text_that_looks_like_markup_is_printed_as_written(home, write_model):
    """``-p 'label=[/]'`` ended ``ancho run`` in Rich's MarkupError traceback, and so did ``ancho show --failures`` of
    a sequence whose error said ``[/]``."""
    path = write_model(
        """
        class Labelled(ancho.Model):
            label: str = "x"

            def sequence(self, rng):
                if rng.random() < 0.05:
                    raise ValueError("[/] is not a [bold]tag")
                return {"y": 1.0}
        """
    )
    p = run_cli("run", str(path), "-n", "200", "--seed", "1", "-p", "label=[/]", "--max-failures", "200")
    assert p.returncode == 0, p.stderr
    assert "label='[/]'" in p.stdout and "sequences failed" in p.stdout, p.stdout
    run_id = json.loads(run_cli("runs", "--json").stdout)[0]["id"]
    p = run_cli("show", run_id, "--failures")
    assert p.returncode == 0, p.stderr
    assert ": ValueError: [/] is not a [bold]tag" in p.stdout, p.stdout


def test_max_failures_allows_some(home, write_model):
    path = write_model(
        "class M(ancho.Model):\n    def sequence(self, rng):\n        if rng.random() < 0.1:\n            raise ValueError('x')\n        return {'x': 1.0}\n"
    )
    p = run_cli("run", str(path), "-n", "200", "--seed", "1", "--max-failures", "200", "--json")
    assert p.returncode == 0, p.stderr
    assert 0 < json.loads(p.stdout)["failures"] < 60


def test_model_prints_do_not_corrupt_json(home, write_model):
    path = write_model(
        "class M(ancho.Model):\n    def sequence(self, rng):\n        print('hello from the model')\n        return {'x': 1.0}\n"
    )
    p = run_cli("run", str(path), "-n", "5", "--json")
    assert p.returncode == 0 and json.loads(p.stdout)["outputs"]["x"]["count"] == 5
    assert "hello from the model" in p.stderr


@pytest.mark.slow
def test_run_from_a_git_repository(home, tmp_path):
    import shutil
    import subprocess

    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy(GAMBLER, repo / "model.py")
    git = ["git", "-c", "user.email=t@example.invalid", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], cwd=repo, check=True)
    subprocess.run([*git, "add", "."], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "one"], cwd=repo, check=True)
    subprocess.run([*git, "tag", "v1"], cwd=repo, check=True)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    p = run_cli("run", f"git+file://{repo}@v1:model.py:Gambler", "-n", "300", "--seed", "2", "--json")
    assert p.returncode == 0, p.stderr
    local = json.loads(run_cli("run", GAMBLER, "-n", "300", "--seed", "2", "--json").stdout)
    assert json.loads(p.stdout)["outputs"] == local["outputs"]
    record = json.loads(run_cli("runs", "--json").stdout)[1]
    assert record["source"] == f"git:file://{repo}@{commit}" and record["entry"] == "model.py:Gambler"
    one_line_error(run_cli("run", f"git+file://{repo}@v9"), "ref 'v9' not found")
