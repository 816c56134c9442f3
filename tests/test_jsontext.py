"""Records' JSON text: whichever encoder writes it, the standard library reads back the same values."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ancho import jsontext
from ancho.stores.base import RunRecord

plain = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


def same(a, b) -> bool:
    """Equal, with NaN equal to NaN and a float's sign and bits compared (0.0 is not -0.0)."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


@given(plain)
def test_anything_plain_reads_back_as_the_standard_library_writes_it(data):
    assert same(json.loads(jsontext.dumps(data)), json.loads(json.dumps(data)))


@pytest.mark.parametrize(
    "data",
    [
        {"default": math.inf, "low": -math.inf, "none": None},  # a parameter default orjson would write as null
        {"x": math.nan},
        {"pair": (1, 2)},  # a tuple: written as a list either way
        {"big": 2**70},  # over 64 bits
        {1: "int key"},  # the standard library writes the key as "1"
        {"lone": "\ud800"},  # a lone surrogate
        {"x": 58.49999999999997, "tiny": 5e-324, "e": 9.265066237858661e-05, "neg0": -0.0},
    ],
)
def test_what_orjson_writes_otherwise_is_written_as_the_standard_library_does(data):
    assert jsontext.dumps(data) == json.dumps(data) or same(json.loads(jsontext.dumps(data)), data)
    assert same(json.loads(jsontext.dumps(data)), json.loads(json.dumps(data)))


def test_a_record_with_an_infinite_parameter_reads_back_whole():
    record = RunRecord(id="r1", params={"cap": math.inf, "p": 0.1}, summary={"outputs": {"x": {"mean": 1 / 3}}})
    back = RunRecord.from_dict(json.loads(record.to_json()))
    assert back.params == {"cap": math.inf, "p": 0.1} and back.summary == record.summary
    assert back.to_dict() == record.to_dict()


def test_unwritable_data_fails_as_the_standard_library_fails():
    with pytest.raises(TypeError):
        jsontext.dumps({"x": object()})


def test_plain_values_are_json_s_and_nested_at_most_max_depth():
    from ancho.jsontext import MAX_DEPTH, plain

    def nested(depth):  # ``depth`` lists, one in the other
        value: object = 0
        for _ in range(depth):
            value = [value]
        return value

    assert plain({"a": [1, 2.5, None, True, "x", {"b": []}]})
    assert plain(nested(MAX_DEPTH)) and not plain(nested(MAX_DEPTH + 1))
    assert not plain((1, 2)) and plain((1, [2, (3,)]), tuples=True)
    assert not plain({1: "a"}) and not plain({"a": {2.0}}) and not plain(b"x") and not plain(float)


@given(plain)
def test_what_dumps_wrote_loads_reads_back_as_the_standard_library(data):
    """``loads`` reads text with orjson only where orjson wrote it; what the standard library wrote (NaN, integers
    over 64 bits that orjson would read as floats) it reads with the standard library."""
    for wrapped in (data, {"id": data}, {"id": "r1", "params": data, "summary": [data]}):
        assert same(jsontext.loads(jsontext.dumps(wrapped)), json.loads(json.dumps(wrapped)))


@pytest.mark.parametrize(
    "text",
    [
        '{"id": "r1", "big": 123456789012345678901234567890}',  # the standard library's: orjson would make a float
        '{"id":"r1","x":1.5}',
        '{"cap": Infinity, "n": NaN}',
        '["a\\":b", 18446744073709551616]',
        '{"a\\":b": 18446744073709551616}',
    ],
)
def test_loads_is_the_standard_librarys_reading(text):
    assert same(jsontext.loads(text), json.loads(text))
