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
import json
import logging
import os
import shutil
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path

from ..errors import InputError
from .cgroups import new_cgroup, remove_cgroups
from .policy import INSTALL_HINT, SandboxPolicy, SandboxUnavailable

log = logging.getLogger(__name__)

#: where the sandbox sees things
INSIDE_SCRATCH = "/scratch"
INSIDE_TMP = "/scratch/tmp"
INSIDE_ANCHO = "/opt/ancho"
#: uid/gid inside (the host's "nobody"); files it writes in the scratch folder belong to the caller outside
SANDBOX_UID = 65534
#: host paths every worker needs (links such as /bin -> usr/bin are recreated as links)
SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
#: files of /etc a Python process may read; nothing with secrets or host configuration beyond these
ETC_FILES = (
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "alternatives",
    "hosts",
    "nsswitch.conf",
    "mime.types",
)
#: with network=True the resolver and certificates are needed too
ETC_NETWORK_FILES = ("resolv.conf", "ssl", "ca-certificates", "gai.conf", "protocols", "services")
#: the whole environment of the processes outside the sandbox that start it (setpriv, the shell, bubblewrap):
#: bubblewrap's own process stays inside as PID 1 with it, so nothing of the caller's may be in it
LAUNCHER_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")
#: size of /dev/shm inside (POSIX semaphores and shared memory; RAM-backed, so small)
SHM_BYTES = 64 * 1024 * 1024


# -- is bubblewrap here, and does it work ----------------------------------------------------


def bwrap_path() -> str | None:
    """``$ANCHO_BWRAP``, else ``bwrap`` on PATH, else /usr/bin/bwrap."""
    explicit = os.environ.get("ANCHO_BWRAP")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    return shutil.which("bwrap") or (shutil.which("bwrap", path="/usr/bin:/bin"))


_probe_lock = threading.Lock()
#: bwrap path -> (works, why not, supports --disable-userns)
_probe: dict[str, tuple[bool, str, bool]] = {}


def _check(bwrap: str) -> tuple[bool, str, bool]:
    """Run ``true`` in a sandbox made with every feature :func:`wrap_command` uses (once per bwrap path).

    ``--disable-userns`` (bubblewrap ≥ 0.8) is used where it exists.
    """
    with _probe_lock:
        if bwrap not in _probe:
            result = (False, "", False)
            for disable_userns in (True, False):
                argv = [
                    bwrap,
                    *_namespace_args(False, disable_userns),
                    "--clearenv",
                    *_system_args(False),
                    "--proc",
                    "/proc",
                    "--dev",
                    "/dev",
                    "--size",
                    "65536",
                    "--tmpfs",
                    "/dev/shm",
                    "--remount-ro",
                    "/",
                    "--",
                    "true",
                ]
                try:
                    out = subprocess.run(argv, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
                except (OSError, subprocess.TimeoutExpired) as exc:
                    result = (False, str(exc), False)
                    break
                if out.returncode == 0:
                    result = (True, "", disable_userns)
                    break
                why = (out.stderr.strip().splitlines() or [f"exit code {out.returncode}"])[-1]
                result = (False, why, False)
                if "disable-userns" not in out.stderr:
                    break
            _probe[bwrap] = result
        return _probe[bwrap]


def sandbox_problem() -> str | None:
    """None when sandboxed workers can run here; otherwise why not, and what to do."""
    bwrap = bwrap_path()
    if bwrap is None:
        return f"bubblewrap (bwrap) is not installed; {INSTALL_HINT}"
    ok, why, _ = _check(bwrap)
    if not ok:
        return (
            f"bubblewrap ({bwrap}) is installed but cannot create a sandbox here: {why}; it needs user and "
            "network namespaces (as root, or with unprivileged user namespaces enabled)"
        )
    return None


def sandbox_available() -> bool:
    """bwrap is present and actually works (checked once per process by running ``true`` in a sandbox)."""
    return sandbox_problem() is None


# The shell between the executor and bubblewrap: no core files, join the worker's cgroup, run
# bubblewrap, and die of the signal that killed the sandboxed worker (bubblewrap exits 128+N instead).
# It runs under `setpriv --pdeathsig KILL`, so it dies with the executor's process, and bubblewrap
# (--die-with-parent) and the whole sandbox with it.
_SHELL = (
    "ulimit -c 0; "
    'if [ -n "$1" ]; then echo $$ > "$1/cgroup.procs" || exit 125; fi; shift; '
    '"$@"; s=$?; '
    'if [ "$s" -gt 128 ] && [ "$s" -lt 160 ]; then trap - $((s-128)) 2>/dev/null; kill -$((s-128)) $$; fi; '
    "exit $s"
)
# Without setpriv the shell must exec bubblewrap, so that bubblewrap's parent is the executor's
# process (--die-with-parent); a worker killed by signal N then shows as "exited with code 128+N".
_SHELL_EXEC = 'ulimit -c 0; if [ -n "$1" ]; then echo $$ > "$1/cgroup.procs" || exit 125; fi; shift; exec "$@"'


@functools.lru_cache(maxsize=1)
def _setpriv() -> str | None:
    """util-linux's setpriv, if it can set the parent-death signal here."""
    path = shutil.which("setpriv") or shutil.which("setpriv", path="/usr/bin:/bin")
    if not path:
        return None
    try:
        ok = subprocess.run([path, "--pdeathsig", "KILL", "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    return path if ok else None


@functools.lru_cache(maxsize=1)
def _env_reset() -> list[str]:
    """``env -i PATH=… LANG=…``: bubblewrap starts with :data:`LAUNCHER_ENV` whatever its launcher was given."""
    path = shutil.which("env", path="/usr/bin:/bin")
    if path is None:
        raise SandboxUnavailable(
            "the program 'env' (coreutils) is missing from /usr/bin and /bin; the sandbox needs it "
            "to start bubblewrap with an empty environment"
        )
    return [path, "-i", *(f"{k}={v}" for k, v in LAUNCHER_ENV.items())]


def _launcher(cgroup: str | None) -> list[str]:
    setpriv = _setpriv()
    if setpriv:
        return [setpriv, "--pdeathsig", "KILL", "/bin/sh", "-c", _SHELL, "ancho-sandbox", cgroup or ""]
    return ["/bin/sh", "-c", _SHELL_EXEC, "ancho-sandbox", cgroup or ""]


# -- the command line ------------------------------------------------------------------------


def _namespace_args(network: bool, disable_userns: bool = True) -> list[str]:
    args = ["--unshare-all", "--unshare-user"] + (["--disable-userns"] if disable_userns else [])
    if network:
        args.append("--share-net")
    args += [
        "--uid",
        str(SANDBOX_UID),
        "--gid",
        str(SANDBOX_UID),
        "--cap-drop",
        "ALL",
        "--die-with-parent",
        "--new-session",
        "--hostname",
        "ancho-sandbox",
    ]
    return args


def _system_args(network: bool) -> list[str]:
    args: list[str] = []
    for p in SYSTEM_PATHS:
        if os.path.islink(p):
            args += ["--symlink", os.readlink(p), p]
        elif os.path.isdir(p):
            args += ["--ro-bind", p, p]
    for name in ETC_FILES + (ETC_NETWORK_FILES if network else ()):
        p = f"/etc/{name}"
        if os.path.lexists(p):
            args += ["--ro-bind-try", p, p]
    return args


@functools.lru_cache(maxsize=64)
def interpreter_paths(python: str) -> tuple[str, ...]:
    """The folders an interpreter needs to start: its venv (if any) and its base installation.

    Nothing for a program of the system (under ``/usr``, ``/bin``…: bound anyway).
    """
    real = os.path.realpath(shutil.which(python) or python)
    if (
        any(_under(real, os.path.realpath(p)) for p in SYSTEM_PATHS)
        and Path(python).parent.name == "bin"
        and not (Path(python).parent.parent / "pyvenv.cfg").exists()
    ):
        return ()
    code = "import sys, json; print(json.dumps([sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]))"
    try:
        out = subprocess.run(
            [python, "-I", "-c", code], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
        )
        prefixes = json.loads(out.stdout)
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
        raise InputError(f"cannot run the worker interpreter '{python}': {exc}") from None
    paths = {os.path.realpath(p) for p in prefixes} | set(prefixes)
    venv = Path(python).absolute().parent.parent
    if (venv / "pyvenv.cfg").is_file():  # a venv's bin/python is a link: the venv itself is needed too
        paths.add(str(venv))
    return tuple(sorted(paths))


def _under(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def _depth(path: str) -> int:
    return len(Path(path).parts)


def wrap_command(
    argv: list[str],
    policy: SandboxPolicy,
    *,
    scratch: str | None = None,
    cgroup: str | None = None,
    etc_dir: str | None = None,
    bwrap: str | None = None,
) -> list[str]:
    """The bubblewrap command line that runs ``argv`` (a worker command) under ``policy``.

    ``argv[0]`` is the worker's interpreter; its installation is bound
    read-only. ``scratch`` overrides ``policy.scratch``; ``cgroup`` is a pids
    cgroup folder the process joins first; ``etc_dir`` holds the sandbox's
    own ``passwd`` and ``group``. The file descriptors the caller passes
    (``pass_fds``) reach the worker unchanged.
    """
    bwrap = bwrap or bwrap_path()
    if bwrap is None:
        raise SandboxUnavailable(f"bubblewrap (bwrap) is not installed; {INSTALL_HINT}")
    scratch_dir = scratch or (os.fspath(policy.scratch) if policy.scratch is not None else None)
    if scratch_dir is None:
        raise InputError("the sandbox needs a scratch folder: set SandboxPolicy.scratch or use Sandbox(policy)")
    scratch_dir = os.path.realpath(scratch_dir)
    Path(scratch_dir, "tmp").mkdir(parents=True, exist_ok=True)

    import ancho

    package = str(Path(ancho.__file__).resolve().parent)
    python = argv[0]

    # read-only binds at their own path, plus the tmpfs that hide paths, applied parents first
    binds: dict[str, str] = {}  # inside path -> host path
    for p in (*interpreter_paths(python), *policy.read_only, *policy.pythonpath):
        real = os.path.realpath(p)
        if not os.path.exists(real):
            raise InputError(f"sandbox read-only path '{p}' does not exist")
        binds.setdefault(real, real)
        binds.setdefault(os.path.abspath(p), real)  # reached through a link: visible under that name too
    ops: list[tuple[str, list[str]]] = [(inside, ["--ro-bind", src, inside]) for inside, src in binds.items()]
    for p in policy.writable:
        real = os.path.realpath(p)
        if not os.path.isdir(real):
            raise InputError(f"sandbox writable path '{p}' is not a folder")
        binds[real] = real
        ops.append((real, ["--bind", real, real]))
    for h in policy.hidden or ():
        h = os.path.realpath(h)
        inside_a_bind = any(_under(h, b) and h != b for b in binds)
        if inside_a_bind and h not in binds:  # an explicitly bound hidden path stays visible
            ops.append((h, ["--tmpfs", h]))
    # stable sort on depth: parents first, so a hidden tmpfs covers its bound parent and deeper binds go on top
    ops.sort(key=lambda op: _depth(op[0]))

    env = {
        "PATH": ":".join(
            dict.fromkeys(p for p in (f"{Path(python).parent}", "/usr/local/bin", "/usr/bin", "/bin") if p)
        ),
        "HOME": INSIDE_SCRATCH,
        "TMPDIR": INSIDE_TMP,
        "USER": "ancho",
        "LOGNAME": "ancho",
        "LANG": "C.UTF-8",
        "PYTHONPATH": ":".join((INSIDE_ANCHO, *policy.pythonpath)),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONNOUSERSITE": "1",
        "ANCHO_SANDBOX": "1",
    }
    for var in THREAD_VARS:
        env[var] = os.environ.get(var, "1")
    limits = policy.limits()
    if limits:
        env["ANCHO_LIMITS"] = json.dumps(limits)
    env.update(policy.env)

    cmd = [bwrap, *_namespace_args(policy.network, _check(bwrap)[2]), "--clearenv"]
    for k, v in env.items():
        cmd += ["--setenv", k, v]
    cmd += _system_args(policy.network)
    if etc_dir:
        cmd += ["--ro-bind", f"{etc_dir}/passwd", "/etc/passwd", "--ro-bind", f"{etc_dir}/group", "/etc/group"]
    cmd += ["--proc", "/proc", "--dev", "/dev", "--size", str(SHM_BYTES), "--tmpfs", "/dev/shm"]
    for _, op in ops:
        cmd += op
    cmd += ["--ro-bind", package, f"{INSIDE_ANCHO}/ancho"]
    cmd += ["--bind", scratch_dir, INSIDE_SCRATCH]
    cmd += ["--remount-ro", "/dev", "--remount-ro", "/", "--chdir", INSIDE_SCRATCH, "--", *argv]
    return [*_launcher(cgroup), *_env_reset(), *cmd]


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


def _cleanup(cgroups: list[str], temp_dirs: list[str]) -> None:
    remove_cgroups(cgroups, all_empty=True)
    for d in temp_dirs:
        shutil.rmtree(d, ignore_errors=True)


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
        self._temp: list[str] = []
        self._cgroups: list[str] = []
        if self.policy.scratch is None:
            self.scratch = tempfile.mkdtemp(prefix="ancho-scratch-")
            self._temp.append(self.scratch)
        else:
            self.scratch = os.fspath(self.policy.scratch)
            Path(self.scratch).mkdir(parents=True, exist_ok=True)
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
