"""How local workers start: forked from the driver when that is safe, fresh interpreters otherwise; same results either way."""

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

import ancho
from ancho.executors.local import LocalExecutor, _ForkedProcess

from .conftest import ROOT
from .models import KillsWorkerOnce, Mixed


class BlasThreads(ancho.Model):
    """Reports the size of the BLAS thread pool its worker uses."""

    def sequence(self, rng):
        from threadpoolctl import threadpool_info

        pools = [p["num_threads"] for p in threadpool_info() if p.get("user_api") == "blas"]
        return {"threads": max(pools) if pools else 1, "x": rng.random()}


def started_how(executor: LocalExecutor) -> set[str]:
    return {"fork" if isinstance(w.proc, _ForkedProcess) else "exec" for w in executor._pool}


def test_workers_fork_in_a_single_threaded_driver(monkeypatch):
    monkeypatch.delenv("ANCHO_WORKER_START", raising=False)
    with LocalExecutor(2).start() as ex:
        assert started_how(ex) == {"fork"}


def test_workers_start_afresh_when_asked_or_while_other_threads_run(monkeypatch):
    with LocalExecutor(1, env={}).start() as ex:
        assert started_how(ex) == {"fork"}
    monkeypatch.setenv("ANCHO_WORKER_START", "exec")
    with LocalExecutor(1).start() as ex:
        assert started_how(ex) == {"exec"}
    monkeypatch.delenv("ANCHO_WORKER_START")
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        with LocalExecutor(1).start() as ex:
            assert started_how(ex) == {"exec"}  # a fork could copy a lock that thread holds
    finally:
        stop.set()
        other.join()
    other_python = os.path.realpath(sys.executable)  # the same binary by another name stands for a model's environment
    assert other_python != sys.executable
    with LocalExecutor(1, python=other_python).start() as ex:  # another interpreter: never forked
        assert started_how(ex) == {"exec"}


@pytest.mark.parametrize("how", ["fork", "exec"])
def test_forked_and_fresh_workers_give_the_same_outputs(store, monkeypatch, how):
    monkeypatch.setenv("ANCHO_WORKER_START", "auto" if how == "fork" else "exec")
    r = ancho.run(Mixed, sequences=2000, seed=7, workers=2, store=store)
    monkeypatch.setenv("ANCHO_WORKER_START", "exec" if how == "fork" else "auto")
    other = ancho.run(Mixed, sequences=2000, seed=7, workers=1, store=store)
    assert r.frame.equals(other.frame)


@pytest.mark.parametrize("how", ["auto", "exec"])
def test_a_killed_worker_is_replaced_either_way(store, tmp_path, monkeypatch, how):
    monkeypatch.setenv("ANCHO_WORKER_START", how)
    marker = tmp_path / "killed"
    r = ancho.run(KillsWorkerOnce, params={"marker": str(marker), "at": 40}, sequences=1000, seed=2, workers=2, store=store)
    assert marker.exists() and store.get_run(r.run_id).retries >= 1
    assert r.frame.sequence.tolist() == list(range(1000))


@pytest.mark.parametrize("how", ["auto", "exec"])
def test_workers_use_one_blas_thread(store, monkeypatch, how):
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("ANCHO_WORKER_START", how)
    r = ancho.run(BlasThreads, sequences=4, seed=1, workers=2, store=store)
    assert set(r.frame.threads) == {1}


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


@pytest.mark.slow
@pytest.mark.parametrize("how", ["auto", "exec"])
def test_workers_die_with_a_killed_driver(home, how):
    code = (
        "import ancho\n"
        "from tests.models import Slow\n"
        "ancho.run(Slow, params={'seconds': 0.05}, sequences=100000, seed=1, workers=2)\n"
    )
    driver = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "ANCHO_WORKER_START": how})
    try:
        deadline = time.monotonic() + 60
        while len(_children(driver.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        workers = _children(driver.pid)
        assert len(workers) >= 2
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    deadline = time.monotonic() + 10
    while any(os.path.exists(f"/proc/{p}") and open(f"/proc/{p}/stat").read().split()[2] != "Z" for p in workers):
        assert time.monotonic() < deadline, "a worker outlived its driver"
        time.sleep(0.05)
