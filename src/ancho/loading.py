"""Finding and importing model classes, in the driver and in workers.

A model reaches a worker process as a *reference* it can resolve by itself:
:class:`FileRef` (a ``.py`` file inside a source folder, plus the class
name) for models given by path, or :class:`PickledRef` (cloudpickle, by
value) for classes defined in a notebook or script. Workers never receive
the driver's live objects, so the same reference works for local processes,
sandboxed processes running another Python environment, and Spark tasks.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ModelError
from .model import Model, describe_model, model_class
from .pysource import class_source
from .tree import source_files

_MODULE_PREFIX = "ancho_model_"


@dataclass(frozen=True)
class FileRef:
    """A model class defined in ``root/file`` (``root`` goes on ``sys.path`` so the model can import its siblings)."""

    root: str
    file: str
    class_name: str

    @property
    def entry(self) -> str:
        return f"{self.file}:{self.class_name}"

    def resolve(self) -> type[Model]:
        module = import_file(Path(self.root), self.file)
        cls = getattr(module, self.class_name, None)
        if not (isinstance(cls, type) and issubclass(cls, Model)):
            raise ModelError(f"{self.file} defines no ancho.Model subclass named {self.class_name}")
        return cls


@dataclass(frozen=True)
class PickledRef:
    """A model class serialised with cloudpickle (for classes that live in ``__main__`` or a notebook)."""

    payload: bytes
    class_name: str
    sys_path: tuple[str, ...] = ()

    @property
    def entry(self) -> str:
        return self.class_name

    def resolve(self) -> type[Model]:
        import cloudpickle

        for p in self.sys_path:
            if p not in sys.path:
                sys.path.append(p)
        return cloudpickle.loads(self.payload)


ModelRef = FileRef | PickledRef


@dataclass(frozen=True)
class LoadedModel:
    """A model as the engine needs it: how workers load it, what it is, and what it declares.

    ``cls`` is the class itself when it was imported in this process (the
    CLI and the Python API); a server never imports user code, so there it is
    None and ``info`` comes from a worker (see ``executors.local.inspect_model``).
    """

    ref: ModelRef
    source_hash: str
    source: str  # what the user named: a path, a URL, a git repository
    info: dict  # describe_model(): name, doc, parameters, summaries
    cls: type[Model] | None = None

    @classmethod
    def of(cls, model_cls: type[Model], ref: ModelRef, source_hash: str, source: str) -> LoadedModel:
        return cls(ref, source_hash, source, describe_model(model_cls), model_cls)

    @property
    def name(self) -> str:
        return self.info["name"]

    @property
    def summaries(self) -> tuple[str, ...]:
        return tuple(self.info.get("summaries", ()))


def split_spec(spec: str) -> tuple[str, str | None, str | None]:
    """Split ``PATH[:file.py][:Class]`` into (path, file inside a folder, class name)."""
    parts = spec.split(":")
    path, rest = parts[0], parts[1:]
    file = cls = None
    for part in rest:
        if part.endswith(".py") or "/" in part:
            file = part
        elif part:
            cls = part
    if len(rest) > 2 or (len(rest) == 2 and file is None):
        raise ModelError(f"cannot read the model '{spec}': write PATH, PATH:Class, or FOLDER:file.py:Class")
    return path, file, cls


def load_model(spec: str) -> LoadedModel:
    """Load the model named by ``PATH[:Class]`` (PATH: a ``.py`` file or a folder)."""
    path_s, file, class_name = split_spec(spec)
    path = Path(path_s).expanduser()
    if not path.exists():
        raise ModelError(f"model path '{path_s}' does not exist; give a .py file or a folder containing one")
    if path.is_file():
        if path.suffix != ".py":
            raise ModelError(f"model file '{path_s}' is not a .py file")
        root, candidates = path.resolve().parent, [path.name]
    else:
        root = path.resolve()
        if file:
            if not (root / file).is_file():
                raise ModelError(f"'{file}' not found in model folder '{path_s}'")
            candidates = [file]
        elif (root / "model.py").is_file():
            candidates = ["model.py"]
        else:
            candidates = sorted(p.name for p in root.glob("*.py") if p.name != "setup.py")
            if not candidates:
                raise ModelError(f"model folder '{path_s}' has no .py file; put the model in model.py")
    found: list[tuple[str, type[Model]]] = []
    for rel in candidates:
        module = import_file(root, rel)
        for obj in vars(module).values():
            if isinstance(obj, type) and issubclass(obj, Model) and obj.__module__ == module.__name__:
                if class_name is None or obj.__name__ == class_name:
                    found.append((rel, obj))
    where = candidates[0] if len(candidates) == 1 else f"{path_s} ({', '.join(candidates)})"
    if not found:
        if class_name:
            raise ModelError(f"no ancho.Model subclass named '{class_name}' in {where}")
        raise ModelError(f"no ancho.Model subclass found in {where}; define class MyModel(ancho.Model)")
    if len(found) > 1 and class_name is None:
        found = _default_model(found) or found
    if len(found) > 1:
        names = ", ".join(c.__name__ for _, c in found)
        raise ModelError(f"several models in {where} ({names}); choose one with {path_s}:ClassName")
    rel, cls = found[0]
    return LoadedModel.of(
        cls, FileRef(str(root), rel, cls.__name__), hash_source(root if path.is_dir() else path), str(path_s)
    )


def _default_model(found: list[tuple[str, type[Model]]]) -> list[tuple[str, type[Model]]] | None:
    """The model a file names with ``__ancho_default__ = "ClassName"`` when it defines several
    (examples/option.py keeps its one-at-a-time and batch models side by side, ``ancho run FILE`` runs the first)."""
    for rel, cls in found:
        default = getattr(sys.modules.get(cls.__module__), "__ancho_default__", None)
        if default == cls.__name__:
            return [(rel, cls)]
    return None


def loaded_from_class(model: Any) -> LoadedModel:
    """Wrap a class or instance given to :func:`ancho.run` so workers can load it too."""
    cls = model_class(model)
    module = sys.modules.get(cls.__module__)
    ref = getattr(module, "__ancho_ref__", None)
    if ref is not None:  # loaded by import_file: workers load the same file
        root, rel = ref
        return LoadedModel.of(cls, FileRef(root, rel, cls.__name__), hash_source(Path(root) / rel), rel)
    import cloudpickle

    # __main__ classes are pickled by value anyway; a module without a file cannot be imported by a worker
    if module is not None and cls.__module__ != "__main__" and not getattr(module, "__file__", None):
        cloudpickle.register_pickle_by_value(module)
    payload = cloudpickle.dumps(cls)
    source_text = class_source(cls)
    digest = hashlib.sha256(source_text.encode() or payload).hexdigest()
    return LoadedModel.of(
        cls, PickledRef(payload, cls.__name__, tuple(p for p in sys.path if p)), digest, cls.__qualname__
    )


def import_file(root: Path, rel: str):
    """Import ``root/rel`` as a fresh module; a syntax or import error becomes a one-line ModelError."""
    full = (root / rel).resolve()
    key = hashlib.sha1(str(full).encode()).hexdigest()[:12]
    name = f"{_MODULE_PREFIX}{Path(rel).stem}_{key}"
    if name in sys.modules:
        return sys.modules[name]
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    spec = importlib.util.spec_from_file_location(name, full)
    if spec is None or spec.loader is None:
        raise ModelError(f"cannot import model file '{rel}'")
    module = importlib.util.module_from_spec(spec)
    module.__ancho_ref__ = (str(root), rel)  # type: ignore[attr-defined]
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        del sys.modules[name]
        raise ModelError(f"syntax error in model file '{rel}' line {exc.lineno}: {exc.msg}") from None
    except Exception as exc:
        del sys.modules[name]
        line = _user_line(exc, str(full))
        raise ModelError(f"model file '{rel}' failed to import{line}: {type(exc).__name__}: {exc}") from None
    return module


def _user_line(exc: BaseException, filename: str) -> str:
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename == filename:
            return f" (line {frame.lineno})"
    return ""


def hash_source(path: Path) -> str:
    """SHA-256 over a file, or over a folder's files (names and contents, sorted), so a run records what it ran."""
    h = hashlib.sha256()
    if path.is_file():
        h.update(path.read_bytes())
        return h.hexdigest()
    for rel, full in source_files(path):
        h.update(rel.encode() + b"\0")
        h.update(full.read_bytes() + b"\0")
    return h.hexdigest()
