"""HEAD answers as GET does, without the body, on every GET endpoint: never 405 while ``Allow`` lists HEAD."""

from __future__ import annotations

import httpx
import pytest

from .conftest import API, submit

pytestmark = pytest.mark.slow  # the session server


def _same_as_get(client: httpx.Client, path: str, **kw) -> httpx.Response:
    got = client.get(path, **kw)
    head = client.head(path, **kw)
    assert head.status_code == got.status_code, (path, head.status_code, head.headers)
    assert head.status_code != 405
    assert head.content == b""
    for name in ("content-type", "content-length", "content-disposition"):
        assert head.headers.get(name) == got.headers.get(name), (path, name)
    return head


def test_head_on_the_api(server, alice, finished_run):
    assert _same_as_get(alice, "/health").status_code == 200
    assert _same_as_get(alice, f"/runs/{finished_run}").status_code == 200  # the fast path's read
    assert _same_as_get(alice, f"/runs/{finished_run}/summary").status_code == 200
    assert _same_as_get(alice, f"/runs/{finished_run}/results", params={"format": "csv"}).status_code == 200
    assert _same_as_get(alice, "/runs").status_code == 200


def test_head_keeps_the_get_errors(server, anonymous, alice):
    assert _same_as_get(anonymous, "/runs").status_code == 401
    assert _same_as_get(alice, "/runs/nosuchrun").status_code == 404


def test_head_of_an_event_stream_ends(server, alice, finished_run):
    r = alice.head(f"/runs/{finished_run}/events", timeout=10)
    assert r.status_code == 200 and r.content == b""
    assert r.headers["content-type"].startswith("text/event-stream")


def test_head_of_a_running_runs_event_stream_does_not_hang(server, alice, slow_upload):
    """The stream of a running run never ends by itself: HEAD gets its headers and the stream is stopped."""
    run = submit(
        alice, {"model": {"upload": slow_upload}, "params": {"seconds": 0.05}, "sequences": 100_000, "seed": 1}
    )
    try:
        r = alice.head(f"/runs/{run}/events", timeout=10)
        assert r.status_code == 200 and r.content == b""
        assert alice.get("/health", timeout=10).status_code == 200
    finally:
        alice.post(f"/runs/{run}/cancel")


def test_405_lists_head_only_where_it_works(server, alice):
    r = alice.delete("/health")
    assert r.status_code == 405 and "HEAD" in r.headers["allow"]
    assert alice.head("/health").status_code == 200


def test_head_on_site_pages(server):
    with httpx.Client(base_url=server.url, timeout=60) as site:
        head = _same_as_get(site, "/signin")
        assert head.status_code == 200 and head.headers["content-type"].startswith("text/html")
        assert _same_as_get(site, "/runs").status_code == 303
    assert API == "/api/v1"
