"""Uploaded model archives: content-addressed, unpacked once, owned per user.

The id of an upload is the SHA-256 of its bytes, so the same archive uploaded
twice is stored once and a run records exactly which bytes it ran. Who may
use an upload is kept separately: a user sees only uploads they made
themselves (another user's id is "not found", even for identical bytes they
never uploaded).
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from pathlib import Path

from ..errors import InputError, NotFound
from ..sqlite import Database
from .extract import MAX_FILES, MAX_TOTAL_BYTES, archive_kind, extract, keyed_lock, source_root

_ID = re.compile(r"^[0-9a-f]{64}$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS uploads (
    owner TEXT NOT NULL,
    id TEXT NOT NULL,
    filename TEXT NOT NULL,
    size INTEGER NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (owner, id)
);
"""


class Uploads:
    """Model archives under ``home/sources``; ownership rows in ``db``."""

    def __init__(self, home: Path, db: Path, max_bytes: int = MAX_TOTAL_BYTES, max_files: int = MAX_FILES):
        self.root = home / "sources"
        (self.root / "archives").mkdir(parents=True, exist_ok=True)
        (self.root / "trees").mkdir(parents=True, exist_ok=True)
        self.db = Database(db, _SCHEMA)
        self.max_bytes = max_bytes
        self.max_files = max_files

    def add(self, owner: str, data: bytes, filename: str = "") -> dict:
        """Store and unpack an archive (refusing unsafe ones); return its description.

        Locked per content hash (the tree's path, as URL fetches into the same
        folder lock it): one user's slow archive never holds up another's.
        """
        kind = archive_kind(data)
        digest = hashlib.sha256(data).hexdigest()
        tree = self.root / "trees" / digest
        with keyed_lock(str(tree)):
            if not tree.exists():
                extract(data, tree, self.max_bytes, self.max_files)
            archive = self.root / "archives" / f"{digest}.{kind}"
            if not archive.exists():  # also after a crash between unpacking and keeping the bytes
                tmp = archive.with_suffix(".tmp")
                tmp.write_bytes(data)
                os.replace(tmp, archive)
        with self.db.write() as db:
            db.execute(
                "INSERT OR IGNORE INTO uploads (owner, id, filename, size, created) VALUES (?, ?, ?, ?, ?)",
                (owner, digest, filename[:200], len(data), time.time()),
            )
        return self.get(owner, digest)

    def get(self, owner: str, upload_id: str) -> dict:
        if not isinstance(upload_id, str) or not _ID.match(upload_id):
            raise NotFound(f"no uploaded model '{upload_id}' (ids are 64 hex digits, as POST /api/v1/models returned)")
        row = (
            self.db.conn()
            .execute("SELECT id, filename, size, created FROM uploads WHERE owner = ? AND id = ?", (owner, upload_id))
            .fetchone()
        )
        if row is None:
            raise NotFound(f"no uploaded model '{upload_id}'")
        return {"id": row[0], "filename": row[1], "size": row[2], "created": row[3]}

    def list(self, owner: str) -> list[dict]:
        rows = (
            self.db.conn()
            .execute("SELECT id, filename, size, created FROM uploads WHERE owner = ? ORDER BY created DESC", (owner,))
            .fetchall()
        )
        return [{"id": r[0], "filename": r[1], "size": r[2], "created": r[3]} for r in rows]

    def tree(self, owner: str, upload_id: str) -> Path:
        """The unpacked source root of an upload the owner may use."""
        self.get(owner, upload_id)
        return source_root(self.root / "trees" / upload_id)


def entry_path(root: Path, entry: str | None) -> str:
    """Check ``path/in/source.py[:Class]`` against an unpacked source; return ``ROOT[:file][:Class]`` for load_model."""
    if not entry:
        return str(root)
    file, _, cls = entry.partition(":")
    if file and not file.endswith(".py"):
        if cls:
            raise InputError(f"model.entry '{entry}': the file must be a .py file, as in 'model.py:Class'")
        file, cls = "", file  # just a class name
    if file:
        rel = Path(file)
        if rel.is_absolute() or ".." in rel.parts:
            raise InputError(f"model.entry '{entry}': the path must stay inside the model source")
        full = (root / rel).resolve()
        if not full.is_relative_to(root.resolve()) or not full.is_file():
            raise InputError(f"model.entry '{entry}': '{file}' is not in the model source")
    parts = [str(root)] + ([file] if file else []) + ([cls] if cls else [])
    return ":".join(parts)
