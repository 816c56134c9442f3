"""The new-run form, done on the server: one implementation whether or not the browser runs JavaScript.

The form posts itself (multipart, with the session's CSRF token) to
``/runs/new`` with one of two actions: *read the model's parameters*, which
re-renders the form with a field per parameter, or *start the run*, which
submits through :meth:`Service.submit` and redirects to the run's page. Every
error comes back as the same form, filled as it was sent, with the message
next to the field it names and that field focused; the error locations are
the REST API's (``loc``), mapped to fields here and nowhere else.

An uploaded archive is stored at the first post that carries it; the form
then shows it chosen as "one uploaded before", so later posts do not send
its bytes again.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from ..errors import AnchoError
from ..server.schemas import InspectRequest, RunRequest
from ..server.service import FieldError, Service

#: where a model may come from, as the form's ``kind`` radio buttons name it
KINDS = ("upload", "previous", "url", "git")
#: the form's run settings that the REST API names alike
RUN_FIELDS = ("sequences", "seed", "until", "max_sequences", "executor")
#: what the form sends as it was typed (beside the ``param-NAME`` fields)
TEXT_FIELDS = ("kind", "upload", "url", "git", "ref", "entry", "targets", *RUN_FIELDS)


@dataclass
class NewRun:
    """What the form shows: the values as sent, the model's parameters once read, the errors by field id."""

    values: dict[str, str] = field(default_factory=lambda: {"kind": "upload", "sequences": "10000"})
    #: the model as read (name, doc, parameters), or None before its parameters were read
    model: dict | None = None
    #: the source the shown parameters were read for (JSON), to notice a changed source
    inspected: str = ""
    errors: dict[str, str] = field(default_factory=dict)

    def error(self, field_id: str, message: str) -> None:
        self.errors.setdefault(field_id, message)

    @property
    def focus(self) -> str | None:
        """The field that gets the focus: the first one at fault."""
        return next(iter(self.errors), None)

    @property
    def parameters(self) -> list[dict]:
        """The parameter fields to render, each with its widget, value and help."""
        if self.model is None:
            return []
        return [_parameter_field(p, self.values.get(f"param-{p['name']}")) for p in self.model["parameters"]]


# -- reading the post ---------------------------------------------------------------
def posted(form, fields: tuple[str, ...] = (), prefixes: tuple[str, ...] = ()) -> NewRun:
    """The form's text fields from a parsed post (the file, if any, is the caller's); a form built on this one
    (the new-study form) names its own ``fields`` and field ``prefixes`` too."""
    known, starts = (*TEXT_FIELDS, *fields), ("param-", *prefixes)
    values = {
        name: value
        for name, value in form.multi_items()
        if isinstance(value, str) and (name in known or name.startswith(starts))
    }
    if values.get("kind") not in KINDS:
        values["kind"] = "upload"
    inspected = form.get("inspected")
    return NewRun(values=values, inspected=inspected if isinstance(inspected, str) else "")


def _source(state: NewRun, uploaded: str | None) -> dict | None:
    """The model's source as the API takes it, or None with the error placed at its field."""
    v, kind = state.values, state.values["kind"]
    model: dict[str, Any] = {}
    if kind == "upload":
        if uploaded is None:
            state.error("file", "Choose an archive (.tar.gz, .tar or .zip) of your model's folder.")
            return None
        model["upload"] = uploaded
    elif kind == "previous":
        if not v.get("upload"):
            state.error("upload", "Choose one of your uploaded archives, or upload one.")
            return None
        model["upload"] = v["upload"]
    elif kind == "url":
        if not v.get("url", "").strip():
            state.error("url", "Enter the URL of an archive (https:// or s3://).")
            return None
        model["url"] = v["url"].strip()
    else:
        if not v.get("git", "").strip():
            state.error("git", "Enter the URL of a git repository.")
            return None
        model["git"] = v["git"].strip()
        if v.get("ref", "").strip():
            model["ref"] = v["ref"].strip()
    if v.get("entry", "").strip():
        model["entry"] = v["entry"].strip()
    return model


def _whole(state: NewRun, name: str, label: str, least: int) -> int | None:
    text = state.values.get(name, "").strip()
    if not text:
        return None
    try:
        number = int(text)
    except ValueError:
        number = None
    if number is None or number < least:
        state.error(name, f"{label}: enter a whole number of at least {least}.")
    return number


def _params(state: NewRun, parameters: list[dict]) -> dict[str, str]:
    """The parameter values to send: what was typed, converted by the model (as a command line's values are).

    A text is sent as typed, so it can be emptied; left empty with no default,
    it is missing (and the model's own error says so). Any other kind of value
    left empty takes its default.
    """
    out = {}
    for p in parameters:
        raw = state.values.get(f"param-{p['name']}")
        if raw is None:
            continue
        if p["type"] == "str":
            if raw != "" or not p["required"]:
                out[p["name"]] = raw
        elif raw.strip():
            out[p["name"]] = raw.strip()
    return out


# -- errors -------------------------------------------------------------------------
def _field_of(loc: list, message: str, state: NewRun, fallback: str) -> str:
    """The form field an error of the REST API's shape (``loc``, without "body") is about."""
    head = loc[0] if loc else None
    if head == "model":
        part = loc[1] if len(loc) > 1 else None
        if part == "upload":
            return "upload" if state.values["kind"] == "previous" else "file"
        return part if part in ("url", "git", "ref", "entry") else "model"
    if head == "params":
        named = re.search(r"parameter '([^']+)'", message)
        if named and state.model and any(p["name"] == named.group(1) for p in state.model["parameters"]):
            return f"param-{named.group(1)}"
        return "params"
    if head in ("targets", *RUN_FIELDS):
        return head
    if head == "design":  # the new-study form's: a parameter's values or range when one is named, else the design
        named = re.search(r"(?:for|parameter) '([^']+)'", message)
        name = named and named.group(1)
        if name and f"design-{name}" in state.values:
            return f"design-{name}"
        return "design_n" if len(loc) > 2 and loc[2] in ("n", "trajectories") else "design"
    return fallback


def _place(state: NewRun, exc: Exception, fallback: str) -> None:
    """Put an error from validation or the service (a list of them, or one) next to its field."""
    if isinstance(exc, ValidationError):
        found = [(e.get("loc", ()), str(e.get("msg", "")).removeprefix("Value error, ")) for e in exc.errors()]
    else:
        found = [(exc.loc if isinstance(exc, FieldError) else (), str(exc))]
    for given, message in found:
        loc = [p for p in given if p != "body"]
        where = _field_of(loc, message, state, fallback)
        if where == "targets" and len(loc) > 1 and isinstance(loc[1], int):
            message = f"line {loc[1] + 1}: {message}"
        state.error(where, message)


# -- the two actions ----------------------------------------------------------------
Submit = Callable[[Service, str, NewRun, dict], "str | None"]


def handle(
    svc: Service, user: str, state: NewRun, action: str, archive: tuple[bytes, str] | None, submit: Submit | None = None
) -> str | None:
    """Do what the post asks; the new run's id, or None when the form is to be shown again (``state`` filled).

    ``submit`` starts what the form is for (a run here; the new-study form passes its own), once the source is known.
    """
    uploaded = None
    if archive is not None and state.values["kind"] == "upload":
        try:
            uploaded = svc.uploads.add(user, *archive)["id"]
        except AnchoError as exc:
            state.error("file", str(exc))
            return None
        # from now on the form offers it as an earlier upload: the bytes are not sent again
        state.values.update(kind="previous", upload=uploaded)
    source = _source(state, uploaded)
    if source is None:
        return None
    if action == "default":  # Enter in a field: read the parameters first, then start
        action = "submit" if state.inspected else "inspect"
    if action != "submit" or (state.inspected and state.inspected != _key(source)):
        if _read(svc, user, state, source) and action == "submit":
            state.error(
                "form", "The model changed since its parameters were read: check them, then start the run again."
            )
        return None
    return (submit or _submit)(svc, user, state, source)


def _key(source: dict) -> str:
    return json.dumps(source, sort_keys=True)


def _read(svc: Service, user: str, state: NewRun, source: dict, fresh: bool = True) -> bool:
    """Read the model's parameters; with ``fresh``, their fields start at the defaults (else they keep what was sent)."""
    try:
        found = svc.inspect(user, InspectRequest.model_validate({"model": source}).model, None)
    except (AnchoError, ValidationError) as exc:
        _place(state, exc, "model")
        return False
    state.model = found["model"]
    state.inspected = _key(source)
    if fresh:
        for name in [n for n in state.values if n.startswith("param-")]:
            del state.values[name]
    return True


def run_body(svc: Service, user: str, state: NewRun, source: dict) -> dict | None:
    """The REST API's run body from the form (errors placed in ``state``); None when it cannot be built."""
    if state.inspected and not _read(svc, user, state, source, fresh=False):  # the parameters' types, to send them
        return None
    v = state.values
    sequences, seed, most = (
        _whole(state, "sequences", "Sequences", 1),
        _whole(state, "seed", "Seed", 0),
        _whole(state, "max_sequences", "At most", 1),
    )
    body: dict[str, Any] = {"model": source, "params": _params(state, state.model["parameters"]) if state.model else {}}
    body.update({k: x for k, x in (("sequences", sequences), ("seed", seed), ("max_sequences", most)) if x is not None})
    body["targets"] = [t.strip() for t in v.get("targets", "").splitlines() if t.strip()]
    if v.get("until", "").strip():
        body["until"] = v["until"].strip()
    if v.get("executor"):
        body["executor"] = v["executor"]
    return body


def submitted(svc: Service, user: str, state: NewRun, source: dict, start: Callable[[], str]) -> str | None:
    """``start()``'s id, or None with its error placed next to its field (the parameters read first if needed)."""
    if state.errors:
        return None
    try:
        return start()
    except (AnchoError, ValidationError) as exc:
        if state.model is None and isinstance(exc, FieldError) and "params" in exc.loc:
            _read(svc, user, state, source)  # started without reading them: show the fields the error is about
        _place(state, exc, "form")
        return None


def _submit(svc: Service, user: str, state: NewRun, source: dict) -> str | None:
    body = run_body(svc, user, state, source)
    if body is None:
        return None
    return submitted(svc, user, state, source, lambda: svc.submit(user, RunRequest.model_validate(body)).id)


# -- rendering ----------------------------------------------------------------------
_CHOICE = re.compile(r"""'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)"|([^,\s][^,]*)""")


def _choices(type_name: str) -> list[str]:
    """The values of a ``Literal[...]`` parameter, for a menu."""
    found = re.fullmatch(r"Literal\[(.*)\]", type_name)
    if not found:
        return []
    return [next(g for g in m.groups() if g is not None).strip() for m in _CHOICE.finditer(found.group(1))]


def _text(value: Any) -> str:
    """A default as the field shows it: a text as it is, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _parameter_field(p: dict, sent: str | None) -> dict:
    default = p.get("default")
    choices = ["true", "false"] if p["type"] == "bool" else _choices(p["type"])
    if choices and p["required"]:
        choices, initial = ["", *choices], ""  # nothing chosen until someone chooses
    elif p["type"] == "bool":
        initial = "true" if default else "false"
    elif choices:
        initial = choices[0] if default is None else str(default)
    else:
        initial = "" if default is None else _text(default)
    help_text = (
        "No default: give a value." if p["required"] else f"Default: {'none' if default is None else _text(default)}"
    )
    return {
        "id": f"param-{p['name']}",
        "name": p["name"],
        "type": p["type"],
        "required": p["required"],
        "choices": choices,
        "value": initial if sent is None else sent,
        "help": help_text,
        "inputmode": {"int": "numeric", "float": "decimal"}.get(p["type"]),
    }
