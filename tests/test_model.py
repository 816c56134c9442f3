from typing import Literal

import pytest

import ancho
from ancho.errors import ModelError, ParameterError
from ancho.model import describe_model


class Gambler(ancho.Model):
    """Doc line."""

    stake: int = 10
    goal: int = 20
    p: float = 0.5
    fair: bool = True
    label: str = "x"

    def sequence(self, rng):
        return {"x": 1}

    @ancho.summary
    def s1(self, results):
        return 1


class Child(Gambler):
    extra: list[float] = [1.0, 2.0]
    mode: Literal["a", "b"] = "a"

    @ancho.summary
    def s2(self, results):
        return 2


def test_parameters_in_declaration_order_with_defaults():
    params = Gambler.parameters()
    assert list(params) == ["stake", "goal", "p", "fair", "label"]
    assert Gambler().params == {"stake": 10, "goal": 20, "p": 0.5, "fair": True, "label": "x"}


@pytest.mark.parametrize(
    "name,raw,expected",
    [
        ("stake", "3", 3),
        ("stake", 3.0, 3),
        ("stake", "1e3", 1000),
        ("stake", " 7 ", 7),
        ("p", "0.45", 0.45),
        ("p", 1, 1.0),
        ("p", "1e-3", 0.001),
        ("fair", "false", False),
        ("fair", "YES", True),
        ("fair", 0, False),
        ("fair", True, True),
        ("label", "hello", "hello"),
    ],
)
def test_conversion_from_strings_and_json(name, raw, expected):
    value = Gambler.resolve_params({name: raw})[name]
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(
    "params,needle",
    [
        ({"stak": 3}, "unknown parameter 'stak' for model Gambler; did you mean 'stake'?"),
        ({"zzz": 3}, "unknown parameter 'zzz'"),
        ({"stake": "3.5"}, "parameter 'stake' expects int, got '3.5'"),
        ({"stake": True}, "parameter 'stake' expects int"),
        ({"p": "abc"}, "parameter 'p' expects float, got 'abc': not a number"),
        ({"stake": "many"}, "parameter 'stake' expects int, got 'many': not a whole number"),
        ({"fair": "maybe"}, "parameter 'fair' expects bool"),
        ({"label": 3}, "parameter 'label' expects str"),
    ],
)
def test_bad_parameters_are_named(params, needle):
    with pytest.raises(ParameterError) as err:
        Gambler.resolve_params(params)
    assert needle in str(err.value)


def test_complex_annotations_go_through_pydantic():
    assert Child.resolve_params({"extra": "[1, 2.5]"})["extra"] == [1.0, 2.5]
    assert Child.resolve_params({"mode": "b"})["mode"] == "b"
    with pytest.raises(ParameterError, match="parameter 'mode'"):
        Child.resolve_params({"mode": "c"})
    with pytest.raises(ParameterError, match="parameter 'extra'"):
        Child.resolve_params({"extra": '[1, "x"]'})


def test_inheritance_and_summaries():
    assert list(Child.parameters())[-2:] == ["extra", "mode"]
    assert Child.__ancho_summaries__ == ("s1", "s2")
    d = describe_model(Child)
    assert d["name"] == "Child" and d["doc"] == ""  # a docstring is not inherited: it would describe another model
    assert describe_model(Gambler)["doc"] == "Doc line."
    assert {"name": "stake", "type": "int", "default": 10, "required": False} in d["parameters"]


def test_required_parameter_without_default():
    class Needs(ancho.Model):
        n: int

        def sequence(self, rng):
            return {"x": self.n}

    with pytest.raises(ParameterError, match="parameter 'n' of model Needs has no default"):
        Needs()
    assert Needs(n="4").n == 4


def test_bad_default_is_a_model_error():
    with pytest.raises(ModelError, match="default"):

        class Bad(ancho.Model):
            n: int = "four"

            def sequence(self, rng):
                return {}


def test_private_and_classvar_attributes_are_not_parameters():
    from typing import ClassVar

    class M(ancho.Model):
        a: int = 1
        _hidden: int = 2
        table: ClassVar[dict] = {}

        def sequence(self, rng):
            return {"a": self.a}

    assert list(M.parameters()) == ["a"]


def test_instance_params_are_validated():
    with pytest.raises(ParameterError):
        Gambler(stake="x")
    assert Gambler(stake="4").stake == 4


def test_a_literal_of_numbers_takes_them_as_text():
    """A command line or the web form gives each choice as text: "2" is the choice 2, never the text '2'."""

    class Pick(ancho.Model):
        n: Literal[1, 2] = 1
        mode: Literal[True, "auto"] = "auto"

        def sequence(self, rng):
            return {"x": 1}

    assert Pick.resolve_params({"n": "2", "mode": "True"}) == {"n": 2, "mode": True}
    assert Pick.resolve_params({"n": 2, "mode": "auto"}) == {"n": 2, "mode": "auto"}
    with pytest.raises(ancho.errors.ParameterError, match="parameter 'n' expects Literal\\[1, 2\\], got '3'"):
        Pick.resolve_params({"n": "3"})


def test_describe_says_kind_and_block():
    """describe_model (the record, the server's inspect, the web form) says how a model runs."""

    class Batch(ancho.Model):
        block = 512

        def sequences(self, rng, n):
            return {"x": rng.random(n)}

    assert describe_model(Gambler)["kind"] == "sequence" and describe_model(Gambler)["block"] is None
    d = describe_model(Batch)
    assert (d["kind"], d["block"]) == ("batch", 512)
    assert list(d) == ["name", "doc", "parameters", "summaries", "kind", "block"]
