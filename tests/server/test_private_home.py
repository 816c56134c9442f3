"""A server's home is its owner's only: folders 0700, files 0600, whatever the umask of whoever made them.

An ANCHO_HOME readable by group or other would give every local account the
runs' results, the uploaded models and the token hashes in server.db.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from .conftest import GAMBLER, Server, add_user, csv_text, submit, tar_gz, upload_id, wait_run

pytestmark = pytest.mark.slow  # a server of its own


def _open_to_others(home: Path) -> list[str]:
    """Every file or folder under ``home`` (itself included) that group or other may read, write or enter."""
    found = []
    for path in [home, *home.rglob("*")]:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            continue
        if st.st_mode & 0o077:
            found.append(f"{path.relative_to(home.parent)} {stat.filemode(st.st_mode)}")
    return found


def test_users_add_makes_a_private_home(tmp_path):
    """The administrator's first command on a new home makes it: already private, and server.db 0600."""
    old = os.umask(0o022)  # the usual umask, which would give 0755 and 0644
    try:
        home = tmp_path / "new" / "home"
        add_user(home, "alice")
    finally:
        os.umask(old)
    assert _open_to_others(home) == []
    assert stat.S_IMODE(os.stat(home / "server.db").st_mode) == 0o600


def test_a_server_leaves_nothing_readable_by_others(tmp_path):
    old = os.umask(0o022)
    try:
        home = tmp_path / "home"
        token = add_user(home, "alice")
        os.chmod(home, 0o755)  # a home with loose modes (made by an older Ancho): the server tightens it and says so
        srv = Server(home, name="private-home-server").start()
    finally:
        os.umask(old)
    try:
        with srv.client(token) as alice:
            upload = upload_id(alice, tar_gz({"model.py": GAMBLER}, folder="gambler"), "gambler.tar.gz")
            run = submit(alice, {"model": {"upload": upload}, "sequences": 200, "seed": 5})
            assert wait_run(alice, run)["status"] == "succeeded"
            assert csv_text(alice, run).startswith("sequence")
        srv.shutdown()
        assert "open to other accounts (mode 755)" in srv.log(tail=100_000)
        # unpacked archives included: their members lose group and other bits (sources/extract.py)
        assert _open_to_others(home) == []
        assert stat.S_IMODE(os.stat(home / "server.db").st_mode) == 0o600
        assert any(home.rglob("*.parquet")) and any((home / "sources").rglob("model.py"))  # the walk saw them
    finally:
        srv.kill()
