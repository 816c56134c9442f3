"""A server with small limits: oversize bodies get 413, archives over the caps and models that hang at import get 422."""

from __future__ import annotations

import os
import socket

import pytest

from .conftest import GAMBLER, Server, add_user, detail_text, is_json_error, tar_gz, upload, upload_id, zip_bytes

LIMIT = 65536


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    home = tmp_path_factory.mktemp("small") / "home"
    token = add_user(home, "alice")
    srv = Server(
        home,
        {
            "ANCHO_MAX_BODY_BYTES": str(LIMIT),
            "ANCHO_MAX_ARCHIVE_FILES": "20",
            "ANCHO_MAX_ARCHIVE_BYTES": str(1 << 20),
            "ANCHO_INSPECT_TIMEOUT": "3",
        },
        name="small-limits",
    ).start()
    srv.token = token
    yield srv
    srv.kill()


@pytest.fixture(scope="module")
def client(small):
    with small.client(small.token) as c:
        yield c


def _chunks(total: int, size: int = 8192):
    sent = 0
    while sent < total:
        n = min(size, total - sent)
        sent += n
        yield b"x" * n


def test_declared_oversize_upload_is_413(client):
    r = upload(client, os.urandom(LIMIT + 1000))
    assert r.status_code == 413 and is_json_error(r)
    assert f"{LIMIT:,}" in r.json()["detail"]


def test_streamed_oversize_json_is_413(client):
    """No Content-Length (chunked transfer): counted while read, still a 413 and not a parse error."""
    r = client.post("/runs", content=_chunks(3 * LIMIT), headers={"content-type": "application/json"})
    assert r.status_code == 413, r.text
    assert is_json_error(r)


def test_streamed_oversize_multipart_is_413(client):
    def body():
        yield b'--XX\r\nContent-Disposition: form-data; name="file"; filename="m.tar.gz"\r\n\r\n'
        yield from _chunks(2 * LIMIT)
        yield b"\r\n--XX--\r\n"

    r = client.post("/models", content=body(), headers={"content-type": "multipart/form-data; boundary=XX"})
    assert r.status_code == 413, r.text


def test_streamed_body_under_the_limit_is_accepted(client):
    data = tar_gz({"model.py": GAMBLER})

    def body():
        yield b'--XX\r\nContent-Disposition: form-data; name="file"; filename="m.tar.gz"\r\n\r\n'
        yield data
        yield b"\r\n--XX--\r\n"

    r = client.post("/models", content=body(), headers={"content-type": "multipart/form-data; boundary=XX"})
    assert r.status_code == 201, r.text


def test_oversize_without_a_token_is_refused_too(small):
    with small.client() as c:
        r = upload(c, os.urandom(LIMIT + 1))
    assert r.status_code in (401, 413) and is_json_error(r)


@pytest.mark.parametrize("length", [b"abc", b"-1", b"99999999999999999999999999"])
def test_bad_content_length_header(small, length):
    with socket.create_connection(("127.0.0.1", small.port), timeout=30) as s:
        s.sendall(
            b"POST /api/v1/runs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            + small.token.encode()
            + b"\r\nContent-Type: application/json\r\nContent-Length: "
            + length
            + b"\r\nConnection: close\r\n\r\n{}"
        )
        head = s.recv(65536).split(b"\r\n", 1)[0]
    status = int(head.split()[1])
    assert 400 <= status < 500, head


def test_server_is_fine_after_oversize_requests(client):
    assert client.get("/runs").status_code == 200


# -- archive caps ---------------------------------------------------------------------
def test_too_many_members(small, client):
    r = upload(client, tar_gz({f"f{i}.py": "x = 1\n" for i in range(25)}))
    assert r.status_code in (413, 422), r.text
    assert "20" in detail_text(r) and "member" in detail_text(r)
    r = upload(client, zip_bytes({f"f{i}.py": "x = 1\n" for i in range(25)}), "m.zip")
    assert r.status_code in (413, 422), r.text
    assert upload(client, tar_gz({f"f{i}.py": "x = 1\n" for i in range(5)})).status_code == 201


@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
def test_archive_unpacking_too_large(small, client, kind):
    """2 MiB of zeros compresses to a few KiB: under the body limit, over the unpacked cap; the member is named."""
    files = {"model.py": "x = 1\n", "zeros.bin": b"\0" * (2 << 20)}
    data = tar_gz(files) if kind == "tar.gz" else zip_bytes(files)
    assert len(data) < LIMIT
    trees = small.home / "sources" / "trees"
    before = sorted(os.listdir(trees))
    r = upload(client, data, f"bomb.{kind}")
    assert r.status_code in (413, 422), r.text
    assert "zeros.bin" in detail_text(r)
    assert sorted(os.listdir(trees)) == before


# -- model code that misbehaves at import ------------------------------------------------
@pytest.mark.parametrize(
    "code,words",
    [
        pytest.param("import time\ntime.sleep(3600)\n", "longer than 3 s", marks=pytest.mark.slow, id="hangs"),
        pytest.param("import os\nos._exit(7)\n", "ended its process", id="os-exit"),
        pytest.param("raise SystemExit(3)\n", "ended its process", id="system-exit"),
    ],
)
def test_model_that_hangs_or_exits_at_import(small, client, code, words):
    u = upload_id(client, tar_gz({"model.py": code}))
    r = client.post("/runs", json={"model": {"upload": u}, "sequences": 10})
    assert r.status_code == 422, r.text
    assert words in detail_text(r)
    assert small.workers() == []  # the worker that loaded it is gone
