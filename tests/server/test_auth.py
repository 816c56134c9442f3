"""Health needs no token; every other endpoint answers 401 with a JSON body without a valid one."""

from __future__ import annotations

import pytest

from .conftest import is_json_error

#: every endpoint but health, with a body where it takes one
ENDPOINTS = [
    ("GET", "/models", None),
    ("POST", "/models", "multipart"),
    ("GET", "/models/" + "0" * 64, None),
    ("POST", "/inspect", {"model": {"upload": "0" * 64}}),
    ("GET", "/runs", None),
    ("POST", "/runs", {"model": {"upload": "0" * 64}}),
    ("GET", "/runs/abc", None),
    ("GET", "/runs/abc/summary", None),
    ("GET", "/runs/abc/results", None),
    ("GET", "/runs/abc/results?format=csv", None),
    ("GET", "/runs/abc/failures", None),
    ("GET", "/runs/abc/events", None),
    ("POST", "/runs/abc/cancel", None),
    ("GET", "/runs/abc/compare/def", None),
    ("GET", "/runs/abc/trajectories/walk", None),
    ("GET", "/studies", None),
    ("POST", "/studies", {"model": {"upload": "0" * 64}, "design": {"grid": {"p": [1]}}}),
    ("GET", "/studies/abc", None),
    ("GET", "/studies/abc/summary", None),
    ("GET", "/studies/abc/points", None),
    ("GET", "/studies/abc/events", None),
    ("POST", "/studies/abc/cancel", None),
]


def request(client, method, path, body):
    if body == "multipart":
        return client.request(method, path, files={"file": ("m.tar.gz", b"not an archive")})
    return client.request(method, path, json=body) if body is not None else client.request(method, path)


def test_health_needs_no_token(anonymous):
    r = anonymous.get("/health")
    assert r.status_code == 200
    assert r.json()["status"] == "ok"


def test_openapi_document_is_public(anonymous):
    r = anonymous.get("/openapi.json")
    assert r.status_code == 200
    paths = r.json()["paths"]
    for p in (
        "/api/v1/health",
        "/api/v1/models",
        "/api/v1/runs",
        "/api/v1/runs/{run_id}",
        "/api/v1/runs/{run_id}/summary",
        "/api/v1/runs/{run_id}/results",
        "/api/v1/runs/{run_id}/events",
        "/api/v1/runs/{run_id}/cancel",
    ):
        assert p in paths


@pytest.mark.parametrize("method,path,body", ENDPOINTS, ids=[f"{m} {p}" for m, p, _ in ENDPOINTS])
@pytest.mark.parametrize("auth", ["none", "wrong", "revoked", "not-bearer", "empty-bearer", "huge"])
def test_401_without_a_valid_token(server, method, path, body, auth):
    headers = {
        "none": {},
        "wrong": {"Authorization": "Bearer anc_not-a-real-token"},
        "revoked": {"Authorization": f"Bearer {server.tokens['carol']}"},
        "not-bearer": {"Authorization": f"Basic {server.tokens['alice']}"},
        "empty-bearer": {"Authorization": "Bearer"},
        "huge": {"Authorization": "Bearer " + "x" * 10_000},
    }[auth]
    with server.client(headers=headers) as c:
        r = request(c, method, path, body)
    assert r.status_code == 401, r.text
    assert is_json_error(r)
    assert r.headers.get("www-authenticate", "").lower().startswith("bearer")


@pytest.mark.parametrize("content", [b"{", b"\xff\xfe not utf-8", b"[1, 2"])
def test_401_comes_before_body_validation(anonymous, content):
    """A malformed body without a token is still a 401: nothing is said about the request to a stranger."""
    r = anonymous.post("/runs", content=content, headers={"content-type": "application/json"})
    assert r.status_code == 401, r.text
    assert is_json_error(r)


def test_valid_token_is_accepted(alice):
    assert alice.get("/runs").status_code == 200


def test_bearer_scheme_is_case_insensitive(server):
    with server.client(headers={"Authorization": f"bearer {server.tokens['alice']}"}) as c:
        assert c.get("/runs").status_code == 200
