"""Load: many users submitting, polling and reading results at once while runs execute (loopback only,
bounded in count and time). Nothing may answer 5xx, no run may be lost or end with missing sequences, and
what the server holds stays bounded: the same load a second time leaves it holding no more threads, open
files or worker processes than the first did (counts, not bytes: the memory figures, which depend on the
machine, are measured by benchmarks/bench_server_memory.py). Figures from the same scenario are in
docs/reliability.md."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

from ancho.server.inspectors import Inspectors

from .conftest import SLOW, Server, add_user, tar_gz, wait_run

USERS = 6
RUNS_PER_USER = 2  # per wave
SEQUENCES = 400
WAVES = 2
POOL = Inspectors.__init__.__defaults__[-1]  # how many model-reading workers the server keeps


def held(server: Server) -> dict[str, int]:
    """What the server process holds, as counts: its threads, open files and sockets, and worker processes."""
    p = server.process
    return {
        "threads": p.num_threads(),
        "open fds": p.num_fds(),
        "run workers": len(server.run_workers()),
        "model readers": sum(1 for name in _names(server.workers()) if name.startswith("python")),
    }


def _names(processes) -> list[str]:
    """The names of those still alive: one that ends between the listing and the look is no longer held."""
    import psutil

    names = []
    for process in processes:
        try:
            names.append(process.name())
        except psutil.NoSuchProcess:
            continue
    return names


def settled(server: Server, timeout: float = 60) -> dict[str, int]:
    """``held`` once the server is idle: no run worker left and two readings a second apart agree."""
    deadline = time.monotonic() + timeout  # a guard against hanging, not a measurement
    last = held(server)
    while time.monotonic() < deadline:
        time.sleep(1)
        now = held(server)
        if now == last and now["run workers"] == 0:
            return now
        last = now
    return last


class Load:
    """One wave: every user uploads a model and submits runs while all users poll (one with a wrong token)."""

    def __init__(self, server: Server, tokens: dict[str, str]):
        self.server, self.tokens = server, tokens
        self.statuses: Counter = Counter()
        self.errors: list[str] = []
        self.runs: dict[str, list[str]] = {u: [] for u in tokens}
        self.lock = threading.Lock()

    def count(self, r) -> None:
        with self.lock:
            self.statuses[r.status_code] += 1
            if r.status_code >= 500:
                self.errors.append(f"{r.request.method} {r.request.url.path}: {r.status_code} {r.text[:200]}")

    def submitter(self, user: str, token: str, wave: int) -> None:
        with self.server.client(token, timeout=120) as c:
            r = c.post("/models", files={"file": ("m.tar.gz", tar_gz({"slow.py": SLOW}), "application/gzip")})
            self.count(r)
            assert r.status_code == 201, (r.status_code, r.text)
            model = r.json()["id"]
            for k in range(RUNS_PER_USER):
                r = c.post(
                    "/runs",
                    json={
                        "model": {"upload": model, "entry": "slow.py:Slow"},
                        "params": {"seconds": 0.0005},
                        "sequences": SEQUENCES,
                        "seed": wave * 100 + k,
                    },
                )
                self.count(r)
                if r.status_code == 201:
                    self.runs[user].append(r.json()["id"])

    def poller(self, token: str, wrong: bool, stop: threading.Event) -> None:
        with self.server.client("anc_not-a-token" if wrong else token, timeout=60) as c:
            for _ in range(400):  # bounded: at most 400 requests each
                if stop.is_set():
                    return
                r = c.get("/runs")
                self.count(r)
                if not wrong:
                    for run in r.json()[:2]:
                        self.count(c.get(f"/runs/{run['id']}"))
                time.sleep(0.02)

    def wave(self, wave: int) -> None:
        stop = threading.Event()
        submitters = [threading.Thread(target=self.submitter, args=(u, t, wave)) for u, t in self.tokens.items()]
        pollers = [
            threading.Thread(target=self.poller, args=(t, i == 0, stop)) for i, t in enumerate(self.tokens.values())
        ]
        for t in submitters + pollers:
            t.start()
        for t in submitters:
            t.join(300)
        for user, token in self.tokens.items():
            with self.server.client(token, timeout=60) as c:
                for run_id in self.runs[user]:
                    final = wait_run(c, run_id, timeout=600)
                    assert final["status"] == "succeeded", final
                    r = c.get(f"/runs/{run_id}/results", params={"format": "csv"})
                    self.count(r)
                    assert r.text.count("\n") == SEQUENCES + 1  # header + every sequence, nothing lost or doubled
                listed = c.get("/runs")
                assert listed.status_code == 200, (listed.status_code, listed.text)
                assert {r["id"] for r in listed.json()} == set(self.runs[user])  # each user sees exactly their own runs
        stop.set()
        for t in pollers:
            t.join(60)
        assert not self.errors, self.errors[:5]
        assert all(len(v) == RUNS_PER_USER * (wave + 1) for v in self.runs.values())


@pytest.mark.slow
def test_many_users_at_once_lose_nothing(tmp_path):
    server = Server(tmp_path / "home", name="load").start()
    try:
        tokens = {f"user{i}": add_user(server.home, f"user{i}") for i in range(USERS)}
        load = Load(server, tokens)
        after = []
        for wave in range(WAVES):
            load.wave(wave)
            after.append(settled(server))
        statuses = load.statuses
        assert statuses[401] > 0 and set(statuses) <= {200, 201, 401}, statuses
        print(
            f"load: {sum(statuses.values())} requests {dict(statuses)}, {USERS * RUNS_PER_USER * WAVES} runs; "
            f"held after each wave: {after}"
        )
        first, second = after[0], after[-1]
        assert second["run workers"] == 0, after  # every finished run's workers are gone
        # a leak per request or per run would grow with the second wave; pools (threads, kept model readers) do not
        assert second["threads"] <= first["threads"] + 2, after
        # open fds: a leak per request (a socket, a file) would add thousands here. Each finished run's thread leaves
        # its SQLite connections (runs.db, server.db and their -wal) until the cyclic GC frees them (~2.5 per run
        # measured), so the bound allows a few per run of the wave, not per request.
        assert second["open fds"] <= first["open fds"] + 4 * USERS * RUNS_PER_USER, after
        assert second["model readers"] <= POOL, (
            after
        )  # kept model readers: a pool (server/inspectors.py), not one per model
    finally:
        server.kill()
