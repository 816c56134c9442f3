"""Private files and folders: what Ancho keeps (results, uploads, token hashes) is for its owner only.

An ``ANCHO_HOME`` made with the default umask (0o022) would be readable by
every local account, and with it every run's results and the server's
token hashes. So folders are made 0700 and files 0600 here, whatever the
umask; ``ancho serve`` also sets a umask of 0o077, so files made by code
that does not come through here (libraries, worker processes) are private
too.
"""

from __future__ import annotations

import os
from pathlib import Path

#: a umask that gives new files 0600 and new folders 0700
PRIVATE_UMASK = 0o077


def private_dir(path: str | os.PathLike) -> Path:
    """Make ``path`` (and missing parents) as folders only its owner can use; an existing folder is left as it is.

    Parents made here are private too: with ANCHO_HOME=/srv/a/b, a missing
    /srv/a must not become a world-readable way in.
    """
    path = Path(path)
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=0o700)
        except FileExistsError:  # made meanwhile by another process
            continue
        os.chmod(d, 0o700)  # mkdir's mode goes through the umask, which may be stricter; never looser than 0700
    if not path.is_dir():
        raise NotADirectoryError(f"'{path}' is not a folder")
    return path


def private_file(path: str | os.PathLike) -> Path:
    """Create ``path`` empty with mode 0600 if it does not exist (so a library that opens it later keeps that mode)."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path
    os.close(fd)
    return path


def tighten(path: str | os.PathLike) -> int | None:
    """Take group and other permissions away from ``path``; returns the old mode when it had any, else None."""
    mode = os.stat(path).st_mode & 0o7777
    if mode & 0o077 == 0:
        return None
    os.chmod(path, mode & ~0o077)
    return mode
