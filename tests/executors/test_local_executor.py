"""How local workers start: forked from the driver when that is safe, from a zygote while the driver has other threads,
fresh interpreters otherwise; the same results every way."""

import os
import signal
import subprocess
import sys
import time

import pytest

import ancho

from ..conftest import ROOT


class BlasThreads(ancho.Model):
    """Reports the size of the BLAS thread pool its worker uses."""

    def sequence(self, rng):
        from threadpoolctl import threadpool_info

        pools = [p["num_threads"] for p in threadpool_info() if p.get("user_api") == "blas"]
        return {"threads": max(pools) if pools else 1, "x": rng.random()}


def in_fresh_python(code: str, drop: tuple[str, ...] = (), **env: str) -> str:
    """Run ``code`` in a new interpreter: whether workers fork depends on the threads alive in the driver, and a
    long test session keeps some (a Cassandra driver's, a server fixture's), so these checks start clean."""
    import textwrap

    base = {k: v for k, v in os.environ.items() if k not in drop}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**base, **env},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


PRELUDE = """
import os, sys, threading
from ancho.executors.forked import ForkedProcess
from ancho.executors.local import LocalExecutor
from ancho.executors.zygote import ZygoteChild
def kind(proc):
    return "fork" if isinstance(proc, ForkedProcess) else "zygote" if isinstance(proc, ZygoteChild) else "exec"
def how(ex):
    return sorted({kind(w.proc) for w in ex._pool})
"""


def test_workers_fork_in_a_single_threaded_driver():
    out = in_fresh_python(
        PRELUDE
        + """
with LocalExecutor(2).start() as ex:
    print(how(ex))
"""
    )
    assert out == "['fork']"


def test_workers_come_from_a_zygote_while_other_threads_run_and_start_afresh_when_asked():
    out = in_fresh_python(
        PRELUDE
        + """
with LocalExecutor(1, env={}).start() as ex:
    print(how(ex))
os.environ["ANCHO_WORKER_START"] = "exec"
with LocalExecutor(1).start() as ex:
    print(how(ex))
del os.environ["ANCHO_WORKER_START"]
stop = threading.Event()
other = threading.Thread(target=stop.wait)
other.start()
with LocalExecutor(1).start() as ex:  # a fork could copy a lock that thread holds: the zygote has one thread
    print(how(ex))
os.environ["ANCHO_WORKER_START"] = "exec"
with LocalExecutor(1).start() as ex:  # asked: afresh, threads or not
    print(how(ex))
os.environ["ANCHO_WORKER_START"] = "zygote"
with LocalExecutor(1, wrap=lambda argv: ["nice", "-n", "1", *argv]).start() as ex:  # wrapped: never forked
    print(how(ex))
stop.set()
other.join()
with LocalExecutor(1).start() as ex:  # asked: from a zygote, even without threads
    print(how(ex))
del os.environ["ANCHO_WORKER_START"]
other_python = os.path.realpath(sys.executable)  # the same binary by another name stands for a model's environment
assert other_python != sys.executable
with LocalExecutor(1, python=other_python).start() as ex:  # another interpreter: never forked
    print(how(ex))
"""
    )
    assert out.splitlines() == ["['fork']", "['exec']", "['zygote']", "['exec']", "['exec']", "['zygote']", "['exec']"]


def test_forked_and_fresh_workers_give_the_same_outputs(tmp_path):
    out = in_fresh_python(
        PRELUDE
        + """
import ancho
from ancho.executors import local
from tests.models import Mixed
seen = []
spawn = local.LocalExecutor._spawn
def spy(self):
    w = spawn(self)
    seen.append(kind(w.proc))
    return w
local.LocalExecutor._spawn = spy
forked = ancho.run(Mixed, sequences=2000, seed=7, workers=2, store=os.environ["STORE"])
os.environ["ANCHO_WORKER_START"] = "exec"
fresh = ancho.run(Mixed, sequences=2000, seed=7, workers=1, store=os.environ["STORE"])
os.environ["ANCHO_WORKER_START"] = "zygote"
zygote = ancho.run(Mixed, sequences=2000, seed=7, workers=3, store=os.environ["STORE"])
print(sorted(set(seen[:2])), sorted(set(seen[2:3])), sorted(set(seen[3:])))
print(forked.frame.equals(fresh.frame), forked.frame.equals(zygote.frame))
""",
        STORE=str(tmp_path / "home"),
    )
    assert out.splitlines() == ["['fork'] ['exec'] ['zygote']", "True True"]


@pytest.mark.parametrize("how", ["auto", "exec", "zygote"])
def test_a_killed_worker_is_replaced_every_way(tmp_path, how):
    out = in_fresh_python(
        PRELUDE
        + """
import ancho
from tests.models import KillsWorkerOnce
r = ancho.run(KillsWorkerOnce, params={"marker": os.environ["MARKER"], "at": 40}, sequences=1000, seed=2, workers=2,
              store=os.environ["STORE"])
print(os.path.exists(os.environ["MARKER"]), r.store.get_run(r.run_id).retries >= 1, r.frame.sequence.tolist() == list(range(1000)))
""",
        ANCHO_WORKER_START=how,
        STORE=str(tmp_path / "home"),
        MARKER=str(tmp_path / "killed"),
    )
    assert out == "True True True"


@pytest.mark.parametrize("how", ["auto", "exec", "zygote"])
def test_workers_use_one_blas_thread(tmp_path, how):
    out = in_fresh_python(
        """
import ancho, os, numpy
from threadpoolctl import threadpool_info
from tests.executors.test_local_executor import BlasThreads
driver = lambda: [p["num_threads"] for p in threadpool_info() if p.get("user_api") == "blas"]
before = driver()
r = ancho.run(BlasThreads, sequences=4, seed=1, workers=2, store=os.environ["STORE"])
print(sorted(set(r.frame.threads)), min(driver()) == max(before))
""",
        drop=("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"),
        ANCHO_WORKER_START=how,
        STORE=str(tmp_path / "home"),
    )
    assert out == "[1] True"  # and the driver's own BLAS pool is as it was


def test_the_driver_s_blas_limit_is_held_while_an_executor_is_open_and_restored_when_the_last_closes(tmp_path):
    """Forked workers inherit one BLAS thread from the driver, which holds that limit while an executor is open:
    restored after each fork, OpenBLAS (whose pool each fork shuts down) started a thread that spun ~0.1 CPU s
    during the run (docs/benchmarks.md, "Batch models", ninth pass). Two executors open at once: the original
    limit comes back when the last closes, whichever order they close in."""
    out = in_fresh_python(
        """
import numpy
from threadpoolctl import threadpool_info
from ancho.executors.local import LocalExecutor
driver = lambda: max(p["num_threads"] for p in threadpool_info() if p.get("user_api") == "blas")
before = driver()
for first, second in ((0, 1), (1, 0)):
    pair = [LocalExecutor(1).start(), LocalExecutor(1).start()]
    held = driver()
    pair[first].close()
    still = driver()
    pair[second].close()
    print(held, still, driver() == before, end="; ")
""",
        drop=("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"),
    )
    assert out == "1 1 True; 1 1 True;"


def _descendants(pid: int) -> tuple[list[int], list[int]]:
    """The driver's worker processes (its children, or its zygote's), and all its descendants."""
    import psutil

    every = psutil.Process(pid).children(recursive=True)
    zygotes = [p for p in every if p.ppid() == pid and "ancho.executors.zygote" in p.cmdline()]
    return [p.pid for p in every if p not in zygotes], [p.pid for p in every]


@pytest.mark.slow
@pytest.mark.parametrize("how", ["auto", "exec", "zygote"])
def test_workers_die_with_a_killed_driver(home, how):
    """Fresh and forked workers die with their driver (``PDEATHSIG``); a zygote sees its socket close, kills the
    workers it forked and exits."""
    code = (
        "import ancho\n"
        "from tests.models import Slow\n"
        "ancho.run(Slow, params={'seconds': 0.05}, sequences=100000, seed=1, workers=2)\n"
    )
    driver = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "ANCHO_WORKER_START": how})
    try:
        deadline = time.monotonic() + 60
        while len(_descendants(driver.pid)[0]) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        workers, every = _descendants(driver.pid)
        assert len(workers) >= 2
        assert len(every) == (3 if how == "zygote" else 2)
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    deadline = time.monotonic() + 10
    while any(os.path.exists(f"/proc/{p}") and open(f"/proc/{p}/stat").read().split()[2] != "Z" for p in every):
        assert time.monotonic() < deadline, "a worker (or the zygote) outlived its driver"
        time.sleep(0.05)


class Policy(ancho.Model):
    """Reports whether its worker runs under SCHED_IDLE."""

    def sequence(self, rng):
        return {"idle": os.sched_getscheduler(0) == os.SCHED_IDLE, "x": rng.random()}


@pytest.mark.parametrize("start", ["fork", "exec", "zygote"])
def test_idle_workers_run_under_sched_idle(start):
    """``idle=True`` (a server's ``worker_idle``) puts forked, zygote's and fresh workers alike under SCHED_IDLE; the results
    are those of a normal run."""
    out = in_fresh_python(
        PRELUDE
        + """
import ancho
from tests.executors.test_local_executor import Policy
with LocalExecutor(2, idle=True) as ex:
    r = ancho.run(Policy, sequences=200, seed=3, executor=ex)
    print(how(ex), bool(r.frame["idle"].all()))
with LocalExecutor(2) as ex:
    plain = ancho.run(Policy, sequences=200, seed=3, executor=ex)
print(bool(r.frame["x"].equals(plain.frame["x"])), bool(plain.frame["idle"].any()))
""",
        ANCHO_WORKER_START=start,
    )
    assert out.splitlines() == [f"['{start}'] True", "True False"]


ENVIRON = """
import os

import ancho


class Environ(ancho.Model):
    \"\"\"Whether a secret of the driver's environment reached the worker.\"\"\"

    def sequence(self, rng):
        return {"secret": "ancho-test-secret-6c1f0e" in repr(dict(os.environ)), "x": rng.random()}
"""


def environ_model(folder) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "environ.py").write_text(ENVIRON)
    return str(folder / "environ.py")


def test_sandboxed_workers_and_their_launchers_get_nothing_of_the_drivers_environment(monkeypatch, tmp_path):
    """Wrapped in a Sandbox, a worker is never forked (a fork copies the driver's environment), and every process
    between the driver and it (setpriv's shell, bubblewrap's monitor, bubblewrap's init: PID 1 inside, which a model
    can read) starts with the sandbox's launch environment, PATH and LANG only."""
    import psutil

    from ancho import isolation as sb
    from ancho.executors.local import LocalExecutor

    from ..conftest import need_service

    if sb.sandbox_problem():
        need_service("bubblewrap", sb.sandbox_problem())
    monkeypatch.setenv("ANCHO_TEST_SECRET", "ancho-test-secret-6c1f0e")
    model = environ_model(tmp_path / "models")
    with sb.Sandbox(sb.SandboxPolicy(scratch=tmp_path / "scratch", read_only=(str(tmp_path / "models"),))) as sandbox:
        ex = LocalExecutor(1, wrap=sandbox.wrap, env={"ANCHO_TEST_EXTRA": "x"})
        assert ex._env() == sb.LAUNCHER_ENV == sandbox.launch_env()
        with ex.start():
            launcher = ex._pool[0].proc
            assert isinstance(launcher, subprocess.Popen)  # (never forked, from the driver or a zygote)
            deadline = time.monotonic() + 30
            while True:
                chain = [psutil.Process(launcher.pid), *psutil.Process(launcher.pid).children(recursive=True)]
                worker = [p for p in chain if p.cmdline()[:3] == [sys.executable, "-m", "ancho.executors.worker"]]
                if worker or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            assert worker, [p.cmdline()[:3] for p in chain]
            helpers = [p for p in chain if p not in worker]
            assert len(helpers) >= 2  # the shell (or bubblewrap itself) and bubblewrap's init
            for p in helpers:
                assert p.environ() == sb.LAUNCHER_ENV, p.cmdline()[:3]
            assert "ANCHO_TEST_SECRET" not in worker[0].environ() and worker[0].environ()["ANCHO_SANDBOX"] == "1"
            r = ancho.run(model, sequences=4, seed=1, executor=ex, store=str(tmp_path / "store"))
    assert not r.frame.secret.any()


def test_other_wrappers_do_not_pass_the_drivers_environment_on(monkeypatch, tmp_path):
    """A wrapper that is not a sandbox still starts from the minimal environment, plus what a worker needs."""
    from ancho.executors.local import LocalExecutor

    monkeypatch.setenv("ANCHO_TEST_SECRET", "ancho-test-secret-6c1f0e")
    model = environ_model(tmp_path / "models")
    with LocalExecutor(1, wrap=lambda argv: ["nice", "-n", "1", *argv]) as ex:
        r = ancho.run(model, sequences=4, seed=1, executor=ex, store=str(tmp_path / "store"))
    assert not r.frame.secret.any()
    with LocalExecutor(1) as ex:  # unwrapped workers are the driver's own kind: its environment
        r = ancho.run(model, sequences=4, seed=1, executor=ex, store=str(tmp_path / "store"))
    assert r.frame.secret.all()


def test_a_sandboxed_worker_s_reply_is_overdue_after_its_chunks_sequences_and_set_up_at_the_time_limit_each():
    """The driver's own deadline for a sandboxed worker (the backstop for a model that starves the worker's
    watchdog): every sequence in flight and each chunk's set-up at ``sequence_timeout``, plus twice the grace."""
    from collections import deque
    from types import SimpleNamespace

    from ancho.executors.base import Chunk
    from ancho.executors.local import LocalExecutor

    executor = LocalExecutor(1)
    assert executor.deadline is None  # unsandboxed: the user's own code, no limit
    executor.deadline = (0.5, 1.0)
    w = SimpleNamespace(
        inflight=deque([Chunk(0, 3), Chunk(3, 10)]), since=time.monotonic(), proc=SimpleNamespace(pid=7), task=None
    )
    assert executor._overdue(w) is None  # (10 + 2) × 0.5 + 2 × 1.0 = 8 s from now
    w.since -= 8.5
    why = executor._overdue(w)
    assert why == (
        "worker process 7 gave no answer within 8 s (10 sequences and their set-up at the sandbox's sequence_timeout "
        "of 0.5 s each, plus twice its timeout_grace): killed by the driver"
    )


def test_a_batch_models_worker_is_overdue_after_its_chunks_blocks_at_the_time_limit_each():
    """A batch model's call runs a block: the deadline counts the blocks a chunk reaches, not its sequences (with
    4,096-sequence blocks a model looping outside its call was waited for 4,096 times too long: for ever)."""
    from collections import deque
    from types import SimpleNamespace

    from ancho.executors.base import Chunk, Task
    from ancho.executors.local import LocalExecutor

    executor = LocalExecutor(1)
    executor.deadline = (0.5, 1.0)
    task = Task("ref", {}, 1, block=4096)
    # blocks 0, 1 and 2; block 2 again; blocks 0, 1 and 2 of a study's point whose own task runs 100 a call: 3 + 1 + 3
    chunks = [Chunk(0, 10_000), Chunk(10_000, 12_288), Chunk(50, 250, task=Task("ref", {}, 1, block=100))]
    w = SimpleNamespace(inflight=deque(chunks), since=time.monotonic(), proc=SimpleNamespace(pid=7), task=task)
    assert executor._overdue(w) is None  # (7 + 3) × 0.5 + 2 × 1.0 = 7 s from now
    w.since -= 7.1
    assert executor._overdue(w) == (
        "worker process 7 gave no answer within 7 s (7 blocks and their set-up at the sandbox's sequence_timeout "
        "of 0.5 s each, plus twice its timeout_grace): killed by the driver"
    )
