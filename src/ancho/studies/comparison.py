"""Comparisons: run B against run A, output by output, in DESIGN.md's comparison shape.

Two runs with the same seed share their random streams sequence by sequence
(common random numbers), so ``b_i - a_i`` cancels most of the noise the two
scenarios have in common. Statistics (the docs repeat them):

* **paired** (same seed, at least two sequence numbers in common): the
  runs are aligned on the sequence numbers both hold — a sequence that
  failed in one run, or that only the longer run has, is left out of both,
  since only equal numbers share their streams. ``mean_a``/``mean_b`` are
  over the aligned sequences; ``ci95`` is Student's t interval of the mean
  per-sequence difference (t with n − 1 degrees of freedom at every n:
  exact for normal differences, the normal interval as n grows);
  ``variance_reduction = (var a + var b) / var(b − a)``: how many times
  fewer sequences the paired comparison needs than independent runs for
  the same precision (``null`` when var(b − a) is 0).
* **unpaired** (different seeds): Welch's interval (Welch–Satterthwaite
  degrees of freedom), ``variance_reduction`` null.
* target probabilities: paired, Newcombe's hybrid score interval for paired
  proportions (Newcombe 1998, Stat Med 17:2635–2650, method 10); unpaired,
  Newcombe's method 10 for independent proportions (Stat Med 17:873–890),
  both built from Wilson intervals.

Bool outputs count as 0/1; NaN values are left out (pairwise when paired).
Extra keys beside the fixed ones: ``p_value`` (paired t, Welch, McNemar or
the two-proportion z test), ``count``, ``sequences_a``, ``sequences_b``.
Outputs only one run has, and trajectory outputs, are not compared (nor read,
when the runs' kinds are known); targets on a trajectory reduce it as
``ancho run`` does (``max(path)>=10``), chunk by chunk when the store can.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import ExpressionError
from ..expressions import _OPS, Target, shape_error
from ..stats import Z95, clean, t975, wilson

#: the spread of paired differences, relative to the values' magnitude, below which it is rounding (see paired_means)
ROUNDING = 1e-9


class LazyColumns(Mapping):
    """A run's columns read one at a time: ``read(name)`` is called when the comparison reaches ``name``.

    Pass one per run to :func:`compare_frames` so that memory holds the two
    ``sequence`` columns and one output's two columns, never the whole run.
    """

    def __init__(
        self,
        sequence: np.ndarray,
        names: Sequence[str],
        read: Callable[[str], np.ndarray],
        kinds: Mapping[str, str] | None = None,
        blocks: Callable[[str], Iterable[np.ndarray]] | None = None,
    ):
        """``kinds``: each output's kind (a run's schema), so trajectories are known without reading them;
        ``blocks``: an output's values chunk by chunk in sequence order, so a trajectory is reduced a chunk at a time."""
        self._sequence = np.asarray(sequence)
        self._names = ["sequence", *[n for n in names if n != "sequence"]]
        self._read = read
        self.kinds = dict(kinds or {})
        self._blocks = blocks

    def trajectory(self, name: str) -> bool | None:
        """Whether output ``name`` is a trajectory, None when the kinds are not known."""
        kind = self.kinds.get(name)
        return None if kind is None else kind.endswith("]")

    def reduced(self, target: Target) -> np.ndarray:
        """``target.values`` of its output: a trajectory reduced a chunk at a time when blocks are given."""
        if self._blocks is None or target.reduce is None:
            return target.values(self[target.output])
        parts = [target.values(np.asarray(block)) for block in self._blocks(target.output)]
        return np.concatenate(parts) if parts else np.empty(0)

    def __getitem__(self, name: str) -> np.ndarray:
        if name == "sequence":
            return self._sequence
        if name not in self._names:
            raise KeyError(name)
        return np.asarray(self._read(name))

    def __contains__(self, name: object) -> bool:
        return name in self._names  # (Mapping's own reads the column to find out: every output, trajectories too)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


def compare_frames(
    a_id: str,
    b_id: str,
    a_seed: int | None,
    b_seed: int | None,
    a: Mapping[str, np.ndarray],
    b: Mapping[str, np.ndarray],
    targets: Iterable[str | Target] = (),
) -> dict:
    """Compare run ``b_id`` with run ``a_id`` (``difference`` is b − a).

    ``a`` and ``b`` map ``"sequence"`` and each output name to a 1-D array
    (a dict of arrays, a DataFrame's columns, or :class:`LazyColumns`).
    """
    parsed = [t if isinstance(t, Target) else Target.parse(t, i) for i, t in enumerate(targets)]
    seq_a, seq_b = np.asarray(a["sequence"]), np.asarray(b["sequence"])
    paired = a_seed is not None and a_seed == b_seed
    if paired:
        _, ia, ib = np.intersect1d(seq_a, seq_b, assume_unique=True, return_indices=True)
        paired = ia.size >= 2
    names = [k for k in a if k != "sequence" and k in b]
    trajectories = {n for n in names if _trajectory(a, n) or _trajectory(b, n)}  # (known without reading them)
    for i, t in enumerate(parsed):
        if t.output not in names:
            raise ExpressionError(
                f"target '{t.expr}' names output '{t.output}', which runs {a_id} and {b_id} do not both have "
                f"(common outputs: {', '.join(names) or '(none)'})",
                index=i,
            )
        if (t.output in trajectories) != (t.reduce is not None) and _trajectory(a, t.output) is not None:
            raise ExpressionError(
                "target " + shape_error(t.expr, t.output, t.reduce, t.output in trajectories), index=i
            )

    def align(xa: np.ndarray, xb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Paired: the aligned sequences where neither is NaN; else each run's non-NaN values."""
        if paired:
            xa, xb = xa[ia], xb[ib]
            keep = ~(np.isnan(xa) | np.isnan(xb))
            return xa[keep], xb[keep]
        return xa[~np.isnan(xa)], xb[~np.isnan(xb)]

    def target_row(t: Target, xa: np.ndarray, xb: np.ndarray) -> dict:
        op = _OPS[t.op]
        ha, hb = op(xa, t.value), op(xb, t.value)
        return {"expr": t.expr, **(paired_proportions(ha, hb) if paired else independent_proportions(ha, hb))}

    outputs: dict[str, dict] = {}
    target_rows: dict[int, dict] = {}
    for name in names:
        if name in trajectories:
            continue  # a trajectory: compared through its own statistics (and its targets, below), not read here
        xa, xb = _numbers(a[name]), _numbers(b[name])
        if xa.ndim != 1 or xb.ndim != 1:
            trajectories.add(name)  # (columns given without their kinds)
            continue
        xa, xb = align(xa, xb)
        outputs[name] = paired_means(xa, xb) if paired else welch(xa, xb)
        for i, t in enumerate(parsed):
            if t.output == name:
                if t.reduce is not None:
                    raise ExpressionError("target " + shape_error(t.expr, t.output, t.reduce, False), index=i)
                target_rows[i] = target_row(t, xa, xb)
    for i, t in enumerate(parsed):
        if t.output in trajectories:
            try:
                xa, xb = _reduced(a, t), _reduced(b, t)
            except ExpressionError as exc:
                raise ExpressionError(f"target {exc}", index=i) from None
            target_rows[i] = target_row(t, *align(_numbers(xa), _numbers(xb)))
    return clean(
        {
            "a": a_id,
            "b": b_id,
            "paired": bool(paired),
            "sequences": int(ia.size) if paired else int(min(seq_a.size, seq_b.size)),
            "sequences_a": int(seq_a.size),
            "sequences_b": int(seq_b.size),
            "outputs": outputs,
            "targets": [target_rows[i] for i in range(len(parsed)) if i in target_rows],
        }
    )


def _trajectory(columns: Mapping[str, np.ndarray], name: str) -> bool | None:
    """Whether ``name`` is a trajectory in ``columns``, known without reading it (None: not known)."""
    return columns.trajectory(name) if isinstance(columns, LazyColumns) else None


def _reduced(columns: Mapping[str, np.ndarray], target: Target) -> np.ndarray:
    """The values ``target`` compares, one a sequence (a trajectory reduced, chunk by chunk where it can be)."""
    return (
        columns.reduced(target)
        if isinstance(columns, LazyColumns)
        else target.values(np.asarray(columns[target.output]))
    )


def _numbers(column: Any) -> np.ndarray:
    x = np.asarray(column)
    if x.dtype.kind in "biu":
        return x.astype(np.float64)
    return x if x.dtype.kind == "f" else x.astype(np.float64)


def _t_p_value(t: float, df: float) -> float:
    from scipy.special import stdtr

    return float(2 * stdtr(df, -abs(t)))


def paired_means(xa: np.ndarray, xb: np.ndarray) -> dict:
    """Means of paired samples and the t interval of their mean difference (b − a)."""
    n = int(xa.size)
    out: dict[str, Any] = {
        "mean_a": float(xa.mean()) if n else None,
        "mean_b": float(xb.mean()) if n else None,
        "difference": None,
        "ci95": None,
        "variance_reduction": None,
        "p_value": None,
        "count": n,
    }
    if n == 0:
        return out
    d = xb - xa
    diff = float(d.mean())
    out["difference"] = diff
    if n < 2:
        return out
    var_d = float(d.var(ddof=1))
    # differences that vary only by rounding are a constant difference: b = a + 0.3 computed in floats varies by
    # ~eps·|x|, and a 100,000-step walk shifted by a drift, summed step by step in each run, by ~1e-13·|x| (the
    # model's own rounding, accumulated); dividing by that reported a 1e24-fold reduction. So differences whose
    # spread is under ROUNDING of the values' magnitude count as constant (a real reduction that large is 1e18-fold)
    scale = max(float(np.abs(xa).max()), float(np.abs(xb).max()))
    if math.sqrt(var_d) <= ROUNDING * scale:
        var_d = 0.0
    se = math.sqrt(var_d / n)
    half = t975(n - 1) * se
    out["ci95"] = [diff - half, diff + half]
    if var_d > 0:
        out["variance_reduction"] = (float(xa.var(ddof=1)) + float(xb.var(ddof=1))) / var_d
        out["p_value"] = _t_p_value(diff / se, n - 1)
    else:
        out["p_value"] = 1.0 if diff == 0 else 0.0
    return out


def welch(xa: np.ndarray, xb: np.ndarray) -> dict:
    """Means of independent samples and Welch's interval for mean(b) − mean(a)."""
    na, nb = int(xa.size), int(xb.size)
    mean_a = float(xa.mean()) if na else None
    mean_b = float(xb.mean()) if nb else None
    out: dict[str, Any] = {
        "mean_a": mean_a,
        "mean_b": mean_b,
        "difference": None if mean_a is None or mean_b is None else mean_b - mean_a,
        "ci95": None,
        "variance_reduction": None,
        "p_value": None,
        "count": min(na, nb),
    }
    if na < 2 or nb < 2:
        return out
    va, vb = float(xa.var(ddof=1)) / na, float(xb.var(ddof=1)) / nb
    diff = out["difference"]
    if va + vb == 0:
        out["ci95"], out["p_value"] = [diff, diff], 1.0 if diff == 0 else 0.0
        return out
    from scipy.special import stdtrit

    df = (va + vb) ** 2 / (va * va / (na - 1) + vb * vb / (nb - 1))
    se = math.sqrt(va + vb)
    half = float(stdtrit(df, 0.975)) * se
    out["ci95"] = [diff - half, diff + half]
    out["p_value"] = _t_p_value(diff / se, df)
    return out


def _normal_p_value(z: float) -> float:
    return math.erfc(abs(z) / math.sqrt(2))


def _wilson(k: int, n: int, z: float) -> tuple[float, float]:
    ci = wilson(k, n, z)
    assert ci is not None  # n > 0 here
    return ci


def newcombe_paired(e: int, f: int, g: int, h: int, z: float = Z95) -> tuple[float, float] | None:
    """Newcombe's (1998, method 10) interval for p1 − p2 = (f − g)/n from a paired 2×2 table.

    e: both hit, f: only the first, g: only the second, h: neither. Wilson
    intervals of the two marginal proportions are combined with the table's
    phi correlation, adjusted as Newcombe does (see below); checked against
    his published table in the tests.
    """
    n = e + f + g + h
    if n == 0:
        return None
    p1, p2 = (e + f) / n, (e + g) / n
    l1, u1 = _wilson(e + f, n, z)
    l2, u2 = _wilson(e + g, n, z)
    denom = (e + f) * (g + h) * (e + g) * (f + h)
    # Newcombe's phi: the table's correlation with its numerator shrunk by n/2 towards 0 (0 within n/2 of it,
    # and when a margin is empty); the plain phi gives zero width when f = g = 0, which his table does not.
    b = e * h - f * g
    num = b - n / 2 if b > n / 2 else (b if b < 0 else 0.0)
    phi = num / math.sqrt(denom) if denom > 0 else 0.0
    theta = (f - g) / n
    dl1, du1, dl2, du2 = p1 - l1, u1 - p1, p2 - l2, u2 - p2
    delta = math.sqrt(max(0.0, dl1 * dl1 - 2 * phi * dl1 * du2 + du2 * du2))
    eps = math.sqrt(max(0.0, du1 * du1 - 2 * phi * du1 * dl2 + dl2 * dl2))
    return (max(-1.0, theta - delta), min(1.0, theta + eps))


def newcombe_independent(k1: int, n1: int, k2: int, n2: int, z: float = Z95) -> tuple[float, float] | None:
    """Newcombe's (1998, method 10) interval for k1/n1 − k2/n2 from independent samples (Wilson square-and-add)."""
    if n1 <= 0 or n2 <= 0:
        return None
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = _wilson(k1, n1, z)
    l2, u2 = _wilson(k2, n2, z)
    theta = p1 - p2
    return (theta - math.hypot(p1 - l1, u2 - p2), theta + math.hypot(u1 - p1, p2 - l2))


def paired_proportions(ha: np.ndarray, hb: np.ndarray) -> dict:
    """Target hits of aligned sequences: both probabilities, b − a with Newcombe's paired interval, McNemar's p."""
    n = int(ha.size)
    both = int(np.count_nonzero(ha & hb))
    only_b = int(np.count_nonzero(hb & ~ha))
    only_a = int(np.count_nonzero(ha & ~hb))
    neither = n - both - only_a - only_b
    if n == 0:
        return {"probability_a": None, "probability_b": None, "difference": None, "ci95": None, "p_value": None}
    discordant = only_a + only_b
    p = 1.0 if discordant == 0 else _normal_p_value((only_b - only_a) / math.sqrt(discordant))
    return {
        "probability_a": (both + only_a) / n,
        "probability_b": (both + only_b) / n,
        "difference": (only_b - only_a) / n,
        "ci95": _listed(newcombe_paired(both, only_b, only_a, neither)),
        "p_value": p,
    }


def independent_proportions(ha: np.ndarray, hb: np.ndarray) -> dict:
    """Target hits of independent runs: both probabilities, b − a with Newcombe's interval, the pooled z test's p."""
    na, nb = int(ha.size), int(hb.size)
    ka, kb = int(np.count_nonzero(ha)), int(np.count_nonzero(hb))
    if na == 0 or nb == 0:
        return {
            "probability_a": ka / na if na else None,
            "probability_b": kb / nb if nb else None,
            "difference": None,
            "ci95": None,
            "p_value": None,
        }
    pooled = (ka + kb) / (na + nb)
    se = math.sqrt(pooled * (1 - pooled) * (1 / na + 1 / nb))
    diff = kb / nb - ka / na
    p = (1.0 if diff == 0 else 0.0) if se == 0 else _normal_p_value(diff / se)
    return {
        "probability_a": ka / na,
        "probability_b": kb / nb,
        "difference": diff,
        "ci95": _listed(newcombe_independent(kb, nb, ka, na)),
        "p_value": p,
    }


def _listed(ci: tuple[float, float] | None) -> list[float] | None:
    return None if ci is None else list(ci)


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm–Bonferroni adjusted p-values, in the given order (None stays None and does not count).

    The i-th smallest of m p-values becomes max over j ≤ i of (m − j + 1) p_(j),
    capped at 1: reject where the adjusted value is below the level, and the
    chance of any false rejection among all m stays below it.
    """
    present = [(p, i) for i, p in enumerate(p_values) if p is not None]
    m = len(present)
    out: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(present)):
        running = max(running, min(1.0, (m - rank) * float(p)))
        out[i] = running
    return out
