"""describe_many: each column's statistics are describe's, bit for bit, whichever columns share its matrix.

The study driver describes a batch's tiny points together (ancho.studies.finals); a point's summary must still
equal the one its run made alone gives, so the comparison here is exact (the JSON text), not within a tolerance.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from ancho.stats import MANY_LONGEST, describe, describe_many

LENGTHS = [1, 2, 3, 7, 8, 9, 16, 17, 31, 50, 64, 65, 127, 128, 129, 257, 1000, 1024, MANY_LONGEST, MANY_LONGEST + 1]


def _columns(kind: str, n: int, k: int, rng: np.random.Generator) -> list[np.ndarray]:
    out = []
    for _ in range(k):
        if kind == "bool":
            out.append(rng.random(n) < rng.random())
        elif kind == "int":
            out.append(rng.integers(-(2**40), 2**40, n) if rng.random() < 0.5 else rng.integers(0, 3, n))
        else:
            c = rng.standard_normal(n) * rng.choice([1.0, 1e10, 1e-10])
            if rng.random() < 0.2:
                c[rng.integers(0, n)] = np.nan  # this column's statistics leave it out: described alone
            if rng.random() < 0.2:
                c[rng.integers(0, n)] = rng.choice([np.inf, -np.inf])
            if rng.random() < 0.2:
                c[: n // 2] = 0.0
                c[: n // 4] = -0.0
            out.append(c)
    return out


@pytest.mark.parametrize("kind", ["bool", "int", "float"])
def test_every_column_is_described_as_describe_does_bit_for_bit(kind):
    rng = np.random.default_rng(7)
    columns = [c for n in LENGTHS for c in _columns(kind, n, 12, rng)]
    order = rng.permutation(len(columns))  # lengths interleaved: each group is gathered from all over the list
    columns = [columns[i] for i in order]
    before = [c.copy() for c in columns]
    expected = [json.dumps(describe(c.copy(), kind)) for c in columns]
    got = [json.dumps(d) for d in describe_many(columns, kind)]
    assert got == expected
    assert all(np.array_equal(a, b, equal_nan=True) for a, b in zip(columns, before))  # the columns are not sorted


def test_other_dtypes_of_one_kind_and_all_nan_columns():
    ints = [np.arange(10, dtype=np.int32), np.arange(10, dtype=np.int64)[::-1].copy(), np.array([], dtype=np.int64)]
    floats = [np.full(5, np.nan), np.array([1.0, np.nan, 3.0]), np.arange(6, dtype=np.float32), np.ones(1)]
    bools = [np.array([1, 0, 1], dtype=np.uint8), np.array([True, False]), np.array([], dtype=bool)]
    for kind, columns in (("int", ints), ("float", floats), ("bool", bools)):
        assert describe_many(columns, kind) == [describe(c.copy(), kind) for c in columns]


def test_known_values():
    """Closed forms: 0..100 has mean 50, sd sqrt(101*102/12)=29.30..., p5..p95 exact; a coin column's mean is its share."""
    [a, b] = describe_many([np.arange(101), np.arange(101)[::-1].copy()], "int")
    assert a == b
    assert a["mean"] == 50.0 and a["min"] == 0 and a["max"] == 100
    assert a["std"] == pytest.approx((101 * 102 / 12) ** 0.5, rel=1e-12)
    assert [a[f"p{q}"] for q in (5, 25, 50, 75, 95)] == [5.0, 25.0, 50.0, 75.0, 95.0]
    [c] = describe_many([np.array([True, False, True, True])], "bool")
    assert c["mean"] == 0.75 and c["count"] == 4


@pytest.mark.parametrize(
    "values",
    [[1.0, np.inf, 2.0], [-np.inf, 0.0, 1.0], [np.inf, np.inf], [1e308, 1e308, -1e308], [np.nan, 1.0, np.inf], [0.5]],
    ids=["inf", "-inf", "all-inf", "overflowing", "nan-and-inf", "one"],
)
def test_a_description_is_json_safe_as_built(values):
    """Every statistic is a finite number or null as describe_moments builds it (nothing cleans it afterwards)."""
    from ancho.stats import clean

    for kind in ("float", "int") if all(np.isfinite(values)) and max(map(abs, values)) < 2**62 else ("float",):
        column = np.array(values, dtype=np.float64 if kind == "float" else np.int64)
        out = describe(column.copy(), kind)
        assert out == clean(out)
        json.dumps(out, allow_nan=False)
        for row in describe_many([column.copy(), column.copy()], kind):
            assert row == out
