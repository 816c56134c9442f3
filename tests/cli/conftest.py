"""Fixtures the CLI tests share (a local run and a server's take the same model folders)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def two_models(write_model, tmp_path) -> Path:
    """A model folder holding two models, ``A`` (output ``a``, parameter ``scale``) and ``B`` (output ``b``),
    with a sibling module ``helper.py`` that ``A`` imports: naming a class is needed, and siblings must travel."""
    folder = tmp_path / "pkg"
    write_model(
        """
        from helper import draw

        class A(ancho.Model):
            scale: float = 1.0

            def sequence(self, rng):
                return {"a": self.scale * draw(rng)}

        class B(ancho.Model):
            def sequence(self, rng):
                return {"b": 1}
    """,
        name="model.py",
        folder=folder,
    )
    (folder / "helper.py").write_text("def draw(rng):\n    return rng.random()\n")
    return folder
