"""Statistics for claims: bootstrap intervals and verdicts. numpy only (fast import)."""

from __future__ import annotations

import numpy as np

CLAIM_COLUMNS = ["claim_id", "claim", "source", "metric", "value", "ci_low", "ci_high", "threshold", "verdict", "n_seeds"]


def bootstrap_mean_diff(groups_a, groups_b=None, *, n_boot=2000, ci=0.95, seed=0):
    """Mean over strata of (mean(a) - mean(b)), with a percentile bootstrap interval.

    ``groups_a``/``groups_b``: lists of 1-D arrays, one per stratum (e.g. one per cell of a grid);
    seeds are resampled with replacement within each stratum. With ``groups_b`` None the
    statistic is the mean over strata of mean(a). Returns (value, low, high).
    """
    rng = np.random.default_rng(seed)
    groups_b = groups_b if groups_b is not None else [None] * len(groups_a)
    point, boots = [], []
    for a, b in zip(groups_a, groups_b):
        a = np.asarray(a, dtype=float)
        ia = rng.integers(0, len(a), size=(n_boot, len(a)))
        stat, bs = a.mean(), a[ia].mean(axis=1)
        if b is not None:
            b = np.asarray(b, dtype=float)
            ib = rng.integers(0, len(b), size=(n_boot, len(b)))
            stat, bs = stat - b.mean(), bs - b[ib].mean(axis=1)
        point.append(stat)
        boots.append(bs)
    boots = np.mean(boots, axis=0)
    alpha = (1 - ci) / 2
    return float(np.mean(point)), float(np.quantile(boots, alpha)), float(np.quantile(boots, 1 - alpha))


def verdict_above(low: float, high: float, threshold: float) -> str:
    """'holds' if the whole interval is above the threshold, 'fails' if wholly below, else inconclusive."""
    if not np.isfinite([low, high]).all():
        return "inconclusive"
    if low > threshold:
        return "holds"
    if high < threshold:
        return "fails"
    return "inconclusive"


def verdict_below(low: float, high: float, threshold: float) -> str:
    return {"holds": "fails", "fails": "holds"}.get(verdict_above(low, high, threshold), "inconclusive")


def verdict_within(low: float, high: float, lo_b: float, hi_b: float) -> str:
    """'holds' if [low, high] lies inside [lo_b, hi_b], 'fails' if it misses it entirely, else inconclusive."""
    if not np.isfinite([low, high]).all():
        return "inconclusive"
    if lo_b <= low and high <= hi_b:
        return "holds"
    if high < lo_b or low > hi_b:
        return "fails"
    return "inconclusive"


def claim(claim_id, claim, source, metric, value, ci_low, ci_high, threshold, verdict, n_seeds) -> dict:
    return dict(zip(CLAIM_COLUMNS, [claim_id, claim, source, metric, value, ci_low, ci_high, threshold, verdict, n_seeds]))
