"""``finalize``: a study's claims in, claims.csv's final form out (one multiplicity rule per family, verdicts,
the interval each verdict was made from, its basis, power figures, strata)."""

from __future__ import annotations

import math

import numpy as np

from .constants import CLAIM_COLUMNS, FAMILIES, KINDS, POWER, SEEDS_CAP, VERDICTS
from .families import stepdown, strata_agree
from .power import power_figures, undecided_part
from .rows import claim_all
from .tests import Part, combine, exact_verdict


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
        df.at[i, "verdict"] = exact_verdict(parts)
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
