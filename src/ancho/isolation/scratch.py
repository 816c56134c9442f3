"""Private scratch folders that do not outlive their owner, even one killed with ``kill -9``.

A :class:`~ancho.isolation.sandbox.Sandbox` without a scratch folder of its policy's makes a private one in the
system's temporary folder and removes it when it closes. A process killed outright never runs that cleanup, so
each folder has a lock file beside it (``ancho-scratch-XXXX.lock``, outside what the sandbox mounts, so no model
can touch it) that its owner holds an exclusive ``flock`` on for as long as it lives. The kernel drops the lock
when the owner dies, however it dies; the next private folder made on the machine takes every lock it can and
removes the folders behind them. A lock file appears under its final name only once locked (made under another
name, locked, then renamed), so a folder being made is never swept; flock works across PID namespaces, where a
pid check would not.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from pathlib import Path

PREFIX = "ancho-scratch-"
LOCK = ".lock"


class ScratchFolder:
    """A private temporary folder, locked as in use until :meth:`remove` or its owner's end."""

    def __init__(self) -> None:
        sweep()
        self.path = tempfile.mkdtemp(prefix=PREFIX)
        self.lock_path = self.path + LOCK
        fd, making = tempfile.mkstemp(prefix=f".{os.path.basename(self.path)}.", dir=os.path.dirname(self.path))
        fcntl.flock(fd, fcntl.LOCK_EX)  # fresh file, nobody else has it: does not wait
        os.rename(making, self.lock_path)
        self._fd: int | None = fd

    def remove(self) -> None:
        """Remove the folder and its lock file (idempotent)."""
        shutil.rmtree(self.path, ignore_errors=True)
        if self._fd is not None:
            try:
                os.unlink(self.lock_path)
            except FileNotFoundError:
                pass
            os.close(self._fd)
            self._fd = None


def sweep(folder: str | None = None) -> list[str]:
    """Remove the private scratch folders in ``folder`` (the temporary one) whose owner has ended; return them.

    Only folders of this user with a lock file nobody holds: a folder of a live owner, of another user, a
    symlink, or one made before lock files (no lock beside it) is left alone."""
    root = Path(folder or tempfile.gettempdir())
    removed = []
    for lock in root.glob(f"{PREFIX}*{LOCK}"):
        try:
            fd = os.open(lock, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue  # gone meanwhile, a symlink, or not ours to open
        try:
            if os.fstat(fd).st_uid != os.getuid():
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # its owner is alive
            if not _same_file(lock, fd):
                continue  # swept and remade by someone else since we opened it
            target = lock.with_name(lock.name[: -len(LOCK)])
            if target.is_dir() and not target.is_symlink() and target.lstat().st_uid == os.getuid():
                shutil.rmtree(target, ignore_errors=True)
                removed.append(str(target))
            lock.unlink(missing_ok=True)
        finally:
            os.close(fd)
    return removed


def _same_file(path: Path, fd: int) -> bool:
    try:
        st, mine = os.lstat(path), os.fstat(fd)
    except FileNotFoundError:
        return False
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)
