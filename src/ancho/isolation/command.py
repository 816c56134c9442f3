"""The bubblewrap command line for a worker, and whether bubblewrap works here.

:func:`wrap_command` turns a worker's command line into the one that runs it
in the sandbox a :class:`~ancho.isolation.policy.SandboxPolicy` describes;
:func:`sandbox_problem` says why that cannot work here (checked once per
process by running ``true`` in a sandbox made with every feature used). The
launcher in front of bubblewrap (a shell joining the worker's pids cgroup,
under ``setpriv --pdeathsig``, through ``env -i``) is here too, since the
command line is built around it. :mod:`ancho.isolation.sandbox` holds the
objects executors use. Why each option: docs/sandbox.md.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

from ..errors import InputError
from .policy import INSTALL_HINT, SandboxPolicy, SandboxUnavailable

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
    venv = Path(python).absolute().parent.parent
    if _venv_of_ours(venv):  # (every model environment): nothing of it runs outside the sandbox
        prefixes = [str(venv), sys.base_prefix, str(venv), sys.base_exec_prefix]
    else:  # a worker interpreter the deployment named: run without site (no .pth, no sitecustomize), no environment
        code = (
            "import sys, json; print(json.dumps([sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]))"
        )
        try:
            out = subprocess.run([python, "-I", "-S", "-c", code], capture_output=True, text=True, timeout=60,
                                 stdin=subprocess.DEVNULL, env={"PATH": "/usr/bin:/bin"})  # fmt: skip
            prefixes = json.loads(out.stdout)
        except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
            raise InputError(f"cannot run the worker interpreter '{python}': {exc}") from None
    paths = {os.path.realpath(p) for p in prefixes} | set(prefixes)
    if (venv / "pyvenv.cfg").is_file():  # a venv's bin/python is a link: the venv itself is needed too
        paths.add(str(venv))
    return tuple(sorted(paths))


def _venv_of_ours(venv: Path) -> bool:
    """Whether ``venv`` is a virtual environment of this process's own base interpreter (``home`` in its
    ``pyvenv.cfg``), as every model environment is (``environments.py``). Its prefixes are then known without
    running it: a model's requirements install into it, and one wheel's ``.pth`` file ran code in the server when
    its interpreter was started here (before ``-S``; the sandbox only wraps the worker itself)."""
    try:
        config = (venv / "pyvenv.cfg").read_text()
    except OSError:
        return False
    home = next(
        (line.split("=", 1)[1].strip() for line in config.splitlines() if line.split("=")[0].strip() == "home"), ""
    )
    base = os.path.dirname(os.path.realpath(getattr(sys, "_base_executable", sys.executable)))
    return bool(home) and os.path.realpath(home) == base


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
    steps = os.environ.get("ANCHO_MAX_STEPS", "").strip()
    if steps.isdigit():  # (the trajectory cap: the server's setting, checked where sequences run as in its driver)
        env["ANCHO_MAX_STEPS"] = steps
    limits = policy.limits()
    if limits:
        env["ANCHO_LIMITS"] = json.dumps(limits)
    if policy.seccomp:
        from .seccomp import program_env

        env["ANCHO_SECCOMP"] = program_env()  # (the worker loads it: ancho/syscall_filter.py)
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
