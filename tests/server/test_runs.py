"""Runs over REST: the submission body of DESIGN §2, status and progress, summary, results, failures, isolation."""

from __future__ import annotations

import csv
import http.client
import io
import json
import os
import subprocess
from urllib.parse import quote

import pyarrow.parquet as pq
import pytest

from .conftest import ANCHO, csv_text, detail_text, is_json_error, submit, wait_run


def test_submit_with_the_design_body_shape(alice, gambler_upload):
    """Every field of the §2 body at once; the run meets its precision goal and succeeds."""
    body = {
        "model": {"upload": gambler_upload, "entry": "model.py:Gambler"},
        "params": {"stake": 4},
        "sequences": 3000,
        "seed": 9,
        "targets": ["rounds>=30"],
        "until": "mean(rounds)+-5",
        "max_sequences": 1000000,
        "executor": "local",
    }
    r = alice.post("/runs", json=body)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["status"] == "queued" and set(created) == {"id", "status"}
    view = alice.get(f"/runs/{created['id']}").json()
    assert view["id"] == created["id"]
    assert view["status"] in ("queued", "running", "succeeded")
    assert set(view["progress"]) == {"done", "total"}
    final = wait_run(alice, created["id"])
    assert final["status"] == "succeeded", final["error"]
    assert final["progress"]["done"] == final["progress"]["total"] >= 3000
    assert final["params"] == {"stake": 4, "goal": 20, "p": 0.5}
    assert final["seed"] == 9 and final["targets"] == ["rounds>=30"] and final["until"] == "mean(rounds)+-5"
    summary = alice.get(f"/runs/{created['id']}/summary").json()
    assert summary["run"] == created["id"] and summary["status"] == "succeeded"
    assert summary["targets"][0]["expr"] == "rounds>=30"


def test_entry_can_be_omitted_when_the_source_has_one_model(alice, gambler_upload):
    run_id = submit(alice, {"model": {"upload": gambler_upload}, "sequences": 50, "seed": 1})
    assert wait_run(alice, run_id)["status"] == "succeeded"


def test_progress_is_visible_while_running(alice, slow_upload):
    run_id = submit(
        alice, {"model": {"upload": slow_upload}, "params": {"seconds": 0.002}, "sequences": 1500, "seed": 4}
    )
    seen = []
    view = wait_run(alice, run_id, until=lambda v: seen.append(v["progress"]) or v["status"] in ("succeeded", "failed"))
    assert view["status"] == "succeeded"
    assert all(p["total"] == 1500 and 0 <= p["done"] <= 1500 for p in seen)
    assert [p["done"] for p in seen] == sorted(p["done"] for p in seen)
    assert seen[-1]["done"] == 1500


def test_summary_equals_ancho_run_json(alice, finished_run, sources, tmp_path):
    """The same model, params, seed and targets through the CLI give the same summary object (run id aside)."""
    done = subprocess.run(
        [
            ANCHO,
            "run",
            str(sources / "gambler" / "model.py") + ":Gambler",
            "--sequences",
            "3000",
            "--seed",
            "3",
            "--param",
            "stake=3",
            "--param",
            "goal=10",
            "--param",
            "p=0.45",
            "--target",
            "rounds>=30",
            "--workers",
            "1",
            "--json",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "ANCHO_HOME": str(tmp_path / "cli-home")},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    cli = json.loads(done.stdout)
    rest = alice.get(f"/runs/{finished_run}/summary").json()
    assert rest["run"] == finished_run
    cli.pop("run"), rest.pop("run")
    assert rest == cli


def test_summary_has_the_design_shape(alice, finished_run):
    s = alice.get(f"/runs/{finished_run}/summary").json()
    assert {"run", "status", "sequences", "seed", "params", "outputs", "targets", "custom", "failures"} <= set(s)
    assert s["sequences"] == 3000 and s["seed"] == 3 and s["params"] == {"stake": 3, "goal": 10, "p": 0.45}
    rounds = s["outputs"]["rounds"]
    for k in ("count", "mean", "std", "sem", "ci95", "min", "p5", "p25", "p50", "p75", "p95", "max"):
        assert k in rounds
    assert 0 <= s["outputs"]["won"]["mean"] <= 1
    assert set(s["custom"]) == {"median_rounds_when_won"}


def test_results_in_every_format_agree(alice, finished_run):
    # JSON, in pages
    rows, offset = [], 0
    while offset is not None:
        page = alice.get(
            f"/runs/{finished_run}/results", params={"format": "json", "offset": offset, "limit": 700}
        ).json()
        assert page["total"] == 3000 and page["offset"] == offset
        rows.extend(page["results"])
        offset = page["next"]
    assert [r["sequence"] for r in rows] == list(range(3000))
    assert all(isinstance(r["won"], bool) and isinstance(r["rounds"], int) for r in rows)
    # CSV: header + one line per sequence
    text = csv_text(alice, finished_run)
    lines = text.splitlines()
    assert lines[0] == "sequence,won,rounds" and len(lines) == 3001
    parsed = list(csv.DictReader(io.StringIO(text)))
    assert [(int(r["sequence"]), r["won"] == "true", int(r["rounds"])) for r in parsed] == [
        (r["sequence"], r["won"], r["rounds"]) for r in rows
    ]
    # Parquet
    r = alice.get(f"/runs/{finished_run}/results", params={"format": "parquet"})
    assert r.status_code == 200 and r.content[:4] == b"PAR1"
    table = pq.read_table(io.BytesIO(r.content))
    assert table.column_names == ["sequence", "won", "rounds"]
    assert table.to_pylist() == rows


def test_csv_is_streamed(alice, finished_run):
    with alice.stream("GET", f"/runs/{finished_run}/results", params={"format": "csv"}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/csv")
        assert "content-length" not in r.headers  # chunked: written as it is read, not built first
        assert b"".join(r.iter_bytes()).count(b"\n") == 3001


def test_results_page_past_the_end(alice, finished_run):
    page = alice.get(f"/runs/{finished_run}/results", params={"offset": 10**9}).json()
    assert page["results"] == [] and page["next"] is None and page["total"] == 3000


def test_run_list_is_newest_first_and_filters(alice, finished_run):
    runs = alice.get("/runs").json()
    assert finished_run in [r["id"] for r in runs]
    created = [r["created"] for r in runs]
    assert created == sorted(created, reverse=True)
    assert all(r["status"] == "succeeded" for r in alice.get("/runs", params={"status": "succeeded"}).json())
    assert len(alice.get("/runs", params={"limit": 1}).json()) == 1


def test_failures_are_listed_with_tracebacks(alice, flaky_upload):
    run_id = submit(
        alice,
        {"model": {"upload": flaky_upload}, "params": {"rate": 0.1}, "sequences": 400, "seed": 5, "max_failures": 400},
    )
    view = wait_run(alice, run_id)
    assert view["status"] == "succeeded", view["error"]
    failures = alice.get(f"/runs/{run_id}/failures", params={"limit": 10000}).json()
    assert len(failures) == view["failures"] > 0
    assert all("ZeroDivisionError" in f["error"] and "sequence" in f["traceback"] for f in failures)
    page = alice.get(f"/runs/{run_id}/results", params={"limit": 1000}).json()
    assert page["total"] == 400 - len(failures)
    assert not {f["sequence"] for f in failures} & {r["sequence"] for r in page["results"]}
    assert alice.get(f"/runs/{run_id}/summary").json()["failures"] == len(failures)


def test_a_failed_run_says_why_and_has_no_summary(alice, flaky_upload):
    run_id = submit(alice, {"model": {"upload": flaky_upload}, "params": {"rate": 0.5}, "sequences": 200, "seed": 5})
    view = wait_run(alice, run_id)
    assert view["status"] == "failed"
    assert "ZeroDivisionError" in view["error"] and "max_failures" in view["error"].replace("-", "_")
    r = alice.get(f"/runs/{run_id}/summary")
    assert r.status_code == 409 and is_json_error(r) and "failed" in detail_text(r)
    assert alice.get(f"/runs/{run_id}/failures").json()


# -- isolation ------------------------------------------------------------------------
RUN_ENDPOINTS = [
    ("GET", ""),
    ("GET", "/summary"),
    ("GET", "/results"),
    ("GET", "/results?format=csv"),
    ("GET", "/results?format=parquet"),
    ("GET", "/failures"),
    ("GET", "/events"),
    ("POST", "/cancel"),
    ("GET", "/report.pdf"),
    ("GET", "/notebook.ipynb"),
]


@pytest.mark.parametrize("method,suffix", RUN_ENDPOINTS)
def test_another_users_run_is_404_everywhere(alice, bob, finished_run, method, suffix):
    r = bob.request(method, f"/runs/{finished_run}{suffix}")
    assert r.status_code == 404, r.text
    assert is_json_error(r)
    assert alice.get(f"/runs/{finished_run}").json()["status"] == "succeeded"  # bob's cancel did nothing


def test_another_users_runs_are_not_listed(alice, bob, finished_run):
    assert finished_run not in [r["id"] for r in bob.get("/runs").json()]
    assert finished_run not in [r["id"] for r in bob.get("/runs", params={"status": "succeeded", "limit": 1000}).json()]


# -- path tricks ----------------------------------------------------------------------
TRICKS = [
    "..%2F..%2F..%2Fetc%2Fpasswd",
    "..%2F..",
    "%2e%2e",
    "%2E%2E%2F%2E%2E",
    "..",
    ".",
    "a" * 5000,
    "b" * 100,
    quote("été"),
    quote("🎲"),
    "%00",
    "%0Ab",
    "%20",
    "abc%3Bdrop",
    "%252e%252e",
    "runs",
    "%5C..%5C..",
]


@pytest.mark.parametrize("trick", TRICKS, ids=range(len(TRICKS)))
@pytest.mark.parametrize("method,suffix", RUN_ENDPOINTS)
def test_path_tricks_in_run_ids(server, method, suffix, trick):
    """Sent byte for byte (no client-side normalisation): 404 or 422, never 5xx, always JSON."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request(
            method, f"/api/v1/runs/{trick}{suffix}", headers={"Authorization": f"Bearer {server.tokens['alice']}"}
        )
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    assert resp.status in (404, 405, 422), (resp.status, body[:300])
    assert json.loads(body)["detail"]
    assert len(body) < 2000  # the error quotes the id, not all of it


@pytest.mark.parametrize("trick", ["..%2F..%2Fx", "a" * 5000, quote("été"), "%00"])
def test_path_tricks_in_model_ids(server, trick):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request("GET", f"/api/v1/models/{trick}", headers={"Authorization": f"Bearer {server.tokens['alice']}"})
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    assert resp.status == 404, body[:300]
    assert json.loads(body)["detail"]


def test_parquet_downloads_leave_no_files_behind(server, alice, finished_run):
    def leftovers():
        return sorted(
            p.name for p in server.home.iterdir() if p.is_file() and not p.name.startswith(("runs.db", "server."))
        )

    before = leftovers()
    assert alice.get(f"/runs/{finished_run}/results", params={"format": "parquet"}).status_code == 200
    with alice.stream("GET", f"/runs/{finished_run}/results", params={"format": "parquet"}) as r:
        next(r.iter_raw(1024))  # the client goes away mid-download
    assert leftovers() == before


INFINITE = '''
import ancho


class Capped(ancho.Model):
    """An infinite default: JSON has no infinity, so the run must not lose it on the way to its workers."""

    cap: float = float("inf")

    def sequence(self, rng):
        x = float(rng.random())
        return {"x": min(x, self.cap)}
'''


@pytest.mark.parametrize(
    "params", [{}, {"cap": "inf"}, {"cap": "0.5"}, {"cap": 0.25}], ids=["default-inf", "string-inf", "string", "number"]
)
def test_non_finite_parameters_reach_the_workers(alice, params):
    from .conftest import tar_gz, upload_id

    u = upload_id(alice, tar_gz({"model.py": INFINITE}))
    run_id = submit(alice, {"model": {"upload": u}, "params": params, "sequences": 200, "seed": 2})
    view = wait_run(alice, run_id)
    assert view["status"] == "succeeded", view["error"]
    top = alice.get(f"/runs/{run_id}/summary").json()["outputs"]["x"]["max"]
    cap = float(params.get("cap", "inf"))
    assert top <= cap and (cap < 1 or top > 0.9)
