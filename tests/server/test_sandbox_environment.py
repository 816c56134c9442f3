"""A real server started with secrets in its environment: model code reads every environment it can, gets none back.

The attack: a model reads ``os.environ`` and every ``/proc/*/environ`` it can
see in its sandbox (PID 1 is bubblewrap's own process, which kept the
environment it was started with) and sends them back through what the API
returns: its failures, its run's error, a summary function's value, the
422 of a model that raises while it is read at submission. None may hold
a variable of the server's. And the server's home comes from its settings:
with ``ANCHO_HOME`` unset and the home inside a folder every sandbox binds
(here: the server's own venv), the home is still hidden.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from ancho.isolation import sandbox_problem

from ..conftest import need_service
from ..sandbox_environ_dump import DUMP, SECRETS, check_dump
from .conftest import _STARTED, ANCHO, API, Server, add_user, free_port, submit, tar_gz, upload_id, wait_run

pytestmark = pytest.mark.slow

MODELS = (
    DUMP
    + '''
import ancho


class Steal(ancho.Model):
    """Every sequence fails with what it could read."""

    def sequence(self, rng):
        raise RuntimeError(environ_dump())


class StealInSummary(ancho.Model):
    """A summary function returns what it could read."""

    def sequence(self, rng):
        return {"x": float(rng.random())}

    @ancho.summary
    def stolen(self, results):
        return environ_dump()
'''
)

AT_IMPORT = (
    DUMP
    + """
import ancho


class Loot(ancho.Model):
    \"\"\"Its parameter's default is read at import: when the server reads the model at submission, in its inspector.\"\"\"

    loot: str = environ_dump()

    def sequence(self, rng):
        return {"x": 1.0}

"""
)

RAISES_AT_IMPORT = (
    DUMP
    + """
raise RuntimeError(environ_dump())
"""
)

LOOKS_HOME = '''
import os

import ancho


class LooksHome(ancho.Model):
    """Fails with what it finds in the server's home."""

    home: str = ""

    def sequence(self, rng):
        files = sorted(os.path.relpath(os.path.join(d, f), self.home) for d, _, fs in os.walk(self.home) for f in fs)
        try:
            secret = open(os.path.join(self.home, "operator-secret.txt")).read()
        except OSError as exc:
            secret = type(exc).__name__
        parent = os.path.isdir(os.path.dirname(self.home))
        raise RuntimeError(f"HOME-LISTING parent={parent} secret={secret} files={files} END")
'''


@pytest.fixture(scope="module")
def sandboxed():
    if sandbox_problem():
        need_service("bubblewrap", sandbox_problem())


@pytest.fixture(scope="module")
def secret_server(tmp_path_factory, sandboxed):
    home = tmp_path_factory.mktemp("secret-server") / "home"
    home.mkdir()
    token = add_user(home, "eve")
    srv = Server(home, {**SECRETS, "ANCHO_CONCURRENCY": "1"}, name="secret-server").start()
    assert all(srv.process.environ().get(k) == v for k, v in SECRETS.items())  # the server itself has them
    with srv.client(token) as client:
        srv.eve = client
        yield srv
    srv.kill()


def test_run_workers_send_back_no_server_variable(secret_server):
    eve = secret_server.eve
    u = upload_id(eve, tar_gz({"model.py": MODELS}))
    run_id = submit(
        eve, {"model": {"upload": u, "entry": "model.py:Steal"}, "sequences": 4, "seed": 1, "max_failures": 4}
    )
    view = wait_run(eve, run_id)
    failures = eve.get(f"/runs/{run_id}/failures").json()
    assert len(failures) == 4, (view, secret_server.log())
    for f in failures:
        check_dump(f["error"])
        check_dump(f["traceback"])
    for name in SECRETS:
        assert name not in str(view)


def test_summary_functions_send_back_no_server_variable(secret_server):
    eve = secret_server.eve
    u = upload_id(eve, tar_gz({"model.py": MODELS}))
    run_id = submit(eve, {"model": {"upload": u, "entry": "model.py:StealInSummary"}, "sequences": 20, "seed": 1})
    assert wait_run(eve, run_id)["status"] == "succeeded", secret_server.log()
    check_dump(eve.get(f"/runs/{run_id}/summary").json()["custom"]["stolen"])


def test_the_inspector_reading_a_model_sends_back_no_server_variable(secret_server):
    """Model code that runs at import runs when the server reads the model at submission, in a kept inspector worker."""
    eve = secret_server.eve
    u = upload_id(eve, tar_gz({"model.py": AT_IMPORT}))
    r = eve.post("/runs", json={"model": {"upload": u, "entry": "model.py:Loot"}, "sequences": 1})
    assert r.status_code == 201, r.text
    params = eve.get(f"/runs/{r.json()['id']}").json()["params"]  # resolved at submission, by the inspector
    check_dump(params["loot"])
    # a model that fails to import: the 422 quotes its error (shortened to 1,000 characters)
    u = upload_id(eve, tar_gz({"model.py": RAISES_AT_IMPORT}))
    r = eve.post("/runs", json={"model": {"upload": u, "entry": "model.py"}, "sequences": 1})
    assert r.status_code == 422, r.text
    check_dump(str(r.json()["detail"]), complete=False)


SYSCALLS = """
import ctypes
import sys

import ancho


class Calls(ancho.Model):
    \"\"\"Writes a forged log line to stderr, then calls unshare(0) and keyctl(-1): their errno (0: it worked).\"\"\"

    unshare: int = 0
    keyctl: int = 0

    def sequence(self, rng):
        sys.stderr.write("INFO: FORGED-LOG-LINE user=admin\\n")
        sys.stderr.flush()
        libc = ctypes.CDLL(None, use_errno=True)
        out = {}
        for name, number, args in (("unshare", self.unshare, (0,)), ("keyctl", self.keyctl, (-1, 0, 0, 0, 0))):
            ctypes.set_errno(0)
            out[name] = ctypes.get_errno() if libc.syscall(number, *(ctypes.c_long(a) for a in args)) == -1 else 0
        return out
"""


def test_a_server_run_s_worker_is_filtered_and_cannot_write_the_server_s_log(secret_server):
    """Through the whole server: the worker's system calls are filtered (docs/sandbox.md), and what its model writes
    on stderr reaches the server's log only as marked, escaped lines."""
    import errno

    import pyseccomp

    arch = pyseccomp.system_arch()
    eve = secret_server.eve
    u = upload_id(eve, tar_gz({"model.py": SYSCALLS}))
    params = {name: pyseccomp.resolve_syscall(arch, name) for name in ("unshare", "keyctl")}
    run_id = submit(eve, {"model": {"upload": u, "entry": "model.py:Calls"}, "params": params, "sequences": 2})
    view = wait_run(eve, run_id)
    assert view["status"] == "succeeded", (view, secret_server.log())
    outputs = eve.get(f"/runs/{run_id}/summary").json()["outputs"]
    assert outputs["unshare"]["mean"] == errno.EPERM and outputs["keyctl"]["mean"] == errno.EPERM, outputs
    log = secret_server.log(tail=100_000)
    assert "FORGED-LOG-LINE" in log, log[-3000:]
    assert all(line.startswith("ancho worker ") for line in log.splitlines() if "FORGED-LOG-LINE" in line)


class ConfiguredServer(Server):
    """``ancho serve --config FILE`` with ANCHO_HOME and ANCHO_CONFIG unset: its home comes from the file only."""

    def __init__(self, home: Path, config: Path, log_dir: Path):
        super().__init__(home, name="configured-server")
        self.config = config
        self.log_path = log_dir / "configured-server.log"

    def start(self, timeout: float = 60) -> ConfiguredServer:
        env = {k: v for k, v in os.environ.items() if k not in ("ANCHO_HOME", "ANCHO_CONFIG")}
        self.port = free_port()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [ANCHO, "serve", "--config", str(self.config), "--port", str(self.port)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        _STARTED.append(self)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log()
            try:
                if httpx.get(self.url + API + "/health", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.kill()
        raise AssertionError(f"the server did not answer within {timeout} s:\n{self.log()}")


def test_the_settings_home_is_hidden_without_ancho_home(sandboxed, tmp_path):
    """The home lies inside the server's venv, which every sandbox binds read-only (the worker's interpreter):
    only hiding the settings' home keeps a model out of server.db and the operator's files."""
    home = Path(tempfile.mkdtemp(prefix="ancho-test-home-", dir=sys.prefix))
    srv = None
    try:
        (home / "operator-secret.txt").write_text("operator-secret-3d9c")
        token = add_user(home, "eve")
        config = tmp_path / "ancho.toml"
        config.write_text(f'home = "{home}"\nworkers = 1\nconcurrency = 1\n')
        srv = ConfiguredServer(home, config, tmp_path).start()
        assert "ANCHO_HOME" not in srv.process.environ()
        with srv.client(token) as eve:
            u = upload_id(eve, tar_gz({"model.py": LOOKS_HOME}))
            run_id = submit(
                eve,
                {
                    "model": {"upload": u, "entry": "model.py:LooksHome"},
                    "params": {"home": str(home)},
                    "sequences": 1,
                    "seed": 1,
                },
            )
            wait_run(eve, run_id)
            failures = eve.get(f"/runs/{run_id}/failures").json()
        assert len(failures) == 1, srv.log()
        text = failures[0]["error"]
        assert "HOME-LISTING parent=True secret=FileNotFoundError" in text, text  # its folder is bound, it is not
        assert "operator-secret-3d9c" not in text and "server.db" not in text, text
        files = eval(text.split("files=", 1)[1].rsplit(" END", 1)[0])
        assert len(files) == 1 and files[0].endswith("/model.py"), text  # its own source folder, bound again on top
    finally:
        if srv is not None:
            srv.kill()
        shutil.rmtree(home, ignore_errors=True)


def test_the_filter_follows_the_sandbox_seccomp_setting(tmp_path):
    """``sandbox_seccomp`` (on by default) reaches every policy the server builds for its workers."""
    from types import SimpleNamespace

    from ancho.server.service import Service
    from ancho.server.settings import Settings

    for setting in (True, False):
        server = SimpleNamespace(settings=Settings(home=tmp_path / "home", sandbox_seccomp=setting))
        assert Service.policy(server, (), None).seccomp is setting  # type: ignore[arg-type]
    assert Settings(home=tmp_path / "home").sandbox_seccomp is True


def test_the_summary_functions_time_limit_follows_the_summary_timeout_setting(tmp_path):
    """``summary_timeout`` (600 s by default) reaches every policy the server builds for its workers."""
    from types import SimpleNamespace

    from ancho.server.service import Service
    from ancho.server.settings import Settings

    for setting, expected in ((None, 600.0), (5.0, 5.0)):
        given = {} if setting is None else {"summary_timeout": setting}
        server = SimpleNamespace(settings=Settings(home=tmp_path / "home", **given))
        assert Service.policy(server, (), None).summary_timeout == expected  # type: ignore[arg-type]
