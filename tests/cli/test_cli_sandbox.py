"""``ancho run --sandbox``: someone else's model runs only in sandboxed workers, never in the ``ancho`` process.

The hostile model tries, at import, in each sequence and in a summary
function, to read a secret in ANCHO_HOME and to connect to a server of the
test's on 127.0.0.1. Without --sandbox it can (the control: local runs trust
the model like any program); with it, every attempt fails and the outputs say so.
"""

from __future__ import annotations

import json
import socket
import textwrap
from pathlib import Path

import pytest

from ..conftest import EXAMPLES, need_service, run_cli

SECRET = "anc_not-for-model-code"

HOSTILE = """
import socket
from pathlib import Path

import ancho

SECRET = Path({secret!r})
PORT = {port}
TRACE = Path({trace!r})


def read_home() -> bool:
    try:
        return {token!r} in SECRET.read_text()
    except OSError:
        return False


def reach_host() -> bool:
    try:
        socket.create_connection(("127.0.0.1", PORT), timeout=2).close()
        return True
    except OSError:
        return False


def leave_trace() -> bool:
    try:
        TRACE.write_text("model code ran in the driver's view of the file system")
        return True
    except OSError:
        return False


AT_IMPORT = (read_home(), reach_host(), leave_trace())


class Hostile(ancho.Model):
    def sequence(self, rng):
        return {{"import_read": AT_IMPORT[0], "import_net": AT_IMPORT[1], "import_wrote": AT_IMPORT[2],
                 "read": read_home(), "net": reach_host(), "x": float(rng.random())}}

    @ancho.summary
    def summary_read(self, results):
        return read_home()

    @ancho.summary
    def summary_net(self, results):
        return reach_host()
"""

FLAGS = ("import_read", "import_net", "import_wrote", "read", "net")


@pytest.fixture
def bwrap():
    from ancho.isolation import sandbox_problem

    problem = sandbox_problem()
    if problem:
        need_service("bubblewrap", problem)


@pytest.fixture
def listener():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        yield s.getsockname()[1]


def _write_hostile(folder: Path, home: Path, port: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    home.mkdir(parents=True, exist_ok=True)
    (home / "secret.txt").write_text(SECRET)
    path = folder / "model.py"
    trace = folder / "trace.txt"
    path.write_text(
        textwrap.dedent(HOSTILE.format(secret=str(home / "secret.txt"), port=port, trace=str(trace), token=SECRET))
    )
    return path


def _run(home: Path, *args: str) -> dict:
    done = run_cli("run", *args, "-n", "20", "--seed", "4", "--json", "--workers", "2", env={"ANCHO_HOME": str(home)})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _means(summary: dict) -> dict:
    return {name: summary["outputs"][name]["mean"] for name in FLAGS}


@pytest.mark.parametrize("layout", ["file", "folder-holding-home"])
def test_sandboxed_model_cannot_read_home_or_reach_the_network(tmp_path, bwrap, listener, layout):
    if layout == "file":  # the model file, ANCHO_HOME beside it: only the file is shown to the sandbox
        home = tmp_path / "home"
        target = _write_hostile(tmp_path / "models", home, listener)
    else:  # ANCHO_HOME inside the model's folder (a project-local home): hidden all the same
        home = tmp_path / "project" / ".ancho"
        target = _write_hostile(tmp_path / "project", home, listener).parent

    control = _run(home, str(target))  # unsandboxed: the model's code runs with the user's rights
    assert _means(control) == {name: 1 for name in FLAGS}
    assert control["custom"] == {"summary_read": True, "summary_net": True}
    (target if target.is_dir() else target.parent).joinpath("trace.txt").unlink()

    boxed = _run(home, "--sandbox", str(target))
    assert boxed["status"] == "succeeded"
    assert _means(boxed) == {name: 0 for name in FLAGS}
    assert boxed["custom"] == {"summary_read": False, "summary_net": False}
    assert not (target if target.is_dir() else target.parent).joinpath("trace.txt").exists()


def test_sandbox_gives_the_same_results(tmp_path, home, bwrap):
    """Same seed, same results: the CSV exports of a sandboxed and a plain run are identical."""
    exports = []
    for extra in ((), ("--sandbox",)):
        summary = _run(home, *extra, str(EXAMPLES / "gambler.py"))
        done = run_cli("export", summary["run"], env={"ANCHO_HOME": str(home)})
        assert done.returncode == 0, done.stderr
        exports.append((done.stdout, summary["custom"]))
    assert exports[0] == exports[1]
    assert exports[0][0].count("\n") == 21


def test_sandbox_never_imports_the_model_in_process(tmp_path, home, bwrap):
    """A model that fails at import fails in the worker: the error is the model's, reported, not a crash of ancho."""
    model = tmp_path / "bad.py"
    model.write_text("import ancho\nraise RuntimeError('imported')\n")
    done = run_cli("run", "--sandbox", str(model), "-n", "5", env={"ANCHO_HOME": str(home)})
    assert done.returncode != 0
    assert "RuntimeError: imported" in done.stderr and "Traceback" not in done.stderr


def test_without_bubblewrap_a_one_line_error(tmp_path, home):
    done = run_cli(
        "run",
        "--sandbox",
        str(EXAMPLES / "gambler.py"),
        "-n",
        "5",
        env={"ANCHO_HOME": str(home), "ANCHO_BWRAP": str(tmp_path / "no-bwrap")},
    )
    assert done.returncode == 3
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "install the Debian package 'bubblewrap'" in lines[0], done.stderr


def test_sandbox_refuses_what_it_cannot_contain(home):
    import ancho
    from ancho.errors import InputError

    class Mine(ancho.Model):
        def sequence(self, rng):
            return {"x": 1.0}

    with pytest.raises(InputError, match="path or URL"):
        ancho.run(Mine, sequences=2, sandbox=True)
    done = run_cli("run", "--sandbox", "--executor", "spark://127.0.0.1:7077", str(EXAMPLES / "gambler.py"))
    assert done.returncode != 0 and "local executor only" in done.stderr
