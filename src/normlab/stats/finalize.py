"""``finalize``: a study's claims in, claims.csv's final form out (one multiplicity rule per family, verdicts,
the interval each verdict was made from, its basis, power figures, strata)."""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from .constants import CLAIM_COLUMNS, FAMILIES, KINDS, POWER, SEEDS_CAP, VERDICTS
from .families import stepdown, strata_agree
from .power import power_figures, undecided_part
from .rows import claim_all
from .sequential import Looks
from .tests import Part, combine, exact_verdict


# --------------------------------------------------------------------------- finalize
def _fmt(x: float) -> str:
    return f"{x:.3g}" if np.isfinite(x) else "n/a"


def _level_text(level: float) -> str:
    pct = 100 * level
    if pct > 99.5 and pct < 100:  # a sequential look's small nominal level: show the digits that differ from 100%
        digits = max(1, int(np.ceil(-np.log10(100 - pct))) + 1)
        return f"{pct:.{digits}f}%"
    return f"{pct:.1f}%" if abs(pct - round(pct)) > 0.05 else f"{pct:.0f}%"


def _basis(verdict: str, parts: list[Part], a: float, alpha: float, family: str, n_family: int,
           level: float, both: bool, a_fail: float | None = None, look: str = "") -> str:
    """One line: which interval, at which level, decided the verdict, and why. ``a``: the one-sided nominal level
    of the claim's tests; ``a_fail`` that of each part's fails test (a / k for k parts in a fixed design);
    ``look``: how the looks set the level (sequential designs)."""
    a_fail = a if a_fail is None else a_fail
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
    adj += look
    main = [p for p in parts if not p.gate]
    stat_main = [p for p in main if not p.exact]
    multi = len(parts) > 1
    lvl = _level_text(level)

    def name(p):
        return p.label or (f"part {parts.index(p) + 1}" if multi else "the estimate")

    def iv(p, lev):
        lo, hi = p.est.interval(lev)
        return f"[{_fmt(lo)}, {_fmt(hi)}]"

    if verdict in ("holds", "smaller"):
        text = f"{verdict}: " + "; ".join(f"{name(p)}'s {lvl} interval {iv(p, level)} lies {p.margin_text().split(';')[0]}"
                                     if not p.exact else f"{name(p)} (exact, {_fmt(p.est.value)}) lies "
                                     f"{p.margin_text().split(';')[0]}" for p in parts)
        if both:
            text += (f"; it also rules out the smallest effect of interest {main[0].fail_margin:.4g}: a real effect, "
                     "smaller than claimed")
        return f"{text}; {adj}"
    if verdict == "fails":
        for p in main:
            if p.exact and p.fails_exactly():
                return f"fails: {name(p)} (exact, {_fmt(p.est.value)}) is not {p.margin_text().split(';')[0]}; {adj}"
        p = min(stat_main, key=lambda q: q.pvalues()[1])
        lev = 1 - 2 * a_fail
        where = ("outside " + p.threshold().removeprefix("in ") if p.side == "within" else
                 f"{'below' if p.side == 'above' else 'above'} {p.fail_margin:.4g}"
                 + (" (the smallest effect of interest)" if p.disjoint else ""))
        return f"fails: {name(p)}'s {_level_text(lev)} interval {iv(p, lev)} lies {where}; {adj}"
    bits = []
    for p in stat_main:
        if p.pvalues()[0] < a:  # this part holds; another one leaves the claim undecided
            bits.append(f"{name(p)}'s {lvl} interval {iv(p, level)} lies {p.margin_text().split(';')[0]}")
        elif p.side == "within":
            lf = 1 - 2 * a_fail
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
    multi = len([p for p in parts if not p.gate]) > 1
    of = f" ({main.label or 'part ' + str(parts.index(main) + 1)})" if multi else ""
    d = pw["detectable"]
    if main.side == "within":
        det = (f"At {n} seeds TOST{of} shows equivalence (80% power, true difference 0) only within "
               + (f"a factor {d:.3g}" if main.est.log else f"±{d:.3g}"))
    else:
        det = (f"At {n} seeds it{of} detects (80% power) an effect of "
               + (f"a factor {d:.3g}" if main.est.log else f"{d:.3g}") + f" beyond {main.holds:.4g}")
    if need == math.inf:
        text = (f"; the estimate{of} sits on a margin: at the observed effect no number of seeds up to {cap} decides "
                "it with 80% power, though more seeds keep shrinking its interval")
        n0 = pw.get("seeds_if_centered", math.nan)
        if main.side == "within" and np.isfinite(n0):
            text += f" (were the true difference 0, about {int(n0)} seeds would show equivalence)"
        return det + text
    if need <= n:
        return det + f"; with the observed effect as the truth {n} seeds already give 80% power (an unlucky draw)"
    return det + f"; about {int(need)} seeds would decide it{of} (80% power at the observed effect and spread)"


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
            for key in ("threshold", "fail_margin"):  # a stratum states its own (a share, not the contrast)
                if key in spec:
                    c[key] = spec[key]
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


def _write_exact(df, i, parts, alpha: float) -> None:
    if parts:
        df.at[i, "verdict"] = exact_verdict(parts)
        first = next(p for p in parts if not p.gate)
        df.at[i, "value"] = first.est.value
        df.at[i, "ci_low"] = df.at[i, "ci_high"] = first.est.value
        df.at[i, "basis"] = _basis(df.at[i, "verdict"], parts, alpha, alpha, "", 1, math.nan, False)
    elif not df.at[i, "basis"]:
        df.at[i, "basis"] = f"{df.at[i, 'verdict']}: as the study judged it (no test)"


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
    own = df.at[parent, "verdict"]  # the claim's own test (pooled, or the paper's metric with its readings as strata)
    holds_side = by["holds"] + (["its own test"] if own in ("holds", "smaller") else [])
    fails_side = by["fails"] + (["its own test"] if own == "fails" else [])
    if holds_side and fails_side:
        pooled = df.at[parent, "basis"]
        df.at[parent, "verdict"] = "mixed"
        df.at[parent, "basis"] = (f"mixed: holds for {name} {', '.join(holds_side)}; fails for {', '.join(fails_side)} "
                                  f"(each stratum a cell row judged in the claim's family); {agree}. "
                                  f"The claim's own test: it {pooled}")
    else:
        df.at[parent, "basis"] = f"{df.at[parent, 'basis']}. Strata ({name}): {df.at[parent, 'strata']}; {agree}"


def _family_key(r, i) -> str:
    fam = r.get("_family")
    return fam if isinstance(fam, str) and fam else r["kind"] if r["kind"] in FAMILIES else f"{r['kind']}#{i}"


def _signature(parts, t) -> tuple:
    """What a row's tests read at a look: a new look of the row only when it changed (more seeds)."""
    if parts:
        return tuple((p.est.value, p.est.se, p.est.n) for p in parts)
    return (t["p_holds"], t["p_fails"])


def _row_q(parts, t, q) -> tuple[float, float]:
    """A row's sequential p-values at one look: each part's one-sided p transformed by the look's ``q`` first."""
    if parts:
        c = combine(parts, q)
        return c["p_holds"], c["p_fails"]
    return q(t["p_holds"]), q(t["p_fails"])


class _Row:
    """The running state of one statistical row over the looks."""

    def __init__(self):
        self.qh = self.qf = math.inf
        self.look_h = self.look_f = 0  # the look whose data gave the smallest q (holds, fails)
        self.sig = None
        self.last = 0  # the last look the row was evaluated at
        self.frozen = False
        self.decided = 0  # the look after which it was decided (0: not)
        self.futile = 0  # the look after which it stopped for futility (0: not)


def _stepdown_family(rows, idx, c, alpha):
    qh = np.array([rows[i].qh for i in idx], dtype=float)
    qf = np.array([rows[i].qf for i in idx], dtype=float)
    qh[~np.isfinite(qh)] = np.nan
    qf[~np.isfinite(qf)] = np.nan
    return stepdown(qh, qf, np.array([c[i] for i in idx]), alpha)


def _decide(frames, tests, looks, alpha: float, power: float, futility: Callable | None, row_looks: dict):
    """The multiplicity rule per family over the looks (``sequential``): {row: (verdict, u, p_adj, both rejected,
    family, family size)}, the statistical rows without a test, and each row's running state. ``row_looks``: the
    looks of a row whose data are fixed by design (``judge_looks``' ``fixed``), else the study's."""
    last = len(frames) - 1
    df = frames[last]
    groups, untestable, c = {}, set(), {}
    for i, r in df.iterrows():
        t = tests[last][i][1]
        if t["exact"]:
            continue
        if not (np.isfinite(t["p_holds"]) or np.isfinite(t["p_fails"])):
            untestable.add(i)
            continue
        groups.setdefault(_family_key(r, i), []).append(i)
        c[i] = t["c"]
    rows = {i: _Row() for idx in groups.values() for i in idx}
    final = {}
    for k in range(1, len(frames) + 1):
        for i, st in rows.items():
            if st.frozen or tests[k - 1][i] is None:
                continue
            parts, t = tests[k - 1][i]
            sig = _signature(parts, t)
            if sig == st.sig:
                continue  # no new seeds for this row: not a new look
            st.sig, st.last = sig, k
            lk = row_looks.get(i, looks)
            qh, qf = _row_q(parts, t, lambda p: lk.q(k, p))  # noqa: B023 - called here, in this iteration
            if np.isfinite(qh) and qh < st.qh:
                st.qh, st.look_h = qh, k
            if np.isfinite(qf) and qf < st.qf:
                st.qf, st.look_f = qf, k
            st.look_h, st.look_f = st.look_h or k, st.look_f or k
        for key, idx in groups.items():
            s = _stepdown_family(rows, idx, c, alpha)
            for j, i in enumerate(idx):
                rh, rf = bool(s["reject_holds"][j]), bool(s["reject_fails"][j])
                if rows[i].decided:
                    continue
                u = s["level_holds"][j] if rh else s["level_fails"][j] if rf else (
                    np.nanmin([s["level_holds"][j], s["level_fails"][j]]))
                u = float(u) if np.isfinite(u) else alpha
                pa, pb = s["p_adj_holds"][j], s["p_adj_fails"][j]
                p_adj = pa if rh else pb if rf else np.nanmin([pa, pb])
                both = rh and rf and c[i] == 1
                verdict = "smaller" if both else "holds" if rh else "fails" if rf else "inconclusive"
                final[i] = (verdict, u, float(p_adj), both, key.split("#")[0], len(idx))
                if verdict != "inconclusive":
                    rows[i].frozen, rows[i].decided = True, k
        if futility is not None and k < looks.K:  # a claim stops when none of its open rows (pooled, strata) can decide
            claims = {}
            for i, st in rows.items():
                if not st.frozen and (df.at[i, "_family"] or df.at[i, "kind"]) == "headline" and i not in row_looks:
                    claims.setdefault(str(df.at[i, "claim_id"]).split("[")[0], []).append(i)
            for ids in claims.values():
                if all(futility(df.loc[i], tests[k - 1][i], final[i][1], k) for i in ids):
                    for i in ids:
                        rows[i].frozen, rows[i].futile = True, k
    return final, untestable, rows


def _write_decided(df, i, parts, decision, st, looks, alpha: float, power: float, seeds_cap: int,
                   made: int = 1) -> None:
    """A statistical row's verdict, the interval it was decided from (at the look whose data decided it), its
    basis, power figures and how the looks reached it."""
    verdict, u, p_adj, both, family, n_family = decision
    look = (st.look_h if verdict in ("holds", "smaller") else st.look_f if verdict == "fails" else st.last) or 1
    a = float(looks.nominal(look, u))
    df.at[i, "verdict"] = verdict
    df.at[i, "p_adj"] = p_adj
    df.at[i, "look"], df.at[i, "looks"], df.at[i, "nominal"] = look, looks.K, a
    if looks.K > 1:
        df.at[i, "stop"] = ("decided" if verdict != "inconclusive" else "futility" if st.futile else
                            "max_seeds" if made == looks.K else "study stopped")
    if not parts:
        df.at[i, "basis"] = (f"{verdict}: the study's own test, one-sided at {a:.3g} after the step-down; "
                             "interval as the study gave it")
        return
    main = [p for p in parts if not p.gate]
    k = max(len([p for p in main if not p.exact]), 1)
    a_fail = float(looks.nominal(look, u / k)) if k > 1 else a
    level = 1 - 2 * a
    if verdict == "fails" and len(parts) == 1:
        level = 1 - 2 * a_fail
    disp = df.at[i, "_display"]
    value, low, high = disp(level) if callable(disp) else (main[0].est.value, *main[0].est.interval(level))
    df.at[i, "value"], df.at[i, "ci_low"], df.at[i, "ci_high"] = value, low, high
    df.at[i, "ci_level"] = level
    df.at[i, "n_seeds"] = main[0].est.n
    how = ""
    if looks.K > 1:
        how = (f"; look {look} of {looks.K} ({looks.n[look - 1]} of at most {looks.n[-1]} seeds): the family's level "
               f"{u:.3g} for this test spent over the looks (O'Brien-Fleming-type), nominal {a:.3g} at this look")
    text = _basis("holds" if verdict == "smaller" else verdict, parts, a, alpha, family, n_family, level, both,
                  a_fail, how)
    if verdict == "smaller":
        text = "smaller: " + text.removeprefix("holds: ")
    if verdict == "inconclusive":
        a_end = float(looks.nominal(looks.K, u))  # what more seeds buy: judged at the last look's level
        pw = power_figures(parts, a_end, power, seeds_cap)
        df.at[i, "detectable"] = pw["detectable"]
        df.at[i, "seeds_needed"] = pw["seeds_needed"]
        extra = _power_text(pw, parts, int(main[0].est.n), seeds_cap, a_end)
        if st.futile:
            extra += (f". Stopped for futility after look {st.futile}: at most {looks.n[-1]} seeds (max_seeds) would "
                      "not decide it with 80% power")
        elif looks.K > 1 and made == looks.K:
            extra += f". Undecided at the last planned look (max_seeds {looks.n[-1]})"
        elif looks.K > 1:
            extra += (f". The study stopped after look {made} of {looks.K}: no headline claim it steers by needed more "
                      "seeds")
        text += f". {extra}" if extra else ""
    df.at[i, "basis"] = text


def _prepare(claims):
    import pandas as pd

    df = pd.DataFrame(claims).copy().reset_index(drop=True)
    defaults = {"kind": "cell", "p_adj": math.nan, "fail_margin": math.nan, "ci_level": math.nan, "basis": "",
                "detectable": math.nan, "seeds_needed": math.nan, "strata": "", "p_holds": math.nan,
                "p_fails": math.nan, "_parts": None, "_display": None, "_strata": None, "_stratum": "", "_family": "",
                "look": 1, "looks": 1, "nominal": math.nan, "stop": ""}
    for c, v in defaults.items():
        if c not in df:
            df[c] = [v] * len(df)
    df["kind"] = df["kind"].fillna("cell")
    bad = sorted(set(df["kind"]) - set(KINDS))
    if bad:
        raise ValueError(f"unknown claim kinds {bad}")
    df, children = _expand_strata(df)
    df["p_adj"] = math.nan
    for col in ("ci_level", "detectable", "seeds_needed", "fail_margin", "nominal"):
        df[col] = df[col].astype(float)
    for col in ("basis", "strata", "stop"):
        df[col] = df[col].fillna("").astype(object)
    return df, children


def _aligned_tests(frames) -> list:
    """Each look's tests in the row order of the last look's frame (matched by claim id; None where a look lacks
    the row)."""
    last = frames[-1]
    out = []
    for f in frames:
        t = _tests(f)
        pos = {cid: j for j, cid in enumerate(f["claim_id"])}
        out.append([t[pos[cid]] if cid in pos else None for cid in last["claim_id"]])
    return out


def _futility(looks, power: float, seeds_cap: int):
    """Non-binding futility for the rows that steer the looks (a headline family): stop when, at the observed
    effect and spread, not even ``max_seeds`` seeds would decide the row with ``power`` at the last look's level."""

    def futile(row, test, u, k) -> bool:
        if test is None or not test[0]:
            return False
        pw = power_figures(test[0], float(looks.nominal(looks.K, u)), power, seeds_cap)
        need = pw["seeds_needed"]
        return bool(need == math.inf or (np.isfinite(need) and need > looks.n[-1]))

    return futile


def finalize(claims, ci: float = 0.95, *, power: float = POWER, seeds_cap: int = SEEDS_CAP, history=None,
             looks=None, fixed=()):
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
    are opposite). ``smaller``: a directional claim whose interval both clears its threshold and rules out
    its smallest effect of interest (a real effect, smaller than claimed).

    Sequential seeds (``sequential``): ``history`` holds the claims at the looks made so far (the last one is
    ``claims``), ``looks`` the study's planned looks (``sequential.Looks``). A row is looked at again only when
    its data changed; a decided row keeps its verdict and interval; the family's step-down runs on the rows'
    sequential p-values after each look; undecided headline rows stop for futility (non-binding) when
    ``max_seeds`` would not decide them. ``look``, ``looks``, ``nominal`` and ``stop`` say how each verdict was
    reached. Rows whose data are fixed by design, whatever the looks decide (identities; the claims in ``fixed``,
    ids without "[...]", with their strata and cells: those that read side jobs only, whose seeds the looks never
    grow), are judged as a fixed design (q = p: look 1 of 1); the study's looks would only spend their level.
    ``judge_looks`` also returns the state the DAG needs (which headline claims are still open)."""
    return judge_looks(history or [claims], looks, ci=ci, power=power, seeds_cap=seeds_cap, fixed=fixed)[0]


def judge_looks(history, looks=None, *, ci: float = 0.95, power: float = POWER, seeds_cap: int = SEEDS_CAP,
                fixed=()):
    """``finalize`` over the looks made so far: (claims DataFrame, {"open": headline claim ids still undecided and
    not stopped for futility, "futile": those stopped})."""
    looks = looks or Looks([1])
    prepared = [_prepare(f) for f in history]
    frames = [f for f, _ in prepared]
    df, children = prepared[-1]
    alpha = 1 - ci
    tests = _aligned_tests(frames)
    futility = _futility(looks, power, seeds_cap) if looks.K > 1 else None
    one, fixed = Looks([1]), set(fixed)  # a fixed design; the claims whose data the looks never grow
    row_looks = {i: one for i, r in df.iterrows() if looks.K > 1 and
                 (r["kind"] == "identity" or str(r["claim_id"]).split("[")[0] in fixed)}
    decided, untestable, rows = _decide(frames, tests, looks, alpha, power, futility, row_looks)
    for i in range(len(df)):
        parts, t = tests[-1][i]
        df.at[i, "looks"], df.at[i, "look"] = (1, 1) if i in row_looks else (looks.K, len(frames))
        if t["exact"]:
            _write_exact(df, i, parts, alpha)
        elif i in untestable:
            df.at[i, "verdict"] = "inconclusive"
            df.at[i, "basis"] = "inconclusive: no interval (fewer than two finite values in a group of seeds)"
        else:
            st = rows[i]
            k = (st.look_h if decided[i][0] in ("holds", "smaller") else st.look_f if decided[i][0] == "fails"
                 else st.last) or 1
            parts = (tests[k - 1][i] or tests[-1][i])[0]
            _write_decided(df, i, parts, decided[i], st, row_looks.get(i, looks), alpha, power, seeds_cap, len(frames))
            if i in row_looks:
                why = "an identity" if df.at[i, "kind"] == "identity" else "side jobs only"
                df.at[i, "basis"] += (f"; its data are fixed by design ({why}: the study's {looks.K} looks never "
                                      "add to them): judged as a fixed design")
    for parent, kids in children.items():
        _write_strata(df, parent, kids)
    open_ids, futile = set(), set()
    for i, st in rows.items():
        fam = df.at[i, "_family"] or df.at[i, "kind"]
        if fam != "headline" or df.at[i, "verdict"] != "inconclusive" or i in row_looks:
            continue
        cid = str(df.at[i, "claim_id"]).split("[")[0]
        (futile if st.futile else open_ids).add(cid)
    return df[CLAIM_COLUMNS], {"open": sorted(open_ids), "futile": sorted(futile - open_ids)}
