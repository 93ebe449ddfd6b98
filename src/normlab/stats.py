"""Statistics for claims: Student t intervals over seeds, tests, one multiplicity rule per family, power.

numpy + scipy.stats only (fast import). Why Student t and not a bootstrap: at 3-5 seeds a
percentile bootstrap covers far less than its nominal level (simulated: 78-80% at 3 seeds for a
nominal 95%); ``tests/test_stats.py`` simulates the coverage of every interval function here.

A claim is a statement about a mean over seeds (or a stratified mean of per-seed differences), made
of one or more ``Part`` s, each an ``Estimate`` and a side:

- directional, ``above`` h (or ``below`` h) with a smallest effect of interest: it *holds* when the
  interval clears h in the claimed direction and *fails* when the interval rules out an effect as
  large as the smallest effect of interest (lies below h + sesoi; for ``below``: above h - sesoi).
  Without a sesoi the fail margin is h itself (a threshold claim, "beats by more than 0.1");
- a band, ``within`` (a, b): *holds* by TOST (both one-sided tests at the level: the 1 - 2 alpha interval
  inside the band), *fails* when the interval lies outside the band (the two one-sided tests of
  "outside" Bonferroni-combined: the 1 - alpha interval outside);
- several parts (``claim_all``): holds when every part holds (intersection-union, p = the largest),
  fails when any part fails (Bonferroni over the parts); a ``gate`` part must hold for any verdict.

Every test is one-sided at alpha = 1 - ci (``ci`` 0.95 in the configs: alpha 5%), so TOST at 5% uses
the 90% interval. Each claim yields two p-values: ``p_holds`` (rejects "the claim is false") and
``p_fails`` (rejects "the effect is as large as the smallest effect of interest" / "the claim is true").

``finalize`` (called once per study by ``normlab.analyze``) applies ONE multiplicity rule per family:
Holm's step-down over both hypotheses of every claim of the family (a study's headline claims are one
family with the strata of its pooled claims, its cells another; each check and each identity is judged
alone), with Shaffer's logical
constraint: a directional claim with a smallest effect of interest > 0 has disjoint null hypotheses
("effect <= h" and "effect >= h + sesoi"), so at most one of its two can be true and it counts once;
a band or a threshold claim can have both true at its margin (there both verdicts are wrong) and
counts twice. So the probability of any wrong ``holds`` or ``fails`` in a family is at most alpha,
whatever the truth; ``tests/test_stats.py`` simulates it at 3, 5 and 10 seeds with the truth at the
margins. Each row then shows the interval its verdict was made from: the interval at the adjusted
level the step-down used for that claim (``ci_level``; 90% when a claim is judged alone at alpha 5%).

Values without sampling error (identities, deterministic checks) and estimates whose seeds all gave
the same value (zero variance) are compared exactly with their margins, carry no p-value and are in
no family.

Strata: a claim that pools strata (layers, activations, conditions, metrics) declares them (``strata=``, one
list of parts per stratum). ``finalize`` judges each stratum as a cell row of its own, ``<claim_id>[<label>]``, in
the family of the pooled claim (a headline's strata in the headline family: everything that decides a
headline verdict shares its alpha, so a wrong ``mixed`` is one of the family's wrong verdicts, at most alpha
in all); when one stratum holds and another fails, the pooled claim's verdict is ``mixed``
and its ``strata`` column names the strata on each side. Whether the strata agree is tested by Welch's
heterogeneity test (Welch 1951: equal means under unequal variances) on the strata's first parts when they
measure the same thing against the same margins (not across metrics or measures), its p-value in the basis (it treats the strata as independent; strata measured on the same seeds are not,
so read it as descriptive).

Power (``power_figures``): for an inconclusive claim, from its observed effect and spread, the effect
the seeds run could detect (80% power at the claim's level) and the seeds that would decide it, or
``inf`` when more seeds would not help (the estimate sits on a margin). Noncentral t; simulated in
``tests/test_stats.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np

CLAIM_COLUMNS = ["claim_id", "claim", "source", "metric", "value", "ci_low", "ci_high", "threshold", "verdict",
                 "n_seeds", "kind", "p_adj", "sesoi", "ci_level", "basis", "detectable", "seeds_needed", "strata"]
# Internal columns the studies fill (through ``claim``); ``finalize`` consumes them.
P_COLUMNS = ["p_holds", "p_fails"]
INTERNAL = ["_parts", "_display", "_strata", "_stratum", "_family"]
# mixed: a pooled claim whose strata give opposite verdicts (one holds, another fails); not run: the config
# does not contain what the claim needs.
VERDICTS = ("holds", "fails", "mixed", "inconclusive", "not run")
# headline: the paper's empirical claims; identity: a paper-level claim true by construction for a correct
# implementation (it verifies code and theorem, not an empirical finding); cell: per-cell detail; check:
# controls and instrument checks.
KINDS = ("headline", "identity", "cell", "check")
FAMILIES = ("headline", "cell")  # one multiplicity family each per study; other kinds are judged alone
POWER = 0.8
SEEDS_CAP = 200  # beyond this many seeds "more seeds would not help": the estimate sits on a margin


class Estimate(NamedTuple):
    """A mean (or stratified mean difference) with its Student t interval."""

    value: float
    low: float
    high: float
    se: float
    df: float
    n: int  # seeds (the largest group size)
    log: bool = False  # value/low/high are exp of a log-scale estimate (geometric mean or ratio)

    @property
    def exact(self) -> bool:
        """No sampling error to test against: an exact value (``exact``: se NaN, a zero-width interval; NaN
        when nothing was measured) or seeds that all gave the same value (se 0)."""
        if self.se == 0:
            return True
        return bool(np.isnan(self.se) and (np.isnan(self.value) or self.low == self.high))

    @property
    def center(self) -> float:
        """The value on the scale the test runs on (log for ``log`` estimates)."""
        return _to_scale(self.value, self.log)

    def _center(self, thr: float) -> tuple[float, float]:
        return self.center, _to_scale(thr, self.log)

    def p_above(self, thr: float) -> float:
        """One-sided p-value of the t test of mu > thr (small: mu is above thr)."""
        v, t = self._center(thr)
        return _p_one_sided(v - t, self.se, self.df)

    def p_below(self, thr: float) -> float:
        v, t = self._center(thr)
        return _p_one_sided(t - v, self.se, self.df)

    def interval(self, level: float) -> tuple[float, float]:
        """The two-sided Student t interval at confidence ``level`` (back-transformed for ``log``)."""
        if self.exact or not np.isfinite(level):
            return (self.value, self.value) if self.exact else (math.nan, math.nan)
        h = _tq(level, self.df) * self.se
        c = self.center
        return (_from_scale(c - h, self.log), _from_scale(c + h, self.log))


def _to_scale(x: float, log: bool) -> float:
    if not log:
        return float(x)
    return math.log(x) if x > 0 else (-math.inf if x == 0 else math.nan)


def _from_scale(x: float, log: bool) -> float:
    return float(math.exp(x)) if log and np.isfinite(x) else (float(x) if not log else math.nan)


def _p_one_sided(diff, se, df):
    """P(T_df >= diff / se): the one-sided p-value of "mu > margin" where diff = estimate - margin
    (numpy arrays welcome). NaN where diff, se or df is not finite or se <= 0."""
    from scipy import stats as st

    diff, se, df = np.broadcast_arrays(*(np.asarray(x, dtype=float) for x in (diff, se, df)))
    ok = np.isfinite(diff) & np.isfinite(se) & (se > 0) & np.isfinite(df) & (df > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(ok, st.t.sf(np.where(ok, diff / np.where(ok, se, 1.0), 0.0), np.where(ok, df, 1.0)), np.nan)
    return float(p) if p.ndim == 0 else p


def _tq(ci: float, df: float) -> float:
    from scipy import stats as st

    return float(st.t.ppf(0.5 + ci / 2, df)) if np.isfinite(df) and df > 0 else math.nan


def t_band(ci: float = 0.95):
    """A seaborn ``errorbar`` callable: the Student t interval of the mean of the values it gets (one
    per seed), as ``mean_ci`` gives for one group. Figures use it instead of seaborn's default
    percentile bootstrap ``("ci", 95)``, which at 3-5 seeds covers far less than its nominal level;
    fewer than 2 finite values give no band."""

    def interval(values):
        e = mean_ci([values], ci=ci)
        return (e.low, e.high) if np.isfinite(e.low) else (e.value, e.value)

    return interval


def mean_ci(groups_a, groups_b=None, *, ci: float = 0.95, paired: bool = False, log: bool = False) -> Estimate:
    """Mean over strata of (mean(a) - mean(b)) (or of mean(a) alone) with a Student t interval.

    ``groups_a`` / ``groups_b``: lists of 1-D arrays, one per stratum (a cell of a grid); each array
    holds one value per seed. Unpaired (default): Welch's variance per stratum, s_a^2/n_a + s_b^2/n_b,
    summed over strata / K^2, with Welch-Satterthwaite degrees of freedom. ``paired=True``: a and b
    are matched by position (same seed) and the per-seed differences are used (n - 1 df per stratum).
    Non-finite values are dropped. A stratum with fewer than 2 values gives a NaN interval. Seeds that
    all give the same value give se 0 and df inf (a zero-width interval: ``finalize`` compares it
    exactly with its margins, as identities are).

    ``log=True`` (positive quantities: ratios, curvatures, rates): the same on log values, returned
    back-transformed, so value is a geometric mean (or a ratio of geometric means) and the interval
    is multiplicative. Use it for one-sample claims on skewed positive data: the arithmetic
    one-sample t interval under-covers on strongly skewed data at 3-10 seeds (simulated: about 92%
    for a log-normal with sigma 0.5, 84% with sigma 1). Differences of two groups of the same shape
    do not, but when one skewed group dominates the variance (log-normal sigma 1 at scales 2:1)
    Welch covers 91-93%: compare such groups with log=True (a ratio of geometric means).
    """
    if log:
        def _log(g):
            g = np.asarray(g, dtype=float)
            with np.errstate(divide="ignore", invalid="ignore"):
                return np.where(g > 0, np.log(np.where(g > 0, g, 1.0)), np.nan)

        e = mean_ci([_log(g) for g in groups_a], None if groups_b is None else
                    [None if g is None else _log(g) for g in groups_b], ci=ci, paired=paired)
        return Estimate(*(math.exp(x) if np.isfinite(x) else math.nan for x in e[:3]), e.se, e.df, e.n, True)
    if groups_b is None:
        groups_b = [None] * len(groups_a)
    points, var_terms = [], []  # var_terms: (variance of the stratum's estimate, its df) pairs
    n_max = 0
    for a, b in zip(groups_a, groups_b):
        a = np.asarray(a, dtype=float)
        if b is None:
            a = a[np.isfinite(a)]
            points.append(a.mean() if len(a) else math.nan)
            var_terms.append([(a.var(ddof=1) / len(a), len(a) - 1)] if len(a) > 1 else [(math.nan, 0)])
            n_max = max(n_max, len(a))
            continue
        b = np.asarray(b, dtype=float)
        if paired:
            if len(a) != len(b):
                raise ValueError(f"paired groups differ in length: {len(a)} vs {len(b)}")
            d = a - b
            d = d[np.isfinite(d)]
            points.append(d.mean() if len(d) else math.nan)
            var_terms.append([(d.var(ddof=1) / len(d), len(d) - 1)] if len(d) > 1 else [(math.nan, 0)])
            n_max = max(n_max, len(d))
        else:
            a, b = a[np.isfinite(a)], b[np.isfinite(b)]
            points.append(a.mean() - b.mean() if len(a) and len(b) else math.nan)
            terms = []
            for g in (a, b):
                terms.append((g.var(ddof=1) / len(g), len(g) - 1) if len(g) > 1 else (math.nan, 0))
            var_terms.append(terms)
            n_max = max(n_max, len(a), len(b))
    k = len(points)
    if k == 0:
        return Estimate(math.nan, math.nan, math.nan, math.nan, math.nan, 0)
    value = float(np.mean(points))
    flat = [t for terms in var_terms for t in terms]
    v = sum(t[0] for t in flat) / k**2
    # Welch-Satterthwaite: df = (sum v_i)^2 / sum(v_i^2 / df_i)
    den = sum((t[0] / k**2) ** 2 / t[1] for t in flat if t[1] > 0)
    if not np.isfinite(v):
        return Estimate(value, math.nan, math.nan, math.nan, math.nan, n_max)
    if v == 0:
        return Estimate(value, value, value, 0.0, math.inf, n_max)
    df = v**2 / den
    se = math.sqrt(v)
    h = _tq(ci, df) * se
    return Estimate(value, value - h, value + h, se, float(df), n_max)


def exact(value: float, n: int = 1) -> Estimate:
    """A value without sampling error (an identity, a deterministic check): a zero-width interval."""
    return Estimate(float(value), float(value), float(value), math.nan, math.nan, n)


# --------------------------------------------------------------------------- verdicts of intervals
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


# --------------------------------------------------------------------------- the tests of one part
def part_pvalues(side: str, holds, fails, center, se, df):
    """(p_holds, p_fails) of one part, one-sided, on the test scale (numpy arrays welcome).

    ``side`` above / below: ``holds`` the threshold h, ``fails`` the fail margin f (h + sesoi above,
    h - sesoi below; f = h for a threshold claim). p_holds tests "mu <= h" (above), p_fails "mu >= f".
    ``within``: ``holds`` = (a, b); p_holds is TOST's (the larger one-sided p), p_fails Bonferroni over
    the two one-sided tests of "mu < a" and "mu > b" (2 x the smaller), ``fails`` is ignored."""
    if side == "above":
        return _p_one_sided(center - holds, se, df), _p_one_sided(fails - center, se, df)
    if side == "below":
        return _p_one_sided(holds - center, se, df), _p_one_sided(center - fails, se, df)
    if side == "within":
        a, b = holds
        p_h = np.fmax(_p_one_sided(center - a, se, df), _p_one_sided(b - center, se, df))
        p_f = np.minimum(1.0, 2 * np.fmin(_p_one_sided(a - center, se, df), _p_one_sided(center - b, se, df)))
        return p_h, p_f
    raise ValueError(f"unknown side {side!r}")


@dataclass(frozen=True)
class Part:
    """One tested statement of a claim: ``est`` above / below ``holds`` (fails when it rules out an effect
    as large as ``fails``, the smallest effect of interest's margin) or within ``holds`` = (a, b).
    Margins on the estimate's own scale (ratios for ``log`` estimates). ``gate``: must hold for any
    verdict (it can make the claim inconclusive, never fail it). ``label``: its name in the verdict's
    basis text."""

    est: Estimate
    side: str
    holds: float | tuple
    fails: float | None = None
    label: str = ""
    gate: bool = False

    def __post_init__(self):
        if self.side not in ("above", "below", "within"):
            raise ValueError(f"unknown side {self.side!r}")
        if self.side == "within":
            a, b = self.holds
            if not a <= b:
                raise ValueError(f"band ({a}, {b}) is empty")
        elif self.fails is not None and (self.fails - self.holds) * (1 if self.side == "above" else -1) < 0:
            raise ValueError(f"the smallest effect of interest must lie on the claimed side of {self.holds:g}: "
                             f"{self.side} {self.holds:g}, fails at {self.fails:g}")

    @property
    def fail_margin(self):
        return self.holds if self.fails is None else self.fails

    @property
    def disjoint(self) -> bool:
        """Its two null hypotheses cannot both be true: a directional part whose fail margin lies strictly
        beyond its threshold (a smallest effect of interest > 0)."""
        return self.side != "within" and self.fail_margin != self.holds

    @property
    def exact(self) -> bool:
        return self.est.exact

    def _scaled(self):
        log = self.est.log
        if self.side == "within":
            return tuple(_to_scale(x, log) for x in self.holds), None
        return _to_scale(self.holds, log), _to_scale(self.fail_margin, log)

    def pvalues(self) -> tuple[float, float]:
        """(p_holds, p_fails); an exact part gives 0 or 1 (its comparison), NaN when its value is NaN."""
        if self.exact:
            v = self.est.value
            if not np.isfinite(v):
                return math.nan, math.nan
            return (0.0 if self.holds_exactly() else 1.0), (0.0 if self.fails_exactly() else 1.0)
        h, f = self._scaled()
        return tuple(float(x) for x in part_pvalues(self.side, h, f, self.est.center, self.est.se, self.est.df))

    def holds_exactly(self) -> bool:
        v = self.est.value
        if self.side == "above":
            return v > self.holds
        if self.side == "below":
            return v < self.holds
        return self.holds[0] <= v <= self.holds[1]

    def fails_exactly(self) -> bool:
        v = self.est.value
        if self.side == "above":
            return v < self.fail_margin
        if self.side == "below":
            return v > self.fail_margin
        return v < self.holds[0] or v > self.holds[1]

    def threshold(self) -> str:
        if self.side == "within":
            return f"in [{self.holds[0]:g}, {self.holds[1]:g}]"
        return f"{'>' if self.side == 'above' else '<'} {self.holds:g}"

    def margin_text(self) -> str:
        """How the part holds and fails, in words."""
        if self.side == "within":
            return f"inside [{self.holds[0]:.4g}, {self.holds[1]:.4g}]"
        word = "above" if self.side == "above" else "below"
        other = "below" if self.side == "above" else "above"
        text = f"{word} {self.holds:.4g}"
        if self.disjoint:
            text += f"; fails {other} {self.fail_margin:.4g} (smallest effect of interest)"
        return text


def make_part(est: Estimate, *, above=None, below=None, within=None, sesoi=None, label: str = "",
              gate: bool = False) -> Part:
    """A ``Part`` from one of above=, below=, within= and an optional smallest effect of interest ``sesoi``
    (> 0, on the estimate's scale: fail margin h + sesoi above, h - sesoi below; not for bands)."""
    if sum(x is not None for x in (above, below, within)) != 1:
        raise ValueError("give exactly one of above, below, within")
    if sesoi is not None and (within is not None or not sesoi >= 0):
        raise ValueError("sesoi: a non-negative smallest effect of interest of a directional claim")
    if within is not None:
        return Part(est, "within", (float(within[0]), float(within[1])), None, label, gate)
    side, h = ("above", above) if above is not None else ("below", below)
    f = None if sesoi is None else (h + sesoi if side == "above" else h - sesoi)
    return Part(est, side, float(h), None if f is None else float(f), label, gate)


def combine(parts: list[Part]) -> dict:
    """The claim-level tests of a list of parts: p_holds (intersection-union: the largest), p_fails
    (any non-gate part fails, Bonferroni over its statistical parts; and every gate holds), ``exact``
    (no statistical part: decided by comparisons) and ``c``: how many of the claim's two null hypotheses
    can be true at once (1 when every part is directional with a smallest effect of interest > 0 and
    there is no gate; else 2)."""
    main = [p for p in parts if not p.gate]
    gates = [p for p in parts if p.gate]
    pv = [p.pvalues() for p in parts]
    if all(p.exact for p in parts):
        return {"p_holds": math.nan, "p_fails": math.nan, "exact": True, "c": 0}
    ph = max(x[0] for x in pv) if all(np.isfinite(x[0]) for x in pv) else math.nan
    stat = [x[1] for p, x in zip(parts, pv) if not p.gate and not p.exact]
    exa = [x[1] for p, x in zip(parts, pv) if not p.gate and p.exact]
    pf = min([min(1.0, len(stat) * min(stat))] + exa) if all(np.isfinite(stat + exa)) and stat else math.nan
    if gates and np.isfinite(pf):
        g = [pv[parts.index(p)][0] for p in gates]
        pf = max([pf, *g]) if all(np.isfinite(g)) else math.nan
    c = 1 if not gates and all(p.disjoint for p in main) else 2
    return {"p_holds": ph, "p_fails": pf, "exact": False, "c": c}


def judge(est: Estimate, *, above: float | None = None, below: float | None = None,
          within: tuple[float, float] | None = None, sesoi: float | None = None, alpha: float = 0.05) -> dict:
    """Verdict of one claim judged alone (no multiplicity) at one-sided level ``alpha``, its threshold
    text and one-sided p-values: holds iff p_holds < alpha, else fails iff p_fails < alpha. Exact
    estimates (se NaN or 0) are compared with the margins and get NaN p-values."""
    part = make_part(est, above=above, below=below, within=within, sesoi=sesoi)
    t = combine([part])
    if t["exact"]:
        verdict = _exact_verdict([part])
    else:
        verdict = "holds" if t["p_holds"] < alpha else "fails" if t["p_fails"] < alpha else "inconclusive"
    return dict(verdict=verdict, threshold=part.threshold(), p_holds=t["p_holds"], p_fails=t["p_fails"])


def _exact_verdict(parts: list[Part]) -> str:
    if any(not np.isfinite(p.est.value) for p in parts):
        return "inconclusive"
    if all(p.holds_exactly() for p in parts):
        return "holds"
    if all(p.holds_exactly() for p in parts if p.gate) and any(p.fails_exactly() for p in parts if not p.gate):
        return "fails"
    return "inconclusive"


# --------------------------------------------------------------------------- rows
def claim(claim_id, claim, source, metric, value, ci_low, ci_high, threshold, verdict, n_seeds, *,
          kind: str = "cell", p_holds: float = math.nan, p_fails: float = math.nan, sesoi: float = math.nan,
          parts: list[Part] | None = None, display: Callable | None = None,
          strata: dict | None = None, stratum: str = "") -> dict:
    """One row of claims.csv. ``kind``: headline (the paper's own empirical claim, one row per claim id),
    identity (a paper-level claim true by construction for a correct implementation), cell (per-cell
    detail) or check (controls and instrument checks). ``parts`` (see ``claim_from``, ``claim_all``) let
    ``finalize`` redo the tests at the adjusted level, show the interval the verdict was made from and
    give power figures; ``display(level) -> (value, low, high)`` overrides the interval shown (e.g. a
    Fieller interval of a ratio). Without parts the row's own p-values (one-sided) and interval are used.
    ``strata`` ({label: parts}) and ``stratum`` (what the strata are): see the module docstring."""
    if kind not in KINDS:
        raise ValueError(f"claim kind {kind!r} is not one of {KINDS}")
    return dict(zip(CLAIM_COLUMNS[:10], [claim_id, claim, source, metric, value, ci_low, ci_high, threshold,
                                         verdict, n_seeds]),
                kind=kind, p_adj=math.nan, sesoi=sesoi, ci_level=math.nan, basis="", detectable=math.nan,
                seeds_needed=math.nan, strata="", p_holds=p_holds, p_fails=p_fails, _parts=parts, _display=display,
                _strata=_as_strata(strata), _stratum=stratum)


def _as_parts(parts) -> list[Part]:
    return [p if isinstance(p, Part) else make_part(p[0], **p[1]) for p in parts]


def _as_strata(strata: dict | None) -> dict | None:
    """{label: {"parts": [Part], "display", "metric", "claim"}} from {label: parts or such a dict}."""
    if not strata:
        return None
    out = {}
    for k, v in strata.items():
        spec = dict(v) if isinstance(v, dict) else {"parts": v}
        out[str(k)] = {**spec, "parts": _as_parts(spec["parts"])}
    return out


def not_run(claim_id, text, source, needs: str, *, kind: str = "headline", metric: str = "") -> dict:
    """A claim the config cannot test (its variants are absent): verdict ``not run``, the basis says what it
    ``needs`` (e.g. "norms none and bn_pre")."""
    row = claim(claim_id, text, source, metric, math.nan, math.nan, math.nan, "", "not run", 0, kind=kind)
    row["basis"] = f"not run: needs {needs}"
    return row


def _sesoi_of(parts: list[Part]) -> float:
    first = next((p for p in parts if not p.gate), None)
    return math.nan if first is None or first.side == "within" else float(first.fail_margin)


def claim_all(claim_id, text, source, metric, parts, *, kind: str = "cell", display: Callable | None = None,
              strata: dict | None = None, stratum: str = "") -> dict:
    """A claim made of several parts (``Part`` or (Estimate, dict(above=/below=/within=, sesoi=, label=, gate=)));
    value and interval shown are the first non-gate part's (or ``display``'s). Holds when every part holds,
    fails when a non-gate part fails (and every gate holds). ``strata``: {label: parts} of the strata the claim
    pools, ``stratum`` what they are (e.g. "activation"): each is judged as a cell ``<claim_id>[<label>]``
    and opposite verdicts make the claim ``mixed`` (module docstring)."""
    ps = _as_parts(parts)
    first = next(p for p in ps if not p.gate)
    t = combine(ps)
    verdict = _exact_verdict(ps) if t["exact"] else (
        "holds" if t["p_holds"] < 0.05 else "fails" if t["p_fails"] < 0.05 else "inconclusive")
    value, low, high = display(0.9) if display else (first.est.value, *first.est.interval(0.9))
    shown = [p for p in ps if not p.gate and not (p.exact and len(ps) > 1)] or [first]  # exact side parts: in text
    thr = " and ".join(p.threshold() for p in shown)
    return claim(claim_id, text, source, metric, value, low, high, thr, verdict, first.est.n, kind=kind,
                 p_holds=t["p_holds"], p_fails=t["p_fails"], sesoi=_sesoi_of(ps), parts=ps, display=display,
                 strata=strata, stratum=stratum)


def claim_from(claim_id, text, source, metric, est: Estimate, *, kind: str = "cell", sesoi: float | None = None,
               label: str = "", strata: dict | None = None, stratum: str = "", **side) -> dict:
    """``claim`` from an Estimate, one of above=, below=, within= and, for a directional claim, its
    smallest effect of interest ``sesoi`` (see ``make_part``; without it the threshold is the margin
    both ways). ``strata``/``stratum``: see ``claim_all``."""
    return claim_all(claim_id, text, source, metric, [make_part(est, sesoi=sesoi, label=label, **side)], kind=kind,
                     strata=strata, stratum=stratum)


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
    h, f = part._scaled()
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
    h, f = part._scaled()
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
    return {"detectable": detectable(main, a, power), "seeds_needed": float(ns[ok.argmax()]) if ok.any() else math.inf}


# --------------------------------------------------------------------------- finalize
def _fmt(x: float) -> str:
    return f"{x:.3g}" if np.isfinite(x) else "n/a"


def _level_text(level: float) -> str:
    pct = 100 * level
    return f"{pct:.1f}%" if abs(pct - round(pct)) > 0.05 else f"{pct:.0f}%"


def _basis(verdict: str, parts: list[Part], a: float, alpha: float, family: str, n_family: int,
           level: float, both: bool) -> str:
    """One line: which interval, at which level, decided the verdict, and why."""
    if all(p.exact for p in parts):
        if any(not np.isfinite(p.est.value) for p in parts):
            return f"{verdict}: nothing measured"
        how = ("all seeds gave the same value (zero variance): compared exactly with its margins, as identities are"
               if any(p.est.se == 0 for p in parts) else "exact value (no sampling error): compared with its margins")
        return f"{verdict}: {how}"
    if n_family > 1 and family.startswith("strata of "):
        adj = (f"one-sided tests at {a:.3g}: alpha {alpha:g} shared by the {n_family} {family} "
               "(Holm's step-down, Shaffer's constraints)")
    elif n_family > 1:
        adj = (f"one-sided tests at {a:.3g}: alpha {alpha:g} shared by the {n_family} claims of the study's {family} "
               "family (Holm's step-down, Shaffer's constraints)")
    else:
        adj = f"one-sided tests at {a:.3g} (judged alone)"
    main = [p for p in parts if not p.gate]
    stat_main = [p for p in main if not p.exact]
    k = max(len(stat_main), 1)
    multi = len(parts) > 1
    lvl = _level_text(level)

    def name(p):
        return p.label or (f"part {parts.index(p) + 1}" if multi else "the estimate")

    def iv(p, lev):
        lo, hi = p.est.interval(lev)
        return f"[{_fmt(lo)}, {_fmt(hi)}]"

    if verdict == "holds":
        text = "holds: " + "; ".join(f"{name(p)}'s {lvl} interval {iv(p, level)} lies {p.margin_text().split(';')[0]}"
                                     if not p.exact else f"{name(p)} (exact, {_fmt(p.est.value)}) lies "
                                     f"{p.margin_text().split(';')[0]}" for p in parts)
        if both and main[0].disjoint:
            text += (f"; it also rules out the smallest effect of interest {main[0].fail_margin:.4g}: a real effect, "
                     "smaller than the one of interest")
        return f"{text}; {adj}"
    if verdict == "fails":
        for p in main:
            if p.exact and p.fails_exactly():
                return f"fails: {name(p)} (exact, {_fmt(p.est.value)}) is not {p.margin_text().split(';')[0]}; {adj}"
        p = min(stat_main, key=lambda q: q.pvalues()[1])
        lev = 1 - a / k if p.side == "within" else 1 - 2 * a / k
        where = ("outside " + p.threshold().removeprefix("in ") if p.side == "within" else
                 f"{'below' if p.side == 'above' else 'above'} {p.fail_margin:.4g}"
                 + (" (the smallest effect of interest)" if p.disjoint else ""))
        return f"fails: {name(p)}'s {_level_text(lev)} interval {iv(p, lev)} lies {where}; {adj}"
    bits = []
    for p in stat_main:
        if p.pvalues()[0] < a:  # this part holds; another one leaves the claim undecided
            bits.append(f"{name(p)}'s {lvl} interval {iv(p, level)} lies {p.margin_text().split(';')[0]}")
        elif p.side == "within":
            lf = 1 - a / k
            bits.append(f"{name(p)}'s {lvl} interval {iv(p, level)} is not inside {p.threshold().removeprefix('in ')} "
                        f"and its {_level_text(lf)} interval {iv(p, lf)} not outside")
        else:
            word = "clear" if p.side == "above" else "stay below"
            bits.append(f"{name(p)}'s {lvl} interval {iv(p, level)} does not {word} {p.holds:.4g}"
                        + (f" nor rule out the smallest effect of interest {p.fail_margin:.4g}" if p.disjoint else
                           " nor lie wholly on the other side"))
    return "inconclusive: " + "; ".join(bits) + f"; {adj}"


def _power_text(pw: dict, parts: list[Part], n: int, cap: int, a: float) -> str:
    need = pw.get("seeds_needed", math.nan)
    if not (np.isfinite(need) or need == math.inf):
        return ""
    main = undecided_part(parts, a)
    of = f" ({main.label})" if len(parts) > 1 and main.label else ""
    d = pw["detectable"]
    if main.side == "within":
        det = (f"At {n} seeds TOST{of} shows equivalence (80% power, true difference 0) only within "
               + (f"a factor {d:.3g}" if main.est.log else f"±{d:.3g}"))
    else:
        det = (f"At {n} seeds it{of} detects (80% power) an effect of "
               + (f"a factor {d:.3g}" if main.est.log else f"{d:.3g}") + f" beyond {main.holds:.4g}")
    if need == math.inf:
        return det + (f"; more seeds would not help: the estimate sits on a margin (not decided at 80% power "
                      f"within {cap} seeds)")
    if need <= n:
        return det + f"; with the observed effect as the truth {n} seeds already give 80% power (an unlucky draw)"
    return det + f"; about {int(need)} seeds would decide it (80% power at the observed effect and spread)"


def _expand_strata(df):
    """Each stratum of a pooled claim as a cell row ``<claim_id>[<label>]`` placed after it; returns the frame and
    {pooled row index: [(label, stratum row index)]} (indices in the returned frame)."""
    import pandas as pd

    rows, children = [], {}
    for _, r in df.iterrows():
        rows.append(r.to_dict())
        strata = r["_strata"] if isinstance(r["_strata"], dict) else None
        if not strata:
            continue
        parent = len(rows) - 1
        name = str(r["_stratum"] or "stratum")
        children[parent] = []
        for label, spec in strata.items():
            c = claim_all(f"{r['claim_id']}[{label}]", spec.get("claim") or f"{r['claim']} ({name} {label})",
                          r["source"], spec.get("metric") or r["metric"], spec["parts"], kind="cell",
                          display=spec.get("display"))
            c["_family"] = r["kind"] if r["kind"] in FAMILIES else "headline"
            rows.append(c)
            children[parent].append((label, len(rows) - 1))
    return pd.DataFrame(rows).reset_index(drop=True), children


def _tests(df) -> list:
    """(parts, combine's tests) of every row; rows without parts use their own p-values (c = 2)."""
    tests = []
    for _, r in df.iterrows():
        parts = r["_parts"] if isinstance(r["_parts"], list) else None
        if parts:
            t = combine(parts)
        else:
            ph, pf = float(r["p_holds"]), float(r["p_fails"])
            t = {"p_holds": ph, "p_fails": pf, "exact": not (np.isfinite(ph) or np.isfinite(pf)), "c": 2}
        tests.append((parts, t))
    return tests


def _decide(df, tests, alpha: float) -> tuple[dict, set]:
    """The multiplicity rule per family: {row: (verdict, level, p_adj, both rejected, family, family size)} and
    the statistical rows without a test."""
    groups, untestable = {}, set()
    for i, r in df.iterrows():
        fam = r.get("_family")
        key = fam if isinstance(fam, str) and fam else r["kind"] if r["kind"] in FAMILIES else f"{r['kind']}#{i}"
        t = tests[i][1]
        if t["exact"]:
            continue
        if not (np.isfinite(t["p_holds"]) or np.isfinite(t["p_fails"])):
            untestable.add(i)
            continue
        groups.setdefault(key, []).append(i)
    decided = {}
    for key, idx in groups.items():
        s = stepdown(*(np.array([tests[i][1][k] for i in idx]) for k in ("p_holds", "p_fails", "c")), alpha)
        for j, i in enumerate(idx):
            rh, rf = bool(s["reject_holds"][j]), bool(s["reject_fails"][j])
            verdict = "holds" if rh else "fails" if rf else "inconclusive"
            a = s["level_holds"][j] if rh else s["level_fails"][j] if rf else (
                np.nanmin([s["level_holds"][j], s["level_fails"][j]]))
            a = a if np.isfinite(a) else alpha
            pa, pb = s["p_adj_holds"][j], s["p_adj_fails"][j]
            p_adj = pa if rh else pb if rf else np.nanmin([pa, pb])
            decided[i] = (verdict, float(a), float(p_adj), rh and rf, key.split("#")[0], len(idx))
    return decided, untestable


def _write_exact(df, i, parts, alpha: float) -> None:
    if parts:
        df.at[i, "verdict"] = _exact_verdict(parts)
        first = next(p for p in parts if not p.gate)
        df.at[i, "value"] = first.est.value
        df.at[i, "ci_low"] = df.at[i, "ci_high"] = first.est.value
        df.at[i, "basis"] = _basis(df.at[i, "verdict"], parts, alpha, alpha, "", 1, math.nan, False)
    elif not df.at[i, "basis"]:
        df.at[i, "basis"] = f"{df.at[i, 'verdict']}: as the study judged it (no test)"


def _write_decided(df, i, parts, decision, alpha: float, power: float, seeds_cap: int) -> None:
    """A statistical row's verdict, the interval it was decided from, its basis and power figures."""
    verdict, a, p_adj, both, family, n_family = decision
    df.at[i, "verdict"] = verdict
    df.at[i, "p_adj"] = p_adj
    if not parts:
        df.at[i, "basis"] = (f"{verdict}: the study's own test, one-sided at {a:.3g} after the step-down; "
                             "interval as the study gave it")
        return
    main = [p for p in parts if not p.gate]
    k = max(len([p for p in main if not p.exact]), 1)
    level = 1 - 2 * a
    if verdict == "fails" and len(parts) == 1:
        level = 1 - a / k if main[0].side == "within" else 1 - 2 * a / k
    disp = df.at[i, "_display"]
    value, low, high = disp(level) if callable(disp) else (main[0].est.value, *main[0].est.interval(level))
    df.at[i, "value"], df.at[i, "ci_low"], df.at[i, "ci_high"] = value, low, high
    df.at[i, "ci_level"] = level
    text = _basis(verdict, parts, a, alpha, family, n_family, level, both)
    if verdict == "inconclusive":
        pw = power_figures(parts, a, power, seeds_cap)
        df.at[i, "detectable"] = pw["detectable"]
        df.at[i, "seeds_needed"] = pw["seeds_needed"]
        extra = _power_text(pw, parts, int(main[0].est.n), seeds_cap, a)
        text += f". {extra}" if extra else ""
    df.at[i, "basis"] = text


def _write_strata(df, parent: int, kids: list) -> None:
    """A pooled claim's ``strata`` column, ``mixed`` when one stratum holds and another fails, and the strata's
    agreement (Welch's heterogeneity test) in its basis."""
    by = {v: [label for label, j in kids if df.at[j, "verdict"] == v] for v in VERDICTS}
    df.at[parent, "strata"] = "; ".join(f"{v}: {', '.join(labels)}" for v, labels in by.items() if labels)
    name = df.at[parent, "_stratum"] or "stratum"
    firsts = [next((p for p in df.at[j, "_parts"] if not p.gate), None) for _, j in kids]
    same_scale = len({(p.side, p.holds, p.fails, p.est.log) for p in firsts if p is not None}) == 1
    p_het = strata_agree([p for p in firsts if p is not None and not p.exact]) if same_scale else math.nan
    agree = (f"Welch's test of equal effects across the {len(kids)} {name} strata: p = {_fmt(p_het)}"
             if np.isfinite(p_het) else
             f"the {len(kids)} {name} strata's agreement not tested (different measures or margins)" if not same_scale
             else f"the {len(kids)} {name} strata's agreement not testable (exact or too few seeds)")
    if by["holds"] and by["fails"]:
        pooled = df.at[parent, "basis"]
        df.at[parent, "verdict"] = "mixed"
        df.at[parent, "basis"] = (f"mixed: holds for {name} {', '.join(by['holds'])}; fails for {', '.join(by['fails'])} "
                                  f"(each stratum a cell row judged in the claim's family); {agree}. "
                                  f"Pooled over the strata it {pooled}")
    else:
        df.at[parent, "basis"] = f"{df.at[parent, 'basis']}. Strata ({name}): {df.at[parent, 'strata']}; {agree}"


def finalize(claims, ci: float = 0.95, *, power: float = POWER, seeds_cap: int = SEEDS_CAP):
    """claims.csv's final form: one multiplicity rule per family, verdicts, the interval each verdict was made
    from, the basis of each verdict, for undecided claims power figures, and the strata of pooled claims.

    ``claims``: a DataFrame of ``claim`` rows. alpha = 1 - ci. The headline claims of the study are one
    family with the strata of its pooled claims, its cells another (``stepdown``); each check and identity is
    judged alone. Rows without parts but with p-values (one-sided) take part with c = 2; rows without
    p-values keep their verdict and interval (``not_run`` rows). Returns a DataFrame with exactly
    ``CLAIM_COLUMNS``: ``p_adj`` is the adjusted p-value of the verdict's test (holds: against "the claim is
    false"; fails: against "the effect is as large as the smallest effect of interest"; inconclusive: the
    smaller of the two); ``ci_low``/``ci_high`` the interval at ``ci_level``, the level the verdict was
    decided at; ``basis`` says how; ``detectable`` and ``seeds_needed`` (inconclusive rows) what more seeds
    would buy (``power_figures``); ``strata`` the verdicts of a pooled claim's strata (``mixed`` when they
    are opposite)."""
    import pandas as pd

    df = pd.DataFrame(claims).copy().reset_index(drop=True)
    defaults = {"kind": "cell", "p_adj": math.nan, "sesoi": math.nan, "ci_level": math.nan, "basis": "",
                "detectable": math.nan, "seeds_needed": math.nan, "strata": "", "p_holds": math.nan,
                "p_fails": math.nan, "_parts": None, "_display": None, "_strata": None, "_stratum": "", "_family": ""}
    for c, v in defaults.items():
        if c not in df:
            df[c] = [v] * len(df)
    df["kind"] = df["kind"].fillna("cell")
    bad = sorted(set(df["kind"]) - set(KINDS))
    if bad:
        raise ValueError(f"unknown claim kinds {bad}")
    df, children = _expand_strata(df)
    alpha = 1 - ci
    df["p_adj"] = math.nan
    for col in ("ci_level", "detectable", "seeds_needed", "sesoi"):
        df[col] = df[col].astype(float)
    for col in ("basis", "strata"):
        df[col] = df[col].fillna("").astype(object)
    tests = _tests(df)
    decided, untestable = _decide(df, tests, alpha)
    for i in range(len(df)):
        parts, t = tests[i]
        if t["exact"]:
            _write_exact(df, i, parts, alpha)
        elif i in untestable:
            df.at[i, "verdict"] = "inconclusive"
            df.at[i, "basis"] = "inconclusive: no interval (fewer than two finite values in a group of seeds)"
        else:
            _write_decided(df, i, parts, decided[i], alpha, power, seeds_cap)
    for parent, kids in children.items():
        _write_strata(df, parent, kids)
    return df[CLAIM_COLUMNS]
