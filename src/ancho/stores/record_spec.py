"""The typed parts of a run's (or a study's) record beyond its own fields: ``RunRecord.spec``.

Why typed: the dispatcher that executes a queued run (perhaps after a restart), the failure views that hide the
server's folders, and a study's point runs all read what a front end kept with a record; a free-form dict dug
into by key broke silently when either side changed. :class:`RecordSpec` is that typed value; its JSON form
(:meth:`RecordSpec.to_dict`) is the one stores have always written, so every record already stored still loads,
those written before :class:`Submission` existed included.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, overload


@dataclass(frozen=True)
class Submission:
    """What a server keeps of a submitted run to execute it later.

    Kept in the spec under :data:`KEY` as :meth:`to_dict` (the key that held the model's place before, where
    readers of failures find the folder to hide: :attr:`root`).
    """

    KEY: ClassVar[str] = "ref"

    #: the model's source folder on the server, the file in it and the model class (a FileRef's parts)
    root: str
    file: str
    class_name: str
    #: the parameters as the user gave them: the record's own are JSON-cleaned (an infinite float became null),
    #: so the workers validate these again, as the inspecting worker did
    params: dict[str, Any] = field(default_factory=dict)
    #: the id of the server it was submitted to (None: recorded before servers had ids; any server takes it)
    server: str | None = None
    #: where the model came from, as the request gave it (upload, URL, git, previous run)
    model_source: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        # spelled out rather than asdict(): records are encoded on every write, and asdict deep-copies by recursion
        return {
            "root": self.root,
            "file": self.file,
            "class_name": self.class_name,
            "params": dict(self.params),
            "server": self.server,
            "model_source": dict(self.model_source),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Submission:
        return cls(
            str(data["root"]),
            str(data["file"]),
            str(data["class_name"]),
            dict(data.get("params") or {}),
            data.get("server"),
            dict(data.get("model_source") or {}),
        )

    @classmethod
    def of(cls, record: object) -> Submission | None:
        """The submission of ``record`` (a RunRecord or StudyRecord, or anything with a ``spec``), or None (a CLI run's)."""
        spec = getattr(record, "spec", None)
        if isinstance(spec, RecordSpec):
            return spec.submission
        if isinstance(spec, Mapping):
            return RecordSpec.from_dict(spec, getattr(record, "params", None)).submission
        return None


#: keys of the JSON form that :class:`RecordSpec` reads into its fields
_KNOWN = ("info", "study", "point", "source_hash", "base_params")
#: keys that records written before :class:`Submission` held flat beside ``ref``; now inside it
_FLAT = ("params", "server", "model")


@dataclass(frozen=True)
class RecordSpec(Mapping[str, Any]):
    """What a front end keeps with a record beyond the record's own fields, typed.

    Read-only as a mapping too (over :meth:`to_dict`), so readers written against the JSON form keep working
    while they move to the attributes. Keys this version does not know are kept in :attr:`other`, unchanged.
    """

    #: the model's description (docstring, parameters, outputs), recorded with every run
    info: dict[str, Any] = field(default_factory=dict)
    #: a server's run or study: what it needs to execute it later (None: a CLI or Python API run)
    submission: Submission | None = None
    #: a study's point run: the study's id and the point's index in its design
    study: str | None = None
    point: int | None = None
    #: a server's study: the model's source hash, and every parameter's value before the points' own
    source_hash: str | None = None
    base_params: dict[str, Any] | None = None
    #: anything else a front end kept, as it was written
    other: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stores write (only what is set, as records have always held it)."""
        out: dict[str, Any] = dict(self.other)
        if self.submission is not None:
            out[Submission.KEY] = self.submission.to_dict()
        if self.info:
            out["info"] = self.info
        for name in ("study", "point", "source_hash", "base_params"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], params: Mapping[str, Any] | None = None) -> RecordSpec:
        """Read a stored spec; ``params``: the record's own, the submission's parameters in records older than it."""
        other = {k: v for k, v in data.items() if k not in _KNOWN}
        submission = None
        ref = data.get(Submission.KEY)
        if isinstance(ref, Mapping) and all(k in ref for k in ("root", "file", "class_name")):
            flat = {
                "params": data.get("params", params),
                "server": data.get("server"),
                "model_source": data.get("model"),
            }
            submission = Submission.from_dict({**flat, **ref})
            for key in (Submission.KEY, *_FLAT):
                other.pop(key, None)
        info = data.get("info")
        if info is not None and not isinstance(info, dict):
            other["info"] = info
        point = data.get("point")
        base = data.get("base_params")
        return cls(
            info=dict(info) if isinstance(info, dict) else {},
            submission=submission,
            study=None if data.get("study") is None else str(data["study"]),
            point=None if point is None else int(point),
            source_hash=None if data.get("source_hash") is None else str(data["source_hash"]),
            base_params=dict(base) if isinstance(base, Mapping) else None,
            other=other,
        )

    # -- the read-only mapping view of the JSON form --------------------------------------------------------
    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())


class SpecField:
    """The ``spec`` field of a record: read, always a :class:`RecordSpec`; given, a RecordSpec or its JSON form.

    Why a descriptor: stores rebuild records from JSON and callers written before the type pass a dict
    (``engine.create_record(extra=…)``); each is read into the typed value once, when the record is built,
    with the record's ``params`` (a field declared before ``spec``) for records older than :class:`Submission`.
    """

    _DEFAULT: ClassVar[RecordSpec] = RecordSpec()

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = "_" + name

    @overload
    def __get__(self, obj: None, objtype: type | None = None) -> RecordSpec: ...
    @overload
    def __get__(self, obj: object, objtype: type | None = None) -> RecordSpec: ...
    def __get__(self, obj: object | None, objtype: type | None = None) -> RecordSpec:
        if obj is None:  # the dataclass's default
            return self._DEFAULT
        spec: RecordSpec = obj.__dict__[self._name]
        return spec

    def __set__(self, obj: object, value: RecordSpec | Mapping[str, Any]) -> None:
        if not isinstance(value, RecordSpec):
            value = RecordSpec.from_dict(value, getattr(obj, "params", None))
        obj.__dict__[self._name] = value
