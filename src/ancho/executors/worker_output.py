"""A wrapped (sandboxed) worker's standard error, forwarded to the driver's line by line, marked, escaped and bounded.

Why: a worker that inherits the driver's stderr lets the model write into the server's log as if it were the server
("… user alice logged in"), move the cursor or recolour an operator's terminal with escape codes, or fill the disk
through the log. Forwarded here, each line starts with ``ancho worker PID:``, a control character (a newline
inside a line, ESC, a Unicode line or bidirectional-text mark) shows as its escape, a line is cut at
:data:`LINE_BYTES`, and a worker's forwarding stops after :data:`WORKER_BYTES` with one line saying so (its output
is still read and dropped, so the worker never blocks on a full pipe). What the worker writes about its own end (a
timeout, a crash's traceback) still reaches the log, marked the same way.
"""

from __future__ import annotations

import sys
import threading
from typing import IO

#: longest line forwarded (the rest of it is dropped, and the cut marked)
LINE_BYTES = 4096
#: most bytes forwarded from one worker over its life
WORKER_BYTES = 1 << 20


def escaped(line: str) -> str:
    """``line`` with every character that is not printable (tabs aside) written as its escape: one line, no
    terminal control, no hidden reordering."""
    if line.isprintable():
        return line
    return "".join(c if c.isprintable() or c == "\t" else c.encode("unicode_escape").decode("ascii") for c in line)


def forward(stream: IO[bytes], pid: int, out: IO[str] | None = None) -> threading.Thread:
    """Start a thread that forwards ``stream`` (worker ``pid``'s stderr) to ``out`` (the driver's stderr) until its
    end, then closes it."""
    thread = threading.Thread(target=_forward, args=(stream, pid, out), name=f"ancho-stderr-{pid}", daemon=True)
    thread.start()
    return thread


def _forward(stream: IO[bytes], pid: int, out: IO[str] | None) -> None:
    sent, rest_of_cut = 0, False
    with stream:
        while raw := stream.readline(LINE_BYTES):
            ends = raw.endswith(b"\n")
            if sent > WORKER_BYTES or rest_of_cut:  # (read and dropped: the worker must not block on a full pipe)
                rest_of_cut = rest_of_cut and not ends
                continue
            rest_of_cut = cut = not ends and len(raw) >= LINE_BYTES
            text = escaped(raw.rstrip(b"\n").decode("utf-8", "backslashreplace"))
            line = f"ancho worker {pid}: {text}{' [cut]' if cut else ''}\n"
            sent += len(raw)
            if sent > WORKER_BYTES:
                line = f"ancho worker {pid}: more than {WORKER_BYTES:,} bytes on stderr; the rest is not shown\n"
            target = out or sys.stderr
            try:
                target.write(line)
                target.flush()
            except (OSError, ValueError):  # the driver's stderr closed: keep draining
                pass
