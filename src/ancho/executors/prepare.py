"""From "a model somewhere" to what the engine runs: the loaded model, its validated parameters, its interpreter.

Two ways, one result:

* in this process — the CLI and Python API with a model that needs nothing
  but Ancho's environment: import it here (fast, and tracebacks point at
  the user's file);
* in a worker — when the model has its own ``requirements.txt`` (its
  packages are not in this process) or the caller must not import user code
  (a server): a worker of the model's environment finds the model and
  validates the parameters, and reports them back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ParameterError
from ..loading import FileRef, LoadedModel, load_model, split_spec

if TYPE_CHECKING:  # (the isolation package is imported when a model brings requirements: start-up)
    from ..isolation import Environments


@dataclass(frozen=True)
class Prepared:
    model: LoadedModel
    params: dict[str, Any]
    #: the interpreter of the model's environment, or None for Ancho's own
    python: str | None = None
    #: PYTHONPATH entry that gives that interpreter the ``ancho`` package
    pythonpath: str | None = None

    def executor_options(self) -> dict[str, Any]:
        """Keyword arguments for LocalExecutor so its workers run in this model's environment."""
        return worker_options(self.python, self.pythonpath)


def worker_options(python: str | None, pythonpath: str | None) -> dict[str, Any]:
    if python is None:
        return {}
    return {"python": python, "env": {"PYTHONPATH": pythonpath or ""}}


def source_folder(target: str) -> Path:
    """The folder whose ``requirements.txt`` counts for ``PATH[:file][:Class]``."""
    path = Path(split_spec(target)[0]).expanduser()
    return path if path.is_dir() else path.resolve().parent


def prepare(
    target: str,
    params: dict[str, Any] | None,
    environments: Environments | None,
    in_process: bool = True,
    wrap: Callable[[list[str]], list[str]] | None = None,
    origin: str | None = None,
) -> Prepared:
    """Find the model named by ``target`` (``PATH[:file][:Class]``) and validate ``params`` for it.

    Raises ModelError / ParameterError naming the culprit.
    """
    folder = source_folder(target)
    env = environments.for_source(folder) if environments is not None and folder.is_dir() else None
    if env is None and in_process:
        loaded = load_model(target)
        if origin:
            loaded = LoadedModel(loaded.ref, loaded.source_hash, origin, loaded.info, loaded.cls)
        return Prepared(loaded, loaded.cls.recorded_params(params))  # type: ignore[union-attr]
    from .local import LocalExecutor

    python = env.python if env is not None else None
    pythonpath = None
    if env is not None and environments is not None:
        from ..isolation import ancho_pythonpath

        pythonpath = ancho_pythonpath(environments.root)
    with LocalExecutor(1, wrap=wrap, **worker_options(python, pythonpath)) as worker:
        found = worker.inspect(target, params or {})
    if "error" in found:
        raise ParameterError(found["error"])
    file, _, class_name = found["entry"].partition(":")
    root = str(Path(split_spec(target)[0]).expanduser().resolve())
    if not Path(root).is_dir():
        root = str(Path(root).parent)
    loaded = LoadedModel(FileRef(root, file, class_name), found["source_hash"], origin or target, found["model"])
    return Prepared(loaded, found["params"], python, pythonpath)
