"""Running model code inside bubblewrap: no network, a read-only view of the few paths it needs, limits.

User model code runs in worker processes (``python -m ancho.executors.worker
FD``). :class:`Sandbox` turns that command line into a bubblewrap one, for
:class:`~ancho.executors.local.LocalExecutor`'s ``wrap=``::

    sandbox = Sandbox(SandboxPolicy(scratch=run_dir / "scratch", read_only=(model_root,)))
    executor = LocalExecutor(4, wrap=sandbox.wrap)

What a sandboxed worker sees and may do (docs/sandbox.md has the reasons):

* **Filesystem** — an allow-list, not the host's ``/`` minus some secrets:
  ``/usr`` (and the ``/bin``, ``/lib*`` links), a few files of ``/etc``
  (the loader cache, time zone, hosts, alternatives), the worker
  interpreter's installation (its venv and base prefix), the policy's
  read-only paths (the model's source tree, its environment, a run's
  results folder for summary functions) and Ancho's own package at
  ``/opt/ancho/ancho`` — all read-only. The scratch folder is the only
  writable place: mounted at ``/scratch`` (also ``$HOME``), with
  ``$TMPDIR`` = ``/scratch/tmp``. (``/tmp`` inside is not the host's and not
  writable: host paths below ``/tmp`` may be bound read-only there.) The sandbox's own root and ``/dev`` are
  remounted read-only and ``/dev/shm`` is a small tmpfs, so nothing can
  fill the host's memory through a file. Hidden paths (``ANCHO_HOME``,
  the development services' folder) get an empty tmpfs wherever they fall
  inside a bound path, and paths the policy binds below them are bound again
  on top.
* **Namespaces** — ``--unshare-all`` plus a user namespace: no network but
  its own loopback (the host's 127.0.0.1, and the Ancho server on it, are
  unreachable), its own PID namespace (the worker cannot see or signal host
  processes; when it ends, everything it started ends), IPC, UTS and cgroup
  namespaces; ``--disable-userns`` so it cannot make nested user
  namespaces; all capabilities dropped; uid/gid 65534 inside;
  ``--new-session`` (no terminal injection); ``--die-with-parent``.
* **Environment** — cleared, then only ``PATH``, ``HOME``, ``TMPDIR``,
  ``PYTHONPATH`` (Ancho), locale, the BLAS/OpenMP thread variables,
  ``ANCHO_LIMITS`` and the policy's own ``env``: the server's variables
  (tokens, cloud credentials) never reach user code. bubblewrap's own
  process is PID 1 inside the sandbox and keeps the environment it was
  started with, readable at ``/proc/1/environ``; so bubblewrap is started
  through ``env -i`` with :data:`LAUNCHER_ENV` only, and the launcher
  before it gets that environment too (:meth:`Sandbox.launch_env`, used by
  the local executor instead of its own).
* **Limits** — address space, CPU seconds, open files and file size are
  ``setrlimit`` limits the worker applies to itself before it imports user
  code (``ANCHO_LIMITS``, read in ``ancho.executors.worker``); the
  per-sequence timeout is a watchdog in the worker that raises
  ``TimeoutError`` inside the sequence. Processes and threads: a ``pids``
  cgroup per worker (:mod:`ancho.isolation.cgroups`), joined by a tiny ``/bin/sh``
  wrapper that also turns bubblewrap's "exit 128+N" back into "killed by signal N"; it runs
  under ``setpriv --pdeathsig KILL``: it, bubblewrap and the sandbox die with the executor.

Without ``bwrap``, :func:`make_wrap` refuses with :class:`SandboxUnavailable`
(install the Debian package ``bubblewrap``) unless the operator allowed
unsandboxed workers, which then run with a logged warning.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import tempfile
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path

from ..errors import InputError
from .cgroups import new_cgroup, remove_cgroups
from .command import (
    INSIDE_SCRATCH,
    LAUNCHER_ENV,
    SANDBOX_UID,
    bwrap_path,
    sandbox_available,
    sandbox_problem,
    wrap_command,
)
from .policy import SandboxPolicy, SandboxUnavailable
from .scratch import ScratchFolder

log = logging.getLogger(__name__)

# -- the object an executor uses -------------------------------------------------------------

_ETC = {
    "passwd": f"root:x:0:0:root:/root:/usr/sbin/nologin\nancho:x:{SANDBOX_UID}:{SANDBOX_UID}:ancho:{INSIDE_SCRATCH}:/usr/sbin/nologin\n",
    "group": f"root:x:0:\nancho:x:{SANDBOX_UID}:\n",
}


@functools.lru_cache(maxsize=1)
def _etc_dir() -> str:
    """The sandbox's own /etc/passwd and /etc/group: one folder per user, made once and reused.

    ``$TMPDIR/ancho-sandbox-etc-<uid>``, used only if it is a real folder owned
    by us and closed to others; otherwise a fresh private one.
    """
    path = Path(tempfile.gettempdir()) / f"ancho-sandbox-etc-{os.getuid()}"
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        st = os.lstat(path)
        if not (path.is_dir() and not path.is_symlink() and st.st_uid == os.getuid() and st.st_mode & 0o077 == 0):
            raise PermissionError(f"{path} is not a private folder of ours")
    except OSError:
        path = Path(tempfile.mkdtemp(prefix="ancho-sandbox-etc-"))
    for name, text in _ETC.items():
        f = path / name
        if not (f.is_file() and not f.is_symlink() and f.read_text() == text):
            tmp = path / f".{name}.{os.getpid()}"
            tmp.write_text(text)
            os.replace(tmp, f)
    return str(path)


def _cleanup(cgroups: list[str], private: list[ScratchFolder]) -> None:
    remove_cgroups(cgroups, all_empty=True)
    for folder in private:
        folder.remove()


class Sandbox:
    """A policy, ready to wrap worker command lines: ``LocalExecutor(wrap=Sandbox(policy).wrap)``.

    Holds what outlives one command line: the scratch folder (a private
    temporary one when the policy names none) and the per-worker pids cgroups, which it removes once their worker has
    ended (at the next ``wrap``, at :meth:`close`, or when it is garbage
    collected or the interpreter exits).
    """

    _warned_processes = False

    def __init__(self, policy: SandboxPolicy | None = None):
        problem = sandbox_problem()
        if problem:
            raise SandboxUnavailable(f"cannot sandbox model code: {problem}")
        self.policy = policy or SandboxPolicy()
        self._temp: list[ScratchFolder] = []
        self._cgroups: list[str] = []
        if self.policy.scratch is None:
            private = ScratchFolder()  # swept by a later one if this process is killed (isolation/scratch.py)
            self.scratch = private.path
            self._temp.append(private)
        else:  # the owner's alone: a model may leave a setuid file of the server's user there (bwrap lets it chmod)
            self.scratch = os.fspath(self.policy.scratch)
            Path(self.scratch).mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(self.scratch, 0o700)
        self.etc_dir = _etc_dir()
        self._lock = threading.Lock()
        self._finalizer = weakref.finalize(self, _cleanup, self._cgroups, self._temp)
        # validate the policy's paths now, not when the first worker fails to start
        for p in (*self.policy.read_only, *self.policy.writable, *self.policy.pythonpath):
            if not os.path.exists(p):
                raise InputError(f"sandbox read-only path '{p}' does not exist")

    def wrap(self, argv: list[str]) -> list[str]:
        """The sandboxed form of a worker command line (each call: a fresh pids cgroup for that worker)."""
        cgroup = None
        limit = self.policy.max_processes
        if limit is not None:
            with self._lock:
                remove_cgroups(self._cgroups)
                try:
                    cgroup = new_cgroup(limit)
                    self._cgroups.append(cgroup)
                except OSError as exc:
                    if not Sandbox._warned_processes:
                        Sandbox._warned_processes = True
                        log.warning(
                            "the sandbox cannot limit processes per worker (%s): a model that forks "
                            "without end is stopped only when its worker is stopped",
                            exc,
                        )
        return wrap_command(argv, self.policy, scratch=self.scratch, cgroup=cgroup, etc_dir=self.etc_dir)

    @staticmethod
    def launch_env() -> dict[str, str]:
        """The whole environment to start a wrapped command line with: nothing of the caller's (see :data:`LAUNCHER_ENV`).

        The worker's own environment is built inside (``--setenv``), so a
        server's variables have no way in; its launcher needs only ``PATH``.
        """
        return dict(LAUNCHER_ENV)

    def close(self, wait: float = 2.0) -> None:
        """Remove the cgroups of ended workers and the private folders (call after the executor closed).

        Killed workers leave their cgroup a moment later (the kernel reaps the
        sandbox's processes), so this waits up to ``wait`` seconds for that.
        """
        deadline = time.monotonic() + wait
        while True:
            with self._lock:
                remove_cgroups(self._cgroups, all_empty=True)
            if not self._cgroups or time.monotonic() >= deadline:
                break
            time.sleep(0.02)
        if not self._cgroups:
            self._finalizer()
        else:  # workers still running: try again when the interpreter exits
            atexit.register(_cleanup, self._cgroups, self._temp)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def make_wrap(
    policy: SandboxPolicy | None = None, allow_unsandboxed: bool = False
) -> Callable[[list[str]], list[str]] | None:
    """``wrap=`` for an executor: a :class:`Sandbox`'s, or None where bubblewrap is missing and that is allowed.

    Raises :class:`SandboxUnavailable` (saying to install ``bubblewrap``)
    when it is missing and ``allow_unsandboxed`` is False. With it True the
    workers run unsandboxed and a warning is logged; pass
    :func:`limits_env` as the executor's ``env=`` to keep the limits then.
    """
    problem = sandbox_problem()
    if problem is None:
        return Sandbox(policy).wrap
    if not allow_unsandboxed:
        raise SandboxUnavailable(
            f"model code must run in a sandbox, but {problem}; or let models run unsandboxed (trusted code only) "
            "with the server setting allow_unsandboxed = true"
        )
    log.warning("running model code WITHOUT a sandbox (allowed by the settings): %s", problem)
    return None


__all__ = [
    "LAUNCHER_ENV",
    "Sandbox",
    "bwrap_path",
    "make_wrap",
    "sandbox_available",
    "sandbox_problem",
    "wrap_command",
]
