"""What a model reads to steal its host's environment, for the sandbox environment tests.

``DUMP`` is model source: ``environ_dump()`` reads ``os.environ`` and every
``/proc/*/environ`` (threads' too, ``self``, ``thread-self`` and PID 1, the
sandbox's init, which is bubblewrap's own process) that it can read, and
returns them as one text between ``ENVIRON-DUMP`` and ``END-OF-DUMP``, so a
test can tell that the whole dump came back (nothing was cut off) before it
checks that no secret is in it.
"""

from __future__ import annotations

DUMP = """
import glob as _glob
import os as _os


def environ_dump() -> str:
    parts = ["os.environ=" + repr(dict(_os.environ))]
    paths = set(_glob.glob("/proc/*/environ")) | set(_glob.glob("/proc/*/task/*/environ"))
    paths |= {"/proc/self/environ", "/proc/thread-self/environ", "/proc/1/environ"}
    for path in sorted(paths):
        try:
            with open(path, "rb") as fh:
                parts.append(f"{path}={fh.read().decode(errors='replace')!r}")
        except OSError as exc:
            parts.append(f"{path}: {type(exc).__name__}")
    return "ENVIRON-DUMP " + " | ".join(parts) + " END-OF-DUMP"
"""

#: variables a server (or a Spark executor) is started with in these tests; none may reach model code
SECRETS = {
    "ANCHO_TEST_SECRET": "ancho-test-secret-6c1f0e",
    "AWS_SECRET_ACCESS_KEY": "aws-secret-key-9b7d2a",
    "AWS_ACCESS_KEY_ID": "AKIAANCHOTEST4E1C",
}


def check_dump(text: str, complete: bool = True) -> None:
    """``text`` holds a dump (a complete one, unless the API shortens what it quotes), with PID 1's environment read,
    and no secret (name or value)."""
    assert "ENVIRON-DUMP" in text and (not complete or "END-OF-DUMP" in text), text[:2000]
    assert "/proc/1/environ=" in text, text[:2000]  # the sandbox's init was readable: the attack really ran
    for name, value in SECRETS.items():
        assert value not in text, f"{name}'s value reached model code: {text[:4000]}"
        assert name not in text, f"{name} reached model code: {text[:4000]}"
