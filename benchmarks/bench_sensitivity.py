"""What does sensitivity add to reading a study summary? Sensitivity of ~10,000 points vs building their points table.

Builds a study summary's points (the shape ``study_summary`` reads from the
store: each point's outputs and targets) for a Sobol design (n=2048, 3
parameters: 10,240 points) and a Morris design (2,500 trajectories, 3
parameters: 10,000 points), with two outputs and one target. The baseline is
building the points table from those points (``_table``, what ``points_frame``
does after reading the store); the figure is ``sensitivity.analyze`` on it,
which ``study_summary`` adds. Store reads are left out (they are the same
for both). Usage: ``python benchmarks/bench_sensitivity.py [--repeat 3]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def summary_of(design, rng) -> dict:
    x = design.unit_sample()
    y = x[:, 0] + 2 * x[:, 1] ** 2 + 0.5 * x[:, 0] * x[:, 2]
    points = []
    for k, (row, v) in enumerate(zip(x, y)):
        outputs = {
            "y": {"count": 50, "mean": v, "std": 0.3, "ci95": [v - 0.08, v + 0.08]},
            "z": {"count": 50, "mean": -v + rng.normal(0, 0.05), "std": 0.3, "ci95": [-v - 0.1, -v + 0.1]},
        }
        prob = min(max(v / 3, 0.0), 1.0)
        targets = [{"expr": "y>1", "probability": prob, "ci95": [prob, prob]}]
        params = dict(zip(design.ranges, row.tolist()))
        points.append({"point": k, "params": params, "sequences": 50, "outputs": outputs, "targets": targets})
    return {"design": {"parameters": list(design.ranges)}, "points": points}


def best(f, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    import ancho
    from ancho.studies.sensitivity import analyze
    from ancho.studies.service import _table

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    rng = np.random.default_rng(1)
    ranges = {"a": (0.0, 1.0), "b": (0.0, 1.0), "c": (0.0, 1.0)}
    for design in (ancho.sobol(2048, seed=1, **ranges), ancho.morris(2500, seed=1, **ranges)):
        summary = summary_of(design, rng)
        table = _table(summary, ["y>1"], counts=True)
        t_table = best(lambda s=summary: _table(s, ["y>1"], counts=True), args.repeat)
        t_sens = best(lambda d=design, t=table: analyze(d, t, ["y", "z"], ["y>1"]), args.repeat)
        print(
            f"{design.kind}: {len(table):,} points, 2 outputs + 1 target: points table {t_table:.3f} s, "
            f"sensitivity {t_sens:.3f} s ({t_sens / t_table:.2f}x the table)"
        )


if __name__ == "__main__":
    main()
