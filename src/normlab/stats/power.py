"""Power: what more seeds would buy an undecided claim, from its observed effect and spread (noncentral t)."""

from __future__ import annotations

import math

import numpy as np

from .constants import POWER, SEEDS_CAP
from .intervals import Estimate, from_scale
from .tests import Part


# --------------------------------------------------------------------------- power
def _scaled(est: Estimate, n_new):
    """se and df of the same estimate with ``n_new`` seeds per group (the observed spread kept)."""
    n_new = np.asarray(n_new, dtype=float)
    se = est.se * np.sqrt(est.n / n_new)
    df = est.df * (n_new - 1) / max(est.n - 1, 1)
    return se, df


def _power_one_sided(dist, se, df, a):
    """P(the one-sided t test at level a rejects) when the true value lies ``dist`` beyond its margin."""
    from scipy import stats as st

    return st.nct.sf(st.t.isf(a, df), df, dist / se)


def part_power(part: Part, n_new, a: float, n_main: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(P(holds), P(fails)) of one statistical part at ``n_new`` seeds (array), its true value taken to be
    the observed one: one-sided tests at level ``a`` (holds; TOST's two sides each at a), fails at
    a / n_main (Bonferroni over a claim's parts), a band's fail test at half that."""
    se, df = _scaled(part.est, n_new)
    v = part.est.center
    h, f = part.scaled_margins()
    if part.side == "within":
        ph = np.maximum(0.0, _power_one_sided(v - h[0], se, df, a) + _power_one_sided(h[1] - v, se, df, a) - 1)
        af = a / n_main / 2
        pf = np.maximum(_power_one_sided(v - h[1], se, df, af), _power_one_sided(h[0] - v, se, df, af))
        return ph, pf
    sign = 1 if part.side == "above" else -1
    return (_power_one_sided(sign * (v - h), se, df, a),
            _power_one_sided(sign * (f - v), se, df, a / n_main))


def _single_decide(part: Part, n_new: np.ndarray, a: float, k: int = 400) -> np.ndarray:
    """P(one part alone is decided, holds or fails) at ``n_new`` seeds, exactly for normal data: conditional
    on the observed spread (df * (s/sigma)^2 ~ chi^2_df, ``k`` quantile midpoints) the estimate is normal,
    and "holds" and "fails" are intervals of it."""
    from scipy import stats as st

    se, df = _scaled(part.est, n_new)  # (N,)
    q = np.sqrt(st.chi2.ppf((np.arange(k)[:, None] + 0.5) / k, df) / df)  # (k, N): s / sigma
    v = part.est.center
    h, f = part.scaled_margins()
    w = st.t.isf(a, df) * se * q  # half-width of the one-sided bound at level a
    if part.side == "within":
        w2 = st.t.isf(a / 2, df) * se * q
        cdf = lambda x: st.norm.cdf((x - v) / se)  # noqa: E731
        p = np.maximum(0.0, cdf(h[1] - w) - cdf(h[0] + w)) + (1 - cdf(h[1] + w2)) + cdf(h[0] - w2)
        return p.mean(0)
    sign = 1.0 if part.side == "above" else -1.0
    vv, hh, ff = sign * v, sign * h, sign * f  # as if "above"
    cdf = lambda x: st.norm.cdf((x - vv) / se)  # noqa: E731
    p_h, p_f = 1 - cdf(hh + w), cdf(ff - w)
    both = np.maximum(0.0, cdf(ff - w) - cdf(hh + w))
    return (p_h + p_f - both).mean(0)


def decide_power(parts: list[Part], n_new, a: float) -> np.ndarray:
    """P(the claim is decided, holds or fails) at ``n_new`` seeds at one-sided level ``a``, with the observed
    effects and spreads as the truth: exact (normal data) for a claim of one statistical part, else a lower
    bound (Bonferroni over the parts)."""
    n_new = np.atleast_1d(np.asarray(n_new, dtype=float))
    stat = [p for p in parts if not p.exact]
    if len(parts) == 1 and len(stat) == 1:
        return _single_decide(stat[0], n_new, a)
    stat_main = [p for p in stat if not p.gate]
    miss_h = np.zeros_like(n_new)
    p_f = np.zeros_like(n_new)
    for p in parts:
        if p.exact:
            miss_h += 0.0 if p.holds_exactly() else 1.0
            if not p.gate and p.fails_exactly():
                p_f = np.ones_like(n_new)
            continue
        ph, pf = part_power(p, n_new, a, max(len(stat_main), 1))
        miss_h += 1 - ph
        if not p.gate:
            p_f = np.maximum(p_f, pf)
    for g in (p for p in parts if p.gate):
        gh = (np.ones_like(n_new) if g.holds_exactly() else np.zeros_like(n_new)) if g.exact else \
            part_power(g, n_new, a)[0]
        p_f = np.maximum(0.0, p_f + gh - 1)
    return np.maximum(np.maximum(0.0, 1 - miss_h), p_f)


def detectable(part: Part, a: float, power: float = POWER) -> float:
    """The effect the seeds run detect with ``power`` at one-sided level ``a``, on the part's own scale: for
    a directional part the distance beyond its threshold (a factor for log estimates); for a band the
    half-width of the smallest band TOST would show at a true difference of 0 (each one-sided test with
    power (1 + power) / 2, so that both pass with at least ``power``)."""
    from scipy import stats as st
    from scipy.optimize import brentq

    e = part.est
    if e.exact or not np.isfinite(e.se):
        return math.nan
    target = (1 + power) / 2 if part.side == "within" else power
    crit = st.t.isf(a, e.df)
    ncp = brentq(lambda x: st.nct.sf(crit, e.df, x) - target, 0.0, 1e3)
    d = ncp * e.se
    return float(math.exp(d)) if e.log else float(d)


def undecided_part(parts: list[Part], a: float) -> Part:
    """The part an undecided claim waits on: its first statistical non-gate part that neither holds nor fails at
    level ``a`` (else its first statistical part)."""
    stat = [p for p in parts if not p.exact]
    k = max(len([p for p in stat if not p.gate]), 1)
    for p in stat:
        if p.gate:
            continue
        ph, pf = p.pvalues()
        if not (ph < a or pf * k < a):
            return p
    return next((p for p in stat if not p.gate), stat[0])


def power_figures(parts: list[Part], a: float, power: float = POWER, cap: int = SEEDS_CAP) -> dict:
    """For an undecided claim: ``detectable`` (see ``detectable``, of the part it waits on, ``undecided_part``)
    and ``seeds_needed``, the fewest seeds at which, with the observed effects and spreads as the truth,
    the claim is decided with probability >= ``power`` at level ``a`` (``inf``: not within ``cap`` seeds,
    i.e. more seeds would not help, the estimate sits on a margin). NaN without a statistical part."""
    stat = [p for p in parts if not p.exact]
    if not stat or any(not (np.isfinite(p.est.center) and np.isfinite(p.est.se)) for p in stat):
        return {"detectable": math.nan, "seeds_needed": math.nan}
    main = undecided_part(parts, a)
    ns = np.arange(2, cap + 1)
    ok = decide_power(parts, ns, a) >= power
    out = {"detectable": detectable(main, a, power), "seeds_needed": float(ns[ok.argmax()]) if ok.any() else math.inf}
    if main.side == "within" and out["seeds_needed"] == math.inf:  # what a true difference at the band's centre needs
        lo, hi = main.scaled_margins()[0]
        mid = Part(main.est._replace(value=from_scale((lo + hi) / 2, main.est.log)), "within", main.holds)
        ok0 = decide_power([mid], ns, a) >= power
        out["seeds_if_centered"] = float(ns[ok0.argmax()]) if ok0.any() else math.inf
    return out
