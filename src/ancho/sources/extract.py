"""Unpacking model archives without trusting them.

Tar archives go through Python's ``data`` extraction filter (PEP 706), which
refuses absolute paths, ``..`` traversal, links that point outside the
destination and device files; zip archives are checked member by member
here, as zipfile only silently rewrites such names. Before anything is
written, the declared sizes and member count are checked against caps, and
while writing, bytes are counted again so an archive that lies about its
sizes (a zip bomb) is stopped at the cap. The member count is capped
without reading past it: tar headers are read one by one up to the cap + 1,
and a zip's declared count (and the size of its central directory) is
checked before the directory is parsed, so an archive of a million empty
members costs no more than one of ``max_files + 1``. A refused archive raises
:class:`ArchiveError` naming the member.
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from struct import error as struct_error

from ..errors import InputError

MAX_TOTAL_BYTES = 200 * 1024 * 1024
MAX_FILES = 10_000
#: bytes of zip central directory allowed per member (names and extra fields are rarely a tenth of it)
_ZIP_DIR_BYTES_PER_FILE = 1024


class ArchiveError(InputError):
    """The archive is not one Ancho will unpack; the message names the member and the reason."""


def archive_kind(data: bytes) -> str:
    """``tar.gz``, ``tar`` or ``zip`` by content (not by file name), or ArchiveError."""
    if data[:2] == b"\x1f\x8b":
        return "tar.gz"
    if data[:4] == b"PK\x03\x04" or data[:4] == b"PK\x05\x06":
        return "zip"
    if len(data) > 262 and data[257:262] == b"ustar":
        return "tar"
    raise ArchiveError("the upload is not a .tar.gz, .tar or .zip archive")


def _size(n: int) -> str:
    return f"{n / 2**20:g} MiB" if n >= 2**20 else f"{n:,} bytes"


def _check_name(name: str) -> PurePosixPath:
    p = PurePosixPath(name.replace("\\", "/"))
    if p.is_absolute() or name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise ArchiveError(f"archive member '{name}' has an absolute path")
    if ".." in p.parts:
        raise ArchiveError(f"archive member '{name}' points outside the archive ('..')")
    return p


def extract(data: bytes, dest: Path, max_bytes: int = MAX_TOTAL_BYTES, max_files: int = MAX_FILES) -> Path:
    """Unpack ``data`` into ``dest`` (created; must not exist) and return the source root.

    The root is ``dest`` itself, or its single top-level folder when the
    archive holds exactly one (as release tarballs do).
    """
    kind = archive_kind(data)
    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        if kind == "zip":
            _extract_zip(data, tmp, max_bytes, max_files)
        else:
            _extract_tar(data, tmp, max_bytes, max_files)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return source_root(dest)


def source_root(dest: Path) -> Path:
    entries = [e for e in dest.iterdir() if not e.name.startswith(".") and e.name != "__MACOSX"]
    if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink():
        return entries[0]
    return dest


_locks_guard = threading.Lock()
_locks: dict[str, list] = {}


@contextmanager
def keyed_lock(key: str) -> Iterator[None]:
    """Hold a lock for ``key`` only (one content hash, one tree): work on other keys never waits on it."""
    with _locks_guard:
        entry = _locks.setdefault(key, [threading.Lock(), 0])
        entry[1] += 1
    try:
        with entry[0]:
            yield
    finally:
        with _locks_guard:
            entry[1] -= 1
            if entry[1] == 0:
                _locks.pop(key, None)


def _too_many(max_files: int) -> ArchiveError:
    return ArchiveError(f"the archive has more than {max_files:,} members; at most {max_files:,} are allowed")


def tar_members(tar: tarfile.TarFile, max_bytes: int, max_files: int) -> list[tarfile.TarInfo]:
    """Read and check ``tar``'s members one header at a time, stopping at the first past a cap."""
    members: list[tarfile.TarInfo] = []
    total = 0
    while True:
        m = tar.next()
        if m is None:
            return members
        if len(members) >= max_files:
            raise _too_many(max_files)
        _check_name(m.name)
        if m.isdev() or m.isfifo() or m.ischr() or m.isblk():
            raise ArchiveError(
                f"archive member '{m.name}' is a device or pipe; only files, folders and links are allowed"
            )
        total += m.size
        if total > max_bytes:
            raise ArchiveError(f"the archive unpacks to more than {_size(max_bytes)} (at member '{m.name}')")
        members.append(m)


def _extract_tar(data: bytes, dest: Path, max_bytes: int, max_files: int) -> None:
    try:
        tar = tarfile.open(fileobj=io.BytesIO(data), mode="r:*")
        members = tar_members(tar, max_bytes, max_files)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ArchiveError(f"the upload is not a readable tar archive: {exc}") from None
    with tar:
        for m in members:
            try:
                tar.extract(m, dest, filter=_private)
            except tarfile.FilterError as exc:
                raise ArchiveError(f"archive member '{m.name}' refused: {_filter_reason(exc)}") from None
            except (tarfile.TarError, OSError, KeyError) as exc:  # KeyError: a hard link to a member that is not there
                raise ArchiveError(f"archive member '{m.name}' could not be unpacked: {_reason(exc)}") from None


def _private(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo | None:
    """PEP 706's ``data`` filter, then no permission bits for group and others: the filter keeps the archive's
    modes whatever the umask, and a server's unpacked models are nobody else's to read."""
    checked = tarfile.data_filter(member, dest)
    if checked is None or checked.mode is None:
        return checked
    return checked.replace(mode=checked.mode & 0o700, deep=False)


def _filter_reason(exc: tarfile.FilterError) -> str:
    """Why the ``data`` filter refused a member, in words that do not show the server's folders."""
    if isinstance(exc, tarfile.AbsoluteLinkError):
        return "it is a link to an absolute path"
    if isinstance(exc, tarfile.LinkOutsideDestinationError):
        return "it is a link pointing outside the archive"
    if isinstance(exc, tarfile.OutsideDestinationError):
        return "it would be written outside the archive's folder"
    if isinstance(exc, tarfile.AbsolutePathError):
        return "it has an absolute path"
    if isinstance(exc, tarfile.SpecialFileError):
        return "it is a device or pipe; only files, folders and links are allowed"
    return "it is not a plain file, folder or link inside the archive"


# zipfile's own reader of the end-of-directory record (private but unchanged for decades): what ZipFile reads first
_END_RECORD = zipfile._EndRecData  # type: ignore[attr-defined]
_ENTRIES_TOTAL: int = zipfile._ECD_ENTRIES_TOTAL  # type: ignore[attr-defined]
_DIRECTORY_SIZE: int = zipfile._ECD_SIZE  # type: ignore[attr-defined]


def zip_directory_check(data: bytes, max_files: int) -> None:
    """Refuse a zip by its end record's member count and directory size, before zipfile parses the directory."""
    try:
        end = _END_RECORD(io.BytesIO(data))
    except (OSError, ValueError, struct_error):
        end = None
    if not end:
        raise ArchiveError("the upload is not a readable zip archive: no end of central directory")
    if end[_ENTRIES_TOTAL] > max_files:
        raise _too_many(max_files)
    if end[_DIRECTORY_SIZE] > max_files * _ZIP_DIR_BYTES_PER_FILE + 65536:
        raise ArchiveError(
            f"the archive's member list is larger than {max_files:,} members can need; at most {max_files:,} members are allowed"
        )


def _extract_zip(data: bytes, dest: Path, max_bytes: int, max_files: int) -> None:
    zip_directory_check(data, max_files)
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        infos = zf.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise ArchiveError(f"the upload is not a readable zip archive: {exc}") from None
    if len(infos) > max_files:  # the end record understated the count
        raise _too_many(max_files)
    declared = 0
    for info in infos:
        _check_name(info.filename)
        # Unix zips keep st_mode in the high 16 bits; many writers (Python's writestr among them)
        # store permission bits only, with no file type: that is a plain file, not something odd.
        kind = stat.S_IFMT(info.external_attr >> 16) if info.create_system == 3 else 0
        if kind == stat.S_IFLNK:
            raise ArchiveError(
                f"archive member '{info.filename}' is a symbolic link; zip uploads may hold only files and folders"
            )
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise ArchiveError(f"archive member '{info.filename}' is not a file or folder")
        declared += info.file_size
        if declared > max_bytes:
            raise ArchiveError(f"the archive unpacks to more than {_size(max_bytes)} (at member '{info.filename}')")
    written = 0
    with zf:
        for info in infos:
            target = dest / _check_name(info.filename)
            try:
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as out:
                    while True:
                        block = src.read(1 << 16)
                        if not block:
                            break
                        written += len(block)
                        if written > max_bytes:
                            raise ArchiveError(
                                f"the archive unpacks to more than {_size(max_bytes)} (at member '{info.filename}')"
                            )
                        out.write(block)
            # OSError: a member whose folder is a file of the archive, or the reverse; NotImplementedError
            # and RuntimeError: compression methods or encryption zipfile cannot read
            except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError) as exc:
                raise ArchiveError(f"archive member '{info.filename}' could not be unpacked: {_reason(exc)}") from None


def _reason(exc: BaseException) -> str:
    """An unpacking error in words that do not show the server's folders."""
    if isinstance(exc, FileExistsError):
        return "a file and a folder of the archive have the same name"
    if isinstance(exc, (NotADirectoryError, IsADirectoryError)):
        return "it is inside a path that the archive also holds as a file, or the reverse"
    if isinstance(exc, KeyError):
        return "it is a hard link to a member the archive does not hold"
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return str(exc) or type(exc).__name__
