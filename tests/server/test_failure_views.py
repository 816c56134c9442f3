"""A run's failures as a client sees them: tracebacks without the server's folders (server/schemas.failure_views)."""

from __future__ import annotations

from types import SimpleNamespace

from ancho.chunk import Failure
from ancho.server.schemas import failure_views

TRACEBACK = """Traceback (most recent call last):
  File "/srv/ancho/sources/ab12/model.py", line 9, in sequences
    return {"x": np.broadcast_to(1.0, (2**62,))}
  File "/srv/ancho/envs/7f3e/lib/python3.11/site-packages/numpy/lib/_stride_tricks_impl.py", line 410, in broadcast_to
    return _broadcast_to(array, shape, subok=subok, readonly=True)
  File "/usr/lib/python3.11/functools.py", line 1, in wrapper
  File "/var/lib/ancho/scratch/run-9/helper.py", line 3, in helper
ValueError: array is too big; `arr.size * arr.dtype.itemsize` is larger than the maximum possible size.
"""


def test_tracebacks_name_the_models_files_and_libraries_but_no_server_folder():
    record = SimpleNamespace(spec=SimpleNamespace(submission=SimpleNamespace(root="/srv/ancho/sources/ab12")))
    (view,) = failure_views(record, [Failure(5, "ValueError: array is too big", TRACEBACK)])
    tb = view["traceback"]
    assert 'File "model.py", line 9' in tb
    assert 'File "<python>/lib/python3.11/site-packages/numpy/lib/_stride_tricks_impl.py", line 410' in tb
    assert 'File "<python>/lib/python3.11/functools.py"' in tb and 'File "…/helper.py", line 3' in tb
    assert "/srv/" not in tb and "/usr/" not in tb and "/var/" not in tb and "envs/7f3e" not in tb
    assert view["sequence"] == 5 and view["error"] == "ValueError: array is too big"
    assert "arr.size * arr.dtype.itemsize" in tb  # (the error's own text is the model's business: kept)
