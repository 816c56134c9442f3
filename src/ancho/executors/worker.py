"""A worker process: ``python -m ancho.executors.worker FD``.

It reads tasks and chunk requests from the connection on file descriptor FD
and answers with :class:`~ancho.chunk.ChunkResult` batches. It imports only
NumPy, the model and what the model imports, so it starts fast, and it can
run under another Python (a model's own environment) or inside a sandbox:
all it needs from the parent is that descriptor.

Messages in: ``("task", Task)``, ``("chunk", start, stop)``,
``("summaries", Task, results_source, names)``, ``("inspect", ref, params)``, ``("exit",)``.
Messages out: ``("result", ChunkResult)``, ``("summaries", dict)``, ``("inspected", dict)``,
or ``("error", kind, message)``.
"""

from __future__ import annotations

import os
import signal
import sys


def _die_with_parent(parent: int) -> None:
    """Ask Linux to SIGKILL us when the parent dies, so no worker outlives a killed driver."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except Exception:
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def serve(fd: int) -> None:
    from multiprocessing.connection import Connection

    from ..chunk import ChunkRunner
    from ..errors import AnchoError

    conn = Connection(fd)
    runner = None
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        op = msg[0]
        if op == "exit":
            return
        try:
            if op == "task":
                task = msg[1]
                os.environ.update(task.env)
                cls = task.ref.resolve()
                runner = ChunkRunner(cls, task.params, task.seed)
            elif op == "chunk":
                if runner is None:
                    raise RuntimeError("chunk before task")
                conn.send(("result", runner.run(msg[1], msg[2])))
            elif op == "summaries":
                from ..custom import compute_summaries

                task, source, names = msg[1], msg[2], msg[3]
                conn.send(("summaries", compute_summaries(task.ref.resolve(), task.params, source, names)))
            elif op == "inspect":
                conn.send(("inspected", inspect(msg[1], msg[2])))
        except AnchoError as exc:
            conn.send(("error", type(exc).__name__, str(exc)))
        except Exception as exc:
            import traceback

            where = "setup" if op == "task" else "worker"
            tb = "".join(traceback.format_exception(exc)[-3:]).strip().splitlines()[-1]
            conn.send(("error", where, f"{type(exc).__name__}: {exc}" if str(exc) else tb))


def inspect(target, params: dict | None) -> dict:
    """What a server needs without importing user code itself.

    ``target`` is a model reference or a ``PATH[:file][:Class]`` string (then
    the model is found as ``ancho run`` finds it). Returns the entry found,
    the source hash, the model's description and, given ``params``, their
    validated values or the error.
    """
    from ..errors import ParameterError
    from ..loading import load_model
    from ..stats import clean

    if isinstance(target, str):
        loaded = load_model(target)
    else:
        from ..loading import LoadedModel

        loaded = LoadedModel.of(target.resolve(), target, "", "")
    cls = loaded.cls
    out: dict = {"entry": loaded.ref.entry, "source_hash": loaded.source_hash, "model": loaded.info}
    if params is not None:
        try:
            out["params"] = clean(cls.resolve_params(params))
        except ParameterError as exc:
            out["error"] = str(exc)
    return out


def main() -> None:
    parent = int(os.environ.get("ANCHO_PARENT_PID", os.getppid()))
    _die_with_parent(parent)
    # User code that prints must not corrupt the driver's stdout (for example `ancho run --json`).
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    serve(int(sys.argv[1]))


if __name__ == "__main__":
    main()
