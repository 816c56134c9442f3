"""Private scratch folders: one whose owner was killed outright is removed by the next made; a live owner's never."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap

import pytest

from ancho.isolation.scratch import ScratchFolder, sweep

from ..conftest import ROOT

OWNER = textwrap.dedent(
    """
    import sys, time
    from ancho.isolation.scratch import ScratchFolder
    folder = ScratchFolder()
    open(folder.path + "/work.txt", "w").write("a model's file")
    print(folder.path, flush=True)
    time.sleep(600)
    """
)


@pytest.fixture
def tmp(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def owner(tmp) -> tuple[subprocess.Popen, str]:
    """A process that made a private scratch folder in ``tmp`` and lives on; and that folder."""
    proc = subprocess.Popen(
        [sys.executable, "-c", OWNER],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "TMPDIR": str(tmp), "PYTHONPATH": str(ROOT / "src")},
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def test_a_killed_owners_folder_goes_and_a_live_owners_stays(tmp):
    killed, dead_folder = owner(tmp)
    live, live_folder = owner(tmp)
    try:
        assert os.path.isfile(os.path.join(dead_folder, "work.txt"))
        killed.send_signal(signal.SIGKILL)
        killed.wait()
        mine = ScratchFolder()  # making one sweeps
        assert not os.path.exists(dead_folder) and not os.path.exists(dead_folder + ".lock")
        assert os.path.isfile(os.path.join(live_folder, "work.txt")) and os.path.exists(live_folder + ".lock")
        assert os.path.isdir(mine.path)
        mine.remove()
        assert not os.path.exists(mine.path) and not os.path.exists(mine.path + ".lock")
        mine.remove()  # again: nothing to do
    finally:
        live.kill()
        live.wait()
    assert sweep(str(tmp)) == [live_folder]
    assert sorted(os.listdir(tmp)) == []


def test_folders_without_a_free_lock_of_ours_are_left_alone(tmp):
    old = tmp / "ancho-scratch-old"  # made before lock files: nobody can tell whether it is in use
    old.mkdir()
    elsewhere = tmp / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("not a scratch folder")
    (tmp / "ancho-scratch-link").symlink_to(elsewhere)
    (tmp / "ancho-scratch-link.lock").write_text("")  # a free lock, but its folder is a symlink
    (tmp / "ancho-scratch-dangling.lock").symlink_to(tmp / "nowhere")  # a lock that is a symlink: not opened
    assert sweep(str(tmp)) == []
    assert old.is_dir() and (elsewhere / "keep.txt").exists()
    assert not (tmp / "ancho-scratch-link.lock").exists()  # the free lock itself goes
    assert (tmp / "ancho-scratch-dangling.lock").is_symlink()


def test_a_lock_file_appears_only_once_locked(tmp, monkeypatch):
    """Between making the lock file and locking it, a sweep must not see it under its final name."""
    import fcntl

    seen = []
    real_flock = fcntl.flock

    def flock(fd, op):
        real_flock(fd, op)
        seen.append(sorted(p.name for p in tmp.glob("*.lock")))

    monkeypatch.setattr(fcntl, "flock", flock)
    folder = ScratchFolder()
    monkeypatch.undo()
    assert seen == [[]]  # locked while still under its making name
    assert sweep(str(tmp)) == [] and os.path.isdir(folder.path)
    folder.remove()
