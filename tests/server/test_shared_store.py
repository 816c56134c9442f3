"""Servers with different homes on one store (as on one Cassandra cluster): each runs only what was submitted to it.

Before servers had ids, an idle server on the same store took another's
queued run (and failed it: that run's model lay in the other home, or its
executor was not offered), and a starting server requeued another's running
run as if it were its own, interrupted one.
"""

from __future__ import annotations

import time

import pytest

from ancho.engine import create_record
from ancho.server.dispatcher import Dispatcher, submitted_here
from ancho.server.service import server_id
from ancho.stores.base import RunRecord
from ancho.stores.embedded import EmbeddedStore

from .conftest import SLOW, Server, add_user, submit, tar_gz, upload_id, wait_run


def test_a_home_keeps_its_server_id(tmp_path):
    first = server_id(tmp_path)
    assert first and server_id(tmp_path) == first
    assert server_id(tmp_path / ".." / tmp_path.name) == first
    other = tmp_path / "other"
    other.mkdir()
    assert server_id(other) != first


def _record(run_id: str, server: str | None, status: str = "queued", **spec) -> RunRecord:
    """A record as a server of before :class:`Submission` wrote it (the server's id flat in the spec)."""
    spec = {"ref": {"root": "/nowhere", "file": "model.py", "class_name": "M"}, "info": {}, **spec}
    if server is not None:
        spec["server"] = server
    return RunRecord(id=run_id, spec=spec, status=status)


def test_submitted_here():
    assert submitted_here(_record("a", "s1"), "s1")
    assert not submitted_here(_record("a", "s2"), "s1")
    assert submitted_here(_record("a", None), "s1")  # recorded before servers had ids
    assert not submitted_here(RunRecord(id="a", spec={"info": {}}), "s1")  # an `ancho run` of the CLI
    # a study's point run carries its study's submission, but only its study runs it
    assert not submitted_here(_record("a", "s1", study="s0123", point=0), "s1")


def test_a_dispatcher_neither_takes_nor_requeues_another_servers_runs(tmp_path):
    """The dispatcher itself, on one store: another server's queued run stays queued and its running run running."""
    from ancho.engine import RunSpec
    from ancho.loading import load_model

    path = tmp_path / "model.py"
    path.write_text(SLOW)
    store = EmbeddedStore(tmp_path / "store")
    try:
        model = load_model(str(path))
        spec = RunSpec.build(model, {"seconds": 0}, 10, 1)
        extra = {
            "ref": {"root": str(tmp_path), "file": "model.py", "class_name": "Slow"},
            "info": {},
            "server": "theirs",
        }
        queued = create_record(model, spec, "local", 1, owner="ann", extra=extra)
        running = create_record(model, spec, "local", 1, owner="ann", extra=extra)
        store.create_run(queued)
        store.create_run(running)
        store.update_run(running.id, status="running")
        mine = Dispatcher(store, server="mine", poll=0.05)
        mine.start()
        try:
            time.sleep(0.5)  # ten polls
            assert store.get_run(queued.id).status == "queued"
            assert store.get_run(running.id).status == "running"
        finally:
            mine.shutdown()
    finally:
        store.close()


@pytest.mark.slow
def test_two_servers_on_one_store(tmp_path):
    """An idle server beside a busy one on the same store leaves the busy one's queue and running run alone,
    and sends a cancel of them to the server they were submitted to (409)."""
    store = tmp_path / "store"
    homes = {name: tmp_path / name for name in ("busy", "idle")}
    for home in homes.values():
        home.mkdir()
    token = add_user(homes["busy"], "ann")
    elsewhere = add_user(homes["idle"], "ann")  # the same user at the other server
    env = {"ANCHO_STORE": str(store), "ANCHO_CONCURRENCY": "1"}
    busy = Server(homes["busy"], env, name="busy").start()
    idle = None
    try:
        with busy.client(token) as c:
            upload = upload_id(c, tar_gz({"model.py": SLOW}))
            long = submit(
                c, {"model": {"upload": upload}, "params": {"seconds": 0.01}, "sequences": 100_000, "seed": 1}
            )
            wait_run(c, long, until=lambda v: v["status"] == "running" and v["progress"]["done"] > 0)
            waiting = submit(c, {"model": {"upload": upload}, "params": {"seconds": 0}, "sequences": 200, "seed": 2})
            idle = Server(homes["idle"], env, name="idle").start()  # its start requeues "its" running runs
            time.sleep(2)  # four polls of the idle server's dispatcher
            assert c.get(f"/runs/{long}").json()["status"] == "running"
            assert c.get(f"/runs/{waiting}").json()["status"] == "queued"
            assert "starting" not in idle.log() and "resuming" not in idle.log(), idle.log()
            # the other server neither cancels it (that would race the busy server's own writes) nor waits
            with idle.client(elsewhere) as other:
                refused = other.post(f"/runs/{long}/cancel")
                assert refused.status_code == 409 and "another server" in refused.json()["detail"], refused.text
                assert other.get(f"/runs/{long}").json()["status"] == "running"  # but it is seen there
            c.post(f"/runs/{long}/cancel")
            assert wait_run(c, waiting, timeout=120)["status"] == "succeeded", busy.log()
    finally:
        busy.kill()
        if idle is not None:
            idle.kill()
