"""How much do paired comparisons on common random numbers save? Shared streams vs independent streams.

For two scenarios of an example whose difference is small (the realistic
case), three runs of ``R × n`` sequences: A and B with one seed (shared
streams) and B' with another (independent streams, the baseline, measured in
the same run). Sequence *i*'s streams depend only on (seed, i), so the runs'
blocks of ``n`` sequences are ``R`` independent repetitions of a comparison
of ``n`` sequences per scenario: the paired one (A block vs B block, the
comparison ``ancho.compare`` makes) and the independent one (A block vs B'
block, Welch). The figures:

* the variance of the estimated difference over the ``R`` repetitions, each
  way (for the independent one also what it should be: (var a + var b) / n
  from the sequences themselves), and their ratio independent / paired with its 95% interval (the ratio
  of two sample variances: F with R − 1, R − 1 degrees of freedom);
* the same ratio as the comparison itself reports it from one run
  (``variance_reduction = (var a + var b) / var(b − a)`` over all R × n
  sequences): the two must agree;
* the equivalent saving: for the same precision the paired comparison needs
  1/ratio of the sequences (a saving of 1 − 1/ratio).

Cases: examples/gambler.py, P(win) (the mean of ``won``) at p = 0.49 vs 0.50
(stake 10, goal 20; closed forms 0.4013 and 0.5); examples/sir.py, mean
``final_size`` and ``peak_infected`` at beta = 0.40 vs 0.42 (R0 2 vs 2.1).
Usage: ``python benchmarks/bench_comparison.py [--blocks 100] [--workers 2]
[--json FILE]``.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, base_parser, cleanup, header, load_note, scratch_home, table, write_json  # noqa: E402

SEED, OTHER_SEED = 17, 1017


@dataclass(frozen=True)
class Case:
    """Two scenarios of one example: the parameters they share, the one that differs, the outputs compared."""

    name: str
    model: str
    shared: dict[str, Any]
    param: str
    a: float
    b: float
    outputs: tuple[str, ...]
    per_block: int
    exact: dict[str, float] | None = None  # closed-form b − a per output, where there is one


def gambler_win(p: float, stake: int, goal: int) -> float:
    """P(reach goal before 0) of the gambler's ruin (examples/gambler.py's docstring)."""
    if p == 0.5:
        return stake / goal
    r = (1 - p) / p
    return (1 - r**stake) / (1 - r**goal)


CASES = [
    Case(
        "gambler P(win)",
        str(REPO / "examples" / "gambler.py"),
        {"stake": 10, "goal": 20},
        "p",
        0.49,
        0.50,
        ("won",),
        1000,
        {"won": gambler_win(0.50, 10, 20) - gambler_win(0.49, 10, 20)},
    ),
    Case(
        "SIR final size, peak",
        str(REPO / "examples" / "sir.py"),
        {},
        "beta",
        0.40,
        0.42,
        ("final_size", "peak_infected"),
        100,
    ),
]


@dataclass
class Row:
    case: str
    output: str
    sequences: int
    blocks: int
    difference: float
    exact: float | None
    var_paired: float
    var_independent: float
    var_independent_expected: float
    ratio: float
    ratio_low: float
    ratio_high: float
    reported: float
    saving: float


def measure(case: Case, blocks: int, executor: Any, store: str) -> list[Row]:
    """The three runs of ``case`` and, per output, the variance of the difference over the blocks each way."""
    from scipy.stats import f as fisher

    import ancho
    from ancho.studies.comparison import compare_frames

    total = blocks * case.per_block

    def columns(value: float, seed: int) -> dict[str, np.ndarray]:
        res = ancho.run(
            case.model, {**case.shared, case.param: value}, total, seed=seed, executor=executor, store=store
        )
        frame = res.frame
        return {k: frame[k].to_numpy() for k in ("sequence", *case.outputs)}

    a, b, b_other = columns(case.a, SEED), columns(case.b, SEED), columns(case.b, OTHER_SEED)
    whole = compare_frames("a", "b", SEED, SEED, a, b)["outputs"]
    rows = []
    for name in case.outputs:
        paired, independent = [], []
        for k in range(blocks):
            cut = slice(k * case.per_block, (k + 1) * case.per_block)
            xa, xb, xo = (np.asarray(c[name][cut], dtype=np.float64) for c in (a, b, b_other))
            paired.append(xb.mean() - xa.mean())
            independent.append(xo.mean() - xa.mean())
        vp, vi = float(np.var(paired, ddof=1)), float(np.var(independent, ddof=1))
        # what the independent comparison's variance should be, from the spread of the sequences themselves
        expected = sum(float(np.var(np.asarray(c[name], dtype=np.float64), ddof=1)) for c in (a, b_other))
        ratio = vi / vp
        df = blocks - 1
        rows.append(
            Row(
                case.name,
                name,
                case.per_block,
                blocks,
                float(whole[name]["difference"]),
                (case.exact or {}).get(name),
                vp,
                vi,
                expected / case.per_block,
                ratio,
                ratio / float(fisher.ppf(0.975, df, df)),
                ratio / float(fisher.ppf(0.025, df, df)),
                float(whole[name]["variance_reduction"]),
                1 - 1 / ratio,
            )
        )
    return rows


def main() -> None:
    ap = base_parser(__doc__ or "")
    ap.add_argument("--blocks", type=int, default=100, help="repetitions R (blocks of each run)")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    from ancho.executors import make_executor

    header(
        "Comparisons: variance reduction of paired (shared streams) vs independent comparisons",
        f"{args.blocks} repetitions per case, {args.workers} local workers; seeds {SEED} (A, B) and {OTHER_SEED} (B')",
    )
    home = scratch_home("comparison")
    executor = make_executor("local", args.workers)
    rows: list[Row] = []
    times = {}
    try:
        for case in CASES:
            t0 = time.perf_counter()
            rows += measure(case, args.blocks, executor, str(home))
            times[case.name] = time.perf_counter() - t0
    finally:
        executor.close()
        cleanup(home)
    print(
        table(
            [
                [
                    f"{r.case}: {r.output}",
                    r.sequences,
                    f"{r.difference:+.4g}" + (f" ({r.exact:+.4g})" if r.exact is not None else ""),
                    f"{r.var_independent:.3g} ({r.var_independent_expected:.3g})",
                    f"{r.var_paired:.3g}",
                    f"{r.ratio:.1f} [{r.ratio_low:.1f}, {r.ratio_high:.1f}]",
                    f"{r.reported:.1f}",
                    f"{100 * r.saving:.0f}%",
                ]
                for r in rows
            ],
            [
                "case: output",
                "n per side",
                "b − a (exact)",
                "var indep. (expected)",
                "var paired",
                "ratio [95%]",
                "reported",
                "saving",
            ],
        )
    )
    print()
    for name, seconds in times.items():
        print(f"{name}: 3 runs in {seconds:.1f} s")
    print(load_note())
    write_json(args.json, {"blocks": args.blocks, "rows": [r.__dict__ for r in rows], "seconds": times})


if __name__ == "__main__":
    main()
