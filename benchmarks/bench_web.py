"""What the web site's run page costs for its plots, against reading the run's columns.

    .venv/bin/python benchmarks/bench_web.py [--sequences 1000000] [--reps 5]

A run of ``--sequences`` sequences with three outputs (float, int, bool) is
made once with ``ancho run`` into a scratch embedded store. Then, in this
process, each repetition times:

- baseline: reading every output column from the store (``read_column``), the I/O floor of any plot;
- ``plotdata.run_plots``: histogram and running-mean data of every output (reads the columns itself);
- ``run_charts(run_plots(...))``: the same plus drawing the SVG the page embeds;
- the page's plot cache on a second view (what a reload of a finished run costs).

Reported as medians (and minima) and as ratios to the baseline.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
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


def main() -> None:
    p = C.base_parser(__doc__.splitlines()[0])
    p.add_argument("--sequences", type=int, default=1_000_000)
    p.add_argument("--reps", type=int, default=5)
    args = p.parse_args()
    C.header("web run page: plots", f"{args.sequences:,} sequences, 3 outputs; {args.reps} repetitions")
    home = C.scratch_home("web")
    try:
        (home / "three.py").write_text(MODEL)
        done = subprocess.run(
            [
                *C.ancho_cli(),
                "run",
                str(home / "three.py"),
                "--sequences",
                str(args.sequences),
                "--seed",
                "1",
                "--json",
            ],
            env=C.child_env(home),
            capture_output=True,
            text=True,
            timeout=3600,
        )
        if done.returncode != 0:
            sys.exit(f"ancho run failed: {done.stderr}")
        run_id = json.loads(done.stdout)["run"]

        from ancho.plotdata import run_plots
        from ancho.stores.embedded import EmbeddedStore
        from ancho.web.charts import run_charts
        from ancho.web.site import _PlotCache

        store = EmbeddedStore(home)
        names = list(store.get_run(run_id).schema)

        class Svc:  # what the cache needs of the server's Service
            pass

        svc = Svc()
        svc.store = store

        def read_columns():
            for name in names:
                store.read_column(run_id, name)

        times: dict[str, list[float]] = {
            "read columns (baseline)": [],
            "plot data": [],
            "plot data + SVG (first view)": [],
            "cached (later views)": [],
        }
        size = 0
        for _ in range(args.reps):
            for label, fn in (
                ("read columns (baseline)", read_columns),
                ("plot data", lambda: run_plots(store, run_id)),
                ("plot data + SVG (first view)", lambda: run_charts(run_plots(store, run_id))),
            ):
                t = time.perf_counter()
                fn()
                times[label].append(time.perf_counter() - t)
            cache = _PlotCache()
            charts = cache.get(svc, run_id)
            size = sum(len(str(c["histogram"] or "")) + len(str(c["convergence"] or "")) for c in charts)
            t = time.perf_counter()
            cache.get(svc, run_id)
            times["cached (later views)"].append(time.perf_counter() - t)
        base = C.med(times["read columns (baseline)"])
        base_min = min(times["read columns (baseline)"])
        print(f"{'step':<32} {'median ms':>10} {'min ms':>10} {'× baseline':>11} {'(minima)':>9}")
        for label, xs in times.items():
            print(
                f"{label:<32} {C.med(xs) * 1e3:>10.1f} {min(xs) * 1e3:>10.1f} {C.med(xs) / base:>11.2f} {min(xs) / base_min:>9.2f}"
            )
        print(f"\nSVG embedded in the page: {size / 1024:.0f} KiB for {len(names)} outputs")
        print(C.load_note())
        if args.json:
            Path(args.json).write_text(
                json.dumps(
                    {
                        "machine": C.machine(),
                        "sequences": args.sequences,
                        "svg_bytes": size,
                        "times": {k: C.stat(v) for k, v in times.items()},
                    },
                    indent=1,
                )
            )
    finally:
        C.cleanup(home)


if __name__ == "__main__":
    main()
