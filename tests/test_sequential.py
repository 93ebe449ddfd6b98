"""Sequential seeds (normlab.stats.sequential): the boundaries, and the family-wise error and power of the
sequential rule over all looks, simulated with Student t statistics at small df (not the normal approximation).

The simulation runs every planned look for every claim (no freezing, no futility stop): the real rule stops
looking at a decided or futile claim, which can only raise its sequential p-values, so the error simulated here
bounds the real rule's from above (``stats.sequential`` module docstring)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from normlab.stats import Looks, part_pvalues, planned_looks, stepdown
from normlab.stats.sequential import spend_obf, z_bounds

ALPHA = 0.05


def test_boundaries_match_the_published_obrien_fleming_values():
    # Lan-DeMets O'Brien-Fleming-type spending, 3 equal looks, two-sided 5% (one-sided 2.5% per side):
    # z = 3.7103, 2.5114, 1.9930 (Jennison & Turnbull 2000, table 2.7; gsDesign sfLDOF)
    fr = np.array([1 / 3, 2 / 3, 1.0])
    c = z_bounds(fr, spend_obf(fr, 0.025))
    assert np.allclose(c, [3.7103, 2.5114, 1.9930], atol=2e-4)


def test_fixed_design_is_the_identity():
    looks = Looks([5])
    assert looks.K == 1 and looks.nominal(1, 0.0123) == 0.0123 and looks.q(1, 0.0371) == 0.0371


def test_planned_looks():
    assert planned_looks(3, 3, None) == [3] and planned_looks(3, 3, 3) == [3]
    assert planned_looks(3, 3, 9) == [3, 6, 9] and planned_looks(3, 4, 9) == [3, 7, 9]


def test_q_inverts_the_nominal_levels():
    looks = Looks([3, 6, 9])
    for u in (1e-4, 1e-3, 0.0125, 0.05, 0.2):  # (below ~1/400,000 the t calibration cannot reach)
        for k in (1, 2, 3):
            b = looks.nominal(k, u)
            assert b <= u + 1e-12  # a look never tests above the overall level
            assert looks.q(k, b) == pytest.approx(u, rel=1e-5)
    # the last look spends what the earlier ones left: its level is close to (below) the fixed design's
    assert 0.04 < looks.nominal(3, 0.05) < 0.05
    assert looks.q(2, np.nan) != looks.q(2, np.nan) and looks.q(2, 0.0) == 0.0 and looks.q(1, 0.9) == 1.0


# ----------------------------------------------------------------------------------------- simulation
def simulate(n_looks, mus, sides, rng, sims):
    """Per-look one-sided p-values (holds, fails) of each claim for ``sims`` families: claim j has true mean
    mus[j] of per-seed values N(mu, 1) and ``sides[j]`` = (side, holds, fails). Returns arrays (sims, K, m)."""
    n_max = n_looks[-1]
    m = len(mus)
    x = rng.standard_normal((sims, n_max, m)) + np.asarray(mus)
    ph = np.empty((sims, len(n_looks), m))
    pf = np.empty_like(ph)
    for k, n in enumerate(n_looks):
        d = x[:, :n]
        center = d.mean(1)
        se = d.std(1, ddof=1) / np.sqrt(n)
        for j, (side, h, f) in enumerate(sides):
            ph[:, k, j], pf[:, k, j] = part_pvalues(side, h, f, center[:, j], se[:, j], n - 1)
    return ph, pf


def sequential_rejections(looks, ph, pf, c):
    """The family's step-down on the sequential p-values after the last look (every look made)."""
    qh = np.min(np.stack([looks.q(k + 1, ph[:, k]) for k in range(looks.K)], 1), 1)
    qf = np.min(np.stack([looks.q(k + 1, pf[:, k]) for k in range(looks.K)], 1), 1)
    return stepdown(qh, qf, c, ALPHA), qh, qf


# Claims as in the studies: directional with a smallest effect of interest (disjoint nulls, c = 1) and TOST
# bands (c = 2), with the truth on the margins where a wrong verdict is most likely.
SESOI = 0.5
FAMILY = [
    (("above", 0.0, SESOI), 0.0, 1),         # truth at the threshold: "holds" would be wrong
    (("above", 0.0, SESOI), SESOI, 1),       # truth at the smallest effect: "fails" would be wrong
    (("below", 0.0, -SESOI), 0.0, 1),
    (("within", (-0.5, 0.5), None), 0.5, 2),  # truth at the band's edge: both verdicts would be wrong
]


def wrong_verdicts(res, family):
    """Families with any wrong verdict: "holds" where the claim is false (its holds null true) or "fails" where the
    effect is as large as the smallest effect of interest (its fails null true)."""
    wrong = np.zeros(res["reject_holds"].shape[0], dtype=bool)
    for j, ((side, h, f), mu, _) in enumerate(family):
        if side == "within":
            holds_null, fails_null = not h[0] < mu < h[1], h[0] <= mu <= h[1]
        elif side == "above":
            holds_null, fails_null = mu <= h, mu >= f
        else:
            holds_null, fails_null = mu >= h, mu <= f
        wrong |= (res["reject_holds"][:, j] & holds_null) | (res["reject_fails"][:, j] & fails_null)
    return wrong


@pytest.mark.parametrize("n_looks", [[3, 5], [3, 6, 9], [5, 10, 15, 20], [3, 4, 5, 6]])
def test_family_wise_error_over_all_looks_is_at_most_alpha(n_looks):
    """The chance of any wrong holds or fails in a family, over every look, at most 5% (+ 2 Monte Carlo SE)."""
    rng = np.random.default_rng(sum(n_looks))
    sims = 20000
    looks = Looks(n_looks)
    sides = [f[0] for f in FAMILY]
    mus = [f[1] for f in FAMILY]
    c = np.array([f[2] for f in FAMILY])
    ph, pf = simulate(n_looks, mus, sides, rng, sims)
    res, _, _ = sequential_rejections(looks, ph, pf, c)
    fwer = wrong_verdicts(res, FAMILY).mean()
    se = np.sqrt(ALPHA * (1 - ALPHA) / sims)
    print(f"\nlooks {n_looks}: family-wise error {fwer:.4f} (Monte Carlo SE {se:.4f})")
    assert fwer <= ALPHA + 2 * se
    # a single directional claim alone, truth at its threshold: the size of one sequential t test
    res1, _, _ = sequential_rejections(looks, ph[..., :1], pf[..., :1], c[:1])
    size = res1["reject_holds"][:, 0].mean()
    assert size <= ALPHA + 2 * se, size


@pytest.mark.parametrize("n_looks", [[3, 6, 9], [5, 10, 15, 20]])
def test_power_near_the_fixed_design_and_fewer_seeds(n_looks):
    """Power of a directional claim whose fixed design at max_seeds has about 80% power: the sequential rule
    keeps it within 5 points, and stops early on average (the expected seeds are printed)."""
    rng = np.random.default_rng(7 + len(n_looks))
    sims = 20000
    n_max = n_looks[-1]
    looks = Looks(n_looks)
    fixed = Looks([n_max])
    # the true mean at which the fixed t test at n_max has 80% power (noncentral t)
    crit = st.t.isf(ALPHA, n_max - 1)
    from scipy.optimize import brentq

    mu = brentq(lambda d: st.nct.sf(crit, n_max - 1, d * np.sqrt(n_max)) - 0.8, 0.01, 5)
    sides = [("above", 0.0, 0.0 + 1e-9)]
    ph, pf = simulate(n_looks, [mu], sides, rng, sims)
    res_fixed, _, _ = sequential_rejections(fixed, ph[:, -1:], pf[:, -1:], np.array([1]))
    p_fixed = res_fixed["reject_holds"][:, 0].mean()
    q_each = np.stack([looks.q(k + 1, ph[:, k, 0]) for k in range(looks.K)], 1)
    reject_at = np.where((q_each < ALPHA).any(1), (q_each < ALPHA).argmax(1), looks.K - 1)
    p_seq = (q_each < ALPHA).any(1).mean()
    expected = np.asarray(n_looks)[reject_at].mean()
    print(f"\nlooks {n_looks}: power {p_seq:.3f} (fixed design at {n_max} seeds: {p_fixed:.3f}); "
          f"expected seeds {expected:.2f} of {n_max}")
    assert p_fixed == pytest.approx(0.8, abs=0.02)
    assert p_seq >= p_fixed - 0.05
    assert expected < n_max


def test_rows_whose_data_are_fixed_by_design_are_judged_as_a_fixed_design():
    """A claim that reads side jobs only (S2.d on the float32 exactness job) keeps its seeds whatever the looks
    decide: judged at look 1 of 3 it would be held to the first look's tiny nominal level, although no later look
    can add to it. Passed in ``fixed`` (the analysis: claims whose ``claim_variants`` are empty), it is a fixed
    design (q = p, look 1 of 1); the same data in a claim the looks can grow keep the look's level."""
    from normlab.stats import exact, finalize, mean_ci
    from normlab.stats.rows import claim_from

    x = np.array([1.4, 2.1, 1.7])  # 3 seeds, clearly above 0 for a fixed design at 5%
    grown = np.array([0.2, -0.3, 0.1, 0.4, -0.2, 0.1])

    def look(n):
        return [claim_from("S9.a", "side-job claim", "t", "m", mean_ci([x]), kind="headline", above=0.0, sesoi=0.5),
                claim_from("S9.b", "same data, steered by the looks", "t", "m", mean_ci([x]), kind="headline",
                           above=0.0, sesoi=0.5),
                claim_from("S9.c", "grows", "t", "m", mean_ci([grown[:n]]), kind="headline", above=0.0, sesoi=0.5),
                claim_from("S9.i", "an identity", "t", "m", exact(1e-13), kind="identity", below=1e-9)]

    looks = Looks([3, 6, 9])
    history = [pd.DataFrame(look(3)), pd.DataFrame(look(6))]
    out = finalize(history[-1], history=history, looks=looks, fixed={"S9.a"}).set_index("claim_id")
    a, b = out.loc["S9.a"], out.loc["S9.b"]
    assert (out.loc["S9.i", "look"], out.loc["S9.i", "looks"]) == (1, 1)  # an identity: no looks either
    assert (a["look"], a["looks"], a["stop"]) == (1, 1, "") and "fixed by design" in a["basis"]
    assert a["verdict"] == "holds" and a["nominal"] > 0.01  # the family's share of 5%, not a first look's level
    assert (b["look"], b["looks"]) == (1, 3) and b["nominal"] < 1e-3  # the same data under the looks
    assert b["verdict"] == "inconclusive" and out.loc["S9.c", "looks"] == 3
    without = finalize(history[-1], history=history, looks=looks).set_index("claim_id")
    assert without.loc["S9.a", "verdict"] == "inconclusive" and without.loc["S9.a", "looks"] == 3
