"""``ancho shell RUN``: IPython with a run's results preloaded, for a run on this machine and one on a server."""

from __future__ import annotations

import json

import pytest

from ..conftest import EXAMPLES, run_cli
from .conftest import submit, wait_run

GAMBLER = str(EXAMPLES / "gambler.py")
PROBE = (
    'print(type(results).__name__, results.run_id, len(frame), summary["sequences"], repr(float(frame.rounds.mean())))'
)


def test_version():
    p = run_cli("--version")
    assert p.returncode == 0 and p.stdout.strip().startswith("ancho ") and p.stdout.split()[1][0].isdigit()


def test_shell_on_a_local_run(home):
    made = run_cli("run", GAMBLER, "-n", "500", "--seed", "4", "--json")
    assert made.returncode == 0, made.stderr
    summary = json.loads(made.stdout)
    p = run_cli("shell", summary["run"], "-c", PROBE, env={"ANCHO_URL": ""})
    assert p.returncode == 0, p.stderr
    kind, run_id, shape, sequences, mean = p.stdout.strip().splitlines()[-1].split(" ", 4)
    assert (kind, run_id, sequences) == ("Results", summary["run"], "500")
    assert float(mean) == pytest.approx(summary["outputs"]["rounds"]["mean"], rel=1e-9)


def test_shell_reads_piped_commands(home):
    made = run_cli("run", GAMBLER, "-n", "100", "--seed", "4", "--json")
    run_id = json.loads(made.stdout)["run"]
    import subprocess

    from ..conftest import ANCHO

    p = subprocess.run(
        [ANCHO, "shell", run_id], input="print('rows', len(frame))\n", capture_output=True, text=True, timeout=120
    )
    assert p.returncode == 0, p.stderr
    assert "rows 100" in p.stdout and "Loaded: results, frame" in p.stdout


def test_shell_on_a_server_run(server, alice, gambler_upload):
    run_id = submit(
        alice, {"model": {"upload": gambler_upload, "entry": "model.py:Gambler"}, "sequences": 300, "seed": 5}
    )
    assert wait_run(alice, run_id)["status"] == "succeeded"
    env = {"ANCHO_URL": server.url, "ANCHO_TOKEN": server.tokens["alice"]}
    p = run_cli("shell", run_id, "-c", PROBE, env=env)
    assert p.returncode == 0, p.stderr
    kind, got_id, _, sequences, _ = p.stdout.strip().splitlines()[-1].split(" ", 4)
    assert (kind, got_id, sequences) == ("ServerRun", run_id, "300")
    # another user's run is not theirs to open
    other = run_cli("shell", run_id, "-c", "pass", env={**env, "ANCHO_TOKEN": server.tokens["bob"]})
    assert other.returncode != 0 and f"no run '{run_id}'" in other.stderr, other.stderr
