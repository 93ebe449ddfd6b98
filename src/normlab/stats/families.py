"""Multiplicity: Holm's step-down with Shaffer's logical constraints over a family of claims, and the strata's
agreement test."""

from __future__ import annotations

import math

import numpy as np

from .tests import Part


def strata_agree(parts: list[Part]) -> float:
    """p-value of Welch's heterogeneity test (equal means, unequal variances; Welch 1951) of the strata's
    estimates (one part per stratum, on the test scale). NaN when fewer than two strata have a finite
    spread with df > 0."""
    from scipy import stats as st

    ok = [p.est for p in parts if np.isfinite(p.est.center) and np.isfinite(p.est.se) and p.est.se > 0
          and np.isfinite(p.est.df) and p.est.df > 0]
    k = len(ok)
    if k < 2:
        return math.nan
    x = np.array([e.center for e in ok])
    w = 1 / np.array([e.se for e in ok]) ** 2
    df = np.array([e.df for e in ok])
    W = w.sum()
    mean = (w * x).sum() / W
    tmp = ((1 - w / W) ** 2 / df).sum()
    f = ((w * (x - mean) ** 2).sum() / (k - 1)) / (1 + 2 * (k - 2) / (k**2 - 1) * tmp)
    return float(st.f.sf(f, k - 1, (k**2 - 1) / (3 * tmp)))


# --------------------------------------------------------------------------- multiplicity
def holm(pvals) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (NaN entries are left NaN and not counted)."""
    p = np.asarray(pvals, dtype=float)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = len(ok)
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    adj = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out[order] = adj
    return out


def stepdown(p_holds, p_fails, c, alpha: float = 0.05) -> dict:
    """The family's multiplicity rule: Holm's step-down over both hypotheses of every claim, with Shaffer's
    logical constraint. Vectorized over leading axes (simulations pass many families at once).

    ``p_holds``, ``p_fails``: (..., m) one-sided p-values of the m claims (NaN: no such test); ``c``: (m,)
    how many of a claim's two nulls can be true at once (1 or 2, ``combine``). Sorted by p, hypothesis j is
    tested at alpha / t_j, t_j = sum over claims of min(c_k, the claim's hypotheses not yet rejected): the
    most hypotheses that can be true given those already rejected are false (Shaffer 1986, S1), so the
    family-wise error is at most alpha; it stops at the first hypothesis not rejected.

    Returns arrays of shape (..., m): ``reject_holds``, ``reject_fails``, ``level_holds``, ``level_fails``
    (the one-sided level each was tested at, alpha / t_j; for a hypothesis after the stop, the level at the
    stop), ``p_adj_holds``, ``p_adj_fails`` (Shaffer-adjusted p-values: rejected iff < alpha)."""
    ph, pf = np.asarray(p_holds, float), np.asarray(p_fails, float)
    c = np.asarray(c, dtype=float)
    m = ph.shape[-1]
    p = np.concatenate([ph, pf], axis=-1)  # (..., 2m)
    owner = np.concatenate([np.arange(m), np.arange(m)])
    valid = np.isfinite(p)
    order = np.argsort(np.where(valid, p, np.inf), axis=-1, kind="stable")
    p_s = np.take_along_axis(p, order, -1)
    v_s = np.take_along_axis(valid, order, -1)
    own = owner[order]  # (..., 2m)
    onehot = (own[..., None] == np.arange(m)) & v_s[..., None]  # (..., 2m, m)
    remaining = np.flip(np.cumsum(np.flip(onehot, -2), -2), -2)  # hypotheses of claim k at positions >= j
    t = np.minimum(remaining, c).sum(-1)  # (..., 2m)
    with np.errstate(invalid="ignore", divide="ignore"):
        adj = np.where(v_s, np.minimum(1.0, t * p_s), np.inf)
        adj = np.maximum.accumulate(adj, axis=-1)
        level = np.where(v_s, alpha / np.maximum(t, 1), np.nan)
    rej = adj < alpha
    # the level at the stop (the first hypothesis not rejected), for every later one
    first_fail = np.argmax(~rej & v_s, axis=-1)
    any_fail = (~rej & v_s).any(-1)
    stop = np.where(any_fail, np.take_along_axis(level, first_fail[..., None], -1)[..., 0], np.nan)
    pos = np.arange(2 * m)
    level = np.where(rej | ~v_s, level, np.where(pos >= first_fail[..., None], stop[..., None], level))
    inv = np.argsort(order, axis=-1)
    back = {k: np.take_along_axis(x, inv, -1) for k, x in (("rej", rej), ("level", level), ("adj", adj))}
    adj_b = np.where(np.isfinite(p), back["adj"], np.nan)
    return {"reject_holds": back["rej"][..., :m], "reject_fails": back["rej"][..., m:],
            "level_holds": back["level"][..., :m], "level_fails": back["level"][..., m:],
            "p_adj_holds": np.minimum(adj_b[..., :m], 1.0), "p_adj_fails": np.minimum(adj_b[..., m:], 1.0),
            "stop": stop}
