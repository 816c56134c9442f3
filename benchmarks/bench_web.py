"""What the web site's run page costs for its plots, against reading the run's columns.

    .venv/bin/python benchmarks/bench_web.py [--sequences 1000000] [--reps 5]

A run of ``--sequences`` sequences with three outputs (float, int, bool) is
made once with ``ancho run`` into a scratch embedded store. Then, in this
process, each repetition times:

- baseline: reading every output column from the store (``read_column``), the I/O floor of any plot;
- ``plotdata.run_plots``: histogram and running-mean data of every output (reads the columns itself);
- ``run_charts(run_plots(...))``: the same plus drawing the SVG the page embeds;
- the page's plot cache on a second view (what a reload of a finished run costs).

Then a run of ``--trajectory-sequences`` sequences of one trajectory output of
``--steps`` steps: reading the whole trajectory column chunk by chunk (the
floor of anything that would recompute its per-step statistics) against
``plotdata.run_fans`` (the summary's statistics plus the first five
sequences' paths) and its fan-chart SVG: the first view should not grow with
the number of sequences.

Reported as medians (and minima) and as ratios to the baseline.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

MODEL = '''
import ancho


class Three(ancho.Model):
    """A float, an int and a bool per sequence, for almost no work."""

    def sequence(self, rng):
        x = rng.normal()
        return {"x": x, "k": int(rng.poisson(4.0)), "big": x > 1.0}
'''

PATHS = '''
import ancho


class Paths(ancho.Model):
    """A random walk of ``steps`` steps per sequence."""

    steps: int = 100

    def sequence(self, rng):
        return {"walk": rng.standard_normal(self.steps).cumsum()}
'''


def ancho_run(home: Path, model: Path, sequences: int, *extra: str) -> str:
    out = C.ancho(home, "run", str(model), "--sequences", str(sequences), "--seed", "1", "--json", *extra)
    return json.loads(out)["run"]


def measure(steps: dict[str, Callable[[], object]], reps: int, before: Callable[[], object] | None = None) -> dict[str, list[float]]:  # fmt: skip
    """Seconds of each step, ``reps`` times in turn (``before`` each turn, untimed); the first step is the baseline."""
    times: dict[str, list[float]] = {label: [] for label in steps}
    for _ in range(reps):
        if before is not None:
            before()
        for label, fn in steps.items():
            t = time.perf_counter()
            fn()
            times[label].append(time.perf_counter() - t)
    return times


def table(times: dict[str, list[float]]) -> None:
    base = C.med(next(iter(times.values())))
    base_min = min(next(iter(times.values())))
    print(f"{'step':<32} {'median ms':>10} {'min ms':>10} {'× baseline':>11} {'(minima)':>9}")
    for label, xs in times.items():
        print(
            f"{label:<32} {C.med(xs) * 1e3:>10.1f} {min(xs) * 1e3:>10.1f} {C.med(xs) / base:>11.2f} {min(xs) / base_min:>9.2f}"
        )


def main() -> None:
    p = C.base_parser(__doc__.splitlines()[0])
    p.add_argument("--sequences", type=int, default=1_000_000)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--trajectory-sequences", type=int, default=100_000)
    p.add_argument("--steps", type=int, default=100)
    args = p.parse_args()
    C.header("web run page: plots", f"{args.sequences:,} sequences, 3 outputs; {args.reps} repetitions")
    with C.scratch("web") as home:
        (home / "three.py").write_text(MODEL)
        run_id = ancho_run(home, home / "three.py", args.sequences)
        (home / "paths.py").write_text(PATHS)
        walk_id = ancho_run(home, home / "paths.py", args.trajectory_sequences, "--param", f"steps={args.steps}")

        from ancho.plotdata import run_fans, run_plots
        from ancho.stores.embedded import EmbeddedStore
        from ancho.web.charts import fan_charts, run_charts
        from ancho.web.site import _PlotCache

        store = EmbeddedStore(home)
        names = list(store.get_run(run_id).schema)

        class Svc:  # what the cache needs of the server's Service
            pass

        svc = Svc()
        svc.store = store
        try:  # the service's reader of results, where the cache reads its plots through it
            from ancho.server.run_results import RunResults

            svc.results = RunResults(store)
        except ImportError:
            pass

        def read_columns():
            for name in names:
                store.read_column(run_id, name)

        page: dict = {}

        def first_view() -> None:  # a fresh plot cache, filled as the run page's first view fills it
            page["cache"] = _PlotCache()
            page["charts"] = page["cache"].get(svc, run_id).charts

        steps = {
            "read columns (baseline)": read_columns,
            "plot data": lambda: run_plots(store, run_id),
            "plot data + SVG (first view)": lambda: run_charts(run_plots(store, run_id)),
            "cached (later views)": lambda: page["cache"].get(svc, run_id),
        }
        times = measure(steps, args.reps, before=first_view)
        size = sum(len(str(c["histogram"] or "")) + len(str(c["convergence"] or "")) for c in page["charts"])
        table(times)
        print(f"\nSVG embedded in the page: {size / 1024:.0f} KiB for {len(names)} outputs")

        print(f"\nfan chart: {args.trajectory_sequences:,} sequences × {args.steps} steps")

        def read_walk():
            for _ in store.iter_column(walk_id, "walk"):
                pass

        fan_steps = {
            "read trajectory (baseline)": read_walk,
            "fan data": lambda: run_fans(store, walk_id),
            "fan data + SVG (first view)": lambda: fan_charts(run_fans(store, walk_id)),
        }
        fan_times = measure(fan_steps, args.reps)
        fan_size = sum(len(str(f.svg or "")) for f in fan_charts(run_fans(store, walk_id)))
        table(fan_times)
        print(f"\nfan SVG embedded in the page: {fan_size / 1024:.0f} KiB")
        print(C.load_note())
        if args.json:
            Path(args.json).write_text(
                json.dumps(
                    {
                        "machine": C.machine(),
                        "sequences": args.sequences,
                        "svg_bytes": size,
                        "times": {k: C.stat(v) for k, v in times.items()},
                        "trajectory": {"sequences": args.trajectory_sequences, "steps": args.steps},
                        "fan_svg_bytes": fan_size,
                        "fan_times": {k: C.stat(v) for k, v in fan_times.items()},
                    },
                    indent=1,
                )
            )


if __name__ == "__main__":
    main()
