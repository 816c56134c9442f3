"""Packing a local model (a .py file or a folder) as a deterministic .tar.gz for upload."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError, ModelError

#: the server's unpacking caps (sources/extract.py); refusing here saves an upload
MAX_FILES = 10_000
MAX_BYTES = 200 * 1024 * 1024


@dataclass(frozen=True)
class Packed:
    """A model source packed for upload: ``data`` (.tar.gz bytes), a file name, and the run's ``model.entry``."""

    data: bytes
    filename: str
    entry: str | None
    files: int
    #: the archive's top folder (a packed folder goes in one), or None for a single file
    top: str | None = None


def pack(spec: str) -> Packed:
    """Pack ``PATH[:Class]`` (PATH: a ``.py`` file or a folder; ``FOLDER:file.py[:Class]`` too) as a .tar.gz in memory.

    A folder is packed whole (without caches, ``.git``, virtual environments
    and ``*.pyc``), so the model can import its sibling modules and a
    ``requirements.txt`` at its root reaches the server. A single file is
    packed alone, under its own name, and becomes the entry. The archive is
    deterministic (sorted, fixed times and owners): the same source always
    gives the same bytes, hence the same upload id on the server.
    """
    from ..loading import split_spec
    from ..tree import source_files

    path_s, file, class_name = split_spec(spec)
    path = Path(path_s).expanduser()
    if not path.exists():
        raise ModelError(f"model path '{path_s}' does not exist; give a .py file or a folder containing one")
    members: list[tuple[str, Path]] = []
    if path.is_file():
        if path.suffix != ".py":
            raise ModelError(f"model file '{path_s}' is not a .py file")
        if file:
            raise ModelError(
                f"cannot read the model '{spec}': a file takes only :Class (FOLDER:file.py:Class is for folders)"
            )
        members.append((path.name, path))
        top = None
        entry: str | None = path.name
        filename = path.stem + ".tar.gz"
    else:
        root = path.resolve()
        if file:
            if not (root / file).is_file():
                raise ModelError(f"'{file}' not found in model folder '{path_s}'")
        elif not any(p.is_file() for p in root.glob("*.py")):
            raise ModelError(f"model folder '{path_s}' has no .py file; put the model in model.py")
        top = root.name if root.name and not root.name.startswith(".") else "model"
        total = 0
        for rel, full in source_files(root):
            total += full.stat().st_size
            if len(members) >= MAX_FILES or total > MAX_BYTES:
                raise InputError(
                    f"model folder '{path_s}' holds more than {MAX_FILES:,} files or {MAX_BYTES // 2**20} MiB, "
                    "more than a server unpacks; submit a folder with just the model's code"
                )
            members.append((f"{top}/{rel}", full))
        entry = ":".join(x for x in (file, class_name) if x) or None
        class_name = None  # already in the entry
        filename = top + ".tar.gz"
    if class_name:
        entry = f"{entry}:{class_name}"
    return Packed(_tar_gz(members), filename, entry, len(members), top)


def _tar_gz(members: list[tuple[str, Path]]) -> bytes:
    buf = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        dirs: set[str] = set()
        for arcname, full in members:
            parts = arcname.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in dirs:
                    dirs.add(d)
                    tar.addfile(_info(d, tarfile.DIRTYPE, 0o755))
            data = full.read_bytes()
            mode = 0o755 if os.access(full, os.X_OK) else 0o644
            info = _info(arcname, tarfile.REGTYPE, mode)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _info(name: str, kind: bytes, mode: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info
