"""A trivial model with three outputs of the three kinds (float, bool, int), as bench_cassandra's rows."""

import ancho


class Outputs(ancho.Model):
    """One uniform draw per sequence, reported three ways: the cost of a run is nearly all Ancho's and the store's."""

    def sequence(self, rng):
        x = rng.random()
        return {"x": x, "won": x < 0.3, "rounds": int(x * 100)}
