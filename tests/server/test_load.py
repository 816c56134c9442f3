"""Load: many users submitting, polling and reading results at once while runs execute (loopback only,
bounded in count and time). Nothing may answer 5xx, no run may be lost or end with missing sequences, and
the server's memory stays bounded. Figures from the same scenario are in docs/reliability.md."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

from .conftest import SLOW, Server, add_user, tar_gz, wait_run

USERS = 6
RUNS_PER_USER = 3
SEQUENCES = 400


@pytest.mark.slow
def test_many_users_at_once_lose_nothing(tmp_path):
    server = Server(tmp_path / "home", name="load").start()
    try:
        tokens = {f"user{i}": add_user(server.home, f"user{i}") for i in range(USERS)}
        statuses: Counter = Counter()
        lock = threading.Lock()
        runs: dict[str, list[str]] = {u: [] for u in tokens}
        errors: list[str] = []
        rss_before = server.process.memory_info().rss

        def count(r) -> None:
            with lock:
                statuses[r.status_code] += 1
                if r.status_code >= 500:
                    errors.append(f"{r.request.method} {r.request.url.path}: {r.status_code} {r.text[:200]}")

        def submitter(user: str, token: str) -> None:
            with server.client(token, timeout=120) as c:
                r = c.post("/models", files={"file": ("m.tar.gz", tar_gz({"slow.py": SLOW}), "application/gzip")})
                count(r)
                assert r.status_code == 201, (r.status_code, r.text)
                model = r.json()["id"]
                for k in range(RUNS_PER_USER):
                    r = c.post("/runs", json={"model": {"upload": model, "entry": "slow.py:Slow"},
                                                    "params": {"seconds": 0.0005}, "sequences": SEQUENCES, "seed": k})
                    count(r)
                    if r.status_code == 201:
                        runs[user].append(r.json()["id"])

        stop = threading.Event()

        def poller(token: str, wrong: bool) -> None:
            with server.client("anc_not-a-token" if wrong else token, timeout=60) as c:
                for _ in range(400):  # bounded: at most 400 requests each
                    if stop.is_set():
                        return
                    r = c.get("/runs")
                    count(r)
                    if not wrong:
                        for run in r.json()[:2]:
                            count(c.get(f"/runs/{run['id']}"))
                    time.sleep(0.02)

        threads = [threading.Thread(target=submitter, args=(u, t)) for u, t in tokens.items()]
        threads += [threading.Thread(target=poller, args=(t, i == 0)) for i, t in enumerate(tokens.values())]
        for t in threads:
            t.start()
        for t in threads[:USERS]:
            t.join(300)
        for user, token in tokens.items():
            with server.client(token, timeout=60) as c:
                for run_id in runs[user]:
                    final = wait_run(c, run_id, timeout=600)
                    assert final["status"] == "succeeded", final
                    r = c.get(f"/runs/{run_id}/results", params={"format": "csv"})
                    count(r)
                    assert r.text.count("\n") == SEQUENCES + 1  # header + every sequence, nothing lost or doubled
                listed = c.get("/runs")
                assert listed.status_code == 200, (listed.status_code, listed.text)
                mine = {r["id"] for r in listed.json()}
                assert mine == set(runs[user])  # each user sees exactly their own runs
        stop.set()
        for t in threads[USERS:]:
            t.join(60)
        assert not errors, errors[:5]
        assert all(len(v) == RUNS_PER_USER for v in runs.values())
        assert statuses[401] > 0 and set(statuses) <= {200, 201, 401}, statuses
        growth = (server.process.memory_info().rss - rss_before) / 2**20
        print(f"load: {sum(statuses.values())} requests {dict(statuses)}, {USERS * RUNS_PER_USER} runs, "
              f"server RSS {rss_before / 2**20:.0f} MB -> +{growth:.0f} MB")
        assert growth < 150, f"the server grew by {growth:.0f} MB under load"
    finally:
        server.kill()
