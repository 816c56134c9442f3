"""A sandboxed model gets EPERM from the kernel's seldom needed, often exploited system calls; everything a model
does (threads, fork, subprocesses, NumPy) works as before.

Every call is made with arguments the kernel refuses or that do nothing, so without the filter each fails (or
succeeds) harmlessly with its own answer; the runs with ``SandboxPolicy(seccomp=False)`` show that the filter, not
the namespaces, is what answers EPERM.
"""

from __future__ import annotations

import base64
import errno
import json
import multiprocessing
import os

import pytest

import ancho
from ancho import syscall_filter
from ancho.isolation import seccomp
from ancho.isolation.policy import describe
from ancho.isolation.sandbox import SandboxPolicy

from .conftest import sandboxed, write_model

#: (call, its arguments): each refused by the kernel, or doing nothing, when the filter lets it through
CALLS = {
    "io_uring_setup": (0, 0),
    "io_uring_enter": (-1, 0, 0, 0, 0, 0),
    "bpf": (-1, 0, 0),
    "perf_event_open": (0, 0, -1, -1, 0),
    "userfaultfd": (-1,),
    "keyctl": (-1, 0, 0, 0, 0),
    "ptrace": (-1, 0, 0, 0),
    "unshare": (0,),
    "setns": (-1, 0),
    "mount": (0, 0, 0, 0, 0),
    "personality": (0xFFFFFFFF,),
    "kcmp": (0, 0, -1, 0, 0),
    "clone3": (0, 0),
}

PROBE = '''
import ctypes
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np

import ancho


class Probe(ancho.Model):
    """Makes each of ``calls`` (JSON: name -> [number, args]) and returns its errno (0: it succeeded); then works."""

    calls: str = "{}"

    def sequence(self, rng):
        libc = ctypes.CDLL(None, use_errno=True)
        out = {}
        for name, (number, args) in json.loads(self.calls).items():
            ctypes.set_errno(0)
            result = libc.syscall(number, *(ctypes.c_long(a) for a in args))
            out["e_" + name] = ctypes.get_errno() if result == -1 else 0
        with ThreadPoolExecutor(4) as pool:
            out["threads"] = sum(pool.map(lambda k: k * k, range(10)))
        pid = os.fork()
        if pid == 0:
            os._exit(7)
        out["fork"] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        out["subprocess"] = int(subprocess.run([sys.executable, "-c", "print(6 * 7)"], capture_output=True,
                                               text=True).stdout)
        out["numpy"] = float((np.eye(3) * 2.0 @ np.ones(3)).sum())
        return out
'''


def calls() -> str:
    import pyseccomp

    arch = pyseccomp.system_arch()
    return json.dumps({name: [pyseccomp.resolve_syscall(arch, name), list(args)] for name, args in CALLS.items()})


def probe(tmp_path, home, **policy) -> dict[str, float]:
    path = write_model(tmp_path / "models", "probe.py", PROBE)
    with sandboxed(path.parent, **policy) as executor:
        run = ancho.run(str(path), {"calls": calls()}, sequences=1, seed=1, store=str(home), executor=executor)
    assert run.status == "succeeded", run.error
    return {name: s["mean"] for name, s in run.summary["outputs"].items()}


def test_a_sandboxed_model_gets_eperm_and_everything_else_works(tmp_path, home):
    got = probe(tmp_path, home)
    assert {name: got[f"e_{name}"] for name in CALLS if name != "clone3"} == {
        name: errno.EPERM for name in CALLS if name != "clone3"
    }
    assert got["e_clone3"] == errno.ENOSYS  # (the C library then uses clone, whose flags the filter reads)
    assert (got["threads"], got["fork"], got["subprocess"], got["numpy"]) == (285, 7, 42, 6.0)


def test_without_the_filter_the_same_calls_get_the_kernel_s_own_answers(tmp_path, home):
    got = probe(tmp_path, home, seccomp=False)
    assert got["e_personality"] == 0 and got["e_unshare"] == 0  # (a query; no flags: both do nothing, and succeed)
    assert got["e_io_uring_setup"] != errno.EPERM and got["e_bpf"] != errno.EPERM and got["e_clone3"] != errno.ENOSYS
    assert (got["threads"], got["fork"], got["subprocess"]) == (285, 7, 42)


def _load_then_call(program: bytes, number: int, out) -> None:
    import ctypes

    syscall_filter.load(program)
    libc = ctypes.CDLL(None, use_errno=True)
    out.put(ctypes.get_errno() if libc.syscall(number, 0) == -1 else 0)  # unshare(0): nothing to do, allowed before


def test_the_program_loads_into_a_process_and_holds_there():
    """The loader alone (no sandbox): a forked process that loaded the program gets EPERM for unshare."""
    import pyseccomp

    program = seccomp.program()
    assert program and len(program) % 8 == 0
    assert base64.b64decode(seccomp.program_env()) == program
    out = multiprocessing.get_context("fork").SimpleQueue()
    child = multiprocessing.get_context("fork").Process(
        target=_load_then_call, args=(program, pyseccomp.resolve_syscall(pyseccomp.system_arch(), "unshare"), out)
    )
    child.start()
    child.join(30)
    assert child.exitcode == 0 and out.get() == errno.EPERM


@pytest.mark.parametrize("program", [b"", b"\x00" * 7, b"\x00" * 16])
def test_a_program_that_does_not_load_stops_the_worker(program, monkeypatch, capfd):
    """Fail closed: a worker whose filter does not load exits before any model code could run."""
    monkeypatch.setenv("ANCHO_SECCOMP", base64.b64encode(program).decode())
    pid = os.fork()
    if pid == 0:  # (the child exits through os._exit either way)
        try:
            syscall_filter.apply()
        finally:
            os._exit(0)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == (0 if not program else 70)
    if program:
        assert "system-call filter did not load" in capfd.readouterr().err


def test_the_policy_says_whether_it_filters():
    assert describe(SandboxPolicy())["seccomp"] is True
    assert describe(SandboxPolicy(seccomp=False))["seccomp"] is False
