"""Which files make up a model's source folder: one walker for hashing, packing and shipping it.

A run records a hash of its model's files, ``ancho submit`` packs them for a
server and Spark ships them to executors. These once walked the folder three
ways with three skip lists, so ``ancho run DIR`` and ``ancho submit DIR``
recorded different hashes for a folder holding ``.mypy_cache`` or
``.DS_Store``. Now all three ask :func:`source_files`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

#: folders that are never part of a model: caches, version control, virtual environments
SKIP_DIRS = frozenset(
    {
        "__pycache__",
        ".git",
        ".hg",
        ".svn",
        ".venv",
        "venv",
        "node_modules",
        ".ipynb_checkpoints",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".tox",
    }
)
#: files that are never part of a model: compiled Python, desktop litter
SKIP_SUFFIXES = (".pyc", ".pyo")
SKIP_NAMES = frozenset({".DS_Store", "Thumbs.db"})


def source_files(root: Path) -> Iterator[tuple[str, Path]]:
    """``(relative POSIX path, full path)`` of each file of the folder ``root`` that belongs to the model.

    The order is fixed (each folder's files by name, then its subfolders by
    name), so a hash or an archive made from it is the same on every machine.
    """
    root = Path(root)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        for name in sorted(filenames):
            if name in SKIP_NAMES or name.endswith(SKIP_SUFFIXES):
                continue
            full = Path(dirpath) / name
            if full.is_file():
                yield full.relative_to(root).as_posix(), full


__all__ = ["SKIP_DIRS", "SKIP_NAMES", "SKIP_SUFFIXES", "source_files"]
