"""The server fetches models from git and URLs, installs their requirements, and runs them sandboxed."""

import http.server
import json
import shutil
import subprocess
import threading
import time

import pytest

from ..conftest import discard_if_passed
from .conftest import GAMBLER, Server, add_user, submit, tar_gz, upload_id, wait_run

pytestmark = pytest.mark.slow

HOSTILE = '''
import os
import socket

import ancho


class CallsHome(ancho.Model):
    """Tries to reach the Ancho server on the host's loopback."""

    port: int = 0

    def sequence(self, rng):
        with socket.create_connection(("127.0.0.1", self.port), timeout=2):
            return {"reached": True}


class WritesHome(ancho.Model):
    """Tries to write into the server's home."""

    home: str = ""

    def sequence(self, rng):
        with open(os.path.join(self.home, "pwned"), "w") as fh:
            fh.write("x")
        return {"wrote": True}


class Scratch(ancho.Model):
    """Writes in its scratch folder (allowed)."""

    def sequence(self, rng):
        path = os.path.join(os.environ["HOME"], "note.txt")
        with open(path, "w") as fh:
            fh.write("ok")
        return {"x": float(rng.random())}
'''

WITH_REQUIREMENT = """
import ancho
import humanize


class H(ancho.Model):
    def sequence(self, rng):
        return {"x": float(rng.random())}

    @ancho.summary
    def count(self, results):
        return humanize.intcomma(len(results))
"""


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("repos")
    repo = root / "gambler"
    repo.mkdir()
    (repo / "model.py").write_text(GAMBLER)
    git = ["git", "-c", "user.email=t@example.invalid", "-c", "user.name=t"]
    for args in (["init", "-q"], ["add", "."], ["commit", "-qm", "one"], ["tag", "v1"]):
        subprocess.run([*git, *args], cwd=repo, check=True)
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.strip()
    return root, repo, commit


@pytest.fixture(scope="module")
def tarball_server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("www")
    (folder / "gambler.tar.gz").write_bytes(tar_gz({"model.py": GAMBLER}, folder="gambler-1.0"))
    handler = lambda *a, **kw: http.server.SimpleHTTPRequestHandler(*a, directory=str(folder), **kw)  # noqa: E731
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def srv(request, tmp_path_factory, repo):
    home = tmp_path_factory.mktemp("srv-sources") / "home"
    discard_if_passed(request, home.parent)  # a model's environment: ~570 MB
    home.mkdir()
    token = add_user(home, "dora")
    env = {
        "ANCHO_SOURCE_FILE_ROOTS": json.dumps([str(repo[0])]),
        "ANCHO_ALLOW_LOOPBACK_HTTP": "true",
        "ANCHO_SOURCE_PRIVATE_HOSTS": "true",
    }  # the test models are served from 127.0.0.1
    s = Server(home, env, name="sources-server").start()
    s.token = token
    yield s
    s.kill()


@pytest.fixture(scope="module")
def dora(srv):
    with srv.client(srv.token) as c:
        yield c


def test_a_git_source_runs_and_records_its_commit(dora, repo):
    _, path, commit = repo
    run_id = submit(
        dora,
        {"model": {"git": f"file://{path}", "ref": "v1", "entry": "model.py:Gambler"}, "sequences": 500, "seed": 3},
    )
    view = wait_run(dora, run_id)
    assert view["status"] == "succeeded", view
    assert view["source"] == f"git:file://{path}@{commit}"


def test_a_url_source_runs(dora, tarball_server):
    run_id = submit(dora, {"model": {"url": f"{tarball_server}/gambler.tar.gz"}, "sequences": 300, "seed": 1})
    view = wait_run(dora, run_id)
    assert view["status"] == "succeeded", view
    assert view["source"].startswith(f"url:{tarball_server}/gambler.tar.gz")


def test_file_urls_outside_the_allowed_folders_are_refused(dora, tmp_path):
    shutil.copy(__file__, tmp_path / "x.py")
    r = dora.post("/runs", json={"model": {"url": f"file://{tmp_path}/x.tar.gz"}, "sequences": 10})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][:3] == ["body", "model", "url"], r.text
    r = dora.post("/runs", json={"model": {"git": "file:///nonexistent/repo", "ref": "v1"}, "sequences": 10})
    assert r.status_code == 422 and "git" in json.dumps(r.json()["detail"]), r.text


def test_requirements_are_installed_for_the_model_only(dora):
    import importlib.util

    u = upload_id(dora, tar_gz({"model.py": WITH_REQUIREMENT, "requirements.txt": "humanize==4.9.0\n"}))
    run_id = submit(dora, {"model": {"upload": u}, "sequences": 1234, "seed": 1})
    assert wait_run(dora, run_id)["status"] == "succeeded"
    assert dora.get(f"/runs/{run_id}/summary").json()["custom"]["count"] == "1,234"
    assert importlib.util.find_spec("humanize") is None


def test_hostile_models_fail_and_the_server_keeps_serving(srv, dora):
    u = upload_id(dora, tar_gz({"model.py": HOSTILE}))
    calls = submit(
        dora, {"model": {"upload": u, "entry": "model.py:CallsHome"}, "params": {"port": srv.port}, "sequences": 5}
    )
    writes = submit(
        dora,
        {"model": {"upload": u, "entry": "model.py:WritesHome"}, "params": {"home": str(srv.home)}, "sequences": 5},
    )
    scratch = submit(dora, {"model": {"upload": u, "entry": "model.py:Scratch"}, "sequences": 50, "seed": 1})
    for run_id, errors in (
        (calls, ("ConnectionRefusedError", "OSError")),
        (writes, ("FileNotFoundError", "OSError", "PermissionError")),
    ):
        view = wait_run(dora, run_id)
        assert view["status"] == "failed" and any(e in view["error"] for e in errors), view
    assert not (srv.home / "pwned").exists()
    assert wait_run(dora, scratch)["status"] == "succeeded"
    deadline = time.monotonic() + 30  # (the record says succeeded a moment before the run's executor is closed)
    while (srv.home / "scratch" / scratch).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not (srv.home / "scratch" / scratch).exists()  # (gone with the run: nothing reads it, it has no quota)
    assert dora.get("/health").status_code == 200
    later = submit(dora, {"model": {"upload": u, "entry": "model.py:Scratch"}, "sequences": 20, "seed": 2})
    assert wait_run(dora, later)["status"] == "succeeded"


def test_serve_on_a_busy_port_fails_at_once(srv, tmp_path):
    from .conftest import ANCHO

    p = subprocess.run(
        [ANCHO, "serve", "--port", str(srv.port)],
        env={**__import__("os").environ, "ANCHO_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 2 and "cannot listen on 127.0.0.1" in p.stderr and "Address already in use" in p.stderr
