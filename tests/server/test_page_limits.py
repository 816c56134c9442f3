"""JSON pages are bounded in values, not only rows: a run with a 100,000-step trajectory gets short pages that
``next`` leads on (results) or a 422 naming ``limit`` (trajectories, whose pages have no ``next``), never an 80 MB
answer that takes the server's memory up by a gigabyte. Other users still get 404; ordinary runs' pages are as
they were."""

from __future__ import annotations

import io

import pyarrow.parquet as pq
import pytest

from ancho.client import Client
from ancho.server.run_results import MAX_PAGE_VALUES

from ..conftest import discard_if_passed
from .conftest import client_of, server_with_users, submit, tar_gz, upload_id, wait_run

STEPS = 100_000
SEQUENCES = 30
FITS = MAX_PAGE_VALUES // (1 + 1 + STEPS)  # sequence, x and the path's steps: 9 rows a page

WIDE = f"""
import ancho
import numpy as np


class Wide(ancho.Model):
    block = 10

    def sequences(self, rng, n):
        return {{"x": rng.random(n), "path": np.broadcast_to(np.float64(0.5), (n, {STEPS}))}}
"""

# ten 100,000-step trajectories: one row is more than a page holds
WIDER = f"""
import ancho
import numpy as np


class Wider(ancho.Model):
    block = 2

    def sequences(self, rng, n):
        return {{f"p{{k}}": np.full((n, {STEPS}), float(k)) for k in range(10)}}
"""

ODD = """
import ancho


class Odd(ancho.Model):
    def sequence(self, rng):
        return {"path": [float("nan"), float("inf"), 1.0]}
"""


def _run(client, source: str, sequences: int) -> str:
    upload = upload_id(client, tar_gz({"model.py": source}), "model.tar.gz")
    run_id = submit(client, {"model": {"upload": upload}, "sequences": sequences, "seed": 5})
    view = wait_run(client, run_id, timeout=300)
    assert view["status"] == "succeeded", view
    return run_id


@pytest.fixture(scope="module")
def wide_server(request, tmp_path_factory):
    """A server of its own, for runs whose records are wide (a 100,000-step trajectory's per-step summary: ~0.5 s to
    read each): on the session server they made every later listing of alice's runs slow, and its schemathesis tests
    ran for minutes."""
    root = tmp_path_factory.mktemp("wide-server")
    discard_if_passed(request, root)  # its runs' trajectories and records: ~110 MB
    # (ten 100,000-step trajectories a run: over the default cap of a run's steps together, raised as a server can)
    srv = server_with_users(root, ("alice", "bob"), "wide-server", env={"ANCHO_MAX_STEPS": "1000000"})
    yield srv
    srv.kill()


owner = client_of("wide_server", "alice", scope="module")
other = client_of("wide_server", "bob", scope="module")
nobody = client_of("wide_server", scope="module")


@pytest.fixture(scope="module")
def wide_run(owner) -> str:
    return _run(owner, WIDE, SEQUENCES)


def _loc(r) -> list:
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/json"), r.text
    return r.json()["detail"][0]["loc"]


def test_a_results_page_is_cut_to_a_million_values_and_next_leads_on(owner, wide_server, wide_run):
    for limit in (200, 100_000):
        r = owner.get(f"/runs/{wide_run}/results", params={"limit": limit})
        assert r.status_code == 200, r.text
        assert len(r.content) < 8 * MAX_PAGE_VALUES  # 80 MB before, for 200 rows
        body = r.json()
        assert (body["offset"], body["limit"], body["next"], body["total"]) == (0, FITS, FITS, SEQUENCES)
        assert len(body["results"]) == FITS and sum(1 + 1 + len(row["path"]) for row in body["results"]) <= (
            MAX_PAGE_VALUES
        )
    rows, offset = [], 0
    while offset is not None:  # following next reads every row once, in order
        body = owner.get(f"/runs/{wide_run}/results", params={"offset": offset, "limit": 100_000}).json()
        rows += body["results"]
        offset = body["next"]
    assert [row["sequence"] for row in rows] == list(range(SEQUENCES))
    assert all(len(row["path"]) == STEPS and row["path"][0] == row["path"][-1] == 0.5 for row in rows)
    # the library's client pages by next, asking 10,000 rows: it reads the whole run unchanged
    with Client(wide_server.url, wide_server.tokens["alice"]) as client:
        assert [row["sequence"] for row in client.rows(wide_run)] == list(range(SEQUENCES))
    assert owner.get("/health").status_code == 200 and owner.get(f"/runs/{wide_run}").status_code == 200


def test_a_trajectory_page_over_a_million_values_is_a_422_naming_limit(owner, wide_run):
    for params in ({"limit": 200}, {}, {"limit": FITS + 1}):  # the default, 100 rows, is 10 million values here
        r = owner.get(f"/runs/{wide_run}/trajectories/path", params=params)
        assert _loc(r) == ["query", "limit"]
        msg = r.json()["detail"][0]["msg"]
        assert f"limit={FITS} or less" in msg and "format=parquet" in msg and "format=csv" in msg, msg
    r = owner.get(f"/runs/{wide_run}/trajectories/path", params={"limit": FITS, "offset": SEQUENCES - 4})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["steps"] == STEPS and body["sequences"] == list(range(SEQUENCES - 4, SEQUENCES))
    assert all(len(v) == STEPS and set(v) == {0.5} for v in body["values"])
    # the whole trajectory is still there as Parquet, streamed from a file
    r = owner.get(f"/runs/{wide_run}/trajectories/path", params={"format": "parquet"})
    assert r.status_code == 200
    table = pq.read_table(io.BytesIO(r.content))
    assert table.num_rows == SEQUENCES and table.column("sequence").to_pylist() == list(range(SEQUENCES))


def test_a_row_wider_than_a_page_is_a_422_naming_format(owner):
    run_id = _run(owner, WIDER, 2)
    r = owner.get(f"/runs/{run_id}/results", params={"limit": 1})
    assert _loc(r) == ["query", "format"]
    msg = r.json()["detail"][0]["msg"]
    assert "1,000,001 values" in msg and "format=parquet" in msg and f"/runs/{run_id}/trajectories/" in msg, msg
    page = owner.get(f"/runs/{run_id}/trajectories/p3", params={"limit": 2}).json()
    assert page["sequences"] == [0, 1] and set(page["values"][1]) == {3.0}
    r = owner.get(f"/runs/{run_id}/results", params={"format": "parquet"})
    assert r.status_code == 200 and pq.read_table(io.BytesIO(r.content)).num_rows == 2


def test_another_users_run_is_still_404_whatever_the_limit(other, nobody, wide_run):
    for path, params in (
        ("results", {"limit": 100_000}),
        ("results", {"limit": 1}),
        ("trajectories/path", {"limit": 10_000}),
        ("trajectories/path", {"limit": 1}),
    ):
        r = other.get(f"/runs/{wide_run}/{path}", params=params)
        assert r.status_code == 404, r.text
        assert nobody.get(f"/runs/{wide_run}/{path}", params=params).status_code == 401


def test_an_ordinary_runs_pages_are_unchanged(alice, finished_run):
    r = alice.get(f"/runs/{finished_run}/results", params={"offset": 1000, "limit": 1000})
    body = r.json()
    assert (body["offset"], body["limit"], body["next"], body["total"]) == (1000, 1000, 2000, 3000)
    assert [row["sequence"] for row in body["results"]] == list(range(1000, 2000))
    assert set(body["results"][0]) == {"sequence", "won", "rounds"}
    body = alice.get(f"/runs/{finished_run}/results", params={"limit": 100_000}).json()
    assert (body["limit"], body["next"], len(body["results"])) == (100_000, None, 3000)
    body = alice.get(f"/runs/{finished_run}/results").json()  # the default limit
    assert (body["limit"], body["next"], len(body["results"])) == (1000, 1000, 1000)
    # a limit out of range is FastAPI's own 422, as before
    assert _loc(alice.get(f"/runs/{finished_run}/results", params={"limit": 100_001})) == ["query", "limit"]


def test_non_finite_steps_are_null_in_a_trajectory_page(owner):
    run_id = _run(owner, ODD, 3)
    page = owner.get(f"/runs/{run_id}/trajectories/path", params={"limit": 10_000})
    assert page.status_code == 200, page.text
    assert page.json()["values"] == [[None, None, 1.0]] * 3
    rows = owner.get(f"/runs/{run_id}/results").json()["results"]
    assert [row["path"] for row in rows] == [[None, None, 1.0]] * 3
