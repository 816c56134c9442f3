import numpy as np
import pyarrow as pa
import pytest

from ancho.columns import to_arrow, to_numpy


@pytest.mark.parametrize(
    "values",
    [
        np.array([1, -2, 3], dtype=np.int64),
        np.array([0.5, np.nan, -np.inf]),
        np.array([True, False, True, True, False, False, True, False, True]),
        np.array([], dtype=bool),
        np.array([], dtype=np.float64),
        np.array([1, 2], dtype=np.int32),
    ],
)
def test_round_trip_equals_pyarrow(values):
    arr = to_arrow(values)
    reference = pa.array(values.astype(np.int64) if values.dtype == np.int32 else values)
    assert arr.type == reference.type
    np.testing.assert_array_equal(arr.to_numpy(zero_copy_only=False), reference.to_numpy(zero_copy_only=False))
    back = to_numpy(arr)
    np.testing.assert_array_equal(back, values)


def test_slices_and_chunked_arrays():
    bools = np.random.default_rng(0).random(100) < 0.5
    arr = to_arrow(bools)
    np.testing.assert_array_equal(to_numpy(arr.slice(13, 50)), bools[13:63])
    nums = np.arange(100.0)
    np.testing.assert_array_equal(to_numpy(to_arrow(nums).slice(7, 9)), nums[7:16])
    chunked = pa.chunked_array([to_arrow(nums[:10]), to_arrow(nums[10:])])
    np.testing.assert_array_equal(to_numpy(chunked), nums)
