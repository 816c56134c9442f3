"""A full disk while a run writes its results: the run fails with a one-line reason, the store stays readable,
and the chunks already stored are intact. The home is a small tmpfs (mounting one needs root, as CI runs)."""

import os

import pytest

from .conftest import ROOT, root_only, run_cli


@pytest.fixture
def tiny_home(tmp_path):
    home = tmp_path / "tiny"
    home.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(home)]
    with root_only(mount, ["umount", "-l", str(home)], "must be able to mount a tmpfs"):
        yield home


@pytest.mark.slow
def test_a_full_disk_fails_the_run_cleanly(tiny_home):
    env = {"ANCHO_HOME": str(tiny_home)}
    out = run_cli("run", str(ROOT / "benchmarks/models/trivial.py"), "-n", "3000000", "--seed", "1", "--json", env=env)
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    line = out.stderr.strip().splitlines()[-1]
    # whichever write meets the full disk first: a chunk file (most often), or the run record's progress in runs.db
    # (seen on a loaded machine); then recording the failure may not fit either, and the record stays running (a
    # rerun resumes it)
    chunk_first = line.startswith("ancho: error: could not store the results of sequences")
    assert (chunk_first and "No space left on device" in line) or (
        line.startswith(f"ancho: error: could not write {tiny_home}/runs.db: the disk is full")
        and "free some space" in line
    ), out.stderr
    assert out.stdout == ""

    from ancho.stores.embedded import EmbeddedStore

    store = EmbeddedStore(tiny_home)
    (record,) = store.list_runs()
    if chunk_first:
        assert record.status == "failed" and "No space left" in record.error
    else:
        assert record.status in ("failed", "running")
    frame = store.read_frame(record.id)  # what was stored reads back whole, in order, without gaps
    assert 0 < len(frame) < 3_000_000
    ranges = store.completed_ranges(record.id)
    assert ranges[0][0] == 0 and sum(b - a for a, b in ranges) == len(frame)
    assert sorted(frame.sequence.tolist()) == frame.sequence.tolist()
    if chunk_first:  # (else a worker stopped mid-write may leave its temporary file, cleared by the next writer)
        assert not [f for f in os.listdir(tiny_home / "runs" / record.id / "chunks") if f.endswith(".tmp")]


@pytest.mark.slow
def test_a_full_disk_fails_a_study_with_one_line_and_the_store_stays_readable(tiny_home):
    """Thousands of points' run records fill the disk: SQLite's full disk is the store's one-line error."""
    env = {"ANCHO_HOME": str(tiny_home)}
    gambler = str(ROOT / "examples/gambler.py")
    args = ("study", gambler, "--random", "3000", "--range", "p=0.4:0.6", "-n", "100", "--seed", "1", "--json")
    out = run_cli(*args, env=env)
    assert out.returncode == 1 and "Traceback" not in out.stderr and out.stdout == ""
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith("ancho: error: could not ") and "free some space" in line, out.stderr
    listed = run_cli("studies", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
