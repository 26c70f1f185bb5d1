"""Statistics shared by the benchmark scripts: rank correlations with bootstrap intervals, what a keep rule
keeps (recall, regret, best rank), and the interquartile mean used for search curves.

Pure NumPy/SciPy on plain arrays, so tests can check them on hand-made numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Interval:
    """A point estimate and its bootstrap 95% percentile interval."""

    value: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.value:+.2f} [{self.low:+.2f}, {self.high:+.2f}]"


def paired_difference(after: Sequence[float], before: Sequence[float], level: float = 0.95) -> Interval:
    """Mean of the per-seed differences ``after - before`` and its Student-t interval.  Both runs of a seed share
    the source encoder and the target clips, so their difference is what the change alone did; the interval is
    NaN-wide with one seed."""
    diff = np.asarray(after, dtype=float) - np.asarray(before, dtype=float)
    if diff.ndim != 1 or len(diff) == 0 or len(after) != len(before):
        raise ValueError(f"need two equally long, non-empty lists, got {len(after)} and {len(before)} values")
    mean = float(diff.mean())
    if len(diff) < 2:
        return Interval(mean, math.nan, math.nan)
    half = float(stats.t.ppf(0.5 + level / 2, len(diff) - 1) * diff.std(ddof=1) / math.sqrt(len(diff)))
    return Interval(mean, mean - half, mean + half)


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho; 0 when either side is constant (the correlation is undefined, the ranking uninformative)."""
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return 0.0
    return float(stats.spearmanr(x, y).statistic)


def kendall(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b (handles the ties a set-size score has); 0 when either side is constant."""
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return 0.0
    return float(stats.kendalltau(x, y).statistic)


def bootstrap_correlation(
    score: Sequence[float],
    runs: Sequence[Sequence[float]],
    correlation: Callable[[Sequence[float], Sequence[float]], float],
    *,
    resamples: int = 2000,
    seed: int = 0,
) -> Interval:
    """Correlation of ``score`` with the mean of ``runs`` (one row of per-seed values per item), with a
    two-level bootstrap: items are resampled with replacement and, inside each item, its seeds too.

    Resampling seeds as well as items makes the interval include the seed noise of the trained values,
    which a plain item bootstrap would treat as exact.
    """
    score = np.asarray(score, dtype=float)
    runs_arr = [np.asarray(r, dtype=float) for r in runs]
    point = correlation(score, np.array([r.mean() for r in runs_arr]))
    rng = np.random.default_rng(seed)
    n = len(score)
    draws = np.empty(resamples)
    for b in range(resamples):
        idx = rng.integers(n, size=n)
        means = np.array([runs_arr[i][rng.integers(len(runs_arr[i]), size=len(runs_arr[i]))].mean() for i in idx])
        draws[b] = correlation(score[idx], means)
    low, high = np.percentile(draws, [2.5, 97.5])
    return Interval(point, float(low), float(high))


def keep_count(n: int, fraction: float) -> int:
    """How many of ``n`` items a keep fraction keeps: ``ceil(fraction * n)``, at least one (as the pre-filter)."""
    return max(1, math.ceil(fraction * n))


@dataclass(frozen=True)
class KeepOutcome:
    """What keeping a subset of the items means for a search over them (errors: lower is better).

    ``top1``: the best item is kept (0 or 1).  ``top5``: share of the 5 best items kept.  ``best_rank``: true
    rank (1 = best) of the best kept item.  ``regret``: its error minus the best error, and ``regret_pct`` in %
    of the best.  ``saved``: share of the exhaustive training cost not spent (rejected items' costs).
    """

    top1: float
    top5: float
    best_rank: float
    regret: float
    regret_pct: float
    saved: float


def keep_outcome(kept: Sequence[int], error: Sequence[float], cost: Sequence[float]) -> KeepOutcome:
    """The outcome of keeping the items at indices ``kept``; ``error`` and ``cost`` are per item."""
    error = np.asarray(error, dtype=float)
    cost = np.asarray(cost, dtype=float)
    order = np.argsort(error, kind="stable")
    rank = np.empty(len(error), dtype=int)
    rank[order] = np.arange(1, len(error) + 1)
    kept_set = set(int(i) for i in kept)
    top5 = set(order[:5].tolist())
    best_kept = min(kept_set, key=lambda i: error[i])
    regret = float(error[best_kept] - error[order[0]])
    return KeepOutcome(
        top1=float(int(order[0]) in kept_set),
        top5=len(top5 & kept_set) / len(top5),
        best_rank=float(rank[best_kept]),
        regret=regret,
        regret_pct=100.0 * regret / float(error[order[0]]),
        saved=1.0 - float(cost[list(kept_set)].sum() / cost.sum()),
    )


def top_by_score(score: Sequence[float], n_keep: int, rng: np.random.Generator | None = None) -> list[int]:
    """Indices of the ``n_keep`` highest scores; ties are broken at random when ``rng`` is given, else by index."""
    score = np.asarray(score, dtype=float)
    tiebreak = rng.random(len(score)) if rng is not None else -np.arange(len(score), dtype=float)
    order = np.lexsort((-tiebreak, -score))
    return order[:n_keep].tolist()


def mean_outcome(outcomes: Sequence[KeepOutcome]) -> KeepOutcome:
    """Field-wise mean: the expected outcome of a randomised keep rule (random order, random tie-breaks)."""
    names = KeepOutcome.__dataclass_fields__
    return KeepOutcome(**{name: float(np.mean([getattr(o, name) for o in outcomes])) for name in names})


def iqm(values: np.ndarray, axis: int = 0) -> np.ndarray:
    """Interquartile mean along ``axis``: the mean of the middle 50% (rliable's robust aggregate).

    With n values it averages the sorted values from index ``floor(n/4)`` to ``n - floor(n/4)`` (exclusive),
    i.e. scipy's ``trim_mean(0.25)``.
    """
    return stats.trim_mean(values, 0.25, axis=axis)


def bootstrap_iqm(values: np.ndarray, *, resamples: int = 1000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """95% percentile interval of the IQM over the rows (seeds) of ``values`` ``(seeds, points)``, per point."""
    rng = np.random.default_rng(seed)
    n = values.shape[0]
    draws = np.stack([iqm(values[rng.integers(n, size=n)]) for _ in range(resamples)])
    return np.percentile(draws, 2.5, axis=0), np.percentile(draws, 97.5, axis=0)
