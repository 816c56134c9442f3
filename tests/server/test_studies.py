"""Studies and run comparisons over REST, on the real session server: results, isolation, bad designs, events, cancel.

A server restart in the middle of a study is in :func:`test_restart_resumes_a_study` (its own server).
"""

from __future__ import annotations

import io
import json
import math
import time

import pyarrow.parquet as pq
import pytest

from .conftest import GAMBLER, SLOW, Server, add_user, detail_text, is_json_error, tar_gz, upload_id, wait_run

FINAL = ("succeeded", "failed", "cancelled")


def ruin(stake: int, goal: int, p: float) -> float:
    """The closed-form probability of going broke (examples/gambler.py)."""
    if p == 0.5:
        return 1 - stake / goal
    r = (1 - p) / p
    return 1 - (1 - r**stake) / (1 - r**goal)


def submit_study(client, body: dict) -> str:
    r = client.post("/studies", json=body)
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "queued"
    return r.json()["id"]


def wait_study(client, study_id: str, timeout: float = 300, until=None) -> dict:
    until = until or (lambda v: v["status"] in FINAL)
    deadline = time.monotonic() + timeout
    while True:
        view = client.get(f"/studies/{study_id}").json()
        if until(view):
            return view
        assert time.monotonic() < deadline, f"study {study_id} still {view['status']} ({view['progress']})"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def gambler(alice, gambler_upload) -> dict:
    return {"upload": gambler_upload, "entry": "model.py:Gambler"}


@pytest.fixture(scope="module")
def grid_study(alice, gambler) -> str:
    """A finished grid study of alice's: p over three values, stake 3, goal 10, 4,000 sequences per point."""
    body = {
        "model": gambler,
        "design": {"grid": {"p": [0.45, 0.5, 0.55]}},
        "params": {"stake": 3, "goal": 10},
        "sequences": 4000,
        "seed": 7,
        "targets": ["rounds>=30"],
    }
    study_id = submit_study(alice, body)
    assert wait_study(alice, study_id)["status"] == "succeeded"
    return study_id


def test_grid_study_matches_the_closed_form(alice, grid_study):
    view = alice.get(f"/studies/{grid_study}").json()
    assert view["progress"] == {"done": 12000, "total": 12000}
    assert (view["points"], view["points_finished"]) == (3, 3)
    summary = alice.get(f"/studies/{grid_study}/summary").json()
    assert summary["study"] == grid_study and summary["design"] == {"kind": "grid", "parameters": ["p"], "points": 3}
    assert summary["params"] == {"stake": 3, "goal": 10}
    for point in summary["points"]:
        won = point["outputs"]["won"]
        exact = 1 - ruin(3, 10, point["params"]["p"])
        assert abs(won["mean"] - exact) < 4 * won["sem"], (point["params"], won, exact)
        assert point["status"] == "succeeded" and point["sequences"] == 4000
        # each point is an ordinary run of alice's, listed and readable with the runs
        run = alice.get(f"/runs/{point['run']}").json()
        assert run["status"] == "succeeded" and run["seed"] == 7 and run["params"]["p"] == point["params"]["p"]
    listed = {r["id"] for r in alice.get("/runs", params={"limit": 1000}).json()}
    assert {p["run"] for p in summary["points"]} <= listed
    assert grid_study in {s["id"] for s in alice.get("/studies").json()}


def test_points_as_json_csv_and_parquet(alice, grid_study):
    page = alice.get(f"/studies/{grid_study}/points").json()
    assert (
        page["columns"][:2] == ["point", "p"] and "won.mean" in page["columns"] and "p(rounds>=30)" in page["columns"]
    )
    assert [row["p"] for row in page["points"]] == [0.45, 0.5, 0.55]
    csv = alice.get(f"/studies/{grid_study}/points", params={"format": "csv"})
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    lines = csv.text.strip().splitlines()
    assert lines[0].split(",")[:2] == ["point", "p"] and len(lines) == 4
    parquet = alice.get(f"/studies/{grid_study}/points", params={"format": "parquet"})
    table = pq.read_table(io.BytesIO(parquet.content))
    assert table.column_names == page["columns"] and table.num_rows == 3
    assert table.column("won.mean").to_pylist() == pytest.approx([r["won.mean"] for r in page["points"]])


def test_events_end_with_the_final_state(alice, grid_study):
    with alice.stream("GET", f"/studies/{grid_study}/events") as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        text = "".join(r.iter_text())
    events = [block for block in text.strip().split("\n\n") if block]
    assert events[-1].startswith("event: end")
    end = json.loads(events[-1].split("data: ", 1)[1])
    assert end["status"] == "succeeded" and end["done"] == end["total"] == 12000 and end["points_finished"] == 3


def test_compare_two_points_paired(alice, grid_study):
    runs = [p["run"] for p in alice.get(f"/studies/{grid_study}/summary").json()["points"]]
    r = alice.get(f"/runs/{runs[0]}/compare/{runs[2]}", params={"target": ["rounds>=30"]})
    assert r.status_code == 200, r.text
    c = r.json()
    assert (c["a"], c["b"], c["paired"], c["sequences"]) == (runs[0], runs[2], True, 4000)
    won = c["outputs"]["won"]
    assert won["difference"] == pytest.approx(won["mean_b"] - won["mean_a"])
    assert won["ci95"][0] < won["difference"] < won["ci95"][1] and won["variance_reduction"] > 1
    assert [t["expr"] for t in c["targets"]] == ["rounds>=30"]


def test_compare_runs_of_different_models_is_422_naming_both(alice, grid_study, slow_upload):
    run = alice.get(f"/studies/{grid_study}/summary").json()["points"][0]["run"]
    other = alice.post("/runs", json={"model": {"upload": slow_upload}, "sequences": 10, "params": {"seconds": 0}})
    other_id = other.json()["id"]
    wait_run(alice, other_id)
    r = alice.get(f"/runs/{run}/compare/{other_id}")
    assert r.status_code == 422 and is_json_error(r)
    assert run in r.text and other_id in r.text


def test_isolation(alice, bob, anonymous, grid_study, finished_run):
    point_run = alice.get(f"/studies/{grid_study}/summary").json()["points"][0]["run"]
    for path in (
        f"/studies/{grid_study}",
        f"/studies/{grid_study}/summary",
        f"/studies/{grid_study}/points",
        f"/studies/{grid_study}/points?format=csv",
        f"/studies/{grid_study}/events",
        f"/runs/{point_run}",
        f"/runs/{point_run}/summary",
        f"/runs/{point_run}/compare/{finished_run}",
        f"/runs/{finished_run}/compare/{point_run}",
    ):
        r = bob.get(path)
        assert r.status_code == 404 and is_json_error(r), (path, r.status_code, r.text)
        r = anonymous.get(path)
        assert r.status_code == 401 and is_json_error(r), (path, r.status_code)
    for path in (f"/studies/{grid_study}/cancel", f"/runs/{point_run}/cancel"):
        assert bob.post(path).status_code == 404
        assert anonymous.post(path).status_code == 401
    assert anonymous.get("/studies").status_code == 401
    assert anonymous.post("/studies", json={}).status_code == 401
    assert grid_study not in {s["id"] for s in bob.get("/studies").json()}
    assert point_run not in {r["id"] for r in bob.get("/runs", params={"limit": 1000}).json()}
    assert alice.get(f"/studies/{grid_study}").json()["status"] == "succeeded"  # untouched


@pytest.mark.parametrize(
    ("design", "params", "says"),
    [
        ({}, {}, "exactly one design kind"),
        ({"grid": {}}, {}, "no parameters"),
        ({"grid": {"p": []}}, {}, "design"),
        ({"grid": {"p": "0.5"}}, {}, "list"),
        ({"grid": {"goal": list(range(11, 10_012))}}, {}, "cap of 10,000"),
        ({"lhs": {"n": 4, "ranges": {"p": [0.6, 0.4]}}}, {}, "design"),
        ({"random": {"n": "4", "ranges": {"p": [0.4, 0.6]}}}, {}, "n"),
        ({"grid": {"goal": [1.5]}}, {}, "expects int"),
        ({"sobol": {"n": 100, "ranges": {"p": [0.4, 0.6]}}}, {}, "power of two"),
        ({"grid": {"q": [1]}}, {}, "'q' is not a parameter of model gambler"),
        ({"points": [{"p": 0.45, "q": 1}]}, {}, "'q' is not a parameter"),
        ({"points": []}, {}, "no points"),
        ({"lhs": {"n": 4, "ranges": {"p": [0.4, 0.6]}, "bogus": 1}}, {}, "bogus"),
        ({"grid": {"p": [0.5]}}, {"stake": "many"}, "stake"),
    ],
)
def test_bad_designs_are_422_and_create_nothing(alice, gambler, design, params, says):
    before = {s["id"] for s in alice.get("/studies").json()}
    runs_before = len(alice.get("/runs", params={"limit": 1000}).json())
    r = alice.post("/studies", json={"model": gambler, "design": design, "params": params, "sequences": 10})
    assert r.status_code == 422, (design, r.status_code, r.text)
    assert is_json_error(r) and says.lower() in detail_text(r), r.text
    locs = [tuple(e["loc"][:2]) for e in r.json()["detail"]]
    assert locs and locs[0] == ("body", "params" if params else "design"), locs
    assert {s["id"] for s in alice.get("/studies").json()} == before
    assert len(alice.get("/runs", params={"limit": 1000}).json()) == runs_before


def test_cancel_a_running_study(alice, slow_upload):
    body = {
        "model": {"upload": slow_upload},
        "design": {"grid": {"seconds": [0.01, 0.02]}},
        "sequences": 5000,
        "seed": 1,
    }
    study_id = submit_study(alice, body)
    wait_study(alice, study_id, until=lambda v: v["progress"]["done"] > 0)
    point_run = alice.get(f"/studies/{study_id}/summary").json()["points"][0]["run"]
    r = alice.post(f"/runs/{point_run}/cancel")  # a point is cancelled with its study, not alone
    assert r.status_code == 409 and study_id in r.text
    r = alice.post(f"/studies/{study_id}/cancel")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled"
    summary = alice.get(f"/studies/{study_id}/summary").json()
    assert summary["points"][0]["status"] == "cancelled" and summary["points"][1]["status"] in ("queued", "cancelled")
    assert alice.post(f"/studies/{study_id}/cancel").json()["status"] == "cancelled"  # idempotent


@pytest.mark.slow
def test_restart_resumes_a_study(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    token = add_user(home, "alice")
    srv = Server(home, {"ANCHO_CONCURRENCY": "1"}, name="study-durable").start()
    try:
        with srv.client(token) as c:
            u = upload_id(c, tar_gz({"model.py": SLOW}))
            body = {"model": {"upload": u}, "design": {"grid": {"seconds": [0.0005, 0.0006]}}, "sequences": 6000}
            study_id = submit_study(c, {**body, "seed": 5})
            wait_study(c, study_id, until=lambda v: v["progress"]["done"] >= 1000)
        srv.kill()
        srv = Server(home, {"ANCHO_CONCURRENCY": "1"}, name="study-durable-2").start()
        with srv.client(token) as c:
            view = wait_study(c, study_id)
            assert view["status"] == "succeeded" and view["progress"] == {"done": 12000, "total": 12000}
            summary = c.get(f"/studies/{study_id}/summary").json()
            for point in summary["points"]:
                run = c.get(f"/runs/{point['run']}").json()
                assert run["status"] == "succeeded" and run["progress"]["done"] == 6000
                rows = c.get(f"/runs/{point['run']}/results", params={"format": "csv"}).text.strip().splitlines()
                seqs = [int(line.split(",")[0]) for line in rows[1:]]
                assert sorted(seqs) == list(range(6000))  # every sequence once: nothing lost or doubled
    finally:
        srv.kill()


def test_gambler_source_is_the_example():
    assert "class Gambler" in GAMBLER and math.isclose(ruin(3, 10, 0.5), 0.7)


def test_cli_compare_against_the_server(server, alice, grid_study, tmp_path):
    """``ancho compare A B`` with $ANCHO_URL and no --store asks the server; another user's runs are not found."""
    import os
    import subprocess

    from .conftest import ANCHO

    runs = [p["run"] for p in alice.get(f"/studies/{grid_study}/summary").json()["points"]]
    env = {**os.environ, "ANCHO_URL": server.url, "ANCHO_TOKEN": server.tokens["alice"], "ANCHO_HOME": str(tmp_path)}
    done = subprocess.run([ANCHO, "compare", runs[0], runs[1], "--json", "-t", "rounds>=30"], capture_output=True,
                          text=True, env=env, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == alice.get(f"/runs/{runs[0]}/compare/{runs[1]}?target=rounds>=30").json()
    env["ANCHO_TOKEN"] = server.tokens["bob"]
    done = subprocess.run([ANCHO, "compare", runs[0], runs[1]], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode != 0 and runs[0] in done.stderr and len(done.stderr.strip().splitlines()) == 1
