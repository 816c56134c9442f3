"""The status cache in front of the status route (server/fastpath.py) answers as the app does.

The app is built in this process and driven with Starlette's TestClient, so
the same request can be answered twice: once as the server answers it, once
with the fast path turned off. Every case must match in status, headers and
bytes; the successful read must not reach the app at all. The real-server
tests (test_runs.py and others) exercise the same read over HTTP.
"""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from ancho.server.app import create_app
from ancho.server.fastpath import StatusCache
from ancho.server.sessions import COOKIE
from ancho.server.settings import Settings

from .conftest import API, SLOW, tar_gz


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    app = create_app(Settings(home=tmp_path_factory.mktemp("fastpath")))
    svc = app.state.service
    tokens = {name: svc.users.add(name) for name in ("alice", "bob")}
    cookie, _ = app.state.auth.sessions.open("alice", tokens["alice"])
    with TestClient(app, base_url="http://127.0.0.1") as client:
        auth = {"Authorization": f"Bearer {tokens['alice']}"}
        upload = client.post(
            f"{API}/models", headers=auth, files={"file": ("m.tar.gz", tar_gz({"model.py": SLOW}))}
        ).json()["id"]
        r = client.post(
            f"{API}/runs",
            headers=auth,
            json={"model": {"upload": upload}, "params": {"seconds": 0}, "sequences": 20, "seed": 3},
        )
        assert r.status_code == 201, r.text
        run_id = r.json()["id"]
        for _ in range(600):
            if client.get(f"{API}/runs/{run_id}", headers=auth).json()["status"] == "succeeded":
                break
            time.sleep(0.1)
        yield client, tokens, cookie, run_id


def answers(client: TestClient, method: str, path: str, headers: dict, content: bytes | None = None):
    r = client.request(method, path, headers=headers, content=content)
    kept = {k: v for k, v in r.headers.items() if k not in ("date", "server")}
    return r.status_code, kept, r.content


async def none(self, scope):
    return None


def both(site, monkeypatch, method: str, path: str, headers: dict, content: bytes | None = None):
    client = site[0]
    fast = answers(client, method, path, headers, content)
    with monkeypatch.context() as m:
        m.setattr(StatusCache, "_answer", none)
        slow = answers(client, method, path, headers, content)
    return fast, slow


def cases(tokens, cookie, run_id):
    alice, bob = tokens["alice"], tokens["bob"]
    run = f"{API}/runs/{run_id}"
    return {
        "own run": ("GET", run, {"Authorization": f"Bearer {alice}"}, None),
        "scheme in lower case": ("GET", run, {"Authorization": f"bearer {alice}"}, None),
        "spaces around the token": ("GET", run, {"Authorization": f"Bearer   {alice}  "}, None),
        "another user's run": ("GET", run, {"Authorization": f"Bearer {bob}"}, None),
        "no such run": ("GET", f"{API}/runs/r-nope", {"Authorization": f"Bearer {alice}"}, None),
        "path trick": ("GET", f"{API}/runs/..%2F..%2Fhealth", {"Authorization": f"Bearer {alice}"}, None),
        "trailing slash": ("GET", run + "/", {"Authorization": f"Bearer {alice}"}, None),
        "query string": ("GET", run + "?x=1", {"Authorization": f"Bearer {alice}"}, None),
        "no token": ("GET", run, {}, None),
        "wrong token": ("GET", run, {"Authorization": "Bearer anc_not-a-token"}, None),
        "empty token": ("GET", run, {"Authorization": "Bearer "}, None),
        "basic scheme": ("GET", run, {"Authorization": f"Basic {alice}"}, None),
        "site cookie": ("GET", run, {"Cookie": f"{COOKIE}={cookie}"}, None),
        "HEAD": ("HEAD", run, {"Authorization": f"Bearer {alice}"}, None),
        "POST": ("POST", run, {"Authorization": f"Bearer {alice}"}, None),
        "a body on a GET": ("GET", run, {"Authorization": f"Bearer {alice}"}, b"{}"),
        "the runs list": ("GET", f"{API}/runs", {"Authorization": f"Bearer {alice}"}, None),
    }


CASES = list(cases({"alice": "", "bob": ""}, "", ""))


@pytest.mark.parametrize("case", CASES)
def test_answers_like_the_app(site, monkeypatch, case):
    client, tokens, cookie, run_id = site
    method, path, headers, content = cases(tokens, cookie, run_id)[case]
    fast, slow = both(site, monkeypatch, method, path, headers, content)
    assert fast == slow


def test_a_successful_read_never_reaches_the_app(site, monkeypatch):
    client, tokens, cookie, run_id = site
    reached = []
    inner = StatusCache.__call__

    async def spy(self, scope, receive, send):
        app = self.app

        async def counted(scope, receive, send):
            reached.append(scope["path"])
            return await app(scope, receive, send)

        self.app = counted
        try:
            return await inner(self, scope, receive, send)
        finally:
            self.app = app

    monkeypatch.setattr(StatusCache, "__call__", spy)
    r = client.get(f"{API}/runs/{run_id}", headers={"Authorization": f"Bearer {tokens['alice']}"})
    assert r.status_code == 200 and r.json()["id"] == run_id and r.json()["status"] == "succeeded"
    assert reached == []
    # the site's session cookie goes through the same resolver: its reads are cache hits too
    r = client.get(f"{API}/runs/{run_id}", headers={"Cookie": f"{COOKIE}={cookie}"})
    assert r.status_code == 200 and r.json()["id"] == run_id
    assert reached == []
    assert client.get(f"{API}/runs/{run_id}", headers={"Authorization": f"Bearer {tokens['bob']}"}).status_code == 404
    assert reached == [f"{API}/runs/{run_id}"]


def test_follows_the_record_and_revocation(site, monkeypatch):
    """The answer changes with the record (the store's cached bytes are not stale) and stops with the token."""
    client, tokens, cookie, run_id = site
    svc = client.app.state.service
    auth = {"Authorization": f"Bearer {tokens['bob']}"}
    upload = client.post(
        f"{API}/models", headers=auth, files={"file": ("m.tar.gz", tar_gz({"model.py": SLOW}))}
    ).json()["id"]
    bobs = client.post(
        f"{API}/runs", headers=auth, json={"model": {"upload": upload}, "params": {"seconds": 0}, "sequences": 5}
    ).json()["id"]
    for _ in range(600):
        if client.get(f"{API}/runs/{bobs}", headers=auth).json()["status"] == "succeeded":
            break
        time.sleep(0.1)
    svc.store.update_run(bobs, error="a note written behind the server's back")
    assert client.get(f"{API}/runs/{bobs}", headers=auth).json()["error"] == "a note written behind the server's back"
    svc.users.revoke("bob")
    r = client.get(f"{API}/runs/{bobs}", headers=auth)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
