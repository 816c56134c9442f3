"""A sandboxed model cannot write the driver's log as if it were the server.

Before: a wrapped worker inherited the driver's stderr, so a model's ``sys.stderr.write("INFO: user alice logged
in\\n")`` was a line of the server's log, and an escape code recoloured the operator's terminal. Now every line is
marked with the worker's pid, escaped, cut and bounded (``executors/worker_output.py``).
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys

import ancho
from ancho.executors import worker_output

from .conftest import sandboxed, write_model

LOUD = r'''
import sys

import ancho


class Loud(ancho.Model):
    """Writes a forged log line, terminal escapes, one very long line and a flood to stderr, then an output."""

    def sequence(self, rng):
        sys.stderr.write("INFO:     127.0.0.1 - \"POST /api/v1/users HTTP/1.1\" 201 forged\n")
        sys.stderr.write("\x1b[2J\x1b[31mred\u202ereversed\rback\u2028split\n")
        sys.stderr.write("long " + "x" * 10_000 + "\n")
        sys.stderr.write(("flood " * 100 + "\n") * 3_000)  # ~1.8 MB
        sys.stderr.flush()
        return {"x": 1.0}
'''


def test_escaped_leaves_one_printable_line():
    assert worker_output.escaped("plain text, ünïcode ✓") == "plain text, ünïcode ✓"
    out = worker_output.escaped("a\nb\x1b[31m\r\u2028\u202e\x00\tc")
    assert out == "a\\nb\\x1b[31m\\r\\u2028\\u202e\\x00\tc"
    assert out.replace("\t", "").isprintable()


def forwarded(data: bytes) -> list[str]:
    r, w = os.pipe()
    out = io.StringIO()
    thread = worker_output.forward(os.fdopen(r, "rb"), 42, out)
    with os.fdopen(w, "wb") as pipe:
        pipe.write(data)
    thread.join(10)
    return out.getvalue().splitlines()


def test_each_line_is_marked_cut_and_the_worker_s_output_bounded():
    lines = forwarded(b"one\n" + b"y" * 9000 + b"\nthree\x1b\n" + b"z" * 100 + b"\n" * 2)
    assert lines == [
        "ancho worker 42: one",
        "ancho worker 42: " + "y" * worker_output.LINE_BYTES + " [cut]",
        "ancho worker 42: three\\x1b",
        "ancho worker 42: " + "z" * 100,
        "ancho worker 42: ",
    ]
    flood = forwarded(b"w" * 99 + b"\n") + forwarded((b"w" * 99 + b"\n") * 20_000)  # 2 MB: more than a worker's share
    assert sum(len(line) for line in flood) < worker_output.WORKER_BYTES * 1.3
    assert (
        flood[-1] == f"ancho worker 42: more than {worker_output.WORKER_BYTES:,} bytes on stderr; the rest is not shown"
    )


def test_a_writer_that_outruns_the_bound_never_blocks():
    """Past the bound the pipe is still drained: a worker writing more than a pipe holds finishes."""
    writer = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stderr.write('v' * 8_000_000); print('done')"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert writer.stderr is not None and writer.stdout is not None
    worker_output.forward(writer.stderr, writer.pid, io.StringIO())
    assert writer.stdout.read() == b"done\n"
    assert writer.wait(30) == 0


def test_a_sandboxed_model_s_stderr_reaches_the_log_marked_and_escaped(tmp_path, home, capfd):
    loud = write_model(tmp_path / "models", "loud.py", LOUD)
    with sandboxed(loud.parent) as executor:
        run = ancho.run(str(loud), sequences=2, seed=1, store=str(home), executor=executor)
        pid = executor._pool[0].proc.pid
    assert run.status == "succeeded"
    err = capfd.readouterr().err
    worker_lines = [line for line in err.splitlines() if "forged" in line or "red" in line or "flood" in line]
    assert worker_lines, err[:2000]
    assert all(line.startswith(f"ancho worker {pid}: ") for line in worker_lines)
    assert "\x1b" not in err and "\u202e" not in err and "\u2028" not in err and "\r" not in err
    assert f"ancho worker {pid}: \\x1b[2J\\x1b[31mred\\u202ereversed\\rback\\u2028split" in err
    assert not re.search(r"^INFO:", err, re.MULTILINE)  # the forged line is not a line of its own
    assert len(err) < 2 * worker_output.WORKER_BYTES  # ~1.8 MB written, at most ~1 MB shown
    assert err.rstrip().endswith("the rest is not shown")
