"""One folder walker: hashing (ancho run), packing (ancho submit) and shipping to Spark see the same files."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

from ancho.client import pack
from ancho.loading import hash_source
from ancho.tree import source_files


def _folder(tmp_path: Path) -> Path:
    root = tmp_path / "model"
    (root / "pkg").mkdir(parents=True)
    (root / "model.py").write_text("import ancho\n")
    (root / "pkg" / "helpers.py").write_text("X = 1\n")
    (root / "requirements.txt").write_text("numpy\n")
    for litter in (
        ".mypy_cache/x.json",
        ".tox/log.txt",
        ".pytest_cache/v",
        "__pycache__/m.cpython-311.pyc",
        ".git/HEAD",
        ".venv/pyvenv.cfg",
        "pkg/.DS_Store",
        "pkg/helpers.pyc",
        ".ruff_cache/c",
    ):
        (root / litter).parent.mkdir(parents=True, exist_ok=True)
        (root / litter).write_text("litter\n")
    return root


def test_litter_is_skipped_and_the_order_is_fixed(tmp_path):
    root = _folder(tmp_path)
    assert [rel for rel, _ in source_files(root)] == ["model.py", "requirements.txt", "pkg/helpers.py"]


def test_run_and_submit_see_the_same_files(tmp_path):
    """The bug this walker fixes: `ancho run DIR` hashed .mypy_cache, .tox and .DS_Store; `ancho submit DIR` did not."""
    root = _folder(tmp_path)
    packed = pack(str(root))
    with tarfile.open(fileobj=io.BytesIO(packed.data)) as tar:
        names = sorted(m.name.split("/", 1)[1] for m in tar.getmembers() if m.isfile())
    assert names == sorted(rel for rel, _ in source_files(root))
    # the hash a run records is the hash of exactly those files
    h = hashlib.sha256()
    for rel, full in source_files(root):
        h.update(rel.encode() + b"\0" + full.read_bytes() + b"\0")
    assert hash_source(root) == h.hexdigest()
    (root / ".mypy_cache" / "y.json").write_text("more litter\n")
    assert hash_source(root) == h.hexdigest()
