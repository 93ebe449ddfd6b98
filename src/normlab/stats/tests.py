"""The tests of one claim: its parts (``Part``: directional with a smallest effect of interest, or a band), their
one-sided p-values and how a claim's parts combine (``combine``)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .intervals import Estimate, p_one_sided, to_scale


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
    ``within``: ``holds`` = (a, b); p_holds is TOST's (the larger one-sided p). p_fails tests "mu lies in the
    band" by the nearer side's one-sided test ("mu < a" or "mu > b", the smaller p, p_near) at its own level,
    plus the chance w that the far side's test also rejects at that level when mu sits at the near end
    (plug-in spread: w = P(T_df >= t_{1 - p_near, df} + (b - a) / se)), capped at Bonferroni's 2 x p_near: a
    band many standard errors wide costs nothing (w ~ 0), a narrow one the doubling. ``fails`` is ignored."""
    if side == "above":
        return p_one_sided(center - holds, se, df), p_one_sided(fails - center, se, df)
    if side == "below":
        return p_one_sided(holds - center, se, df), p_one_sided(center - fails, se, df)
    if side == "within":
        a, b = holds
        p_h = np.fmax(p_one_sided(center - a, se, df), p_one_sided(b - center, se, df))
        p_near = np.fmin(p_one_sided(a - center, se, df), p_one_sided(center - b, se, df))
        return p_h, np.minimum(1.0, p_near + far_side(p_near, b - a, se, df))
    raise ValueError(f"unknown side {side!r}")


def far_side(p_near, width, se, df):
    """The chance that a band's far-side test rejects at level ``p_near`` when the truth sits at the near end of
    a band ``width`` wide (plug-in standard error ``se``), at most ``p_near`` (Bonferroni's bound)."""
    from scipy import stats as st

    p_near, width, se, df = np.broadcast_arrays(*(np.asarray(x, dtype=float) for x in (p_near, width, se, df)))
    ok = np.isfinite(p_near) & (p_near > 0) & (p_near < 1) & np.isfinite(se) & (se > 0) & np.isfinite(df) & (df > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        crit = st.t.isf(np.where(ok, p_near, 0.5), np.where(ok, df, 1.0))
        w = st.t.sf(crit + np.where(ok, width / np.where(ok, se, 1.0), 0.0), np.where(ok, df, 1.0))
    w = np.where(ok, np.minimum(w, p_near), np.where(np.isfinite(p_near), p_near, np.nan))
    return float(w) if w.ndim == 0 else w


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

    def scaled_margins(self):
        log = self.est.log
        if self.side == "within":
            return tuple(to_scale(x, log) for x in self.holds), None
        return to_scale(self.holds, log), to_scale(self.fail_margin, log)

    def pvalues(self) -> tuple[float, float]:
        """(p_holds, p_fails); an exact part gives 0 or 1 (its comparison), NaN when its value is NaN."""
        if self.exact:
            v = self.est.value
            if not np.isfinite(v):
                return math.nan, math.nan
            return (0.0 if self.holds_exactly() else 1.0), (0.0 if self.fails_exactly() else 1.0)
        h, f = self.scaled_margins()
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
        """'> 0.1', 'in [0.909, 1.1]': margins to 3 significant digits (whole numbers such as steps in full)."""
        if self.side == "within":
            return f"in [{_margin(self.holds[0])}, {_margin(self.holds[1])}]"
        return f"{'>' if self.side == 'above' else '<'} {_margin(self.holds)}"

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


def _margin(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e9 else f"{x:.3g}"


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


def combine(parts: list[Part], q: Callable | None = None) -> dict:
    """The claim-level tests of a list of parts: p_holds (intersection-union: the largest), p_fails
    (any non-gate part fails, Bonferroni over its statistical parts; and every gate holds), ``exact``
    (no statistical part: decided by comparisons) and ``c``: how many of the claim's two null hypotheses
    can be true at once (1 when every part is directional with a smallest effect of interest > 0 and
    there is no gate; else 2). ``q`` (a look's sequential transform, ``sequential.Looks.q``) is applied to
    each part's one-sided p-values before they are combined (monotone: the largest stays the largest)."""
    main = [p for p in parts if not p.gate]
    gates = [p for p in parts if p.gate]
    pv = [p.pvalues() for p in parts]
    if q is not None:
        pv = [(x[0], x[1]) if p.exact else (q(x[0]), q(x[1])) for p, x in zip(parts, pv)]
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
        verdict = exact_verdict([part])
    else:
        verdict = "holds" if t["p_holds"] < alpha else "fails" if t["p_fails"] < alpha else "inconclusive"
    return dict(verdict=verdict, threshold=part.threshold(), p_holds=t["p_holds"], p_fails=t["p_fails"])


def exact_verdict(parts: list[Part]) -> str:
    if any(not np.isfinite(p.est.value) for p in parts):
        return "inconclusive"
    if all(p.holds_exactly() for p in parts):
        return "holds"
    if all(p.holds_exactly() for p in parts if p.gate) and any(p.fails_exactly() for p in parts if not p.gate):
        return "fails"
    return "inconclusive"
