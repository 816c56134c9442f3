"""The process limit of a sandboxed worker: a ``pids`` cgroup of its own.

RLIMIT_NPROC does not bind a sandbox whose outside uid is root, so each
worker joins its own cgroup (``pids.max`` = the policy's ``max_processes``
plus the sandbox's own helpers) before bubblewrap starts; :class:`~ancho.isolation.sandbox.Sandbox`
makes one per worker and removes it once the worker has ended.
"""

from __future__ import annotations

import functools
import itertools
import os
import time
from pathlib import Path

#: processes the sandbox machinery itself adds to a worker's pids cgroup: the shell wrapper,
#: bubblewrap's monitor and bubblewrap's init (PID 1 of the namespace)
HELPER_PROCESSES = 3


def _own_cgroup(controller: str) -> tuple[str, str] | None:
    """(mount point, our path) of ``controller`` (v1) or of the unified hierarchy (v2)."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            mount = f"/sys/fs/cgroup/{controller}"
            if os.path.isdir(mount):
                return mount, path
    for line in lines:
        if line.startswith("0::"):
            return "/sys/fs/cgroup", line[3:]
    return None


@functools.lru_cache(maxsize=1)
def _cgroup_parent() -> tuple[str | None, str]:
    """The folder under which per-worker pids cgroups are made, or (None, why not)."""
    found = _own_cgroup("pids")
    if found is None:
        return None, "no pids cgroup controller is mounted"
    mount, own = found
    base = Path(mount) / own.lstrip("/")
    if mount == "/sys/fs/cgroup":  # cgroup v2: our own cgroup must already delegate pids to children
        try:
            if "pids" not in (base / "cgroup.subtree_control").read_text().split():
                return None, f"cgroup v2: {base} does not delegate the pids controller (cgroup.subtree_control)"
        except OSError as exc:
            return None, f"cgroup v2: {exc}"
    parent = base / "ancho-sandbox"
    try:
        parent.mkdir(exist_ok=True)
        probe = parent / f"probe-{os.getpid()}"
        probe.mkdir(exist_ok=True)
        ok = (probe / "pids.max").exists()
        probe.rmdir()
    except OSError as exc:
        return None, f"cannot create a pids cgroup under {base}: {exc.strerror or exc}"
    if not ok:
        return None, f"{parent} has no pids.max"
    return str(parent), ""


def process_limit_problem() -> str | None:
    """None when per-worker process limits work here; otherwise why not."""
    return _cgroup_parent()[1] or None


_cgroup_counter = itertools.count()


def new_cgroup(limit: int) -> str:
    """A fresh pids cgroup allowing ``limit`` processes and threads to the worker that joins it (OSError: none here)."""
    parent, why = _cgroup_parent()
    if parent is None:
        raise OSError(why)
    _collect_stale(parent)
    path = Path(parent) / f"w{os.getpid()}-{next(_cgroup_counter)}"
    path.mkdir()
    (path / "pids.max").write_text(str(limit + HELPER_PROCESSES))
    return str(path)


def remove_cgroups(paths: list[str], all_empty: bool = False) -> None:
    """Remove the cgroups whose worker has ended (a busy one stays in the list for later).

    A cgroup is made just before its worker starts, so an empty one is
    removed only once it has held a process (``pids.peak``) or is older than
    a minute, unless ``all_empty`` (the executor has closed).
    """
    now = time.time()
    for p in list(paths):
        if not all_empty:
            try:
                peak = Path(p, "pids.peak").read_text().strip()
                used = peak.isdigit() and int(peak) > 0
            except OSError:
                used = False
            try:
                old = now - os.stat(p).st_mtime > 60
            except OSError:
                old = True
            if not (used or old):
                continue
        try:
            os.rmdir(p)
        except FileNotFoundError:
            pass
        except OSError:
            continue
        paths.remove(p)


def _collect_stale(parent: str) -> None:
    """Remove cgroups left by processes that died without cleaning up (``w<pid>-<n>`` with no such pid)."""
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for name in names:
        if not name.startswith("w") or "-" not in name:
            continue
        pid = name[1:].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not os.path.exists(f"/proc/{pid}"):
            try:
                os.rmdir(os.path.join(parent, name))
            except OSError:
                pass


__all__ = ["HELPER_PROCESSES", "new_cgroup", "process_limit_problem", "remove_cgroups"]
