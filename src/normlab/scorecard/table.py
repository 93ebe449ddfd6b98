"""The scorecard's table model: each table (headline claims, a study's claims, the replication matrix) as a list
of row records with the display columns, from which ``render`` writes Markdown and HTML alike; the formatting
of numbers and verdicts, the counts, and the texts that explain the verdicts."""

from __future__ import annotations

import math
import re

import pandas as pd

from ..stats import KINDS, VERDICTS
from .load import figures_of, grouped_headlines
from .matrix import first_of_group, first_of_study

PLURAL = {"holds": "hold", "smaller": "smaller", "fails": "fail", "mixed": "mixed", "inconclusive": "inconclusive", "not run": "not run"}
KIND_TITLES = {"headline": "Empirical headline claims", "identity": "Identities", "cell": "Cells", "check": "Checks"}
GROUP_TITLES = {"headline": "Empirical claims: what replicated",
                "identity": "Identities: true by construction for a correct implementation (they verify the code "
                            "and the theorem, not an empirical finding)"}
VERDICT_RULE = (
    "Every test is one-sided at alpha = 1 - ci (5%). A directional claim *holds* when its interval clears its "
    "threshold in the claimed direction and *fails* when it rules out an effect as large as its fail margin (the "
    "smallest effect of interest); *smaller* when its interval does both: the effect is real and smaller than "
    "the paper's wording implies (counted apart from holds). An equivalence claim holds by TOST (the interval "
    "inside the band) and fails when the interval lies outside it; otherwise a claim is *inconclusive*. A claim "
    "that pools strata (layers, activations, conditions, metrics) is judged per stratum too, and is *mixed* when "
    "one stratum holds and another fails (its row names the strata on each side); a claim whose variants the "
    "config does not contain is *not run* (its row says what it needs) and is counted apart. One multiplicity "
    "rule per family: a study's headline claims and their strata are one family, its cells another (Holm's "
    "step-down over both tests of every claim, with Shaffer's constraints), so the chance of any wrong holds or "
    "fails in a family is at most 5%; each check and identity is judged alone. Each interval is the Student t "
    "interval over seeds the verdict was made from, at the level the rule gave that claim (90% for a directional "
    "claim judged alone; higher when adjusted): column `ci_level`, and `basis` says how the verdict was reached. "
    "A study with sequential seeds (planned looks) says on each row at which look, with how many seeds and at "
    "which nominal level its verdict was reached, or why it stopped undecided. Values without sampling error "
    "(identities) are compared exactly with their margins; \"no interval\": the value has none. An inconclusive "
    "claim gives the effect its seeds could detect and the seeds that would decide it at 80% power (observed "
    "effect and spread), or that it sits on a margin (no seed count decides it at the observed effect).")

RULE_SHORT = (  # HTML
    "<b>holds</b>: the interval clears the claim's threshold (an equivalence band: lies inside it, TOST); "
    "<b>fails</b>: it rules out the fail margin, the smallest effect of interest (a band: lies outside it); "
    "<b>smaller</b>: both, the effect is real and smaller than claimed; else <b>inconclusive</b>; <b>mixed</b>: "
    "one stratum of a pooled claim holds and another fails (the row names them); <b>not run</b>: the config lacks "
    "what the claim needs (counted apart). One-sided tests at 5%, <b>one multiplicity rule per family</b> (a "
    "study's headline claims one family, its cells another: Holm's step-down over both tests of every claim, "
    "Shaffer's constraints; any wrong verdict at most 5% per family). Values: mean [the Student t interval over "
    "seeds the verdict was made from] at its (adjusted) level; margins to 3 significant digits; for an "
    "inconclusive claim, the seeds that would decide it at 80% power; with sequential seeds, the look that "
    "decided it. Identities (true by construction) are counted apart. <i>Departs from the paper</i>: as the study "
    "declares it for its default config; the claim's own text (hover <i>we measured</i>) describes this run's "
    "setup.")


# ---------------------------------------------------------------------------- formatting
def fmt(x, digits: int = 4) -> str:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return str(x)
    if math.isnan(x):
        return "n/a"
    return f"{x:.{digits}g}"


def num(r, col: str) -> float:
    """The row's ``col`` as a float (NaN when absent or not a number)."""
    try:
        return float(getattr(r, col, math.nan))
    except (TypeError, ValueError):
        return math.nan


def has_interval(r) -> bool:
    """Whether the row has an interval (either end a number)."""
    return math.isfinite(num(r, "ci_low")) or math.isfinite(num(r, "ci_high"))


def value_ci(r, digits: int = 4) -> str:
    """'0.75 [0.66, 0.94]'; '0.75 (no interval)' when the row has none (never '[n/a, n/a]')."""
    if not has_interval(r):
        return f"{fmt(r.value, digits)} (no interval)"
    return f"{fmt(r.value, digits)} [{fmt(r.ci_low, digits)}, {fmt(r.ci_high, digits)}]"


MARGIN_NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+\.\d*|\.\d+)(?:[eE][-+]?\d+)?|(?<![\w.])[-+]?\d+[eE][-+]?\d+")


def margins(text) -> str:
    """A threshold's text with every decimal number to 3 significant digits ('> 0.909091' -> '> 0.909'); integers
    (steps, seeds) as they are."""
    return MARGIN_NUMBER.sub(lambda m: fmt(m.group(0), 3), str(text))


def level_text(r) -> str:
    """'97.5%': the confidence level of the interval shown (the one the verdict was made from); '' if unknown,
    exact, or the row has no interval."""
    lv = num(r, "ci_level")
    if not math.isfinite(lv) or not has_interval(r):
        return ""
    pct = 100 * lv
    return f"{pct:.1f}%" if abs(pct - round(pct)) > 0.05 else f"{pct:.0f}%"


def level_suffix(r) -> str:
    lv = level_text(r)
    return f" ({lv})" if lv else ""


def fail_margin(r) -> str:
    """The row's fail margin (column ``fail_margin``: h + the smallest effect of interest) to 3 significant digits, or ''."""
    v = num(r, "fail_margin")
    return fmt(v, 3) if math.isfinite(v) else ""


def sesoi_text(r) -> str:
    """'fail margin 0.01' when the row declares a fail margin (column ``fail_margin``) other than its threshold's number."""
    v = fail_margin(r)
    if not v or v in margins(getattr(r, "threshold", "")):
        return ""
    return f"fail margin {v}"


def claim_text(r) -> str:
    """'> 0; fail margin 0.01': the claim's threshold and its fail margin (smallest effect of interest)."""
    return "; ".join(x for x in (margins(r.threshold), sesoi_text(r)) if x)


def looks_of(r) -> int:
    """The number of planned looks of the row's study (1: a fixed design, also when the column is missing)."""
    k = num(r, "looks")
    return int(k) if math.isfinite(k) and k > 1 else 1


def seeds_word(n) -> str:
    return f"{n} seed{'' if str(n) == '1' else 's'}"


def seq_text(r) -> str:
    """How a sequential design reached the row's verdict ('' for a fixed design): '6 seeds, look 2 of 3, α 0.016'
    (decided), 'stopped for futility at look 1 (3 seeds)', 'ran out of max_seeds (9)'."""
    k = looks_of(r)
    if k == 1:
        return ""
    look, n, stop = num(r, "look"), getattr(r, "n_seeds", ""), str(getattr(r, "stop", "") or "")
    look = int(look) if math.isfinite(look) else k
    if stop == "futility":
        return f"stopped for futility at look {look} ({seeds_word(n)})"
    if stop == "max_seeds":
        return f"ran out of max_seeds ({n})"
    if stop and stop != "decided":
        return f"{stop} at look {look} of {k} ({seeds_word(n)})"
    a = num(r, "nominal")
    return f"{seeds_word(n)}, look {look} of {k}" + (f", α {a:.2g}" if math.isfinite(a) else "")


# What the basis (stats.finalize's power text) says of the undecided part of a multi-part claim and, for a band on
# its margin, of the seeds a central true value would need.
UNDECIDED_PART = re.compile(r"(?:would decide it|the estimate) \(([^()]*(?:\([^()]*\)[^()]*)*)\)")
CENTERED = re.compile(r"were the true difference 0, about (\d+) seeds")


def power_short(r) -> str:
    """For an inconclusive row: the seeds that would decide it at 80% power (naming the undecided part of a
    multi-part claim), or, on a margin, that no seed count decides it at the observed effect although more
    seeds narrow its interval (and the seeds a band would need were its true difference 0)."""
    if str(getattr(r, "verdict", "")) != "inconclusive":
        return ""
    need = num(r, "seeds_needed")
    basis = str(getattr(r, "basis", "") or "")
    part = UNDECIDED_PART.search(basis)
    of = f" ({part.group(1)})" if part else ""
    if need == math.inf:
        centered = CENTERED.search(basis)
        return (f"on a margin{of}: no seed count decides it at the observed effect, though more seeds narrow it"
                + (f"; ~{centered.group(1)} seeds if the true difference were 0" if centered else ""))
    if not math.isfinite(need):
        return ""
    det = num(r, "detectable")
    return f"~{int(need)} seeds would decide it{of}" + (f" (detects {fmt(det, 3)} at {r.n_seeds})"
                                                       if math.isfinite(det) else "")


def p_text(r) -> str:
    p = num(r, "p_adj")
    return "" if math.isnan(p) else ("p_adj < 1e-4" if p < 1e-4 else f"p_adj {p:.2g}")


def md_cell(s) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def short(text: str, n: int = 110) -> str:
    """The first sentence of ``text``, cut at ``n`` characters."""
    text = " ".join(str(text).split())
    first = re.split(r"(?<=[.;])\s|\s\(", text, maxsplit=1)[0].rstrip(".;")
    first = first if len(first) >= 40 else text
    return first if len(first) <= n else first[: n - 1].rsplit(" ", 1)[0] + "…"


def anchor(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def short_title(title: str) -> str:
    """'S1: Santurkar et al. 2018, How does ...' -> 'S1: Santurkar et al. 2018' (cut at ', ' or ' (')."""
    return re.split(r",\s|\s\(", title, maxsplit=1)[0]


def measured(r) -> str:
    """'metric = value [low, high] (level), n seeds (claim: threshold; fail margin x); what more seeds would buy'
    (with sequential seeds, how the looks reached the verdict is shown beside the verdict: ``seq_text``)."""
    more = power_short(r)
    seeds = seeds_word(r.n_seeds)
    return (f"{r.metric} = {value_ci(r)}{level_suffix(r)}, {seeds} (claim: {claim_text(r)})"
            + (f"; {more}" if more else ""))


def needs_text(r) -> str:
    """For a row ``not run``: what the claim needs ('needs norms none and bn_pre', from its basis), else ''."""
    if str(getattr(r, "verdict", "")) != "not run":
        return ""
    basis = str(getattr(r, "basis", "") or "").removeprefix("not run: ")
    return basis or "needs variants the config does not contain"


def strata_text(r) -> str:
    """The row's strata on each side ('holds: tanh; fails: logistic'), '' when it has none."""
    return str(getattr(r, "strata", "") or "")


# ---------------------------------------------------------------------------- counts
def counts(df: pd.DataFrame) -> dict:
    vc = df["verdict"].value_counts() if len(df) else pd.Series(dtype=int)
    return {v: int(vc.get(v, 0)) for v in VERDICTS}


def kind_of(df: pd.DataFrame, kind: str) -> pd.DataFrame:
    return df[df["kind"] == kind] if "kind" in df else (df if kind == "cell" else df.iloc[0:0])


def kind_line(df: pd.DataFrame, kind: str) -> str:
    """'9 hold, 4 fail, 5 inconclusive (of 18)' for the claims of one kind that ran ('2 mixed' among them when
    any is); '; 2 not run' after it when some claims could not run with the config."""
    d = kind_of(df, kind)
    c = counts(d)
    shown = [v for v in VERDICTS if v != "not run" and (v not in ("mixed", "smaller") or c[v])]
    text = ", ".join(f"{c[v]} {PLURAL[v]}" for v in shown) + f" (of {len(d) - c['not run']})"
    return text + (f"; {c['not run']} not run" if c["not run"] else "")


def summary_line(df: pd.DataFrame, kinds=KINDS) -> str:
    """'Headline claims: ... Cells: ... Checks: ...' (counts kept apart)."""
    return " ".join(f"{KIND_TITLES[k]}: {kind_line(df, k)}." for k in kinds)


# ---------------------------------------------------------------------------- the table model
def row_display(r) -> dict:
    """The display columns of one claims.csv row (a namedtuple; None: a declared claim without a row)."""
    if r is None:
        return {"verdict": "missing", "has_row": False, "p": "", "measured": "no row in claims.csv", "note": "",
                "basis": "", "claim": "", "value_ci": "", "value_ci3": "", "level": "", "metric": "",
                "claim_txt": "", "seeds": "", "more": "", "seq": ""}
    verdict = str(r.verdict)
    needs = needs_text(r)
    strata = f"strata: {strata_text(r)}" if strata_text(r) else ""  # a pooled claim's strata, whatever its verdict
    note = needs or strata  # what the row must say beside its value: what it needs, or its strata on each side
    meas = needs or measured(r) + (f"; {strata}" if strata else "")
    return {"verdict": verdict, "has_row": True, "p": p_text(r), "measured": meas, "note": note,
            "basis": str(getattr(r, "basis", "") or ""), "claim": str(r.claim), "value_ci": value_ci(r),
            "value_ci3": value_ci(r, 3), "level": level_text(r), "metric": str(r.metric), "claim_txt": claim_text(r),
            "seeds": str(r.n_seeds), "more": power_short(r), "seq": seq_text(r)}


def headline_records(loaded: list[dict]) -> list[dict]:
    """The headline table: one record per paper-level claim of every study, the empirical headline claims first
    and the identities apart below. A record: ``group`` (the heading of a group that starts at this row, else
    ''), ``kind``, ``study`` (the loaded study), ``first``/``span`` (the study's first row in its group and how
    many rows it spans there), ``claim_id``, ``statement``, ``departures``, ``figure`` (the first figure or
    None), ``figures``, and the ``row_display`` columns."""
    out = []
    groups = grouped_headlines(loaded)
    for kind, entries in groups.items():
        for i, h in enumerate(entries):
            s = h["study"]
            first = i == 0 or entries[i - 1]["study"] is not s
            out.append({"group": GROUP_TITLES[kind] if i == 0 and (len(groups) > 1 or kind == "identity") else "",
                        "kind": kind, "study": s, "first": first,
                        "span": sum(1 for x in entries if x["study"] is s) if first else 0,
                        "claim_id": h["claim_id"], "statement": h["statement"], "departures": h["departures"],
                        "figure": h["figures"][0] if h["figures"] else None, "figures": h["figures"],
                        **row_display(h["row"])})
    return out


def claim_records(s: dict | None, claims: pd.DataFrame) -> list[dict]:
    """A claims table (a study's cells, checks...): one record per row with the display columns ``claim_id``,
    ``verdict``, ``value_ci``, ``level``, ``threshold``, ``margin`` (the fail margin, column ``fail_margin``), ``p``,
    ``seeds`` (a sequential design: how its looks reached the verdict), ``more``, ``claim``, ``basis`` (with the
    strata, when the row has any), ``metric``, ``source`` and ``figures`` (the figures mapped to the claim; none
    without the study ``s``)."""
    out = []
    for r in claims.itertuples():
        strata = strata_text(r)
        basis = str(getattr(r, "basis", "") or "")
        out.append({"claim_id": str(r.claim_id), "verdict": str(r.verdict), "value_ci": value_ci(r),
                    "level": level_text(r), "threshold": margins(r.threshold), "margin": fail_margin(r),
                    "p": p_text(r).removeprefix("p_adj "),
                    "seeds": seq_text(r) or str(r.n_seeds), "more": power_short(r), "claim": str(r.claim),
                    "basis": basis + (f" Strata: {strata}." if strata else ""), "metric": str(r.metric),
                    "source": str(r.source),
                    "figures": figures_of(s, str(r.claim_id), all_if_unmapped=False) if s else []})
    return out


def matrix_records(m: dict) -> list[dict]:
    """The replication matrix's rows: ``group`` (a heading that starts at this row, else ''), ``study`` (its
    short title on its first row, else ''), ``claim_id``, ``statement`` and ``cells`` (one per config: None
    when the study has no version of it, else {study, version, vdir} and the ``row_display`` columns)."""
    out = []
    for i, row in enumerate(m["rows"]):
        cells = []
        for n in m["configs"]:
            h = row["cells"][n]
            cells.append(None if h is None else {"study": h["study"]["name"], "version": h["study"]["version"],
                                                 "vdir": h["study"]["vdir"], **row_display(h["row"])})
        out.append({"group": GROUP_TITLES[row.get("kind", "headline")].split(":")[0] if first_of_group(m, i) else "",
                    "study": short_title(row["title"]) if first_of_study(m, i) else "", "claim_id": row["claim_id"],
                    "statement": row["statement"], "cells": cells})
    return out
