"""POST …/cancel stops a run promptly and frees its workers; GET …/events streams progress, then an end."""

from __future__ import annotations

import json
import threading

import pytest

from .conftest import submit, wait_gone, wait_run

pytestmark = pytest.mark.slow


def long_run(client, upload, seconds=0.05, sequences=100_000, seed=1) -> str:
    return submit(
        client, {"model": {"upload": upload}, "params": {"seconds": seconds}, "sequences": sequences, "seed": seed}
    )


def read_events(client, run_id, on_first=None) -> list[tuple[str, dict]]:
    """The whole event stream of a run, as (event, data) pairs."""
    events, name = [], None
    with client.stream("GET", f"/runs/{run_id}/events", timeout=120) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("event:"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                events.append((name, json.loads(line.split(":", 1)[1])))
                if on_first and len(events) == 1:
                    on_first()
    return events


def test_cancel_a_running_run_frees_its_workers(server, alice, slow_upload):
    before = {p.pid for p in server.run_workers()}
    run_id = long_run(alice, slow_upload)
    wait_run(alice, run_id, until=lambda v: v["status"] == "running" and v["progress"]["done"] > 0, timeout=120)
    mine = [p for p in server.run_workers() if p.pid not in before]
    assert mine, "a running run has worker processes"
    r = alice.post(f"/runs/{run_id}/cancel")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled"
    assert wait_gone(mine) == []
    view = alice.get(f"/runs/{run_id}").json()
    assert view["status"] == "cancelled" and view["progress"]["done"] < 100_000
    # what it computed before it stopped is still there, and readable
    lines = alice.get(f"/runs/{run_id}/results", params={"format": "csv"}).text.splitlines()
    assert lines[0] == "sequence,x,k,big" and len(lines) - 1 <= 100_000
    assert alice.get(f"/runs/{run_id}/summary").status_code == 409


def test_cancel_a_queued_run_and_the_slots_come_back(server, alice, slow_upload, gambler_upload, finished_run):
    """Concurrency is 2: the third run waits in the queue; cancelling it never starts it."""
    first, second = long_run(alice, slow_upload, seed=2), long_run(alice, slow_upload, seed=3)
    for run_id in (first, second):
        wait_run(alice, run_id, until=lambda v: v["status"] == "running", timeout=120)
    third = long_run(alice, slow_upload, seed=4)
    assert alice.get(f"/runs/{third}").json()["status"] == "queued"
    r = alice.post(f"/runs/{third}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert r.json()["started"] is None and r.json()["progress"]["done"] == 0
    for run_id in (first, second):
        assert alice.post(f"/runs/{run_id}/cancel").json()["status"] == "cancelled"
    assert wait_gone(server.run_workers()) == []
    # cancelling again, or cancelling a finished run, changes nothing
    assert alice.post(f"/runs/{third}/cancel").json()["status"] == "cancelled"
    assert alice.post(f"/runs/{finished_run}/cancel").json()["status"] == "succeeded"
    # the slots are free again
    quick = submit(alice, {"model": {"upload": gambler_upload}, "sequences": 100, "seed": 1})
    assert wait_run(alice, quick, timeout=120)["status"] == "succeeded"


def test_events_stream_progress_then_end(alice, slow_upload):
    run_id = long_run(alice, slow_upload, seconds=0.002, sequences=1500, seed=5)
    events = read_events(alice, run_id)
    names = [e for e, _ in events]
    assert names[-1] == "end" and names.count("end") == 1
    assert set(names[:-1]) == {"progress"} and len(names) >= 2
    done = [d["done"] for _, d in events]
    assert done == sorted(done) and done[-1] == 1500
    assert events[-1][1]["status"] == "succeeded" and events[-1][1]["total"] == 1500
    assert all(d["id"] == run_id for _, d in events)


def test_events_of_a_finished_run(alice, finished_run):
    events = read_events(alice, finished_run)
    assert [e for e, _ in events] == ["progress", "end"]
    assert events[-1][1]["status"] == "succeeded" and events[-1][1]["done"] == 3000


def test_events_end_when_the_run_is_cancelled(alice, bob, slow_upload):
    run_id = long_run(alice, slow_upload, seed=6)
    wait_run(alice, run_id, until=lambda v: v["status"] == "running", timeout=120)
    cancel = threading.Thread(target=lambda: alice.post(f"/runs/{run_id}/cancel"))
    events = read_events(alice, run_id, on_first=cancel.start)
    cancel.join(60)
    assert events[-1][0] == "end" and events[-1][1]["status"] == "cancelled"
    assert events[-1][1]["error"] == "cancelled"


def test_fair_scheduling_between_users(server, alice, bob, slow_upload, tmp_path):
    """Concurrency 2, alice runs two and queues a third; bob's run, queued later, goes first when a slot frees."""
    from .conftest import SLOW, tar_gz, upload_id

    bob_upload = upload_id(bob, tar_gz({"model.py": SLOW}))
    a1, a2 = long_run(alice, slow_upload, seed=11), long_run(alice, slow_upload, seed=12)
    for run_id in (a1, a2):
        wait_run(alice, run_id, until=lambda v: v["status"] == "running", timeout=120)
    a3 = long_run(alice, slow_upload, seed=13)
    b1 = long_run(bob, bob_upload, seed=14)
    try:
        assert alice.post(f"/runs/{a1}/cancel").json()["status"] == "cancelled"
        wait_run(bob, b1, until=lambda v: v["status"] == "running", timeout=120)
        assert alice.get(f"/runs/{a3}").json()["status"] == "queued"
    finally:
        for client, run_id in ((alice, a3), (alice, a2), (bob, b1)):
            client.post(f"/runs/{run_id}/cancel")
    assert wait_gone(server.run_workers()) == []


SUMMARY_MODELS = '''
import os
import time

import ancho


class SlowSummary(ancho.Model):
    """Its summary function takes ten minutes: the run sits in its summary phase."""

    def sequence(self, rng):
        return {"x": float(rng.random())}

    @ancho.summary
    def slow(self, results):
        time.sleep(600)
        return 1.0


class DeadlySummary(ancho.Model):
    """Its summary function ends the worker process."""

    def sequence(self, rng):
        return {"x": float(rng.random())}

    @ancho.summary
    def deadly(self, results):
        os._exit(9)
'''


def test_cancel_during_the_summary_phase(server, alice):
    """The chunks are all done and a user summary function is running: cancel still ends the run."""
    from .conftest import tar_gz, upload_id

    u = upload_id(alice, tar_gz({"model.py": SUMMARY_MODELS}))
    run_id = submit(alice, {"model": {"upload": u, "entry": "model.py:SlowSummary"}, "sequences": 100, "seed": 1})
    wait_run(alice, run_id, until=lambda v: v["progress"]["done"] == 100, timeout=120)
    r = alice.post(f"/runs/{run_id}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
    assert wait_gone(server.run_workers()) == []


def test_a_summary_that_kills_its_worker_fails_the_run(alice):
    from .conftest import tar_gz, upload_id

    u = upload_id(alice, tar_gz({"model.py": SUMMARY_MODELS}))
    run_id = submit(alice, {"model": {"upload": u, "entry": "model.py:DeadlySummary"}, "sequences": 100, "seed": 1})
    view = wait_run(alice, run_id, timeout=120)
    assert view["status"] == "failed" and "worker" in view["error"]
