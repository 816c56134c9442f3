"""Packed study points whose chunks failed entirely: each point still equals the same run made alone."""

import ancho

MOSTLY_FAILS = """
class Mostly(ancho.Model):
    fail: float = 0.9

    def sequence(self, rng):
        if rng.random() < self.fail:
            raise ValueError("unlucky")
        return {"x": rng.random()}
"""


def test_points_with_wholly_failed_chunks_equal_their_runs_alone(store, write_model):
    # at fail=0.99 most of a point's small first chunks hold no output at all (every sequence failed)
    model = str(write_model(MOSTLY_FAILS))
    study = ancho.study(
        model, ancho.grid(fail=[0.9, 0.95, 0.99]), sequences=400, seed=1, max_failures=10_000, store=store
    )
    assert study.summary["status"] == "succeeded"
    for point in study.summary["points"]:
        alone = ancho.run(
            model, params={"fail": point["params"]["fail"]}, sequences=400, seed=1, max_failures=10_000, store=store
        )
        assert point["status"] == "succeeded"
        assert point["outputs"]["x"] == alone.summary["outputs"]["x"]
        assert point["failures"] == alone.summary["failures"] == 400 - point["outputs"]["x"]["count"]
