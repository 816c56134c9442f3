"""Fetching model sources from URLs and git, against real servers on 127.0.0.1.

* HTTP: a ``ThreadingHTTPServer`` in a thread that counts every request and
  the bytes it sent; HTTPS: the same server behind a certificate from a
  throw-away CA (trustme), trusted through ``SSL_CERT_FILE``.
* git: repositories made here with the git CLI, fetched through ``file://``
  and through a real ``git daemon``.
* S3: moto's standalone server (``ThreadedMotoServer``), reached the usual
  AWS way (``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_S3`` and credentials in
  the environment).
"""

from __future__ import annotations

import email.utils
import hashlib
import io
import os
import shutil
import socket
import subprocess
import tarfile
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ancho.errors import InputError
from ancho.sources import git as git_mod
from ancho.sources import remote as remote_mod
from ancho.sources.fetch import (
    FetchedSource,
    FetchError,
    FetchPolicy,
    NotAnArchive,
    SourceAccessDenied,
    SourceNotFound,
    SourceTooLarge,
    SourceUnreachable,
    UnsafeArchive,
    UnsupportedSource,
    fetch_git,
    fetch_source,
    fetch_url,
    parse_source_arg,
    redact_url,
    resolve_source_arg,
)

from ..conftest import need_service

MODEL = """
import ancho


class Coin(ancho.Model):
    p: float = 0.5

    def sequence(self, rng):
        return {"heads": bool(rng.random() < self.p)}
"""


# -- archives -------------------------------------------------------------------------


def tar_gz(files: dict[str, str | bytes], top: str | None = "model-1.0") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, content in files.items():
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(f"{top}/{name}" if top else name)
            info.size = len(data)
            info.mtime = 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def zip_bytes(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, content in files.items():
            zf.writestr(name, content)
    return buf.getvalue()


def evil_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = b"owned"
        info = tarfile.TarInfo("../evil.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def count_extracts(monkeypatch):
    """How many times fetch unpacked an archive."""
    calls = []
    real = remote_mod.extract

    def counting(data, dest, *args, **kwargs):
        calls.append(dest)
        return real(data, dest, *args, **kwargs)

    monkeypatch.setattr(remote_mod, "extract", counting)
    return calls


# -- an HTTP server that counts ---------------------------------------------------------


class Site:
    """What the test server serves, and what it saw."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.modified: dict[str, float] = {}
        self.etags: set[str] = set()  # paths served with an ETag
        self.redirects: dict[str, str] = {}
        self.statuses: dict[str, int] = {}
        self.no_length: set[str] = set()  # streamed without Content-Length
        self.hang: set[str] = set()
        self.requests: list[tuple[str, str, int, dict]] = []  # method, path, status, headers
        self.body_bytes = 0
        self.release = threading.Event()
        self.lock = threading.Lock()

    def put(self, path: str, data: bytes, mtime: float | None = None) -> None:
        self.files[path] = data
        self.modified[path] = mtime or time.time()

    def hits(self, path: str, status: int | None = None) -> int:
        return sum(1 for _, p, s, _ in self.requests if p == path and (status is None or s == status))


def make_handler(site: Site):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def record(self, status: int) -> None:
            with site.lock:
                site.requests.append((self.command, self.path, status, dict(self.headers)))

        def reply(self, status: int, body: bytes = b"", headers: dict | None = None) -> None:
            self.record(status)
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD" and body:
                self.wfile.write(body)
                with site.lock:
                    site.body_bytes += len(body)

        def do_HEAD(self):
            self.do_GET()

        def do_GET(self):
            path = self.path
            if path in site.hang:
                self.record(0)
                site.release.wait(30)
                return
            if path in site.statuses:
                return self.reply(site.statuses[path], b"no")
            if path in site.redirects:
                return self.reply(302, b"", {"Location": site.redirects[path]})
            if path not in site.files:
                return self.reply(404, b"not found")
            data = site.files[path]
            etag = f'"{sha(data)[:16]}"' if path in site.etags else None
            last = email.utils.formatdate(site.modified[path], usegmt=True)
            if etag and self.headers.get("If-None-Match") == etag:
                return self.reply(304, b"", {"ETag": etag})
            ims = self.headers.get("If-Modified-Since")
            if not etag and ims and email.utils.parsedate_to_datetime(ims).timestamp() >= int(site.modified[path]):
                return self.reply(304, b"", {"Last-Modified": last})
            headers = {"Last-Modified": last, "Content-Type": "application/octet-stream"}
            if etag:
                headers["ETag"] = etag
            if path in site.no_length:
                self.record(200)
                self.send_response(200)
                self.send_header("Connection", "close")
                self.end_headers()
                try:
                    for i in range(0, len(data), 65536):
                        self.wfile.write(data[i : i + 65536])
                        with site.lock:
                            site.body_bytes += len(data[i : i + 65536])
                except OSError:
                    pass  # the client stopped reading: expected for oversize tests
                self.close_connection = True
                return
            self.reply(200, data, headers)

    return Handler


class Server:
    def __init__(self, site: Site, tls_context=None):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(site))
        self.httpd.daemon_threads = True
        if tls_context is not None:
            self.httpd.socket = tls_context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def site():
    s = Site()
    server = Server(s)
    s.url = f"http://127.0.0.1:{server.port}"  # type: ignore[attr-defined]
    yield s
    s.release.set()
    server.close()


@pytest.fixture
def cache(tmp_path) -> Path:
    return tmp_path / "cache"


# -- URLs over HTTP -------------------------------------------------------------------------


def test_fetch_tarball_over_http(site, cache):
    data = tar_gz({"model.py": MODEL, "requirements.txt": ""})
    site.put("/m.tar.gz", data)
    got = fetch_url(site.url + "/m.tar.gz", cache)
    assert got.kind == "url" and got.sha == sha(data)
    assert got.root == cache / "trees" / sha(data) / "model-1.0"  # the single top folder is the root
    assert (got.root / "model.py").read_text() == MODEL
    assert got.origin == site.url + "/m.tar.gz"
    assert got.record == f"url:{site.url}/m.tar.gz#sha256={sha(data)}"
    assert not got.cached
    assert site.hits("/m.tar.gz") == 1  # one GET, no HEAD first
    assert not list((cache / "tmp").iterdir())  # no staging left behind


def test_stale_staging_is_swept(site, cache):
    site.put("/m.tar.gz", tar_gz({"model.py": MODEL}))
    fetch_url(site.url + "/m.tar.gz", cache)
    stale = cache / "tmp" / ("0" * 32)
    (stale / "tree").mkdir(parents=True)
    fresh = cache / "tmp" / ("1" * 32)
    fresh.mkdir()
    os.utime(stale, (time.time() - 3 * 86400,) * 2)
    site.put("/n.tar.gz", tar_gz({"model.py": MODEL + "#"}))
    fetch_url(site.url + "/n.tar.gz", cache)
    assert not stale.exists() and fresh.exists()


def test_zip_over_http(site, cache):
    data = zip_bytes({"model.py": MODEL, "lib/helper.py": "X = 1\n"})
    site.put("/m.zip", data)
    got = fetch_url(site.url + "/m.zip", cache)
    assert got.root == cache / "trees" / sha(data)
    assert (got.root / "lib" / "helper.py").read_text() == "X = 1\n"


def test_second_fetch_revalidates_without_download_or_unpack(site, cache, count_extracts):
    data = tar_gz({"model.py": MODEL})
    site.put("/m.tar.gz", data, mtime=1_700_000_000)
    first = fetch_url(site.url + "/m.tar.gz", cache)
    sent = site.body_bytes
    second = fetch_url(site.url + "/m.tar.gz", cache)
    assert second.cached and second.sha == first.sha and second.root == first.root
    assert len(count_extracts) == 1
    assert site.body_bytes == sent  # nothing downloaded the second time
    assert site.hits("/m.tar.gz", 200) == 1 and site.hits("/m.tar.gz", 304) == 1
    conditional = site.requests[-1][3]
    assert "If-Modified-Since" in conditional


def test_changed_object_is_downloaded_again(site, cache, count_extracts):
    old = tar_gz({"model.py": MODEL})
    site.put("/m.tar.gz", old, mtime=1_700_000_000)
    a = fetch_url(site.url + "/m.tar.gz", cache)
    new = tar_gz({"model.py": MODEL + "\n# v2\n"})
    site.put("/m.tar.gz", new, mtime=1_700_000_100)
    b = fetch_url(site.url + "/m.tar.gz", cache)
    assert (a.sha, b.sha) == (sha(old), sha(new))
    assert not b.cached and "# v2" in (b.root / "model.py").read_text()
    assert len(count_extracts) == 2
    assert (a.root / "model.py").read_text() == MODEL  # the old tree is untouched


def test_etag_revalidation(site, cache):
    data = tar_gz({"model.py": MODEL})
    site.put("/e.tar.gz", data)
    site.etags.add("/e.tar.gz")
    fetch_url(site.url + "/e.tar.gz", cache)
    again = fetch_url(site.url + "/e.tar.gz", cache)
    assert again.cached
    assert site.requests[-1][3].get("If-None-Match") == f'"{sha(data)[:16]}"'
    assert site.hits("/e.tar.gz", 304) == 1


def test_refresh_downloads_but_reuses_the_tree(site, cache, count_extracts):
    data = tar_gz({"model.py": MODEL})
    site.put("/m.tar.gz", data, mtime=1_700_000_000)
    fetch_url(site.url + "/m.tar.gz", cache)
    again = fetch_url(site.url + "/m.tar.gz", cache, refresh=True)
    assert site.hits("/m.tar.gz", 200) == 2
    assert len(count_extracts) == 1 and again.sha == sha(data)


def test_identical_bytes_at_two_urls_share_one_tree(site, cache, count_extracts):
    data = tar_gz({"model.py": MODEL})
    site.put("/a.tar.gz", data)
    site.put("/b.tar.gz", data)
    a = fetch_url(site.url + "/a.tar.gz", cache)
    b = fetch_url(site.url + "/b.tar.gz", cache)
    assert a.root == b.root and len(count_extracts) == 1
    assert a.origin != b.origin


def test_concurrent_fetches_of_one_url(site, cache):
    data = tar_gz({"model.py": MODEL})
    site.put("/m.tar.gz", data)
    results, errors = [], []

    def go():
        try:
            results.append(fetch_url(site.url + "/m.tar.gz", cache, refresh=True))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=go) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert {r.root for r in results} == {cache / "trees" / sha(data) / "model-1.0"}
    assert sorted(p.name for p in (cache / "trees").iterdir()) == [sha(data)]


def test_not_found(site, cache):
    with pytest.raises(SourceNotFound, match=r"/nope\.tar\.gz: not found \(HTTP 404\)"):
        fetch_url(site.url + "/nope.tar.gz", cache)


def test_http_errors_are_classified(site, cache):
    site.statuses["/private.tar.gz"] = 403
    site.statuses["/broken.tar.gz"] = 500
    with pytest.raises(SourceAccessDenied, match="403"):
        fetch_url(site.url + "/private.tar.gz", cache)
    with pytest.raises(SourceUnreachable, match="500"):
        fetch_url(site.url + "/broken.tar.gz", cache)


def test_oversize_with_content_length_is_refused_before_reading(site, cache):
    big = os.urandom(300_000)
    site.put("/big.tar.gz", b"\x1f\x8b" + big)
    with pytest.raises(SourceTooLarge, match=r"big\.tar\.gz: .* larger than the .* cap"):
        fetch_url(site.url + "/big.tar.gz", cache, max_bytes=100_000)
    assert not list((cache / "trees").iterdir())


def test_oversize_without_content_length_stops_while_reading(site, cache):
    big = b"\x1f\x8b" + os.urandom(3_000_000)
    site.put("/stream.tar.gz", big)
    site.no_length.add("/stream.tar.gz")
    with pytest.raises(SourceTooLarge, match="larger than the"):
        fetch_url(site.url + "/stream.tar.gz", cache, max_bytes=200_000)
    assert not list((cache / "trees").iterdir())


def test_not_an_archive(site, cache):
    site.put("/readme.txt", b"hello, this is not an archive")
    with pytest.raises(NotAnArchive, match=r"readme\.txt: not a \.tar\.gz, \.tar or \.zip archive"):
        fetch_url(site.url + "/readme.txt", cache)
    site.put("/repo.git", b"<html>")
    with pytest.raises(NotAnArchive, match="model.git"):
        fetch_url(site.url + "/repo.git", cache)


def test_corrupt_archive_is_not_an_archive(site, cache):
    site.put("/bad.tar.gz", b"\x1f\x8b" + b"garbage" * 100)
    with pytest.raises(NotAnArchive, match="bad.tar.gz"):
        fetch_url(site.url + "/bad.tar.gz", cache)


def test_unsafe_archive_is_refused(site, cache):
    site.put("/evil.tar.gz", evil_tar())
    with pytest.raises(UnsafeArchive, match=r"evil\.tar\.gz: archive member '\.\./evil\.txt'"):
        fetch_url(site.url + "/evil.tar.gz", cache)
    assert not list((cache / "trees").iterdir())
    assert not (cache / "evil.txt").exists() and not (cache / "trees" / "evil.txt").exists()
    assert not list((cache / "tmp").iterdir())


def test_unpacked_size_cap(site, cache):
    data = tar_gz({"zeros.bin": b"\0" * 2_000_000})  # compresses to a few KB
    site.put("/bomb.tar.gz", data)
    assert len(data) < 100_000
    with pytest.raises(SourceTooLarge, match="unpacks to more than"):
        fetch_url(site.url + "/bomb.tar.gz", cache, policy=FetchPolicy(max_bytes=1_000_000))


def test_unreachable(cache):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    with pytest.raises(SourceUnreachable, match=f"127.0.0.1:{port}/m.tar.gz: cannot connect"):
        fetch_url(f"http://127.0.0.1:{port}/m.tar.gz", cache)


def test_stalled_server_times_out(site, cache):
    site.hang.add("/slow.tar.gz")
    with pytest.raises(SourceUnreachable, match="slow.tar.gz"):
        fetch_url(site.url + "/slow.tar.gz", cache, policy=FetchPolicy(timeout=1))


def test_redirects_are_followed_and_checked(site, cache):
    data = tar_gz({"model.py": MODEL})
    site.put("/real.tar.gz", data)
    site.redirects["/latest.tar.gz"] = "/real.tar.gz"
    got = fetch_url(site.url + "/latest.tar.gz", cache)
    assert got.sha == sha(data) and got.origin.endswith("/latest.tar.gz")
    site.redirects["/away.tar.gz"] = "http://example.com/m.tar.gz"  # a downgrade to plain http elsewhere
    with pytest.raises(UnsupportedSource, match="redirected to a URL that is not accepted"):
        fetch_url(site.url + "/away.tar.gz", cache)
    site.redirects["/loop1"] = "/loop2"
    site.redirects["/loop2"] = "/loop1"
    with pytest.raises(SourceUnreachable, match="redirects"):
        fetch_url(site.url + "/loop1", cache)


def test_credentials_never_reach_the_record(site, cache):
    data = tar_gz({"model.py": MODEL})
    site.put("/m.tar.gz?X-Amz-Signature=abc123&v=2", data)
    port = site.url.rsplit(":", 1)[1]
    got = fetch_url(f"http://user:s3cret@127.0.0.1:{port}/m.tar.gz?X-Amz-Signature=abc123&v=2", cache)
    assert "s3cret" not in got.record and "abc123" not in got.record
    assert got.origin == f"http://127.0.0.1:{port}/m.tar.gz?X-Amz-Signature=REDACTED&v=2"
    # but the server did get them
    assert site.requests[-1][3].get("Authorization", "").startswith("Basic ")
    index = "".join(p.read_text() for p in (cache / "urls").iterdir())
    assert "s3cret" not in index and "abc123" not in index
    with pytest.raises(SourceNotFound) as exc:
        fetch_url(f"http://user:s3cret@127.0.0.1:{port}/missing.tar.gz", cache)
    assert "s3cret" not in str(exc.value)


# -- policy -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url, message",
    [
        ("http://example.com/m.tar.gz", "plain http:// is not accepted"),
        ("http://10.0.0.1/m.tar.gz", "plain http:// is not accepted"),
        ("ftp://example.com/m.tar.gz", "unsupported scheme 'ftp'"),
        ("gs://bucket/m.tar.gz", "unsupported scheme 'gs'"),
        ("/local/m.tar.gz", "unsupported scheme"),
        ("git://example.com/repo.git", "model.git"),
        ("s3://bucket-only", "s3://BUCKET/KEY"),
        ("file://host/m.tar.gz", "local path"),
        ("file:relative.tar.gz", "absolute path"),
        ("https:///nohost", "no host"),
        ("https://example.com/a b.tar.gz", "spaces"),
        ("https://example.com:99999/m.tar.gz", "not a valid URL"),
    ],
)
def test_refused_urls(url, message, cache):
    with pytest.raises(UnsupportedSource, match=message) as exc:
        fetch_url(url, cache)
    assert isinstance(exc.value, InputError) and isinstance(exc.value, FetchError)


def test_loopback_http_can_be_disabled(site, cache):
    site.put("/m.tar.gz", tar_gz({"model.py": MODEL}))
    with pytest.raises(UnsupportedSource, match="plain http"):
        fetch_url(site.url + "/m.tar.gz", cache, policy=FetchPolicy(loopback_http=False))
    assert site.requests == []
    got = fetch_url(site.url.replace("127.0.0.1", "localhost") + "/m.tar.gz", cache)
    assert (got.root / "model.py").exists()


# -- HTTPS with a private CA ---------------------------------------------------------------


@pytest.fixture
def tls_site(tmp_path):
    try:
        import trustme
    except ImportError:
        need_service("trustme", "pip install trustme (test extra) to make a throw-away CA")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(ctx)
    s = Site()
    server = Server(s, ctx)
    s.url = f"https://127.0.0.1:{server.port}"  # type: ignore[attr-defined]
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    s.ca_file = ca_file  # type: ignore[attr-defined]
    yield s
    s.release.set()
    server.close()


def test_https_with_a_trusted_private_ca(tls_site, cache, monkeypatch):
    data = tar_gz({"model.py": MODEL})
    tls_site.put("/m.tar.gz", data)
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_site.ca_file))
    got = fetch_url(tls_site.url + "/m.tar.gz", cache)
    assert got.sha == sha(data)
    assert fetch_url(tls_site.url + "/m.tar.gz", cache).cached


def test_https_with_an_untrusted_certificate_is_refused(tls_site, cache, monkeypatch):
    tls_site.put("/m.tar.gz", tar_gz({"model.py": MODEL}))
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    with pytest.raises(SourceUnreachable, match="SSL_CERT_FILE|certificate"):
        fetch_url(tls_site.url + "/m.tar.gz", cache)
    assert tls_site.hits("/m.tar.gz") == 0


# -- file:// -------------------------------------------------------------------------------------


def test_file_urls(tmp_path, cache, count_extracts):
    data = tar_gz({"model.py": MODEL})
    archive = tmp_path / "dist" / "m.tar.gz"
    archive.parent.mkdir()
    archive.write_bytes(data)
    got = fetch_url(archive.as_uri(), cache)
    assert got.sha == sha(data) and (got.root / "model.py").exists()
    again = fetch_url(archive.as_uri(), cache)
    assert again.root == got.root and len(count_extracts) == 1
    with pytest.raises(SourceNotFound, match="no such file"):
        fetch_url((tmp_path / "missing.tar.gz").as_uri(), cache)
    with pytest.raises(NotAnArchive, match="is a folder"):
        fetch_url(archive.parent.as_uri(), cache)
    with pytest.raises(SourceTooLarge):
        fetch_url(archive.as_uri(), cache, max_bytes=10)


def test_file_roots(tmp_path, cache):
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "m.tar.gz").write_bytes(tar_gz({"model.py": MODEL}))
    elsewhere = tmp_path / "elsewhere.tar.gz"
    elsewhere.write_bytes(tar_gz({"model.py": MODEL}))
    (allowed / "sneaky.tar.gz").symlink_to(elsewhere)
    policy = FetchPolicy(file_roots=(str(allowed),))
    assert fetch_url((allowed / "m.tar.gz").as_uri(), cache, policy=policy).root.is_dir()
    with pytest.raises(UnsupportedSource, match="must be under"):
        fetch_url(elsewhere.as_uri(), cache, policy=policy)
    with pytest.raises(UnsupportedSource, match="must be under"):
        fetch_url((allowed / "sneaky.tar.gz").as_uri(), cache, policy=policy)
    with pytest.raises(UnsupportedSource, match="not enabled"):
        fetch_url((allowed / "m.tar.gz").as_uri(), cache, policy=FetchPolicy.for_server())


# -- git ---------------------------------------------------------------------------------------

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
}


def git(*args: str, cwd: Path | None = None) -> str:
    env = {**os.environ, **GIT_ENV}
    out = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip()


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> dict:
    """A repository: v1 (annotated tag) → mid (lightweight tag 'light') → hidden → main; branch 'feature' from v1."""
    if shutil.which("git") is None:
        need_service("git", "install git")
    root = tmp_path_factory.mktemp("repos")
    path = root / "models.git"
    path.mkdir()
    git("init", "-q", "-b", "main", cwd=path)
    (path / "model.py").write_text(MODEL + "\nVERSION = 1\n")
    (path / "requirements.txt").write_text("")
    (path / "pkg").mkdir()
    (path / "pkg" / "util.py").write_text("X = 1\n")
    git("add", "-A", cwd=path)
    git("commit", "-qm", "one", cwd=path)
    v1 = git("rev-parse", "HEAD", cwd=path)
    git("tag", "-a", "v1", "-m", "release 1", cwd=path)
    git("checkout", "-qb", "feature", cwd=path)
    (path / "model.py").write_text(MODEL + "\nVERSION = 'feature'\n")
    git("commit", "-qam", "feature", cwd=path)
    feature = git("rev-parse", "HEAD", cwd=path)
    git("checkout", "-q", "main", cwd=path)
    (path / "model.py").write_text(MODEL + "\nVERSION = 2\n")
    git("commit", "-qam", "mid", cwd=path)
    mid = git("rev-parse", "HEAD", cwd=path)
    git("tag", "light", cwd=path)
    (path / "model.py").write_text(MODEL + "\nVERSION = 'hidden'\n")
    git("commit", "-qam", "hidden", cwd=path)
    hidden = git("rev-parse", "HEAD", cwd=path)  # the tip of no branch or tag
    (path / "model.py").write_text(MODEL + "\nVERSION = 3\n")
    git("commit", "-qam", "three", cwd=path)
    head = git("rev-parse", "HEAD", cwd=path)
    (path / "unreferenced").write_text("x")
    return {
        "root": root,
        "path": path,
        "url": path.as_uri(),
        "v1": v1,
        "feature": feature,
        "mid": mid,
        "hidden": hidden,
        "head": head,
    }


def version(src: FetchedSource) -> str:
    return (src.root / "model.py").read_text().rsplit("VERSION = ", 1)[1].strip()


def test_git_file_refs(repo, cache):
    tag = fetch_git(repo["url"], "v1", cache)
    assert (tag.commit, version(tag)) == (repo["v1"], "1")
    assert tag.root == cache / "git" / repo["v1"] and tag.sha == repo["v1"]
    assert not (tag.root / ".git").exists() and (tag.root / "pkg" / "util.py").read_text() == "X = 1\n"
    assert tag.record == f"git:{repo['url']}@{repo['v1']}" and tag.ref == "v1"
    branch = fetch_git(repo["url"], "feature", cache)
    assert (branch.commit, version(branch)) == (repo["feature"], "'feature'")
    default = fetch_git(repo["url"], None, cache)
    assert (default.commit, version(default)) == (repo["head"], "3")
    light = fetch_git(repo["url"], "light", cache)
    assert light.commit == repo["mid"]
    by_ref = fetch_git(repo["url"], "refs/heads/main", cache)
    assert by_ref.commit == repo["head"]


def test_git_commit_ids(repo, cache):
    full = fetch_git(repo["url"], repo["hidden"], cache)  # not the tip of any ref
    assert (full.commit, version(full)) == (repo["hidden"], "'hidden'")
    tip = fetch_git(repo["url"], repo["mid"], cache)
    assert (tip.commit, version(tip)) == (repo["mid"], "2")
    short = fetch_git(repo["url"], repo["v1"][:10], cache)
    assert short.commit == repo["v1"] and version(short) == "1"


def test_git_cache(repo, cache, tmp_path, count_extracts):
    first = fetch_git(repo["url"], "v1", cache)
    again = fetch_git(repo["url"], "v1", cache)  # ls-remote only
    assert again.cached and again.root == first.root and len(count_extracts) == 1
    pinned = fetch_git(repo["url"], repo["v1"], cache)
    assert pinned.cached  # the same commit from the same URL: no fetch at all
    # a pinned commit needs no network once fetched from that URL …
    copy = tmp_path / "copy.git"
    shutil.copytree(repo["path"], copy)
    fetch_git(copy.as_uri(), repo["head"], cache)
    shutil.rmtree(copy)
    assert fetch_git(copy.as_uri(), repo["head"], cache).cached
    # … but the same commit id from another URL must be fetched from there
    with pytest.raises(SourceNotFound):
        fetch_git((tmp_path / "other.git").as_uri(), repo["v1"], cache)
    assert len(count_extracts) == 2


def test_git_unknown_ref(repo, cache):
    with pytest.raises(SourceNotFound, match=r"ref 'v9' not found in file://"):
        fetch_git(repo["url"], "v9", cache)
    with pytest.raises(SourceNotFound, match="ref 'deadbeef0' not found"):
        fetch_git(repo["url"], "deadbeef0", cache)
    with pytest.raises(SourceNotFound, match=r"ref '0{40}' not found"):
        fetch_git(repo["url"], "0" * 40, cache)
    assert not list((cache / "git").iterdir()) and not list((cache / "tmp").glob("*/repo.git"))


def test_git_missing_repository(tmp_path, cache):
    with pytest.raises(SourceNotFound, match="not found") as exc:
        fetch_git((tmp_path / "nothing.git").as_uri(), "v1", cache)
    assert "git:" in str(exc.value)  # git's own last line is shown


@pytest.mark.parametrize(
    "url, message",
    [
        ("ext::sh -c touch% /tmp/ancho-pwned", "transport helpers"),
        ("ext::sh", "transport helpers"),
        ("fd::3", "transport helpers"),
        ("-uhelp", "not a repository URL"),
        ("--upload-pack=touch /tmp/x", "not a repository URL"),
        ("http://example.com/repo.git", "plain http"),
        ("ftp://example.com/repo.git", "unsupported transport"),
        ("relative/path", "not a repository URL"),
    ],
)
def test_git_dangerous_transports_refused(url, message, cache):
    with pytest.raises(UnsupportedSource, match=message):
        fetch_git(url, "main", cache)
    assert not Path("/tmp/ancho-pwned").exists()


@pytest.mark.parametrize(
    "ref", ["--upload-pack=touch /tmp/x", "-b", "a..b", "a b", "x:y", "ref~1", "HEAD@{1}", "a/", ".hidden"]
)
def test_git_bad_refs_refused(repo, ref, cache):
    with pytest.raises(FetchError, match="not a valid tag, branch or commit"):
        fetch_git(repo["url"], ref, cache)


def test_git_allow_protocol_is_enforced_by_git_too(repo, cache, tmp_path):
    """Even past the URL check, git itself refuses transports outside GIT_ALLOW_PROTOCOL."""
    env = git_mod._git_env(FetchPolicy(git_protocols=("https",)), tmp_path / "h")
    assert env["GIT_ALLOW_PROTOCOL"] == "https" and env["GIT_TERMINAL_PROMPT"] == "0"
    out = subprocess.run(["git", "ls-remote", repo["url"]], env=env, capture_output=True, text=True)
    assert out.returncode != 0 and "not allowed" in out.stderr
    out = subprocess.run(
        ["git", "ls-remote", "ext::sh -c true"],
        env=git_mod._git_env(FetchPolicy(), tmp_path / "h"),
        capture_output=True,
        text=True,
    )
    assert out.returncode != 0 and "not allowed" in out.stderr
    with pytest.raises(UnsupportedSource, match="file transport is not allowed"):
        fetch_git(repo["url"], "v1", cache, policy=FetchPolicy(git_protocols=("https",)))
    with pytest.raises(UnsupportedSource, match="not enabled"):
        fetch_git(repo["url"], "v1", cache, policy=FetchPolicy.for_server())
    with pytest.raises(UnsupportedSource, match="ssh transport is not allowed"):
        fetch_git("git@example.com:org/repo.git", "v1", cache, policy=FetchPolicy.for_server())


def test_git_no_credential_prompt(cache, site):
    """A repository that wants a password fails at once instead of prompting."""
    site.statuses["/private.git/info/refs?service=git-upload-pack"] = 401
    with pytest.raises(SourceAccessDenied, match="access denied"):
        fetch_git(site.url + "/private.git", "main", cache)
    with pytest.raises(SourceAccessDenied, match="access denied") as exc:
        fetch_git(site.url.replace("://", "://user:s3cret@") + "/private.git", "main", cache)
    assert "s3cret" not in str(exc.value)
    assert site.hits("/private.git/info/refs?service=git-upload-pack") >= 2


def test_git_submodules_not_fetched(tmp_path, cache):
    sub = tmp_path / "sub"
    sub.mkdir()
    git("init", "-q", "-b", "main", cwd=sub)
    (sub / "secret.py").write_text("S = 1\n")
    git("add", "-A", cwd=sub)
    git("commit", "-qm", "s", cwd=sub)
    top = tmp_path / "top"
    top.mkdir()
    git("init", "-q", "-b", "main", cwd=top)
    (top / "model.py").write_text(MODEL)
    git("-c", "protocol.file.allow=always", "submodule", "--quiet", "add", sub.as_uri(), "vendor", cwd=top)
    git("add", "-A", cwd=top)
    git("commit", "-qm", "top", cwd=top)
    got = fetch_git(top.as_uri(), "main", cache)
    assert (got.root / "model.py").exists() and (got.root / ".gitmodules").exists()
    assert not (got.root / "vendor" / "secret.py").exists()


def test_git_symlink_outside_is_refused(tmp_path, cache):
    r = tmp_path / "links"
    r.mkdir()
    git("init", "-q", "-b", "main", cwd=r)
    (r / "model.py").write_text(MODEL)
    (r / "passwd").symlink_to("/etc/passwd")
    git("add", "-A", cwd=r)
    git("commit", "-qm", "l", cwd=r)
    with pytest.raises(UnsafeArchive, match="passwd"):
        fetch_git(r.as_uri(), "main", cache)


def test_git_size_cap(tmp_path, cache):
    r = tmp_path / "big"
    r.mkdir()
    git("init", "-q", "-b", "main", cwd=r)
    (r / "model.py").write_text(MODEL)
    (r / "data.bin").write_bytes(os.urandom(400_000))
    git("add", "-A", cwd=r)
    git("commit", "-qm", "big", cwd=r)
    with pytest.raises(SourceTooLarge, match="cap"):
        fetch_git(r.as_uri(), "main", cache, policy=FetchPolicy(max_bytes=100_000))
    many = tmp_path / "many"
    many.mkdir()
    git("init", "-q", "-b", "main", cwd=many)
    for i in range(30):
        (many / f"f{i}.py").write_text(f"X = {i}\n")
    git("add", "-A", cwd=many)
    git("commit", "-qm", "many", cwd=many)
    with pytest.raises(SourceTooLarge, match="30 files"):
        fetch_git(many.as_uri(), "main", cache, policy=FetchPolicy(max_files=20))


# -- git daemon ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def daemon(repo):
    if shutil.which("git") is None:
        need_service("git", "install git")
    port = free_port()
    proc = subprocess.Popen(
        [
            "git",
            "daemon",
            "--reuseaddr",
            f"--base-path={repo['root']}",
            "--export-all",
            "--informative-errors",
            "--listen=127.0.0.1",
            f"--port={port}",
            str(repo["root"]),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    for _ in range(200):
        if proc.poll() is not None:
            need_service("git daemon", proc.stderr.read().decode())
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.05)
    else:
        proc.kill()
        need_service("git daemon", "it did not start listening")
    yield f"git://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


@pytest.mark.slow
def test_git_daemon_refs(daemon, repo, cache):
    url = f"{daemon}/models.git"
    assert fetch_git(url, "v1", cache).commit == repo["v1"]
    assert fetch_git(url, "feature", cache).commit == repo["feature"]
    assert fetch_git(url, None, cache).commit == repo["head"]
    hidden = fetch_git(url, repo["hidden"], cache)
    assert hidden.commit == repo["hidden"] and version(hidden) == "'hidden'"
    assert fetch_git(url, repo["v1"][:12], cache).commit == repo["v1"]
    with pytest.raises(SourceNotFound, match=r"ref 'v9' not found in git://127\.0\.0\.1"):
        fetch_git(url, "v9", cache)
    with pytest.raises(SourceNotFound, match="not found"):
        fetch_git(f"{daemon}/nothing.git", "v1", cache)


@pytest.mark.slow
def test_git_daemon_server_policy(daemon, repo, cache):
    """A server takes git:// only when the operator enables it, and from 127.0.0.1 only with private hosts allowed."""
    with pytest.raises(UnsupportedSource, match="source_git_protocol"):
        fetch_git(f"{daemon}/models.git", "v1", cache, policy=FetchPolicy.for_server())
    with pytest.raises(UnsupportedSource, match="internal address.*source_private_hosts"):
        fetch_git(f"{daemon}/models.git", "v1", cache, policy=FetchPolicy.for_server(git_protocol=True))
    got = fetch_git(
        f"{daemon}/models.git", "v1", cache, policy=FetchPolicy.for_server(git_protocol=True, private_hosts=True)
    )
    assert got.commit == repo["v1"]


@pytest.mark.slow
def test_git_fetch_by_id_refused_falls_back_to_full_fetch(daemon, repo, cache, monkeypatch):
    """Protocol v0 servers refuse unadvertised commits by id: the fetch falls back to fetching all refs."""
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", "protocol.version")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", "0")
    commands = []
    real_run = git_mod._Git.run

    def recording(self, args, *a, **kw):
        result = real_run(self, args, *a, **kw)
        commands.append((args, result[0]))
        return result

    monkeypatch.setattr(git_mod._Git, "run", recording)
    got = fetch_git(f"{daemon}/models.git", repo["hidden"], cache)
    assert got.commit == repo["hidden"] and version(got) == "'hidden'"
    fetches = [(args, rc) for args, rc in commands if args[0] == "fetch"]
    assert [("--depth" in args, rc != 0) for args, rc in fetches] == [(True, True), (False, False)]
    assert fetches[1][0][-1] == "+refs/*:refs/fetched/*"
    with pytest.raises(SourceNotFound, match="not found"):
        fetch_git(f"{daemon}/models.git", "1" * 40, cache)


@pytest.mark.slow
def test_git_daemon_unreachable(cache):
    with pytest.raises(SourceUnreachable, match="cannot reach"):
        fetch_git(f"git://127.0.0.1:{free_port()}/models.git", "v1", cache)


# -- S3 (moto's standalone server) --------------------------------------------------------------


@pytest.fixture(scope="module")
def moto_server():
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        need_service("moto", "pip install 'moto[server]' (test extra) for a local S3 server")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(moto_server, monkeypatch, tmp_path):
    """AWS settings pointing at the moto server (and nowhere near a real account)."""
    for var in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    import boto3

    client = boto3.client("s3", endpoint_url=moto_server)
    bucket = f"models-{os.urandom(4).hex()}"
    client.create_bucket(Bucket=bucket)
    return client, bucket


@pytest.mark.slow
def test_s3_fetch_and_cache(s3, cache, count_extracts):
    client, bucket = s3
    data = tar_gz({"model.py": MODEL})
    client.put_object(Bucket=bucket, Key="coin/model.tar.gz", Body=data)
    url = f"s3://{bucket}/coin/model.tar.gz"
    got = fetch_url(url, cache)
    assert got.sha == sha(data) and (got.root / "model.py").read_text() == MODEL
    assert got.origin == url and got.record == f"url:{url}#sha256={sha(data)}"
    again = fetch_url(url, cache)
    assert again.cached and again.root == got.root and len(count_extracts) == 1
    new = tar_gz({"model.py": MODEL + "\n# 2\n"})
    client.put_object(Bucket=bucket, Key="coin/model.tar.gz", Body=new)
    changed = fetch_url(url, cache)
    assert changed.sha == sha(new) and not changed.cached


@pytest.mark.slow
def test_s3_endpoint_from_aws_endpoint_url_s3(s3, moto_server, cache, monkeypatch):
    client, bucket = s3
    client.put_object(Bucket=bucket, Key="m.zip", Body=zip_bytes({"model.py": MODEL}))
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_server)
    assert (fetch_url(f"s3://{bucket}/m.zip", cache).root / "model.py").exists()


@pytest.mark.slow
def test_s3_errors(s3, cache, moto_server, monkeypatch):
    client, bucket = s3
    with pytest.raises(SourceNotFound, match=f"s3://{bucket}/missing.tar.gz: no such bucket or key"):
        fetch_url(f"s3://{bucket}/missing.tar.gz", cache)
    with pytest.raises(SourceNotFound, match="no such bucket or key"):
        fetch_url("s3://no-such-bucket-here/m.tar.gz", cache)
    client.put_object(Bucket=bucket, Key="big.tar.gz", Body=b"\x1f\x8b" + os.urandom(50_000))
    with pytest.raises(SourceTooLarge, match="larger than"):
        fetch_url(f"s3://{bucket}/big.tar.gz", cache, max_bytes=10_000)
    client.put_object(Bucket=bucket, Key="notes.txt", Body=b"just text")
    with pytest.raises(NotAnArchive):
        fetch_url(f"s3://{bucket}/notes.txt", cache)
    client.put_object(Bucket=bucket, Key="evil.tar.gz", Body=evil_tar())
    with pytest.raises(UnsafeArchive, match="evil.txt"):
        fetch_url(f"s3://{bucket}/evil.tar.gz", cache)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with pytest.raises(SourceUnreachable, match="AWS_ENDPOINT_URL_S3"):
        fetch_url(f"s3://{bucket}/m.tar.gz", cache)


@pytest.mark.slow
def test_s3_bucket_allow_list(s3, cache):
    client, bucket = s3
    client.put_object(Bucket=bucket, Key="m.tar.gz", Body=tar_gz({"model.py": MODEL}))
    allowed = FetchPolicy.for_server(s3_buckets=(bucket,))
    assert fetch_url(f"s3://{bucket}/m.tar.gz", cache, policy=allowed).root.is_dir()
    with pytest.raises(UnsupportedSource, match="bucket 'other' is not one"):
        fetch_url("s3://other/m.tar.gz", cache, policy=allowed)
    with pytest.raises(UnsupportedSource, match="s3:// sources are not enabled.*source_s3_buckets"):
        fetch_url(f"s3://{bucket}/m.tar.gz", cache, policy=FetchPolicy(s3_buckets=()))
    with pytest.raises(UnsupportedSource, match="source_s3_buckets"):
        fetch_url(f"s3://{bucket}/m.tar.gz", cache, policy=FetchPolicy.for_server())  # a server's default: none
    for sneaky in (f"s3://other/{bucket}/m.tar.gz", f"s3://{bucket}@other/m.tar.gz", f"s3://other?{bucket}/m.tar.gz"):
        with pytest.raises(UnsupportedSource, match="bucket 'other' is not one|no '\\?', '#' or '@'"):
            fetch_url(sneaky, cache, policy=allowed)


@pytest.mark.slow
def test_s3_without_credentials_reads_anonymously(s3, cache, monkeypatch):
    client, bucket = s3
    client.put_object(Bucket=bucket, Key="public.tar.gz", Body=tar_gz({"model.py": MODEL}), ACL="public-read")
    client.put_object(Bucket=bucket, Key="private.tar.gz", Body=tar_gz({"model.py": MODEL}))
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    assert (fetch_url(f"s3://{bucket}/public.tar.gz", cache).root / "model.py").exists()
    with pytest.raises(SourceAccessDenied, match="no AWS credentials are configured"):
        fetch_url(f"s3://{bucket}/private.tar.gz", cache)


# -- fetch_source (the run spec's model) ------------------------------------------------------


def test_fetch_source_dispatch(site, repo, cache):
    site.put("/m.tar.gz", tar_gz({"model.py": MODEL}))
    assert fetch_source({"url": site.url + "/m.tar.gz", "entry": "model.py:Coin"}, cache).kind == "url"
    got = fetch_source({"git": repo["url"], "ref": "v1", "entry": None}, cache)
    assert got.kind == "git" and got.commit == repo["v1"]
    assert fetch_source({"git": repo["url"]}, cache).commit == repo["head"]


def test_fetch_source_errors_name_the_field(site, repo, cache, tmp_path):
    def field(spec):
        with pytest.raises(FetchError) as exc:
            fetch_source(spec, cache)
        return exc.value.field

    assert field({"url": site.url + "/missing.tar.gz"}) == "url"
    assert field({"url": "ftp://x/m.tar.gz"}) == "url"
    assert field({"git": repo["url"], "ref": "v9"}) == "ref"
    assert field({"git": repo["url"], "ref": "a..b"}) == "ref"
    assert field({"git": repo["url"], "ref": "1" * 40}) == "ref"
    assert field({"git": (tmp_path / "none.git").as_uri(), "ref": "v1"}) == "git"
    assert field({"git": "ext::sh", "ref": "v1"}) == "git"


@pytest.mark.parametrize(
    "spec, message",
    [
        ({}, "give url or git"),
        ({"url": "https://x/m.tar.gz", "git": "https://x/r.git"}, "not both"),
        ({"url": "https://x/m.tar.gz", "ref": "v1"}, "ref goes with model.git"),
        ({"upload": "ab" * 32}, "uploaded models are not fetched"),
        ({"path": "/x"}, "unknown field"),
        ("https://x/m.tar.gz", "give"),
    ],
)
def test_fetch_source_bad_specs(spec, message, cache):
    with pytest.raises(InputError, match=message):
        fetch_source(spec, cache)


# -- the command-line form -------------------------------------------------------------------


@pytest.mark.parametrize(
    "arg, spec, entry",
    [
        (
            "git+https://host/repo.git@v1:model.py:Model",
            {"git": "https://host/repo.git", "ref": "v1"},
            "model.py:Model",
        ),
        ("git+https://host:8443/org/repo.git@v1", {"git": "https://host:8443/org/repo.git", "ref": "v1"}, None),
        ("git+https://host/repo.git", {"git": "https://host/repo.git"}, None),
        ("git+https://host/repo.git:Model", {"git": "https://host/repo.git"}, "Model"),
        (
            "git+https://host/repo.git@feature/x-1:src/m.py",
            {"git": "https://host/repo.git", "ref": "feature/x-1"},
            "src/m.py",
        ),
        (
            "git+ssh://git@host:2222/org/repo.git@" + "a" * 40 + ":m.py:C",
            {"git": "ssh://git@host:2222/org/repo.git", "ref": "a" * 40},
            "m.py:C",
        ),
        ("git+https://user:tok@host/repo.git@v2", {"git": "https://user:tok@host/repo.git", "ref": "v2"}, None),
        ("git+file:///srv/repos/m.git@main:model.py", {"git": "file:///srv/repos/m.git", "ref": "main"}, "model.py"),
        ("https://host/model.tar.gz:model.py:Class", {"url": "https://host/model.tar.gz"}, "model.py:Class"),
        ("https://host:8443/dl/model.tar.gz", {"url": "https://host:8443/dl/model.tar.gz"}, None),
        ("https://host:8443/dl/model.tar.gz:Gambler", {"url": "https://host:8443/dl/model.tar.gz"}, "Gambler"),
        ("https://host/get?id=3&t=12:30", {"url": "https://host/get?id=3&t=12:30"}, None),
        ("https://host/a:b/m.zip:pkg/run.py:Sim", {"url": "https://host/a:b/m.zip"}, "pkg/run.py:Sim"),
        ("s3://bucket/key.tar.gz", {"url": "s3://bucket/key.tar.gz"}, None),
        ("s3://bucket/dir/key.tar.gz:model.py", {"url": "s3://bucket/dir/key.tar.gz"}, "model.py"),
        ("file:///data/m.zip:Coin", {"url": "file:///data/m.zip"}, "Coin"),
        ("http://127.0.0.1:8000/m.tar.gz:m.py:C", {"url": "http://127.0.0.1:8000/m.tar.gz"}, "m.py:C"),
    ],
)
def test_parse_source_arg_examples(arg, spec, entry):
    assert parse_source_arg(arg) == (spec, entry)


@pytest.mark.parametrize(
    "arg", ["model.py", "models/", "model.py:Gambler", "examples/gambler:model.py:Gambler", "/abs/x.py:C", "C:/x"]
)
def test_parse_source_arg_local_paths(arg):
    assert parse_source_arg(arg) is None


@pytest.mark.parametrize(
    "arg, message",
    [
        ("ftp://host/m.tar.gz", "unsupported scheme 'ftp'"),
        ("git+/srv/repo", "git\\+https://"),
        ("git+https://host/repo.git@:model.py", "nothing after '@'"),
    ],
)
def test_parse_source_arg_errors(arg, message):
    with pytest.raises(UnsupportedSource, match=message):
        parse_source_arg(arg)


_seg = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=1, max_size=8).filter(
    lambda s: s not in (".", "..")
)
_ident = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True)
_pyfile = st.builds(lambda dirs, stem: "/".join([*dirs, stem + ".py"]), st.lists(_seg, max_size=2), _ident)
_host = st.sampled_from(["host", "example.com", "127.0.0.1", "[::1]", "git.example.org"])
_port = st.one_of(st.none(), st.integers(1, 65535))
_user = st.one_of(st.none(), st.just("user"), st.just("user:p4ss"))
_entry = st.one_of(
    st.none(),
    _ident,
    _pyfile,
    st.builds(lambda f, c: f"{f}:{c}", _pyfile, _ident),
)
_ref = st.one_of(
    st.none(),
    st.builds(
        lambda parts: "/".join(parts),
        st.lists(_seg.filter(lambda s: not s.endswith(".") and not s.startswith(".")), min_size=1, max_size=3),
    ),
    st.from_regex(r"[0-9a-f]{40}", fullmatch=True),
)


def _authority(user, host, port) -> str:
    return (f"{user}@" if user else "") + host + (f":{port}" if port else "")


@settings(max_examples=200, deadline=None)
@given(
    scheme=st.sampled_from(["https", "http", "s3", "file"]),
    user=_user,
    host=_host,
    port=_port,
    path=st.lists(_seg, min_size=1, max_size=4),
    ext=st.sampled_from([".tar.gz", ".zip", ".tar", ""]),
    entry=_entry,
)
def test_parse_source_arg_url_roundtrip(scheme, user, host, port, path, ext, entry):
    authority = "" if scheme == "file" else _authority(user, host, port)
    url = f"{scheme}://{authority}/" + "/".join(path) + ext
    arg = url + (f":{entry}" if entry else "")
    assert parse_source_arg(arg) == ({"url": url}, entry)


@settings(max_examples=200, deadline=None)
@given(
    scheme=st.sampled_from(["https", "http", "ssh", "git", "file"]),
    user=_user,
    host=_host,
    port=_port,
    path=st.lists(_seg, min_size=1, max_size=4),
    dotgit=st.booleans(),
    ref=_ref,
    entry=_entry,
)
def test_parse_source_arg_git_roundtrip(scheme, user, host, port, path, dotgit, ref, entry):
    authority = "" if scheme == "file" else _authority(user, host, port)
    url = f"{scheme}://{authority}/" + "/".join(path) + (".git" if dotgit else "")
    arg = "git+" + url + (f"@{ref}" if ref else "") + (f":{entry}" if entry else "")
    expected = {"git": url, **({"ref": ref} if ref else {})}
    assert parse_source_arg(arg) == (expected, entry)


def test_redact_url():
    assert redact_url("https://u:p@h:1/x?a=1&token=zzz#frag") == "https://h:1/x?a=1&token=REDACTED"
    assert redact_url("s3://bucket/key") == "s3://bucket/key"
    assert redact_url("git@github.com:org/repo.git") == "git@github.com:org/repo.git"
    assert redact_url("/srv/repo") == "/srv/repo"


# -- ancho run's view: from an argument to a loadable model -----------------------------------


def test_resolve_source_arg_loads(tmp_path, cache, repo):
    from ancho.loading import load_model

    archive = tmp_path / "coin.tar.gz"
    archive.write_bytes(tar_gz({"model.py": MODEL, "other.py": "Y = 2\n"}))
    target, fetched = resolve_source_arg(archive.as_uri() + ":model.py:Coin", cache)
    assert target == f"{fetched.root}:model.py:Coin"
    assert load_model(target).name == "Coin"
    target, fetched = resolve_source_arg(f"git+{repo['url']}@v1:model.py", cache)
    assert fetched.commit == repo["v1"] and target == f"{fetched.root}:model.py"
    assert load_model(target).name == "Coin"
    assert resolve_source_arg("examples/gambler.py", cache) is None
    with pytest.raises(InputError, match="not in the model source"):
        resolve_source_arg(archive.as_uri() + ":missing.py:Coin", cache)
