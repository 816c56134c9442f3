"""The new-run form's pieces that need no server: parameter fields, what is sent, where errors go."""

from __future__ import annotations

from pydantic import ValidationError

from ancho.server.schemas import RunRequest
from ancho.server.service import FieldError
from ancho.web.newrun import NewRun, _choices, _parameter_field, _params, _place


def test_choices_of_a_literal():
    assert _choices("Literal['call', 'put']") == ["call", "put"]
    assert _choices('Literal["a, b", "c"]') == ["a, b", "c"]
    assert _choices("Literal[1, 2]") == ["1", "2"]
    assert _choices("int") == []


def test_parameter_fields_start_at_their_defaults():
    assert _parameter_field({"name": "on", "type": "bool", "default": False, "required": False}, None)["choices"] == [
        "true",
        "false",
    ]
    assert (
        _parameter_field({"name": "on", "type": "bool", "default": False, "required": False}, None)["value"] == "false"
    )
    strikes = _parameter_field({"name": "k", "type": "list[float]", "default": [90.0, 110.0], "required": False}, None)
    assert strikes["value"] == "[90.0, 110.0]" and strikes["help"] == "Default: [90.0, 110.0]"
    n = _parameter_field({"name": "n", "type": "int", "default": None, "required": True}, "7")
    assert n["value"] == "7" and n["inputmode"] == "numeric" and n["help"] == "No default: give a value."
    # a menu of a required parameter chooses nothing until someone does (the model then says it is missing)
    on = _parameter_field({"name": "on", "type": "bool", "default": None, "required": True}, None)
    assert on["choices"] == ["", "true", "false"] and on["value"] == ""


def test_what_is_sent():
    params = [
        {"name": "label", "type": "str", "default": "base", "required": False},
        {"name": "name", "type": "str", "default": None, "required": True},
        {"name": "n", "type": "int", "default": 3, "required": False},
        {"name": "hidden", "type": "int", "default": 3, "required": False},
    ]
    state = NewRun(values={"kind": "upload", "param-label": "", "param-name": "", "param-n": " 5 "})
    # an emptied text is the empty text; an empty required text is missing; numbers are trimmed; unshown: default
    assert _params(state, params) == {"label": "", "n": "5"}


def test_errors_go_next_to_their_fields():
    state = NewRun(
        values={"kind": "previous", "param-stake": "x"},
        model={
            "name": "G",
            "doc": "",
            "parameters": [{"name": "stake", "type": "int", "default": 1, "required": False}],
        },
    )
    _place(state, FieldError(("body", "params"), "parameter 'stake' expects int, got 'x'"), "form")
    _place(state, FieldError(("body", "model", "upload"), "no upload with that id"), "form")
    _place(state, FieldError(("body", "targets", 1), "bad target"), "form")
    _place(state, FieldError(("body", "params"), "parameter 'other' is unknown"), "form")
    _place(state, ValueError("something else"), "model")
    assert state.errors == {
        "param-stake": "parameter 'stake' expects int, got 'x'",
        "upload": "no upload with that id",
        "targets": "line 2: bad target",
        "params": "parameter 'other' is unknown",
        "model": "something else",
    }
    assert state.focus == "param-stake"
    try:
        RunRequest.model_validate({"model": {"upload": "u"}, "sequences": 0})
    except ValidationError as exc:
        fresh = NewRun(values={"kind": "upload"})
        _place(fresh, exc, "form")
        assert list(fresh.errors) == ["sequences"]
