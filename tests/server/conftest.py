"""A real server for the REST API tests: ``ancho serve`` on 127.0.0.1, a free port, a private ANCHO_HOME.

The session server (``server``) is shared by most modules, so the suite
starts Uvicorn once; modules that need other settings (small limits) or
that kill the server (durability) start their own with :class:`Server`;
those that need one of their own with the same settings (runs too wide to
share it) start it as the session server is, with :func:`server_with_users`.
Every server is started in its own session and killed at the end, workers
included.

Users on the session server: ``alice`` and ``bob`` (tokens from ``ancho
users add``, as an admin would get them) and ``carol``, whose token is
revoked before any test runs.
"""

from __future__ import annotations

import atexit
import io
import os
import signal
import socket
import subprocess
import sys
import tarfile
import textwrap
import time
import zipfile
from collections.abc import Iterable
from pathlib import Path

import httpx
import psutil
import pytest

from ..conftest import alive

ANCHO = str(Path(sys.executable).parent / "ancho")
API = "/api/v1"

# -- models used by the tests (source text; uploaded as archives) ----------------------
GAMBLER = (Path(__file__).resolve().parents[2] / "examples" / "gambler.py").read_text()  # the example itself

SLOW = '''
import time

import ancho


class Slow(ancho.Model):
    """Sleeps ``seconds`` per sequence; its outputs do not depend on the sleep."""

    seconds: float = 0.01

    def sequence(self, rng):
        if self.seconds:
            time.sleep(self.seconds)
        return {"x": float(rng.random()), "k": int(rng.integers(0, 100)), "big": bool(rng.random() < 0.5)}
'''

FLAKY = '''
import ancho


class Flaky(ancho.Model):
    """A sequence raises with probability ``rate``."""

    rate: float = 0.1

    def sequence(self, rng):
        x = rng.random()
        if x < self.rate:
            raise ZeroDivisionError(f"unlucky draw {x:.3f}")
        return {"x": x}
'''


# -- archives -------------------------------------------------------------------------
def tar_gz(files: dict[str, str | bytes], folder: str | None = None) -> bytes:
    """A .tar.gz of ``files`` (name -> text), optionally under one top-level folder."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, content in files.items():
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(f"{folder}/{name}" if folder else name)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def zip_bytes(files: dict[str, str | bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in files.items():
            zf.writestr(zipfile.ZipInfo(name, (2024, 1, 1, 0, 0, 0)), content, compress_type=zipfile.ZIP_DEFLATED)
    return buf.getvalue()


# -- processes ------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def users_cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "ANCHO_HOME": str(home)}
    env.pop("ANCHO_CONFIG", None)
    return subprocess.run([ANCHO, "users", *args], capture_output=True, text=True, env=env, timeout=60)


def add_user(home: Path, name: str) -> str:
    """``ancho users add NAME``; the token is the last line of stdout."""
    done = users_cli(home, "add", name)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def wait_gone(procs, timeout: float = 20) -> list[psutil.Process]:
    """Wait until none of ``procs`` is alive; return those still alive after ``timeout``."""
    deadline = time.monotonic() + timeout
    left = [p for p in procs if alive(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = [p for p in left if alive(p)]
    return left


_STARTED: list[Server] = []


@atexit.register
def _kill_leftovers() -> None:
    """Whatever a fixture could not tear down (an interrupted session) dies with the test process."""
    for srv in _STARTED:
        srv.kill()


class Server:
    """``ancho serve`` as a subprocess on a free port (its own session, so it can be killed whole)."""

    def __init__(self, home: Path, env: dict[str, str] | None = None, name: str = "server"):
        self.home = Path(home)
        self.env = env or {}
        self.name = name
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.killed = False
        self.log_path = self.home.parent / f"{name}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> Server:
        self.home.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "ANCHO_HOME": str(self.home), "ANCHO_WORKERS": "2", **self.env}
        env.pop("ANCHO_CONFIG", None)
        self.port = free_port()
        self.killed = False
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [ANCHO, "serve", "--port", str(self.port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        _STARTED.append(self)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + API + "/health", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"{self.name} did not answer /health within {timeout} s:\n{self.log()}")

    def log(self, tail: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-tail:])
        except OSError:
            return ""

    @property
    def process(self) -> psutil.Process:
        assert self.proc is not None
        return psutil.Process(self.proc.pid)

    def workers(self) -> list[psutil.Process]:
        """The server's live worker processes: its runs', and those kept to read models at submission."""
        out = []
        for child in self.process.children(recursive=True):
            try:
                if alive(child) and "ancho.executors.worker" in " ".join(child.cmdline()):
                    out.append(child)
            except psutil.Error:
                pass
        return out

    def run_workers(self) -> list[psutil.Process]:
        """The workers of its runs: at the runs' niceness (setting worker_nice, 10), where the workers that read
        models at submission (kept a while for the next one, server/inspectors.py) run at the server's own."""
        out = []
        for p in self.workers():
            try:
                if p.nice() > 0:
                    out.append(p)
            except psutil.Error:
                pass
        return out

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int | None:
        """Send ``sig`` to the server process only and wait for it to exit."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def shutdown(self, timeout: float = 60) -> None:
        """SIGTERM and check it was a graceful stop (Uvicorn re-raises the signal once it has shut down)."""
        code = self.stop(signal.SIGTERM, timeout)
        assert code in (0, -signal.SIGTERM), f"{self.name} exited with {code}:\n{self.log()}"
        assert "Application shutdown complete" in self.log(), self.log()

    def kill(self) -> None:
        """SIGKILL the server and everything in its session (clean-up; never fails)."""
        if self.proc is None or self.killed:
            return
        self.killed = True
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass

    def client(self, token: str | None = None, **kw) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        headers.update(kw.pop("headers", {}))
        return httpx.Client(base_url=self.url + API, headers=headers, timeout=kw.pop("timeout", 60), **kw)


def server_with_users(
    root: Path, users: Iterable[str], name: str, revoked: Iterable[str] = (), env: dict[str, str] | None = None
) -> Server:
    """A started :class:`Server` (two runs at a time) whose home is ``root/home``, with ``users`` added before it
    starts (their tokens in ``srv.tokens``, by name) and the tokens of ``revoked`` (some of them) revoked; ``env``:
    more of its environment."""
    home = root / "home"
    home.mkdir()
    tokens = {user: add_user(home, user) for user in users}
    for user in revoked:
        assert users_cli(home, "revoke", user).returncode == 0
    srv = Server(home, {"ANCHO_CONCURRENCY": "2", **(env or {})}, name=name).start()
    srv.tokens = tokens
    return srv


# -- API helpers ----------------------------------------------------------------------
def upload(client: httpx.Client, data: bytes, filename: str = "model.tar.gz") -> httpx.Response:
    return client.post("/models", files={"file": (filename, data, "application/octet-stream")})


def upload_id(client: httpx.Client, data: bytes, filename: str = "model.tar.gz") -> str:
    r = upload(client, data, filename)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def submit(client: httpx.Client, body: dict) -> str:
    r = client.post("/runs", json=body)
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "queued"
    return r.json()["id"]


def wait_run(client: httpx.Client, run_id: str, timeout: float = 180, until=None) -> dict:
    """Poll GET /runs/{id} until ``until(view)`` (default: a final status); return the view."""
    until = until or (lambda v: v["status"] in ("succeeded", "failed", "cancelled"))
    deadline = time.monotonic() + timeout
    while True:
        view = client.get(f"/runs/{run_id}").json()
        if until(view):
            return view
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} still {view['status']} ({view['progress']}) after {timeout} s")
        time.sleep(0.1)


def csv_text(client: httpx.Client, run_id: str) -> str:
    r = client.get(f"/runs/{run_id}/results", params={"format": "csv"})
    assert r.status_code == 200, r.text
    return r.text


def is_json_error(r: httpx.Response) -> bool:
    return r.headers.get("content-type", "").startswith("application/json") and "detail" in r.json()


def detail_text(r: httpx.Response) -> str:
    """The error body as one lowercase string (``detail`` may be a string or a list of pydantic-style errors)."""
    return str(r.json()["detail"]).lower()


# -- fixtures -------------------------------------------------------------------------
def client_of(server_fixture: str, user: str | None = None, scope: str = "session"):
    """A fixture: an API client of the server that the fixture named ``server_fixture`` gives, signed in as ``user``
    (a name in its ``tokens``) or anonymous; ``scope`` is that fixture's (or a narrower one)."""

    @pytest.fixture(scope=scope)
    def client(request):
        srv = request.getfixturevalue(server_fixture)
        with srv.client(srv.tokens[user] if user else None) as c:
            yield c

    return client


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    srv = server_with_users(
        tmp_path_factory.mktemp("server"), ("alice", "bob", "carol"), "session-server", revoked=("carol",)
    )
    yield srv
    srv.kill()


alice = client_of("server", "alice")
bob = client_of("server", "bob")
anonymous = client_of("server")


@pytest.fixture(scope="session")
def sources(tmp_path_factory) -> Path:
    """The test models as a folder of .py files (for ``ancho run`` comparisons)."""
    d = tmp_path_factory.mktemp("sources")
    for name, text in (("gambler", GAMBLER), ("slow", SLOW), ("flaky", FLAKY)):
        (d / name).mkdir()
        (d / name / "model.py").write_text(textwrap.dedent(text))
    return d


@pytest.fixture(scope="session")
def gambler_upload(alice) -> str:
    return upload_id(alice, tar_gz({"model.py": GAMBLER}, folder="gambler"), "gambler.tar.gz")


@pytest.fixture(scope="session")
def slow_upload(alice) -> str:
    return upload_id(alice, tar_gz({"model.py": SLOW}), "slow.tar.gz")


@pytest.fixture(scope="session")
def flaky_upload(alice) -> str:
    return upload_id(alice, zip_bytes({"flaky/model.py": FLAKY}), "flaky.zip")


@pytest.fixture(scope="session")
def finished_run(alice, gambler_upload) -> str:
    """A succeeded Gambler run of alice's (3,000 sequences, seed 3, stake 3, goal 10, p 0.45)."""
    run_id = submit(
        alice,
        {
            "model": {"upload": gambler_upload, "entry": "model.py:Gambler"},
            "params": {"stake": 3, "goal": 10, "p": 0.45},
            "sequences": 3000,
            "seed": 3,
            "targets": ["rounds>=30"],
        },
    )
    assert wait_run(alice, run_id)["status"] == "succeeded"
    return run_id
