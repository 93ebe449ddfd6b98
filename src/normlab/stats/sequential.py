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
    """The planned looks of one study (seed counts ``n``) and their boundaries at any overall one-sided level."""

    def __init__(self, n: list[int]):
        self.n = [int(x) for x in n]
        self.K = len(self.n)
        self.fractions = tuple(x / self.n[-1] for x in self.n)
        self.table = boundary_table(self.fractions) if self.K > 1 else None  # (K, len(U_GRID)) nominal levels

    def nominal(self, k: int, u):
        """b_k(u): the one-sided nominal level at look ``k`` (1-based) of a test run at overall level ``u``."""
        if self.K == 1:
            return u
        u = np.asarray(u, dtype=float)
        fr = self.fractions[: k]
        out = np.vectorize(lambda x: float(nominal_levels(fr, float(x))[-1]) if 0 < x < 1 else
                           (0.0 if x <= 0 else 1.0))(u)
        return float(out) if out.ndim == 0 else out

    def q(self, k: int, p):
        """The sequential p-value of a test whose p-value at look ``k`` is ``p``: the smallest overall level u
        with p <= b_k(u) (monotone cubic interpolation in log-log in a table of 145 levels from 1e-9 to 0.5; above b_k(0.5),
        1). NaN stays NaN; p = 0 gives 0."""
        p = np.asarray(p, dtype=float)
        if self.K == 1:
            return p if p.ndim else float(p)
        b = self.table[k - 1]
        inv = inverse_table(self.fractions, k)
        with np.errstate(divide="ignore", invalid="ignore"):
            lp = np.log(np.clip(p, b[0], b[-1]))
            lq = inv(lp)
        q = np.where(p > b[-1], 1.0, np.where(p < b[0], U_GRID[0] * p / b[0], np.exp(lq)))
        q = np.where(p <= 0, 0.0, q)
        q = np.where(np.isnan(p), np.nan, q)
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
