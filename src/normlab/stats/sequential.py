"""Group-sequential looks: planned looks at growing seed counts, each test's level spent over the looks.

A study with ``max_seeds`` above ``seeds`` has K planned looks at n_1 = ``seeds``, n_1 + ``seed_block``, ...,
n_K = ``max_seeds`` seeds (``planned_looks``). Each one-sided test (a claim's holds test, its fails test, each
side of TOST) that a family's rule runs at overall level u is run at look k at the nominal level b_k(u): the
boundaries of a group-sequential test whose type I error u is spent over the information fractions
t_k = n_k / n_K by the O'Brien-Fleming-type Lan-DeMets function (gsDesign's ``sfLDOF``)

    alpha(t; u) = 2 (1 - Phi(Phi^-1(1 - u/2) / sqrt(t))),

which spends almost nothing early (3 equal looks at u = 0.05: nominal levels 0.0007, 0.016, 0.045), so the
last look's level is close to the fixed design's. The boundaries c_k (z scale) solve
P(Z_1 < c_1, ..., Z_{k-1} < c_{k-1}, Z_k >= c_k) = alpha(t_k) - alpha(t_{k-1}) for the canonical joint
distribution (Z_k = S_k / sqrt(t_k), S a Brownian motion in t), computed by recursive numerical integration
(Armitage, McPherson & Rowe 1969) on a fixed grid: deterministic, no Monte Carlo. Student t at small df:
the spent levels are converted to t quantiles (a test at look k rejects when its t-test p-value is at most
b_k(u)); ``tests/test_sequential.py`` checks the error over all looks by simulation with t statistics.

Several claims: each test's **sequential p-value** q = min over the looks it was evaluated at of
b_k^-1(p_k), the smallest overall level u at which its group-sequential test would have rejected by then.
Under its null, P(q <= u) <= u whatever the stopping (a look skipped or a claim stopped only raises q), so q is
a valid p-value and the family's step-down (Holm with Shaffer's constraints, ``stepdown``) runs on the q's:
the family-wise error over all looks and claims stays at most alpha (Holm's procedure on valid p-values, any
dependence; a rejection frees its share of alpha for the others, as in Maurer & Bretz 2013's graphical
recycling). The fixed design (one look) has b_1(u) = u and q = p: exactly the non-sequential rule.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

U_GRID = np.geomspace(1e-9, 0.5, 145)  # overall levels at which the boundaries are tabulated (q: monotone cubic in log-log)
GRID = 501  # points of the integration grid per look


def planned_looks(seeds: int, block: int, max_seeds: int | None) -> list[int]:
    """Seed counts of the planned looks: ``seeds``, ``seeds + block``, ..., ``max_seeds`` (the last step may be
    shorter); one look (the fixed design) when ``max_seeds`` is absent or not above ``seeds``."""
    if not max_seeds or max_seeds <= seeds:
        return [seeds]
    out = list(range(seeds, max_seeds, max(block, 1)))
    return out + [max_seeds]


def spend_obf(t, u: float):
    """O'Brien-Fleming-type Lan-DeMets spending at information fraction ``t`` for one-sided level ``u``."""
    from scipy.stats import norm

    t = np.asarray(t, dtype=float)
    return 2 * norm.sf(norm.isf(u / 2) / np.sqrt(t))


def z_bounds(fractions, spent) -> np.ndarray:
    """The one-sided upper boundaries c_1..c_K (z scale) at information ``fractions`` t_1 < ... < t_K whose
    crossing probabilities under the null are the increments of the cumulative ``spent`` levels."""
    from scipy.optimize import brentq
    from scipy.special import ndtr, ndtri

    def pdf(z):
        return np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)

    t = np.asarray(fractions, dtype=float)
    spent = np.asarray(spent, dtype=float)
    inc = np.diff(np.concatenate([[0.0], spent]))
    c = np.empty(len(t))
    c[0] = -ndtri(inc[0]) if inc[0] > 0 else math.inf
    # density of S_1 = Z_1 sqrt(t_1) on the continuation region (S_1 < c_1 sqrt(t_1))
    sd = math.sqrt(t[0])
    x = np.linspace(-9 * sd, min(c[0], 9) * sd, GRID)
    w = np.full(GRID, x[1] - x[0])
    w[[0, -1]] /= 2
    f = pdf(x / sd) / sd
    for k in range(1, len(t)):
        d = math.sqrt(t[k] - t[k - 1])
        mass = w * f
        sk = math.sqrt(t[k])

        def cross(ck):
            return float(mass @ ndtr((x - ck * sk) / d)) - inc[k]

        if inc[k] <= 0:
            c[k] = math.inf
        else:
            c[k] = brentq(cross, -10.0, 40.0, xtol=1e-10)
        y = np.linspace(-9 * sk, min(c[k], 9) * sk, GRID)
        wy = np.full(GRID, y[1] - y[0])
        wy[[0, -1]] /= 2
        f = pdf((y[:, None] - x[None, :]) / d) @ mass / d
        x, w = y, wy
    return c


class Looks:
    """The planned looks of one study (seed counts ``n``) and their boundaries at any overall one-sided level.

    Student t at small df: the normal theory's nominal levels b_k, applied to t-test p-values, let through a
    little more than u when df is small (simulated: 5.2-5.8% instead of 5% at 2-5 df). The look's sequential
    p-value is therefore calibrated: q = F(q_z), where q_z is the normal theory's (the smallest u with
    p <= b_k(u)) and F the distribution of min_k q_z under the null for one-sample t statistics with n_k - 1 df
    (``t_calibration``: a fixed-seed simulation of 400,000 paths, its upper 97.5% bound, never below u), so that
    P(q <= u) <= u. Welch or paired estimates with more df are closer to the normal and are covered by it."""

    def __init__(self, n: list[int]):
        self.n = [int(x) for x in n]
        self.K = len(self.n)
        self.fractions = tuple(x / self.n[-1] for x in self.n)
        self.calib = t_calibration(tuple(self.n)) if self.K > 1 else None  # F on U_GRID

    def nominal(self, k: int, u):
        """The one-sided nominal level at look ``k`` (1-based) of a test run at overall level ``u``: b_k(F^-1(u))
        (a t-test p-value at look k at most this is a rejection at level u)."""
        if self.K == 1:
            return u
        u = np.asarray(u, dtype=float)
        fr = self.fractions[: k]
        with np.errstate(divide="ignore"):
            uz = np.exp(np.interp(np.log(np.maximum(u, 1e-300)), np.log(self.calib), np.log(U_GRID)))
        out = np.vectorize(lambda x, z: float(nominal_levels(fr, float(z))[-1]) if 0 < x < 1 else
                           (0.0 if x <= 0 else 1.0))(u, uz)
        return float(out) if out.ndim == 0 else out

    def q_normal(self, k: int, p):
        """The normal theory's sequential p-value at look ``k`` (``q_normal``)."""
        return q_normal(self.fractions, k, p)

    def q(self, k: int, p):
        """The sequential p-value of a test whose p-value at look ``k`` is ``p`` (calibrated for Student t, class
        docstring). NaN stays NaN; p = 0 gives 0. The fixed design: q = p."""
        p = np.asarray(p, dtype=float)
        if self.K == 1:
            return p if p.ndim else float(p)
        qz = self.q_normal(k, p)
        with np.errstate(divide="ignore", invalid="ignore"):
            q = np.exp(np.interp(np.log(np.maximum(qz, 1e-300)), np.log(U_GRID), np.log(self.calib)))
        q = np.where(qz >= U_GRID[-1], np.maximum(1.0, qz), q)
        q = np.where(qz <= 0, 0.0, q)
        q = np.minimum(np.where(np.isnan(p), np.nan, q), 1.0)
        return float(q) if q.ndim == 0 else q


@lru_cache(maxsize=256)
def nominal_levels(fractions: tuple, u: float) -> np.ndarray:
    """b_1(u)..b_K(u) for the looks at ``fractions`` (O'Brien-Fleming-type spending of ``u``)."""
    from scipy.stats import norm

    return norm.sf(z_bounds(fractions, spend_obf(np.asarray(fractions), u)))


@lru_cache(maxsize=32)
def boundary_table(fractions: tuple) -> np.ndarray:
    """Nominal levels b_k(u) of every look (rows) at every level of ``U_GRID`` (columns)."""
    return np.stack([nominal_levels(fractions, float(u)) for u in U_GRID], axis=1)


@lru_cache(maxsize=64)
def inverse_table(fractions: tuple, k: int):
    """log b_k(u) -> log u at look ``k``: a monotone cubic (PCHIP) through the tabulated levels."""
    from scipy.interpolate import PchipInterpolator

    return PchipInterpolator(np.log(boundary_table(fractions)[k - 1]), np.log(U_GRID))


def q_normal(fractions: tuple, k: int, p):
    """The normal theory's sequential p-value at look ``k`` of the looks at ``fractions``: the smallest u with
    p <= b_k(u) (monotone cubic interpolation in log-log in a table of 145 levels from 1e-9 to 0.5; above
    b_k(0.5), 1)."""
    p = np.asarray(p, dtype=float)
    b = boundary_table(fractions)[k - 1]
    inv = inverse_table(fractions, k)
    with np.errstate(divide="ignore", invalid="ignore"):
        lq = inv(np.log(np.clip(p, b[0], b[-1])))
    q = np.where(p > b[-1], 1.0, np.where(p < b[0], U_GRID[0] * p / b[0], np.exp(lq)))
    q = np.where(p <= 0, 0.0, q)
    return np.where(np.isnan(p), np.nan, q)


@lru_cache(maxsize=32)
def t_calibration(n: tuple, sims: int = 400_000, seed: int = 20261207) -> np.ndarray:
    """F(u) on ``U_GRID``: an upper 97.5% bound on P(min_k q_z,k <= u) under the null for one-sample Student t
    statistics at the looks' seed counts ``n`` (n_k - 1 df), never below u; from ``sims`` paths of a fixed-seed
    generator (deterministic)."""
    from scipy.stats import t as student

    fractions = tuple(x / n[-1] for x in n)
    rng = np.random.default_rng(seed)
    total = np.zeros(sims)
    sq = np.zeros(sims)
    qmin = np.full(sims, np.inf)
    done = 0
    for k, m in enumerate(n, start=1):
        x = rng.standard_normal((sims, m - done))
        total += x.sum(1)
        sq += (x * x).sum(1)
        done = m
        mean = total / m
        sd = np.sqrt(np.maximum(sq - m * mean * mean, 0) / (m - 1))
        p = student.sf(mean / (sd / np.sqrt(m)), m - 1)
        qmin = np.minimum(qmin, q_normal(fractions, k, p))
    count = np.searchsorted(np.sort(qmin), U_GRID, side="right")
    upper = (count + 2 * np.sqrt(count) + 1) / sims  # ~ the upper 97.5% bound of a binomial proportion
    f = np.maximum.accumulate(np.maximum(upper, U_GRID))
    return f * (1 + 1e-9 * np.arange(len(f)))  # strictly increasing (invertible)
