"""``ancho serve`` with a Cassandra store: a real server (sandboxed workers), real users, real runs.

The server's runs, results and users' isolation are the REST suite's business
(tests/server); this checks that they hold when the store is Cassandra: runs
go to each owner's keyspace, results come back through the API, and one user
never sees another's run.
"""

from __future__ import annotations

import csv
import io

import pytest

from ..server.conftest import GAMBLER, SLOW, Server, add_user, submit, tar_gz, upload_id, wait_run
from ..stores.conftest import cassandra_catalog, cassandra_url  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.cassandra, pytest.mark.slow]


@pytest.fixture(scope="module")
def cassandra_server(cassandra_catalog, tmp_path_factory):  # noqa: F811
    home = tmp_path_factory.mktemp("cassandra-server") / "home"
    home.mkdir()
    # short patience: a summary worker that cannot reach the node (the sandbox) fails fast
    url = cassandra_url(cassandra_catalog.catalog) + "?retry_seconds=5"
    env = {"ANCHO_STORE": url, "ANCHO_CONCURRENCY": "1"}
    tokens = {name: add_user(home, name) for name in ("dora", "eve")}
    srv = Server(home, env, name="cassandra-server").start()
    srv.tokens = tokens
    yield srv
    srv.kill()


def test_runs_results_and_isolation_through_the_api(cassandra_server, cassandra_catalog):  # noqa: F811
    srv = cassandra_server
    with srv.client(srv.tokens["dora"]) as dora, srv.client(srv.tokens["eve"]) as eve:
        upload = upload_id(dora, tar_gz({"model.py": SLOW}), "slow.tar.gz")
        run_id = submit(dora, {"model": {"upload": upload}, "params": {"seconds": 0}, "sequences": 3000, "seed": 8})
        view = wait_run(dora, run_id)
        assert view["status"] == "succeeded", srv.log()
        assert cassandra_catalog.get_run(run_id).owner == "dora"
        assert "dora" in cassandra_catalog.owners()
        rows = list(csv.DictReader(io.StringIO(dora.get(f"/runs/{run_id}/results", params={"format": "csv"}).text)))
        assert [int(r["sequence"]) for r in rows] == list(range(3000))
        stored = cassandra_catalog.read_frame(run_id)
        assert [float(r["x"]) for r in rows[:50]] == stored.x.tolist()[:50]
        summary = dora.get(f"/runs/{run_id}/summary").json()
        assert summary["outputs"]["x"]["count"] == 3000
        assert eve.get(f"/runs/{run_id}").status_code == 404
        assert eve.get(f"/runs/{run_id}/results").status_code == 404
        assert [r["id"] for r in eve.get("/runs").json()] == []


def test_event_stream_and_status_follow_a_run_on_cassandra(cassandra_server):
    """What clients poll (the status, the event stream) comes through the store's kept readings: it still moves
    with the run and ends with its final state; another user gets 404 for both."""
    import json

    srv = cassandra_server
    with srv.client(srv.tokens["dora"]) as dora, srv.client(srv.tokens["eve"]) as eve:
        upload = upload_id(dora, tar_gz({"model.py": SLOW}), "slow.tar.gz")
        run_id = submit(dora, {"model": {"upload": upload}, "params": {"seconds": 0.002}, "sequences": 1500, "seed": 5})
        assert eve.get(f"/runs/{run_id}/events").status_code == 404
        events = []
        with dora.stream("GET", f"/runs/{run_id}/events", timeout=180) as r:
            assert r.status_code == 200
            name = None
            for line in r.iter_lines():
                if line.startswith("event:"):
                    name = line.split(":", 1)[1].strip()
                elif line.startswith("data:"):
                    events.append((name, json.loads(line.split(":", 1)[1])))
        assert events[-1][0] == "end" and events[-1][1]["status"] == "succeeded" and events[-1][1]["done"] == 1500
        progress = [e["done"] for name, e in events if name == "progress"]
        assert progress == sorted(progress) and len(progress) >= 2  # it moved while the run ran
        view = dora.get(f"/runs/{run_id}").json()
        assert view["status"] == "succeeded" and view["progress"]["done"] == 1500


def test_summary_functions_on_a_sandboxed_server(cassandra_server):
    """Sandboxed workers have no network: the server copies the run's results for its summary functions."""
    srv = cassandra_server
    with srv.client(srv.tokens["dora"]) as dora:
        upload = upload_id(dora, tar_gz({"model.py": GAMBLER}, folder="gambler"), "gambler.tar.gz")
        run_id = submit(dora, {"model": {"upload": upload, "entry": "model.py:Gambler"}, "sequences": 500, "seed": 2})
        view = wait_run(dora, run_id)
        assert view["status"] == "succeeded", view.get("error")


@pytest.mark.spark
def test_spark_runs_through_a_cassandra_server(cassandra_catalog, spark_url, tmp_path):  # noqa: F811
    """The whole deployment: a server on a Cassandra store offering Spark. A run on Spark — its tasks writing the
    owner's keyspace, its summary function in a sandboxed worker — equals the same run on the local workers."""
    from ancho.executors.spark import stop_session

    stop_session()  # this process's own Spark session would hold the cluster's cores
    home = tmp_path / "home"
    home.mkdir()
    token = add_user(home, "fay")
    env = {
        "ANCHO_STORE": cassandra_url(cassandra_catalog.catalog),
        "ANCHO_SPARK_MASTER": spark_url,
        "ANCHO_CONCURRENCY": "1",
    }
    srv = Server(home, env, name="cassandra-spark-server").start()
    try:
        with srv.client(token) as fay:
            upload = upload_id(fay, tar_gz({"model.py": GAMBLER}, folder="gambler"), "gambler.tar.gz")
            body = {
                "model": {"upload": upload, "entry": "model.py:Gambler"},
                "params": {"stake": 3, "goal": 8},
                "sequences": 3000,
                "seed": 12,
                "targets": ["rounds>=10"],
            }
            on_spark = submit(fay, {**body, "executor": spark_url})
            local = submit(fay, {**body, "executor": "local"})
            for run in (on_spark, local):
                view = wait_run(fay, run, timeout=600)
                assert view["status"] == "succeeded", f"run {run}: {view.get('error')}\n{srv.log()}"
            assert "results written by the tasks" in srv.log(400)
            csvs = [fay.get(f"/runs/{run}/results", params={"format": "csv"}).text for run in (on_spark, local)]
            assert csvs[0] == csvs[1] and csvs[0].count("\n") == 3001
            summaries = [
                {k: v for k, v in fay.get(f"/runs/{run}/summary").json().items() if k != "run"}
                for run in (on_spark, local)
            ]
            assert summaries[0] == summaries[1]
            assert "median_rounds_when_won" in summaries[0]["custom"]
            assert cassandra_catalog.get_run(on_spark).owner == "fay"
    finally:
        srv.kill()


def test_concurrent_status_polls_make_one_cassandra_read(cassandra_catalog, tmp_path, monkeypatch):  # noqa: F811
    """The server's status read (Service.run_status) on Cassandra: 32 polls at once of a run whose status is not
    at hand make one read, on a thread; while a later read is slow, polls get the previous status at once."""
    import asyncio
    import json
    import threading
    import time

    from ancho.server.service import Service
    from ancho.server.settings import Settings
    from ancho.stores.base import RunRecord
    from ancho.stores.cassandra import CassandraStore

    svc = Service(Settings(home=tmp_path / "home", store=cassandra_url(cassandra_catalog.catalog)))
    try:
        svc.store.create_run(RunRecord(id="polled1", owner="dora", model="M", total=10))
        reads, loop_thread, slow = [], threading.get_ident(), threading.Event()
        real = CassandraStore.get_run

        def counted(self, run_id, owner=None):
            reads.append(threading.get_ident())
            if slow.is_set():
                time.sleep(1.0)
            return real(self, run_id, owner)

        monkeypatch.setattr(CassandraStore, "get_run", counted)

        async def polls(n):
            return await asyncio.gather(*(svc.run_status("dora", "polled1") for _ in range(n)))

        first = asyncio.run(polls(32))
        assert len(set(first)) == 1 and json.loads(first[0])["id"] == "polled1"
        assert len(reads) == 1 and reads[0] != loop_thread  # one read, off the event loop

        cassandra_catalog.update_run("polled1", done=4)  # another process's write: seen after the window
        time.sleep(CassandraStore.STATUS_FRESH_SECONDS)
        slow.set()

        async def during_a_slow_read():
            reading = asyncio.ensure_future(svc.run_status("dora", "polled1"))
            await asyncio.sleep(0.2)  # the read is on its way
            meanwhile = await svc.run_status("dora", "polled1")
            return meanwhile, reading.done(), await reading

        meanwhile, read_done, fresh = asyncio.run(during_a_slow_read())
        assert meanwhile == first[0] and not read_done  # the previous status, answered while the read was on its way
        assert json.loads(fresh)["progress"]["done"] == 4
        assert len(reads) == 2
    finally:
        svc.store.delete_run("polled1")
        svc.shutdown()
