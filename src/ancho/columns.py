"""NumPy columns to Arrow arrays and back, through buffers.

``pyarrow.array(ndarray)`` and ``Array.to_numpy()`` import pandas the first
time they run (pyarrow checks whether the input is a pandas object), which
costs more than a second on a small machine (measured; docs/benchmarks.md)
and would double the wall time of a short ``ancho run``. Ancho's columns
are only int64, float64 and bool, without nulls, so building arrays from
their buffers with Arrow's public ``from_buffers``/``buffers`` API is exact,
zero-copy for numbers, and never imports pandas.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

_NUMPY = {pa.int64(): np.dtype(np.int64), pa.float64(): np.dtype(np.float64)}
_ARROW = {dtype: arrow for arrow, dtype in _NUMPY.items()}  # (``pa.from_numpy_dtype`` was a fifth of a small column's)


def to_arrow(values: np.ndarray) -> pa.Array:
    """An Arrow array viewing (numbers) or packing (bools) a 1-d NumPy column; a 2-d one (a trajectory, sequences ×
    steps) becomes a ``FixedSizeList<float64>[steps]`` over its flattened row-major values (one buffer, no copy)."""
    if values.ndim == 2:
        flat = np.ascontiguousarray(values, dtype=np.float64).reshape(-1)
        return pa.FixedSizeListArray.from_arrays(to_arrow(flat), values.shape[1])
    n = len(values)
    if values.dtype == np.bool_:
        bits = np.packbits(values, bitorder="little")
        return pa.Array.from_buffers(pa.bool_(), n, [None, pa.py_buffer(bits)])
    if values.dtype.kind in "iu":
        values = values.astype(np.int64, copy=False)
    elif values.dtype.kind == "f":
        values = values.astype(np.float64, copy=False)
    else:  # pragma: no cover - chunk.py only produces the three kinds
        raise TypeError(f"unsupported column dtype {values.dtype}")
    values = np.ascontiguousarray(values)
    return pa.Array.from_buffers(_ARROW[values.dtype], n, [None, pa.py_buffer(values)])


def to_numpy(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A NumPy column from an Arrow int64, float64 or bool array without nulls."""
    if isinstance(array, pa.ChunkedArray):
        parts = [to_numpy(c) for c in array.chunks]
        if not parts:
            return np.empty(0, dtype=_NUMPY.get(array.type, np.dtype(bool)))
        return parts[0] if len(parts) == 1 else np.concatenate(parts)
    if pa.types.is_fixed_size_list(array.type):
        # flatten() honours the array's offset (a sliced batch); rows × steps, row-major as written
        return to_numpy(array.flatten()).astype(np.float64, copy=False).reshape(len(array), array.type.list_size)
    if array.null_count:
        return array.to_numpy(zero_copy_only=False)
    n, offset = len(array), array.offset
    data = array.buffers()[1]
    if array.type == pa.bool_():
        if n == 0:
            return np.empty(0, dtype=bool)
        bits = np.frombuffer(data, dtype=np.uint8)
        return np.unpackbits(bits, count=offset + n, bitorder="little")[offset:].astype(bool)
    dtype = _NUMPY.get(array.type)
    if dtype is None:
        return array.to_numpy(zero_copy_only=False)
    if n == 0:
        return np.empty(0, dtype=dtype)
    return np.frombuffer(data, dtype=dtype, count=n, offset=offset * dtype.itemsize)


def arrow_type(kind: str) -> pa.DataType:
    """The Arrow type of a schema kind: int64, float64, bool, or ``fixed_size_list<float64>[STEPS]`` for ``float[STEPS]``."""
    from .chunk import KIND_DTYPES, trajectory_steps

    steps = trajectory_steps(kind)
    if steps is not None:
        return pa.list_(pa.float64(), steps)
    return pa.from_numpy_dtype(KIND_DTYPES[kind])


def arrow_kind(type_: pa.DataType) -> str:
    """The schema kind of a stored Arrow column (the inverse of :func:`arrow_type`)."""
    from .chunk import trajectory_kind

    if pa.types.is_fixed_size_list(type_):
        return trajectory_kind(type_.list_size)
    if pa.types.is_boolean(type_):
        return "bool"
    return "int" if pa.types.is_integer(type_) else "float"


def release_memory() -> None:
    """Hand memory that Arrow's allocator and glibc keep for reuse back to the system.

    After a run has streamed millions of results through Parquet, ~50 MB of
    freed buffers stay mapped (measured: driver RSS 134 MB → 80 MB with
    this call), which a summary would otherwise add its column to.
    """
    try:
        pa.default_memory_pool().release_unused()
    except Exception:  # pragma: no cover - allocators without the call
        pass
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except Exception:  # pragma: no cover - not glibc
        pass
