"""The trivial model of the overhead, memory and latency benchmarks: one draw, one output, no custom summary."""

import ancho


class Trivial(ancho.Model):
    """One uniform draw per sequence: nearly all the cost of a run is Ancho's own."""

    def sequence(self, rng):
        return {"x": rng.random()}
