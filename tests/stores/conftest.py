"""One contract suite for every store: each store behaviour is tested once, on every implementation.

A new store adds a factory to ``STORES``.
"""

from __future__ import annotations

import pytest


def _embedded(tmp_path):
    from ancho.stores.embedded import EmbeddedStore

    return EmbeddedStore(tmp_path / "embedded")


STORES = {"embedded": _embedded}


@pytest.fixture(params=sorted(STORES))
def any_store(request, tmp_path):
    s = STORES[request.param](tmp_path)
    yield s
    s.close()
