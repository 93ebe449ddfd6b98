"""Rows of claims.csv: ``claim``, ``claim_all``, ``claim_from`` and ``not_run``."""

from __future__ import annotations

import math
from typing import Callable

from .constants import CLAIM_COLUMNS, KINDS
from .intervals import Estimate
from .tests import Part, combine, exact_verdict, make_part


# --------------------------------------------------------------------------- rows
def claim(claim_id, claim, source, metric, value, ci_low, ci_high, threshold, verdict, n_seeds, *,
          kind: str = "cell", p_holds: float = math.nan, p_fails: float = math.nan, fail_margin: float = math.nan,
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
                kind=kind, p_adj=math.nan, fail_margin=fail_margin, ci_level=math.nan, basis="", detectable=math.nan,
                seeds_needed=math.nan, strata="", p_holds=p_holds, p_fails=p_fails, _parts=parts, _display=display,
                _strata=as_strata(strata), _stratum=stratum)


def as_parts(parts) -> list[Part]:
    return [p if isinstance(p, Part) else make_part(p[0], **p[1]) for p in parts]


def as_strata(strata: dict | None) -> dict | None:
    """{label: {"parts": [Part], "display", "metric", "claim"}} from {label: parts or such a dict}."""
    if not strata:
        return None
    out = {}
    for k, v in strata.items():
        spec = dict(v) if isinstance(v, dict) else {"parts": v}
        out[str(k)] = {**spec, "parts": as_parts(spec["parts"])}
    return out


def not_run(claim_id, text, source, needs: str, *, kind: str = "headline", metric: str = "") -> dict:
    """A claim the config cannot test (its variants are absent): verdict ``not run``, the basis says what it
    ``needs`` (e.g. "norms none and bn_pre")."""
    row = claim(claim_id, text, source, metric, math.nan, math.nan, math.nan, "", "not run", 0, kind=kind)
    row["basis"] = f"not run: needs {needs}"
    return row


def _fail_margin_of(parts: list[Part]) -> float:
    first = next((p for p in parts if not p.gate), None)
    return math.nan if first is None or first.side == "within" else float(first.fail_margin)


def claim_all(claim_id, text, source, metric, parts, *, kind: str = "cell", display: Callable | None = None,
              strata: dict | None = None, stratum: str = "") -> dict:
    """A claim made of several parts (``Part`` or (Estimate, dict(above=/below=/within=, sesoi=, label=, gate=)));
    value and interval shown are the first non-gate part's (or ``display``'s). Holds when every part holds,
    fails when a non-gate part fails (and every gate holds). ``strata``: {label: parts} of the strata the claim
    pools, ``stratum`` what they are (e.g. "activation"): each is judged as a cell ``<claim_id>[<label>]``
    and opposite verdicts make the claim ``mixed`` (module docstring)."""
    ps = as_parts(parts)
    first = next(p for p in ps if not p.gate)
    t = combine(ps)
    verdict = exact_verdict(ps) if t["exact"] else (
        "holds" if t["p_holds"] < 0.05 else "fails" if t["p_fails"] < 0.05 else "inconclusive")
    value, low, high = display(0.9) if display else (first.est.value, *first.est.interval(0.9))
    shown = [p for p in ps if not p.gate and not (p.exact and len(ps) > 1)] or [first]  # exact side parts: in text
    # several parts: each named ("noisy BN - BN: in [-0.05, 0.05]; BN - standard: > 0.1"); one part: "> 0.1"
    thr = "; ".join(f"{p.label}: {p.threshold()}" if p.label and len(shown) > 1 else p.threshold() for p in shown)
    return claim(claim_id, text, source, metric, value, low, high, thr, verdict, first.est.n, kind=kind,
                 p_holds=t["p_holds"], p_fails=t["p_fails"], fail_margin=_fail_margin_of(ps), parts=ps, display=display,
                 strata=strata, stratum=stratum)


def claim_from(claim_id, text, source, metric, est: Estimate, *, kind: str = "cell", sesoi: float | None = None,
               label: str = "", strata: dict | None = None, stratum: str = "", **side) -> dict:
    """``claim`` from an Estimate, one of above=, below=, within= and, for a directional claim, its
    smallest effect of interest ``sesoi`` (see ``make_part``; without it the threshold is the margin
    both ways). ``strata``/``stratum``: see ``claim_all``."""
    return claim_all(claim_id, text, source, metric, [make_part(est, sesoi=sesoi, label=label, **side)], kind=kind,
                     strata=strata, stratum=stratum)
