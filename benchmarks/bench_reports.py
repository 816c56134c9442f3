"""What a run's PDF report and notebook cost, against computing the run's plot data.

    .venv/bin/python benchmarks/bench_reports.py [--sequences 200000] [--outputs 3 30] [--reps 3]

For each ``--outputs`` count a run of ``--sequences`` sequences with that many
float outputs is made once with ``ancho run`` into a scratch embedded store.
Then, in this process, each repetition times:

- baseline: ``plotdata.run_plots`` (reads every column, computes histograms and running means),
  the work any picture of the run needs, shared with the web site;
- ``write_pdf``: the whole PDF (the same plot data, Matplotlib figures, ReportLab layout);
- the notebook: ``build_notebook`` + nbformat serialisation, with the results embedded as CSV
  when the run is small enough, else beside it as Parquet (``write_notebook``).

Reported as medians (and minima), ratios to the baseline, and the drawing cost per output.

Then a study of ``--study-points`` points (Latin hypercube over two
parameters, ``--study-sequences`` sequences each, one output and one target)
is made with ``ancho study``, and each repetition times, against the PDF of
one of its points' runs (baseline): gathering the study (summary, points
table), and its whole PDF (points table over pages, pictures).
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

MODEL = '''
import ancho


class Many(ancho.Model):
    """``width`` normal outputs per sequence, for almost no work."""

    width: int = 3

    def sequence(self, rng):
        return {f"x{i:02d}": float(v) for i, v in enumerate(rng.normal(size=self.width))}
'''


STUDY_MODEL = '''
import ancho


class Plane(ancho.Model):
    """A noisy plane over two parameters: a study's cheapest points."""

    a: float = 0.0
    b: float = 0.0

    def sequence(self, rng):
        return {"y": self.a + 2 * self.b + rng.normal()}
'''


def ancho_json(home: Path, args: list[str]) -> dict:
    """``ancho ARGS --json`` in the scratch home: its summary object (the benchmark stops if it fails)."""
    done = subprocess.run(
        [*C.ancho_cli(), *args, "--json"], env=C.child_env(home), capture_output=True, text=True, timeout=7200
    )
    if done.returncode != 0:
        sys.exit(f"ancho {args[0]} failed: {done.stderr}")
    return json.loads(done.stdout)


def measure_study(home: Path, points: int, sequences: int, reps: int) -> dict:
    (home / "plane.py").write_text(STUDY_MODEL)
    made = time.perf_counter()
    summary = ancho_json(
        home,
        ["study", str(home / "plane.py"), "--lhs", str(points), "--range", "a=0:1", "--range", "b=0:1"]
        + ["-n", str(sequences), "--seed", "2", "--target", "y>=1"],
    )
    made = time.perf_counter() - made
    study_id, run_id = summary["study"], summary["points"][0]["run"]

    from ancho.reports import write_pdf
    from ancho.reports.study_facts import gather_study
    from ancho.reports.study_pdf import render_study
    from ancho.stores.embedded import EmbeddedStore

    store = EmbeddedStore(home)
    sizes = {}

    def run_pdf():
        write_pdf(store, run_id, io.BytesIO())

    def study_pdf():
        buf = io.BytesIO()
        render_study(gather_study(store, study_id), buf)
        sizes["pdf"] = buf.tell()

    run_pdf()
    study_pdf()
    times: dict[str, list[float]] = {"a point's run PDF (baseline)": [], "gather the study": [], "study PDF": []}
    for _ in range(reps):
        for label, fn in (
            ("a point's run PDF (baseline)", run_pdf),
            ("gather the study", lambda: gather_study(store, study_id)),
            ("study PDF", study_pdf),
        ):
            t = time.perf_counter()
            fn()
            times[label].append(time.perf_counter() - t)
    store.close()
    return {"points": points, "sequences": sequences, "made_s": made, "times": times, "sizes": sizes}


def measure(home: Path, sequences: int, width: int, reps: int) -> dict:
    run_id = ancho_json(
        home, ["run", str(home / "many.py"), "--sequences", str(sequences), "--seed", "1", "--param", f"width={width}"]
    )["run"]

    from ancho.plotdata import run_plots
    from ancho.reports import write_notebook, write_pdf
    from ancho.stores.embedded import EmbeddedStore

    store = EmbeddedStore(home)
    out = home / f"nb-{width}"
    out.mkdir()
    sizes = {}

    def pdf():
        buf = io.BytesIO()
        write_pdf(store, run_id, buf)
        sizes["pdf"] = buf.tell()

    def notebook():
        files = write_notebook(store, run_id, out / "run.ipynb")
        sizes["notebook"] = sum(f.stat().st_size for f in files)
        sizes["notebook data"] = "embedded" if len(files) == 1 else "parquet beside"

    pdf()  # imports (Matplotlib, ReportLab, fonts) once, outside the timings
    notebook()
    times: dict[str, list[float]] = {"plot data (baseline)": [], "PDF": [], "notebook": []}
    for _ in range(reps):
        for label, fn in (
            ("plot data (baseline)", lambda: run_plots(store, run_id)),
            ("PDF", pdf),
            ("notebook", notebook),
        ):
            t = time.perf_counter()
            fn()
            times[label].append(time.perf_counter() - t)
    store.close()
    return {"width": width, "times": times, "sizes": sizes}


def main() -> None:
    p = C.base_parser(__doc__.splitlines()[0])
    p.add_argument("--sequences", type=int, default=200_000)
    p.add_argument("--outputs", type=int, nargs="+", default=[3, 30])
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--study-points", type=int, default=2000, help="points of the study (0: no study)")
    p.add_argument("--study-sequences", type=int, default=20)
    args = p.parse_args()
    C.header(
        "reports: PDF and notebook", f"{args.sequences:,} sequences; outputs {args.outputs}; {args.reps} repetitions"
    )
    home = C.scratch_home("reports")
    results = []
    try:
        (home / "many.py").write_text(MODEL)
        for width in args.outputs:
            r = measure(home, args.sequences, width, args.reps)
            results.append(r)
            base, base_min = C.med(r["times"]["plot data (baseline)"]), min(r["times"]["plot data (baseline)"])
            print(
                f"-- {width} outputs: PDF {r['sizes']['pdf'] / 1024:.0f} KiB, notebook {r['sizes']['notebook'] / 1024:.0f} KiB "
                f"({r['sizes']['notebook data']})"
            )
            rows = [
                [label, C.med(xs) * 1e3, min(xs) * 1e3, C.med(xs) / base, min(xs) / base_min]
                for label, xs in r["times"].items()
            ]
            print(C.table(rows, ["step", "median ms", "min ms", "× baseline", "(minima)"]))
            drawing = (min(r["times"]["PDF"]) - base_min) / width
            print(f"PDF beyond the plot data: {drawing * 1e3:.0f} ms per output (minima)\n")
        study = None
        if args.study_points:
            study = measure_study(home, args.study_points, args.study_sequences, args.reps)
            print(
                f"-- a study of {study['points']:,} points × {study['sequences']} sequences (made in "
                f"{study['made_s']:.0f} s): PDF {study['sizes']['pdf'] / 1024:.0f} KiB"
            )
            base, base_min = (
                C.med(study["times"]["a point's run PDF (baseline)"]),
                min(study["times"]["a point's run PDF (baseline)"]),
            )
            rows = [
                [label, C.med(xs) * 1e3, min(xs) * 1e3, C.med(xs) / base, min(xs) / base_min]
                for label, xs in study["times"].items()
            ]
            print(C.table(rows, ["step", "median ms", "min ms", "× baseline", "(minima)"]))
        print(C.load_note())
        C.write_json(
            args.json,
            {
                "sequences": args.sequences,
                "runs": [{**r, "times": {k: C.stat(v) for k, v in r["times"].items()}} for r in results],
                "study": study and {**study, "times": {k: C.stat(v) for k, v in study["times"].items()}},
            },
        )
    finally:
        C.cleanup(home)


if __name__ == "__main__":
    main()
