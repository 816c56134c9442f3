"""Workers forked from a zygote (a driver with threads of its own, such as a notebook kernel): each is what a fresh
worker would be, the zygote follows the driver's start-up variables, survives nothing it should not, and a zygote
that cannot start leaves fresh workers."""

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

import ancho
from ancho.executors import zygote

from ..conftest import ROOT
from .test_local_executor import PRELUDE, in_fresh_python


class WhereAmI(ancho.Model):
    """What a worker sees of its start: a variable, its working directory, the first entry of its path."""

    def sequence(self, rng):
        late = os.environ.get("ANCHO_TEST_LATE") == "yes"
        here = os.getcwd() == os.environ.get("ANCHO_TEST_CWD")
        leads = sys.path[0] == os.environ.get("ANCHO_TEST_CWD")
        return {"late": late, "here": here, "leads": leads, "x": rng.random()}


def test_a_zygote_worker_has_the_drivers_environment_and_folder_of_now_as_a_fresh_one(tmp_path):
    """A variable set and a folder changed to after the zygote started reach its next workers, as they reach a
    fresh worker (whose ``-m`` puts its folder first on its path)."""
    out = in_fresh_python(
        PRELUDE
        + """
import ancho
from tests.executors.test_zygote import WhereAmI
store = os.environ["STORE"]
ancho.run(WhereAmI, sequences=4, seed=1, workers=1, store=store)  # (starts the zygote, here)
os.environ["ANCHO_TEST_LATE"] = "yes"
os.chdir(os.environ["ANCHO_TEST_CWD"])
sys.path.insert(0, os.environ["ROOT"])  # (the driver finds tests.*; workers get the repository on PYTHONPATH)
for how in ("zygote", "exec"):
    os.environ["ANCHO_WORKER_START"] = how
    f = ancho.run(WhereAmI, sequences=20, seed=1, workers=2, store=store).frame
    print(how, bool(f.late.all()), bool(f.here.all()), bool(f.leads.all()))
""",
        ANCHO_WORKER_START="zygote",
        ANCHO_TEST_CWD=str(tmp_path),
        ROOT=str(ROOT),
        PYTHONPATH=str(ROOT),
        STORE=str(tmp_path / "home"),
    )
    assert out.splitlines() == ["zygote True True True", "exec True True True"]


def test_a_start_up_variable_changed_starts_another_zygote():
    """BLAS reads its thread count when NumPy loads: a worker must get the count of its own environment."""
    out = in_fresh_python(
        """
import os, ancho
from ancho.executors import zygote
from tests.executors.test_local_executor import BlasThreads
for threads in ("1", "2", "1"):
    os.environ["OPENBLAS_NUM_THREADS"] = threads
    r = ancho.run(BlasThreads, sequences=4, seed=1, workers=2, store=os.environ["STORE"])
    print(sorted(set(r.frame.threads)), len(zygote._zygotes), end="; ")
""",
        drop=("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"),
        ANCHO_WORKER_START="zygote",
        STORE="/tmp/ancho-test-zygote-blas" + str(os.getpid()),
    )
    assert out == "[1] 1; [2] 2; [1] 2;"


def test_a_killed_zygote_is_started_again_and_its_running_workers_replaced(tmp_path):
    """Killed between runs, the next run starts a new one; killed during a run, its workers die with it (their
    exit without a code is read as SIGKILL), and the run ends with every sequence, as after any lost worker."""
    out = in_fresh_python(
        PRELUDE
        + """
import signal, threading, time, ancho
from ancho.executors import zygote
from tests.models import Mixed, Slow
store = os.environ["STORE"]
plain = ancho.run(Mixed, sequences=500, seed=4, workers=2, store=store)
first = next(iter(zygote._zygotes.values())).process
first.send_signal(signal.SIGKILL)
first.wait()
again = ancho.run(Mixed, sequences=500, seed=4, workers=2, store=store)
second = next(iter(zygote._zygotes.values())).process
print(second.pid != first.pid, again.frame.equals(plain.frame))
threading.Timer(0.5, lambda: second.send_signal(signal.SIGKILL)).start()
r = ancho.run(Slow, params={"seconds": 0.002}, sequences=2000, seed=4, workers=2, store=store)
third = next(iter(zygote._zygotes.values())).process
print(third.pid != second.pid, r.frame.sequence.tolist() == list(range(2000)), r.store.get_run(r.run_id).retries >= 1)
""",
        ANCHO_WORKER_START="zygote",
        STORE=str(tmp_path / "home"),
    )
    assert out.splitlines() == ["True True", "True True True"]


def test_workers_start_afresh_when_no_zygote_will(tmp_path):
    out = in_fresh_python(
        PRELUDE
        + """
import ancho
from ancho.executors import local, zygote
from tests.models import Mixed
zygote.START_TIMEOUT = 1e-4  # (no zygote is ready that soon)
with LocalExecutor(2) as ex:
    r = ancho.run(Mixed, sequences=300, seed=5, executor=ex, store=os.environ["STORE"])
    print(how(ex), len(zygote._zygotes), len(r.frame))
""",
        ANCHO_WORKER_START="zygote",
        STORE=str(tmp_path / "home"),
    )
    assert out == "['exec'] 0 300"


def test_zygotes_that_cannot_fork_are_tried_twice_then_workers_start_afresh(tmp_path):
    """A kernel without pidfds, say: the zygote dies at its first fork; after two, none is started again."""
    out = in_fresh_python(
        PRELUDE
        + """
import ancho
from ancho.executors import zygote
from tests.models import Mixed
started = []
init = zygote.Zygote.__init__
def counted(self, *a, **k):
    started.append(1)
    init(self, *a, **k)
def refuse(self, fd, request):
    raise zygote.ZygoteGone("no pidfds here")
zygote.Zygote.__init__, zygote.Zygote.fork = counted, refuse
for _ in range(2):
    with LocalExecutor(2) as ex:
        r = ancho.run(Mixed, sequences=300, seed=5, executor=ex, store=os.environ["STORE"])
        print(how(ex), len(r.frame), end="; ")
print(len(started))
""",
        ANCHO_WORKER_START="zygote",
        STORE=str(tmp_path / "home"),
    )
    assert out == "['exec'] 300; ['exec'] 300; 2"


def test_the_zygote_exits_with_its_driver():
    out = in_fresh_python(
        """
import os, ancho
from ancho.executors import zygote
from tests.models import Mixed
ancho.run(Mixed, sequences=10, seed=1, workers=1, store=os.environ["STORE"])
print(next(iter(zygote._zygotes.values())).process.pid)
""",
        ANCHO_WORKER_START="zygote",
        STORE="/tmp/ancho-test-zygote-exit" + str(os.getpid()),
    )
    pid = int(out)
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{pid}") and open(f"/proc/{pid}/stat").read().split()[2] != "Z":
        assert time.monotonic() < deadline, "the zygote outlived its driver"
        time.sleep(0.05)


def test_a_zygote_child_reports_its_exit_like_a_popen():
    """Exit codes and signals as ``subprocess`` gives them, through the zygote; a signal reaches the child by its
    pidfd."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "ANCHO_PARENT_PID": str(os.getpid())}
    request = zygote.Request(env=env, cwd=os.getcwd())
    children = []
    for _ in range(2):
        ours, theirs = socket.socketpair()
        child = zygote.start_worker(sys.executable, theirs.fileno(), request)
        theirs.close()
        assert child is not None and child.poll() is None
        children.append((child, ours))
    (quits, quits_sock), (killed, killed_sock) = children
    with pytest.raises(subprocess.TimeoutExpired):
        quits.wait(0.1)
    quits_sock.close()  # the worker reads the end of its connection and exits
    assert quits.wait(30) == 0 and quits.returncode == 0
    killed.send_signal(signal.SIGTERM)
    assert killed.wait(30) == -signal.SIGTERM
    killed.send_signal(signal.SIGKILL)  # (gone already: nothing happens)
    killed_sock.close()


@pytest.mark.slow
def test_a_notebook_kernel_with_its_threads_runs_workers_from_a_zygote(tmp_path):
    """The case the zygote is for: a Jupyter kernel always has threads of its own."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            "import os, sys, threading\n"
            f"sys.path.insert(0, {str(ROOT)!r})\n"
            "import ancho\n"
            "from ancho.executors import zygote\n"
            "from tests.models import Mixed\n"
            f"r = ancho.run(Mixed, sequences=1000, seed=7, workers=2, store={str(tmp_path / 'home')!r})\n"
            "print(threading.active_count() > 1, len(zygote._zygotes), len(r.frame))"
        )
    ]
    NotebookClient(nb, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(tmp_path)}}).execute()
    assert nb.cells[0].outputs[-1]["text"].strip() == "True 1 1000"
