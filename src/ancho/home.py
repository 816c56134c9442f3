"""Where Ancho keeps its data: ``$ANCHO_HOME``, else ``~/.ancho``.

On the ground floor because every layer needs it: the embedded store keeps
its runs there, the sandbox hides it from model code, model environments and
fetched sources are built under it, and a server's settings default to it.
"""

from __future__ import annotations

import os
from pathlib import Path


def default_home() -> Path:
    """``$ANCHO_HOME`` (when set and not empty), else ``~/.ancho``; ``~`` expanded."""
    return Path(os.environ.get("ANCHO_HOME") or Path.home() / ".ancho").expanduser()


__all__ = ["default_home"]
