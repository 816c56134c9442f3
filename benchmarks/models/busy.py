"""A deterministic pure-Python busy model for bench_parallel.py: ``loops`` is calibrated to ~1 ms per sequence."""

import ancho


def spin(loops: int) -> int:
    """Pure-Python integer work; the same ``loops`` always does the same work (no clock involved)."""
    acc = 0
    for k in range(loops):
        acc = (acc + k * k) % 1_000_003
    return acc


class Busy(ancho.Model):
    """About 1 ms of interpreter work per sequence (after calibration), plus one draw."""

    loops: int = 20_000

    def sequence(self, rng):
        return {"x": rng.random(), "acc": spin(self.loops)}
