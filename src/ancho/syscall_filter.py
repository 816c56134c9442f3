"""A sandboxed worker loads its system-call filter into itself, before anything of the model is imported.

The program comes compiled (:mod:`ancho.isolation.seccomp`, in the driver, with libseccomp) as ``ANCHO_SECCOMP``;
loading it needs only the C library, so a model environment without ``pyseccomp`` loads it too. ``seccomp(2)`` with
``SECCOMP_FILTER_FLAG_TSYNC`` puts it on every thread of the worker, and ``no_new_privs`` (which bubblewrap sets
already) is set first, as the kernel requires. A filter that does not load stops the worker: it must never run a
model without the filter its policy asked for.
"""

from __future__ import annotations

import base64
import ctypes
import os
import platform

PR_SET_NO_NEW_PRIVS = 38
SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_TSYNC = 1
#: the ``seccomp`` system call's number
SYS_SECCOMP = {"x86_64": 317, "aarch64": 277, "ppc64le": 358, "s390x": 348}


class _Program(ctypes.Structure):  # struct sock_fprog
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def load(program: bytes) -> None:
    """Load ``program`` (classic BPF, 8-byte instructions) on every thread of this process; OSError if it fails."""
    number = SYS_SECCOMP.get(platform.machine())
    if number is None or not program or len(program) % 8:
        raise OSError(f"no system-call filter for this machine ({platform.machine()}, {len(program)} bytes)")
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
    code = ctypes.create_string_buffer(program, len(program))
    prog = _Program(len(program) // 8, ctypes.cast(code, ctypes.c_void_p))
    if libc.syscall(number, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, ctypes.byref(prog)) != 0:
        raise OSError(ctypes.get_errno(), "seccomp(SECCOMP_SET_MODE_FILTER) failed")


def apply() -> None:
    """Load ``ANCHO_SECCOMP`` if it is set (and take it out of the environment); stop the process if it fails."""
    encoded = os.environ.pop("ANCHO_SECCOMP", None)
    if not encoded:
        return
    try:
        load(base64.b64decode(encoded, validate=True))
    except (OSError, ValueError) as exc:
        os.write(2, f"ancho worker: the sandbox's system-call filter did not load ({exc}); stopping\n".encode())
        os._exit(70)
