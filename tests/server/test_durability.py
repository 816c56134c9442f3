"""Runs survive the server: kill -9 mid-run, restart, resume from the stored chunks, same results.

One server home for the module, concurrency 1 (so a second run stays queued
behind the first), restarted several times.
"""

from __future__ import annotations

import os
import signal
import time

import psutil
import pytest

from ancho.stores.embedded import EmbeddedStore

from .conftest import SLOW, Server, add_user, csv_text, submit, tar_gz, upload_id, wait_gone, wait_run

pytestmark = pytest.mark.slow

SEQUENCES = 30_000
SEED = 77
SLEEP = 0.0005  # ~0.5 ms per sequence: ~8 s of work on two workers


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("durable") / "home"


@pytest.fixture(scope="module")
def token(home):
    return add_user(home, "alice")


@pytest.fixture(scope="module")
def servers(home):
    """Every server started on ``home``; all killed at the end."""
    started: list[Server] = []

    def start() -> Server:
        srv = Server(home, {"ANCHO_CONCURRENCY": "1"}, name=f"durable-{len(started)}").start()
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.kill()


@pytest.fixture(scope="module")
def reference(servers, token):
    """The uninterrupted run's CSV (the model's outputs do not depend on its sleep, so it runs with none)."""
    srv = servers()
    with srv.client(token) as c:
        u = upload_id(c, tar_gz({"model.py": SLOW}))
        run_id = submit(c, {"model": {"upload": u}, "params": {"seconds": 0}, "sequences": SEQUENCES, "seed": SEED})
        assert wait_run(c, run_id, timeout=300)["status"] == "succeeded"
        text = csv_text(c, run_id)
    srv.shutdown()
    assert len(text.splitlines()) == SEQUENCES + 1
    return {"csv": text, "upload": u}


def chunk_files(home, run_id) -> dict[str, tuple[int, int]]:
    """Stored chunk files of a run: name -> (inode, mtime_ns); a recomputed chunk would get a new inode."""
    folder = home / "runs" / run_id / "chunks"
    out = {}
    for p in folder.iterdir():
        if p.name.endswith(".parquet"):
            st = p.stat()
            out[p.name] = (st.st_ino, st.st_mtime_ns)
    return out


def stored_status(home, run_id) -> str:
    store = EmbeddedStore(home)
    try:
        return store.get_run(run_id).status
    finally:
        store.close()


def long_run_with_a_queued_one(srv, token, upload) -> tuple[str, str]:
    with srv.client(token) as c:
        long = submit(
            c, {"model": {"upload": upload}, "params": {"seconds": SLEEP}, "sequences": SEQUENCES, "seed": SEED}
        )
        wait_run(c, long, until=lambda v: v["status"] == "running", timeout=120)
        queued = submit(c, {"model": {"upload": upload}, "params": {"seconds": 0}, "sequences": 500, "seed": 1})
        # some chunks stored, far from done
        wait_run(c, long, until=lambda v: v["progress"]["done"] >= 2000 or v["status"] != "running", timeout=120)
        assert c.get(f"/runs/{long}").json()["status"] == "running"
        assert c.get(f"/runs/{queued}").json()["status"] == "queued"
    return long, queued


def test_kill_9_mid_run_then_resume(home, servers, token, reference):
    srv = servers()
    long, queued = long_run_with_a_queued_one(srv, token, reference["upload"])
    workers = srv.workers()
    assert workers
    os.kill(srv.proc.pid, signal.SIGKILL)
    srv.proc.wait(30)
    assert wait_gone(workers) == [], "worker processes outlived the killed server"
    assert not [p for p in psutil.process_iter(["environ"]) if _child_of(p, srv.proc.pid)]

    kept = chunk_files(home, long)
    assert kept, "chunks were stored before the kill"
    assert stored_status(home, long) == "running"  # as the dead server left it
    assert stored_status(home, queued) == "queued"

    srv = servers()
    with srv.client(token) as c:
        assert c.get(f"/runs/{queued}").json()["status"] == "queued"  # still waiting behind the resumed run
        view = wait_run(c, long, timeout=300)
        assert view["status"] == "succeeded", view["error"]
        assert view["progress"]["done"] == SEQUENCES
        after = chunk_files(home, long)
        assert {name: after.get(name) for name in kept} == kept  # not one stored chunk recomputed
        assert len(after) > len(kept)
        assert csv_text(c, long) == reference["csv"]
        assert wait_run(c, queued, timeout=120)["status"] == "succeeded"
    srv.shutdown()


def test_graceful_stop_requeues_and_resumes(home, servers, token, reference):
    srv = servers()
    long, queued = long_run_with_a_queued_one(srv, token, reference["upload"])
    workers = srv.workers()
    srv.shutdown()
    assert wait_gone(workers) == []
    assert stored_status(home, long) == "queued"
    assert stored_status(home, queued) == "queued"
    kept = chunk_files(home, long)
    assert kept

    srv = servers()
    with srv.client(token) as c:
        view = wait_run(c, long, timeout=300)
        assert view["status"] == "succeeded", view["error"]
        after = chunk_files(home, long)
        assert {name: after.get(name) for name in kept} == kept
        assert csv_text(c, long) == reference["csv"]
        assert wait_run(c, queued, timeout=120)["status"] == "succeeded"
    srv.shutdown()


def _child_of(proc: psutil.Process, pid: int) -> bool:
    """A live process started by the server ``pid`` (workers carry ANCHO_PARENT_PID in their environment)."""
    try:
        return (
            proc.info["environ"] is not None
            and proc.info["environ"].get("ANCHO_PARENT_PID") == str(pid)
            and proc.status() != psutil.STATUS_ZOMBIE
        )
    except psutil.Error:
        return False


def test_a_second_server_on_the_same_home_refuses_to_start(home, servers, token):
    """Two dispatchers on one home would both claim the runs; the second stops with a one-line reason."""
    srv = servers()
    other = Server(home, {"ANCHO_CONCURRENCY": "1"}, name="durable-intruder")
    with pytest.raises(RuntimeError) as err:
        other.start()
    other.kill()
    assert "another Ancho server" in str(err.value) and str(srv.proc.pid) in str(err.value)
    with srv.client(token) as c:
        assert c.get("/runs").status_code == 200
    srv.shutdown()


def test_restart_with_nothing_to_do_is_quick_and_clean(home, servers, token):
    """A restart after everything finished starts no run and leaves statuses alone."""
    store = EmbeddedStore(home)
    try:
        statuses = {r.id: r.status for r in store.list_runs()}
    finally:
        store.close()
    srv = servers()
    time.sleep(1)  # give the dispatcher a poll
    with srv.client(token) as c:
        assert {r["id"]: r["status"] for r in c.get("/runs", params={"limit": 1000}).json()} == statuses
    assert srv.workers() == []
    srv.shutdown()


def test_runs_of_the_cli_on_the_same_home_are_left_alone(home, servers, token, tmp_path):
    """`ancho run` and `ancho serve` share the default home: the server must neither resume nor fail a CLI run."""
    import subprocess

    from .conftest import ANCHO

    model = tmp_path / "slow.py"
    model.write_text(SLOW)
    cli = subprocess.Popen(
        [
            ANCHO,
            "run",
            str(model),
            "--sequences",
            "3000",
            "--seed",
            "5",
            "--param",
            "seconds=0.002",
            "--workers",
            "1",
            "--json",
        ],
        env={**os.environ, "ANCHO_HOME": str(home)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        store = EmbeddedStore(home)
        deadline = time.monotonic() + 120
        while not [r for r in store.list_runs(owner="local", status="running")]:
            assert cli.poll() is None and time.monotonic() < deadline, (
                cli.stderr.read() if cli.poll() is not None else "CLI run never started"
            )
            time.sleep(0.1)
        (cli_run,) = store.list_runs(owner="local", status="running")
        srv = servers()
        time.sleep(2)  # a few dispatcher polls
        assert store.get_run(cli_run.id).status == "running"
        with srv.client(token) as c:
            assert cli_run.id not in [r["id"] for r in c.get("/runs").json()]
        out, err = cli.communicate(timeout=300)
        assert cli.returncode == 0, err
        assert store.get_run(cli_run.id).status == "succeeded"
        store.close()
        srv.shutdown()
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()


def test_sigterm_with_an_open_event_stream(tmp_path):
    """A client watching a running run must not hold up a graceful stop: its stream ends, the run is requeued."""
    import threading

    home = tmp_path / "home"
    tok = add_user(home, "alice")
    srv = Server(home, name="sse-stop").start()
    try:
        with srv.client(tok) as c:
            u = upload_id(c, tar_gz({"model.py": SLOW}))
            run_id = submit(c, {"model": {"upload": u}, "params": {"seconds": 0.01}, "sequences": 100_000, "seed": 1})
            wait_run(c, run_id, until=lambda v: v["status"] == "running", timeout=120)
            lines, errors, streaming = [], [], threading.Event()

            def watch():
                try:
                    with srv.client(tok) as c2, c2.stream("GET", f"/runs/{run_id}/events", timeout=120) as r:
                        for line in r.iter_lines():
                            lines.append(line)
                            if line.startswith("event: progress"):
                                streaming.set()
                except Exception as exc:  # noqa: BLE001 - reported below
                    errors.append(exc)
                finally:
                    streaming.set()

            watcher = threading.Thread(target=watch)
            watcher.start()
            assert streaming.wait(
                60
            )  # the stream is open and has sent progress (on a loaded machine that takes a moment)
            srv.shutdown()
            watcher.join(60)
        assert not errors, errors  # the stream was closed properly, not cut off
        assert any(line.startswith("event: progress") for line in lines)
        assert "graceful shutdown exceeded" not in srv.log(200)
        assert stored_status(home, run_id) == "queued"
    finally:
        srv.kill()
