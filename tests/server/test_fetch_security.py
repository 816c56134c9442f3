"""Model sources cannot be used to probe the server's network, read its buckets or stall its uploads.

Each attack is performed for real: against ``ancho serve`` on 127.0.0.1 (a
server with the default source settings, ``guarded``, and one whose operator
allowed internal hosts and named one S3 bucket, ``open_server``), with an
"internal service" on 127.0.0.1 that answers with a secret and records every
request, moto's S3 server, and real git. The checks that need an *allowed*
first hop on a loopback-only machine (a redirect to an internal address, a
name resolving inward at connect time, git pinned to the checked address)
run at the fetch level with the address classification and name resolution
controlled by the test.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import socket
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ancho.sources import git as git_mod
from ancho.sources import remote as remote_mod
from ancho.sources import url as url_mod
from ancho.sources.extract import ArchiveError, extract, keyed_lock, tar_members
from ancho.sources.fetch import FetchPolicy, UnsupportedSource, fetch_url
from ancho.sources.upload import Uploads

from ..sources.test_sources_fetch import moto_server  # noqa: F401 - the S3 server fixture
from .conftest import GAMBLER, Server, add_user, tar_gz

SECRET = "s3cr3t-internal-answer-7f1c"
MODEL = (
    "import ancho\n\n\nclass M(ancho.Model):\n    def sequence(self, rng):\n        return {'x': float(rng.random())}\n"
)


# -- an internal service on 127.0.0.1 --------------------------------------------------------------


class Internal:
    """Answers with SECRET (in the body, a header and the reason phrase) and records the paths asked for."""

    def __init__(self):
        self.paths: list[str] = []
        self.redirects: dict[str, str] = {}
        self.files = {"/real.tar.gz": tar_gz({"model.py": MODEL})}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                outer.paths.append(self.path)
                if self.path in outer.redirects:
                    self.send_response(302)
                    self.send_header("Location", outer.redirects[self.path])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = outer.files.get(self.path, SECRET.encode())
                self.send_response(
                    500 if self.path.startswith("/error") else 200, SECRET if self.path.startswith("/error") else None
                )
                self.send_header("X-Leak", SECRET)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def secret_requests(self) -> list[str]:
        return [p for p in self.paths if "secret" in p or "error" in p]


@pytest.fixture(scope="module")
def internal():
    svc = Internal()
    yield svc
    svc.httpd.shutdown()


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    """A server with the default source settings (loopback http on, so the host rule is what refuses)."""
    home = tmp_path_factory.mktemp("guarded") / "home"
    home.mkdir()
    token = add_user(home, "eve")
    srv = Server(home, {"ANCHO_ALLOW_LOOPBACK_HTTP": "true"}, name="guarded-server").start()
    client = srv.client(token)
    yield client
    client.close()
    srv.kill()


@pytest.fixture(scope="module")
def s3_env(moto_server):  # noqa: F811
    import boto3

    env = {
        "AWS_ENDPOINT_URL": moto_server,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": "/nonexistent/aws-config",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
    }
    client = boto3.client(
        "s3",
        endpoint_url=moto_server,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    buckets = {"allowed": "models-ok-" + hashlib.sha1(moto_server.encode()).hexdigest()[:8], "other": "payroll-private"}
    for name in buckets.values():
        client.create_bucket(Bucket=name)
        client.put_object(Bucket=name, Key="gambler.tar.gz", Body=tar_gz({"model.py": GAMBLER}, folder="gambler"))
    return env, buckets


@pytest.fixture(scope="module")
def open_server(tmp_path_factory, s3_env):
    """A server whose operator allowed internal hosts and named one bucket (private S3 endpoint: moto)."""
    env, buckets = s3_env
    home = tmp_path_factory.mktemp("open") / "home"
    home.mkdir()
    token = add_user(home, "olga")
    srv = Server(
        home,
        {
            **env,
            "ANCHO_ALLOW_LOOPBACK_HTTP": "true",
            "ANCHO_SOURCE_PRIVATE_HOSTS": "true",
            "ANCHO_SOURCE_S3_BUCKETS": buckets["allowed"],
        },
        name="open-server",
    ).start()
    client = srv.client(token)
    yield client
    client.close()
    srv.kill()


def refused(r, field: str, *words: str) -> str:
    """Assert a 422 about ``model.<field>`` whose message holds ``words``; return the message."""
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, list) and detail[0]["loc"] == ["body", "model", field], r.text
    msg = detail[0]["msg"]
    for word in words:
        assert word in msg, msg
    assert SECRET not in r.text
    return msg


# -- against a real server: internal hosts ---------------------------------------------------------


def test_a_loopback_address_is_refused_without_connecting(guarded, internal):
    before = len(internal.paths)
    r = guarded.post(
        "/runs", json={"model": {"url": f"http://127.0.0.1:{internal.port}/secret.tar.gz"}, "sequences": 10}
    )
    refused(r, "url", "internal address", "source_private_hosts")
    for url in (
        f"https://[::ffff:127.0.0.1]:{internal.port}/secret.tar.gz",
        "https://169.254.169.254/latest/meta-data/",
        "https://10.0.0.1/m.tar.gz",
        "https://[fd00::1]/m.tar.gz",
        "https://100.64.0.1/m.tar.gz",
        f"https://127.0.0.1:{internal.port}/secret.tar.gz",
    ):
        refused(guarded.post("/runs", json={"model": {"url": url}, "sequences": 10}), "url", "internal address")
    assert internal.paths[before:] == []  # the internal service was never asked


def test_a_name_resolving_to_loopback_is_refused_at_connect(guarded, internal):
    before = len(internal.paths)
    r = guarded.post(
        "/runs", json={"model": {"url": f"http://localhost:{internal.port}/secret.tar.gz"}, "sequences": 10}
    )
    refused(r, "url", "'localhost' resolves to an internal address", "source_private_hosts")
    assert internal.paths[before:] == []


def test_git_to_internal_hosts_and_git_protocol_are_refused(guarded, internal):
    before = len(internal.paths)
    r = guarded.post("/runs", json={"model": {"git": f"git://127.0.0.1:{internal.port}/models.git"}, "sequences": 10})
    refused(r, "git", "git transport is not allowed", "source_git_protocol")
    for url in (f"https://localhost:{internal.port}/secret.git", f"https://127.0.0.1:{internal.port}/secret.git"):
        r = guarded.post("/runs", json={"model": {"git": url, "ref": "main"}, "sequences": 10})
        refused(r, "git", "internal address", "source_private_hosts")
    assert internal.paths[before:] == []


def test_errors_never_echo_what_the_other_side_sent(open_server, internal):
    """Where internal hosts are allowed, what they answer still never reaches the user: only a status code."""
    r = open_server.post(
        "/runs", json={"model": {"url": f"http://127.0.0.1:{internal.port}/secret.tar.gz"}, "sequences": 10}
    )
    refused(r, "url", "not a .tar.gz")
    r = open_server.post(
        "/runs", json={"model": {"url": f"http://127.0.0.1:{internal.port}/error.tar.gz"}, "sequences": 10}
    )
    refused(r, "url", "HTTP 500")
    assert "/error.tar.gz" in internal.paths  # it was asked, and answered with the secret


# -- against a real server: S3 buckets ---------------------------------------------------------------


def test_s3_is_refused_without_named_buckets(guarded, s3_env):
    _, buckets = s3_env
    r = guarded.post("/runs", json={"model": {"url": f"s3://{buckets['allowed']}/gambler.tar.gz"}, "sequences": 10})
    refused(r, "url", "s3:// sources are not enabled", "source_s3_buckets")


def test_s3_reads_only_the_named_buckets(open_server, s3_env):
    _, buckets = s3_env
    for url in (
        f"s3://{buckets['other']}/gambler.tar.gz",
        f"s3://{buckets['other']}/{buckets['allowed']}/gambler.tar.gz",
        f"s3://{buckets['allowed']}@{buckets['other']}/gambler.tar.gz",
    ):
        refused(open_server.post("/runs", json={"model": {"url": url}, "sequences": 10}), "url", "s3://")
    r = open_server.post(
        "/runs",
        json={
            "model": {"url": f"s3://{buckets['allowed']}/gambler.tar.gz", "entry": "model.py:Gambler"},
            "sequences": 10,
        },
    )
    assert r.status_code == 201, r.text


# -- against a real server: archive bombs by count -------------------------------------------------


def _count_bomb(members: int) -> bytes:
    """A .tar.gz of ``members`` empty files (one header repeated: built in a blink, ~1.4 MB)."""
    header = tarfile.TarInfo("empty.txt").tobuf(tarfile.USTAR_FORMAT, "utf-8", "strict")
    return gzip.compress(header * members + b"\0" * 1024, 6, mtime=0)


def test_a_200000_member_upload_is_refused(guarded):
    r = guarded.post("/models", files={"file": ("bomb.tar.gz", _count_bomb(200_000), "application/octet-stream")})
    assert r.status_code == 422, r.text
    assert "more than 10,000 members" in r.text


# -- at the fetch level ----------------------------------------------------------------------------


def test_tar_members_stop_at_the_cap():
    tar = tarfile.open(fileobj=io.BytesIO(_count_bomb(200_000)), mode="r:*")
    with pytest.raises(ArchiveError, match="more than 10 members"):
        tar_members(tar, 10**9, 10)
    assert len(tar.members) == 11  # headers read: the cap + 1, not 200,000


def test_zip_member_count_is_checked_before_the_directory_is_parsed(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(50):
            zf.writestr(f"f{i}", "")
    data = bytearray(buf.getvalue())
    cd = data.find(b"PK\x01\x02")
    data[cd : cd + 4] = b"XXXX"  # a directory zipfile cannot parse: only the end record was read
    with pytest.raises(ArchiveError, match="more than 10 members"):
        extract(bytes(data), tmp_path / "out", max_files=10)


def test_uploads_lock_per_archive_not_globally(tmp_path):
    """While one archive is being unpacked (its lock held), another archive's upload goes through."""
    uploads = Uploads(tmp_path / "home", tmp_path / "db.sqlite")
    a, b = tar_gz({"model.py": MODEL}, folder="a"), tar_gz({"model.py": MODEL}, folder="b")
    done: dict[str, dict] = {}

    def add(name, data):
        done[name] = uploads.add("u", data, f"{name}.tar.gz")

    with keyed_lock(str(uploads.root / "trees" / hashlib.sha256(a).hexdigest())):
        same = threading.Thread(target=add, args=("a", a), daemon=True)
        other = threading.Thread(target=add, args=("b", b), daemon=True)
        same.start()
        other.start()
        other.join(30)
        assert "b" in done  # not held up by a's lock
        same.join(0.5)
        assert same.is_alive() and "a" not in done  # the same bytes wait: unpacked once
    same.join(30)
    assert "a" in done


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.255.0.9",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "239.255.255.250",
        "240.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fd00::1",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "::127.0.0.1",
        "2002:7f00:1::",
        "64:ff9b::a00:1",
        "not-an-address",
    ],
)
def test_internal_addresses(address):
    assert remote_mod.internal_address(address)


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses(address):
    assert not remote_mod.internal_address(address)


@pytest.fixture
def loopback_counts_as_public(monkeypatch):
    """127.0.0.1 (where the test's "public" site listens) judged public; every other address as usual."""
    real = remote_mod.internal_address
    judge = lambda a: False if a == "127.0.0.1" else real(a)  # noqa: E731
    monkeypatch.setattr(remote_mod, "internal_address", judge)
    monkeypatch.setattr(url_mod, "internal_address", judge)


@pytest.fixture
def names(monkeypatch):
    """Name resolution the test controls: ``names["x.test"] = [addresses]``; other names resolve as usual."""
    table: dict[str, list[str]] = {}
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        key = host.rstrip(".") if isinstance(host, str) else host
        if key in table:
            return [
                (
                    socket.AF_INET6 if ":" in a else socket.AF_INET,
                    socket.SOCK_STREAM,
                    6,
                    "",
                    (a, int(port or 0), 0, 0) if ":" in a else (a, int(port or 0)),
                )
                for a in table[key]
            ]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return table


def test_redirects_to_internal_hosts_are_refused(internal, tmp_path, loopback_counts_as_public, names):
    policy = FetchPolicy.for_server(loopback_http=True)
    base = f"http://127.0.0.1:{internal.port}"
    internal.redirects["/hop-ok"] = "/real.tar.gz"
    assert fetch_url(base + "/hop-ok", tmp_path / "c", policy=policy).root.is_dir()  # an allowed first hop
    names["intranet.test"] = ["127.0.0.2"]
    internal.redirects["/hop-literal"] = f"http://127.0.0.2:{internal.port}/secret.tar.gz"
    internal.redirects["/hop-name"] = f"https://intranet.test:{internal.port}/secret.tar.gz"
    internal.redirects["/hop-mixed"] = f"https://mixed.test:{internal.port}/secret.tar.gz"
    names["mixed.test"] = ["8.8.8.8", "10.0.0.1"]
    before = len(internal.paths)
    for hop, host in (
        ("/hop-literal", "'127.0.0.2' is an internal"),
        ("/hop-name", "'intranet.test' resolves to an internal"),
        ("/hop-mixed", "'mixed.test' resolves to an internal"),
    ):
        with pytest.raises(UnsupportedSource, match="redirected to a URL that is not accepted") as exc:
            fetch_url(base + hop, tmp_path / "c", policy=policy)
        assert host in str(exc.value) and "source_private_hosts" in str(exc.value) and SECRET not in str(exc.value)
    assert internal.paths[before:] == ["/hop-literal", "/hop-name", "/hop-mixed"]  # never the secret


def test_git_is_pinned_to_the_checked_address(internal, tmp_path, loopback_counts_as_public, names):
    """git connects to the address that was checked, not to whatever its own DNS lookup would say."""
    names["pinned.invalid"] = ["127.0.0.1"]  # git's own resolver cannot resolve .invalid
    url = f"http://pinned.invalid:{internal.port}/pinned.git"
    policy = FetchPolicy.for_server(loopback_http=True)
    cache = remote_mod._Cache(tmp_path / "c")
    git = git_mod._Git(url, None, url, policy, cache, "http")
    assert "http.followRedirects=false" in git.config
    git.run(["ls-remote", "--", url], network=True)
    assert any(p.startswith("/pinned.git/info/refs") for p in internal.paths)
    names["pinned.invalid"] = ["10.0.0.7"]  # the answer changed: checked again before the next command
    with pytest.raises(UnsupportedSource, match="'pinned.invalid' resolves to an internal address"):
        git.run(["ls-remote", "--", url], network=True)


def test_fetch_errors_never_echo_the_remote(internal, tmp_path):
    """At the fetch level too (the CLI's policy, which reaches anything): body, headers and reason phrase stay out."""
    for path, kind in (("/secret.tar.gz", "not a .tar.gz"), ("/error.tar.gz", "HTTP 500")):
        with pytest.raises(Exception) as exc:
            fetch_url(f"http://127.0.0.1:{internal.port}{path}", tmp_path / "c")
        assert kind in str(exc.value) and SECRET not in str(exc.value)
