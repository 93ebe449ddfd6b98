"""The replication scorecard: the papers' headline claims first, then every study's cells and checks.

    python -m normlab.scorecard [--results results] [--version-dir results/<study>/<version> ...]
                                [--out-dir results] [--configs config]
    python -m normlab.scorecard --claims-html results/<study>/<version>   # one study's claims as HTML

Reads each study version's ``claims.csv`` and ``manifest.json`` (and ``summary.parquet`` for the
run links) and writes, in ``--out-dir``:

- ``scorecard.md`` and ``scorecard.html`` (self-contained: thumbnails embedded, full-size figures and
  run files are relative links). Both open with ONE table: one row per paper-level claim of every
  study, the empirical headline claims first and the identities (claims true by construction for a
  correct implementation) apart below them (the paper's statement, what was measured with the interval
  its verdict was made from, its level, the smallest effect of interest and seeds, the verdict, for an
  inconclusive claim what more seeds would buy, what departs from the paper's setup, a figure), under
  the counts of empirical headline claims, identities, cells and checks. Then, per study: its title and
  papers, its headline rows in full, its cells and checks (collapsed in the html), figures and runs.
- the replication matrix (in both, after the headline table): one row per headline claim, one column
  per config name with results under ``--results`` (``default`` first, then alphabetically; ``smoke``
  only when nothing else has run), each cell the verdict and value [CI] of the NEWEST version of that
  config name (not the ``latest`` link), linked to its claims; a note names the config files in
  ``--configs`` that would fill more columns.
- ``scorecard_front.html``: the headline table and the matrix as an HTML fragment for the Snakemake
  report's front page (``workflow/report/workflow.rst`` includes it).
- ``claims_all.csv``: every claim of every study (all kinds, with ``kind`` and ``p_adj``), with study,
  version, figures and version_dir columns.

Without ``--version-dir`` it takes the ``latest`` version of every study folder under ``--results``
(registered studies first). Nothing here is study-specific. A study module may declare (all optional,
read with getattr): ``TITLE`` (else the first line of its docstring), ``PAPERS`` (list of {"cite",
"url"}), ``HEADLINES`` ({claim_id: {"statement", "departures", "figures", "kind"}}, in order; ``kind``
"identity" for a claim true by construction, default "headline") and
``CLAIM_FIGURES`` ({claim_id: [figure stems]}; default: the HEADLINES figures). Old results
(claims.csv without ``kind``) count every row as a cell.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
import math
import os
import re
import sys
from pathlib import Path

import pandas as pd

from . import studies
from .clean import VERSION, newest_by_name
from .io import atomic_write, write_csv
from .stats import CLAIM_COLUMNS, KINDS

VERDICTS = ("holds", "fails", "inconclusive")
PLURAL = {"holds": "hold", "fails": "fail", "inconclusive": "inconclusive"}
KIND_TITLES = {"headline": "Empirical headline claims", "identity": "Identities", "cell": "Cells", "check": "Checks"}
GROUP_TITLES = {"headline": "Empirical claims: what replicated",
                "identity": "Identities: true by construction for a correct implementation (they verify the code "
                            "and the theorem, not an empirical finding)"}
COLORS = {"holds": "#1a7f37", "fails": "#cf222e", "inconclusive": "#6e7781", "missing": "#9a6700"}
ALL_COLUMNS = ["study", "version", *CLAIM_COLUMNS, "figures", "version_dir"]
VERDICT_RULE = (
    "Every test is one-sided at alpha = 1 - ci (5%). A directional claim *holds* when its interval clears its "
    "threshold in the claimed direction and *fails* when it rules out an effect as large as its smallest effect "
    "of interest; an equivalence claim holds by TOST (the interval inside the band) and fails when the interval "
    "lies outside it; otherwise a claim is *inconclusive*. One multiplicity rule per study: its headline claims "
    "are one family, its cells another (Holm's step-down over both tests of every claim, with Shaffer's "
    "constraints), so the chance of any wrong holds or fails in a family is at most 5%; each check and identity "
    "is judged alone. Each interval is the Student t interval over seeds the verdict was made from, at the level "
    "the rule gave that claim (90% for a directional claim judged alone; higher when adjusted): column "
    "`ci_level`, and `basis` says how the verdict was reached. Values without sampling error (identities) and "
    "seeds that all agree are compared exactly with their margins. An inconclusive claim gives the effect its "
    "seeds could detect and the seeds that would decide it at 80% power (observed effect and spread), or says "
    "more seeds would not help (the estimate sits on a margin).")

RULE_SHORT = (
    "<b>holds</b>: the interval clears the claim's threshold (an equivalence band: lies inside it, TOST); "
    "<b>fails</b>: it rules out the smallest effect of interest (a band: lies outside it); else "
    "<b>inconclusive</b>. One-sided tests at 5%, <b>one multiplicity rule per study</b> (its headline claims one "
    "family, its cells another: Holm's step-down over both tests of every claim, Shaffer's constraints; any wrong "
    "verdict at most 5% per family). Values: mean [the Student t interval over seeds the verdict was made from] "
    "at its (adjusted) level; <i>sesoi</i> = smallest effect of interest; for an inconclusive claim, the seeds "
    "that would decide it at 80% power. Identities (true by construction) are counted apart. <i>Departs from the "
    "paper</i>: as the study declares it for its default config; the claim's own text (hover <i>we measured</i>) "
    "describes this run's setup.")


# ---------------------------------------------------------------------------- loading
def latest_versions(results: Path) -> list[Path]:
    """``results/<study>/latest`` of every study folder: registered studies in order, then others."""
    found = {p.parent.name: p.resolve() for p in sorted(Path(results).glob("*/latest")) if p.is_dir()}
    order = [s for s in studies.STUDIES if s in found] + sorted(s for s in found if s not in studies.STUDIES)
    return [Path(results) / s / found[s].name for s in order]


_BROKEN: set[str] = set()


def study_module(name: str):
    """The study's module, or None (unregistered study, or a module that fails to import: the scorecard
    still shows its results, without the module's declarations, and says so once on stderr)."""
    try:
        return studies.get(name)
    except ValueError:
        return None
    except Exception as e:  # noqa: BLE001 (a broken study module must not hide every other study's results)
        if name not in _BROKEN:
            _BROKEN.add(name)
            print(f"[scorecard] warning: normlab.studies.{name} does not import ({type(e).__name__}: {e}); "
                  "its title, papers and headline statements are left out", file=sys.stderr)
        return None


def study_title(name: str) -> str:
    """The study module's ``TITLE``, else the first line of its docstring, else the study's name."""
    mod = study_module(name)
    title = getattr(mod, "TITLE", None)
    if isinstance(title, str) and title.strip():
        return title.strip()
    doc = (getattr(mod, "__doc__", None) or "").strip().splitlines()
    return doc[0].rstrip(".") if doc else name


def study_papers(name: str) -> list[dict]:
    """The module's ``PAPERS`` as [{"cite", "url"}] (strings and entries without a url tolerated)."""
    out = []
    for p in getattr(study_module(name), "PAPERS", None) or []:
        if isinstance(p, str):
            p = {"cite": p}
        if isinstance(p, dict) and (p.get("cite") or p.get("url")):
            out.append({"cite": str(p.get("cite") or p.get("url")), "url": str(p.get("url") or "")})
    return out


def study_declared(name: str, cfg: dict | None = None) -> dict[str, dict]:
    """The module's paper-level claims ({claim_id: {statement, departures, figures, kind}}, kind "headline" or
    "identity"), normalized: its ``headlines(cfg)`` for the setup a version ran (``cfg``: the study's resolved
    section, from the version's manifest), else ``HEADLINES`` (the default setup's departures)."""
    mod = study_module(name)
    raw = getattr(mod, "HEADLINES", None)
    if cfg and callable(getattr(mod, "headlines", None)):
        try:
            raw = mod.headlines(cfg)
        except (KeyError, TypeError, ValueError):  # a version older than the study's config keys
            pass
    if not isinstance(raw, dict):
        return {}
    out = {}
    for cid, h in raw.items():
        h = h if isinstance(h, dict) else {"statement": str(h)}
        figs = h.get("figures") or []
        out[str(cid)] = {"statement": str(h.get("statement") or ""), "departures": str(h.get("departures") or ""),
                         "figures": [figs] if isinstance(figs, str) else [str(f) for f in figs],
                         "kind": "identity" if h.get("kind") == "identity" else "headline"}
    return out


def study_headlines(name: str, cfg: dict | None = None) -> dict[str, dict]:
    """The module's empirical headline claims ({claim_id: {statement, departures, figures}}; rows of kind
    ``headline``): ``study_declared`` without the identities."""
    return {cid: {k: v for k, v in h.items() if k != "kind"} for cid, h in study_declared(name, cfg).items()
            if h["kind"] == "headline"}


def study_identities(name: str, cfg: dict | None = None) -> dict[str, dict]:
    """The module's declared identities (rows of kind ``identity``), as ``study_headlines``."""
    return {cid: {k: v for k, v in h.items() if k != "kind"} for cid, h in study_declared(name, cfg).items()
            if h["kind"] == "identity"}


def study_order(title: str) -> tuple:
    """Sort key: titles 'S<n>: ...' by n, then the rest in the given order (sorted() is stable)."""
    m = re.match(r"S(\d+)\b", title)
    return (0, int(m.group(1))) if m else (1, 0)


def claim_key(claim_id: str) -> str:
    """S4.a[relu, lr=0.1] -> S4.a"""
    return claim_id.split("[", 1)[0]


NEW_COLUMNS = {"p_adj": math.nan, "sesoi": math.nan, "ci_level": math.nan, "basis": "", "detectable": math.nan,
               "seeds_needed": math.nan}


def normalize_claims(claims: pd.DataFrame) -> pd.DataFrame:
    """claims.csv of any age: ``kind`` (missing or blank: cell), ``p_adj`` and the columns added since (missing:
    NaN, ``basis`` '') present."""
    claims = claims.copy()
    if "kind" not in claims:
        claims["kind"] = "cell"
    claims["kind"] = claims["kind"].where(claims["kind"].isin(KINDS), "cell")
    for c, v in NEW_COLUMNS.items():
        if c not in claims:
            claims[c] = v
    claims["basis"] = [b if isinstance(b, str) else "" for b in claims["basis"]]
    return claims


def load_study(vdir: Path) -> dict:
    """Everything the scorecard shows of one study version."""
    vdir = Path(vdir)
    for f in ("claims.csv", "manifest.json"):
        if not (vdir / f).exists():
            raise FileNotFoundError(f"{vdir / f} is missing: run the study's analysis first")
    man = json.loads((vdir / "manifest.json").read_text())
    name = man.get("study", vdir.parent.name)
    claims = pd.read_csv(vdir / "claims.csv", keep_default_na=False, na_values=[""])
    missing = [c for c in CLAIM_COLUMNS if c not in claims.columns and c != "kind" and c not in NEW_COLUMNS]
    if missing:
        raise ValueError(f"{vdir / 'claims.csv'} lacks the columns {missing}")
    claims = normalize_claims(claims)
    figs = [vdir / "figures" / f for f in man.get("figures", []) if f.endswith(".png")]
    figs = [f for f in figs if f.exists()] or sorted((vdir / "figures").glob("*.png"))
    runs = pd.read_parquet(vdir / "summary.parquet") if (vdir / "summary.parquet").exists() else pd.DataFrame()
    headlines = study_declared(name, (man.get("resolved_config") or {}).get("study_config"))
    mapping = getattr(study_module(name), "CLAIM_FIGURES", None) or {}
    mapping = {**{cid: h["figures"] for cid, h in headlines.items() if h["figures"]}, **mapping}
    return {"name": name, "version": man.get("version", vdir.name), "vdir": vdir, "manifest": man,
            "claims": claims, "figures": figs, "runs": runs, "claim_figures": mapping,
            "title": study_title(name), "papers": study_papers(name), "headlines": headlines}


def figures_of(study: dict, claim_id: str, all_if_unmapped: bool = True) -> list[Path]:
    """The figures a claim is shown in: the study's mapping (CLAIM_FIGURES, HEADLINES), else all its figures."""
    stems = study["claim_figures"].get(claim_id, study["claim_figures"].get(claim_key(claim_id)))
    if stems is None:
        return study["figures"] if all_if_unmapped else []
    by_stem = {f.stem: f for f in study["figures"]}
    return [by_stem[s] for s in stems if s in by_stem]


def collect(loaded: list[dict], rel_to: Path) -> pd.DataFrame:
    """All claims of all studies as one table (the ``claims_all.csv`` rows)."""
    frames = []
    for s in loaded:
        c = s["claims"][CLAIM_COLUMNS].copy()
        c.insert(0, "version", s["version"])
        c.insert(0, "study", s["name"])
        c["figures"] = [";".join(rel(f, rel_to) for f in figures_of(s, cid)) for cid in c.claim_id]
        c["version_dir"] = rel(s["vdir"], rel_to)
        frames.append(c)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=ALL_COLUMNS)


def headline_rows(s: dict, kinds=("headline", "identity")) -> list[dict]:
    """One entry per paper-level claim of a study of the given ``kinds`` (empirical headline claims first,
    then identities): declared ones in ``HEADLINES`` order (a declared claim without a row gets verdict
    'missing'), then rows of those kinds the module does not declare. Each entry has ``kind``."""
    c = s["claims"]
    out = []
    for kind in kinds:
        rows = c[c.kind == kind]
        by_id = {str(r.claim_id): r for r in rows.itertuples()}
        declared = [cid for cid, h in s["headlines"].items() if h.get("kind", "headline") == kind
                    and not (cid in set(c.claim_id.astype(str)) and cid not in by_id)]
        ids = declared + [cid for cid in by_id if cid not in declared]
        for cid in ids:
            h = s["headlines"].get(cid, {})
            out.append({"study": s, "claim_id": cid, "row": by_id.get(cid), "kind": kind,
                        "statement": h.get("statement") or (str(by_id[cid].claim) if cid in by_id else ""),
                        "departures": h.get("departures", ""),
                        "figures": figures_of(s, cid, all_if_unmapped=False)})
    return out


def grouped_headlines(loaded: list[dict]) -> dict[str, list[dict]]:
    """The headline table's rows: {"headline": every study's empirical headline claims, "identity": every
    study's identities} (studies in the given order; a group without rows is left out)."""
    out = {k: [h for s in loaded for h in headline_rows(s, kinds=(k,))] for k in ("headline", "identity")}
    return {k: v for k, v in out.items() if v}


def counts(df: pd.DataFrame) -> dict:
    vc = df["verdict"].value_counts() if len(df) else pd.Series(dtype=int)
    return {v: int(vc.get(v, 0)) for v in VERDICTS}


def kind_of(df: pd.DataFrame, kind: str) -> pd.DataFrame:
    return df[df["kind"] == kind] if "kind" in df else (df if kind == "cell" else df.iloc[0:0])


def kind_line(df: pd.DataFrame, kind: str) -> str:
    """'9 hold, 4 fail, 5 inconclusive (of 18)' for the claims of one kind."""
    d = kind_of(df, kind)
    c = counts(d)
    return ", ".join(f"{c[v]} {PLURAL[v]}" for v in VERDICTS) + f" (of {len(d)})"


def summary_line(df: pd.DataFrame, kinds=KINDS) -> str:
    """'Headline claims: ... Cells: ... Checks: ...' (counts kept apart)."""
    return " ".join(f"{KIND_TITLES[k]}: {kind_line(df, k)}." for k in kinds)


# ---------------------------------------------------------------------------- the replication matrix
SMOKE = "smoke"


def newest_versions(results: Path) -> dict[str, dict[str, Path]]:
    """{config name: {study: newest version folder}}: per study, the newest version of each config name
    that has results (claims.csv and manifest.json), whatever ``latest`` points at."""
    out: dict[str, dict[str, Path]] = {}
    for sdir in sorted(p for p in Path(results).iterdir() if p.is_dir() and not p.is_symlink()):
        done = [v for v in sdir.iterdir() if v.is_dir() and not v.is_symlink() and VERSION.match(v.name)
                and (v / "claims.csv").exists() and (v / "manifest.json").exists()]
        for name, v in newest_by_name(done).items():
            out.setdefault(name, {})[sdir.name] = v
    return out


def config_order(names) -> list[str]:
    """``default`` first, then the others alphabetically, ``smoke`` last."""
    return sorted(names, key=lambda n: (n != "default", n == SMOKE, n))


def config_files(configs: Path | None) -> dict[str, str]:
    """{config name: the command that runs it} for the config files in ``configs`` (``config/``)."""
    out = {}
    for f in sorted(Path(configs).glob("*.yaml")) if configs and Path(configs).is_dir() else []:
        try:
            import yaml

            name = (yaml.safe_load(f.read_text()) or {}).get("name")
        except Exception:  # noqa: BLE001 (an unreadable config file only loses its hint)
            continue
        if isinstance(name, str) and name:
            cmd = "snakemake --cores all" + ("" if f.name == "config.yaml" else f" --configfile config/{f.name}")
            out.setdefault(name, cmd)
    return out


def replication_matrix(results: Path, loaded=(), configs: Path | None = None) -> dict:
    """The cross-config view of the headline claims: one row per headline claim (of any config), one
    column per config name with results (``config_order``; ``smoke``, a pipeline test of a few steps,
    is left out when any other config has results), each cell the ``headline_rows`` entry of the newest
    version of that config name (None: the study has no version of that config).

    Returns {"configs": [names], "studies": {config: {study: loaded study}}, "datasets": {config: text},
    "rows": [{"study", "title", "claim_id", "statement", "kind", "cells": {config: entry or None}}] (empirical
    headline claims first, then identities),
    "dropped": [config names left out], "todo": {config name: command} (config files with no column)}.
    ``loaded``: studies already loaded (reused by folder)."""
    found = newest_versions(results) if Path(results).is_dir() else {}
    names = config_order(found)
    dropped = [SMOKE] if SMOKE in names and len(names) > 1 else []
    names = [n for n in names if n not in dropped]
    cache = {Path(s["vdir"]).resolve(): s for s in loaded}
    per_config = {n: {st: cache.get(v.resolve()) or load_study(v) for st, v in found[n].items()} for n in names}
    datasets = {}
    for n, ss in per_config.items():
        ds = {((s["manifest"].get("resolved_config") or {}).get("dataset") or {}).get("name") for s in ss.values()}
        datasets[n] = ", ".join(sorted(d for d in ds if d))
    titles = {st: s["title"] for ss in per_config.values() for st, s in ss.items()}
    registry = {s: i for i, s in enumerate(studies.STUDIES)}
    order = sorted(titles, key=lambda st: (study_order(titles[st]), registry.get(st, len(registry)), st))
    rows = []
    for kind in ("headline", "identity"):  # empirical claims first, identities apart
        for st in order:
            by_config = {n: {h["claim_id"]: h for h in headline_rows(ss[st], kinds=(kind,))}
                         for n, ss in per_config.items() if st in ss}
            ids: list[str] = []
            for heads in by_config.values():
                ids += [cid for cid in heads if cid not in ids]
            for cid in ids:
                cells = {n: by_config.get(n, {}).get(cid) for n in names}
                statement = next((h["statement"] for h in cells.values() if h and h["statement"]), "")
                rows.append({"study": st, "title": titles[st], "claim_id": cid, "statement": statement,
                             "cells": cells, "kind": kind})
    todo = {n: cmd for n, cmd in config_files(configs).items() if n not in names and n != SMOKE}
    return {"configs": names, "studies": per_config, "datasets": datasets, "rows": rows, "dropped": dropped,
            "todo": todo}


def matrix_header(m: dict, n: str) -> str:
    return f"{n} ({m['datasets'][n]})" if m["datasets"].get(n) else n


def first_of_study(m: dict, i: int) -> bool:
    """Whether row ``i`` of the matrix is its study's first in its group (the study is named there only)."""
    return i == 0 or (m["rows"][i - 1]["study"], m["rows"][i - 1].get("kind")) != (m["rows"][i]["study"],
                                                                                    m["rows"][i].get("kind"))


def first_of_group(m: dict, i: int) -> bool:
    """Whether row ``i`` starts a group (identities after the empirical claims; the empirical group, shown first,
    is labelled only when identities follow)."""
    kinds = [r.get("kind", "headline") for r in m["rows"]]
    k = kinds[i]
    if i > 0 and kinds[i - 1] == k:
        return False
    return k == "identity" or "identity" in kinds


def matrix_note(m: dict) -> str:
    """What the matrix shows, which configs it leaves out and how to fill more columns."""
    cols = ", ".join(f"`{n}`" for n in m["configs"]) or "none"
    text = (f"Headline claims across configs (empirical claims first, identities apart): one column per config with "
            f"results ({cols}), each from the newest version of that config name (not the `latest` link). A cell: "
            "verdict, value [the interval the verdict was made from] and its level; for an inconclusive claim the "
            "seeds that would decide it at 80% power, or that more seeds would not help; \"not run\": the study has "
            "no version of that config.")
    if m["dropped"]:
        text += f" Left out: {', '.join(f'`{n}`' for n in m['dropped'])} (a pipeline test of a few steps, not evidence)."
    if m["todo"]:
        text += " More columns: " + "; ".join(f"{n}: `{cmd}`" for n, cmd in m["todo"].items()) + "."
    elif len(m["configs"]) < 2:
        text += " More columns: run another config, e.g. `snakemake --cores all --configfile config/<name>.yaml`."
    return text


def matrix_markdown(m: dict, out_dir: Path | None = None) -> str:
    """The matrix as a markdown table; with ``out_dir`` each verdict links to its version's claims.csv
    (relative to ``out_dir``), without it (W&B) each cell names its version."""
    lines = ["| study | claim | " + " | ".join(md_cell(matrix_header(m, n)) for n in m["configs"]) + " |",
             "|---|---|" + "---|" * len(m["configs"])]
    for i, row in enumerate(m["rows"]):
        cells = []
        for n in m["configs"]:
            h = row["cells"][n]
            if h is None:
                cells.append("not run")
                continue
            s, r = h["study"], h["row"]
            verdict = f"**{r.verdict if r is not None else 'missing'}**"
            if out_dir is not None:
                verdict = f"[{verdict}]({rel(Path(s['vdir']) / 'claims.csv', out_dir)})"
            text = verdict + (f" {value_ci(r, 3)}{level_suffix(r)}" if r is not None else "")
            more = power_short(r) if r is not None else ""
            text += f"; {more}" if more else ""
            cells.append(text + ("" if out_dir is not None else f" `{s['version']}`"))
        if first_of_group(m, i):
            lines.append(f"| **{md_cell(GROUP_TITLES[row.get('kind', 'headline')].split(':')[0])}** | |"
                         + " |" * len(m["configs"]))
        study = md_cell(short_title(row["title"])) if first_of_study(m, i) else ""
        lines.append(f"| {study} | {md_cell(row['claim_id'])} | " + " | ".join(cells) + " |")
    if not m["rows"]:
        lines.append("| | no headline claims under any config yet |" + " |" * len(m["configs"]))
    return "\n".join(lines)


# ---------------------------------------------------------------------------- formatting
def rel(path: Path, start: Path) -> str:
    return Path(os.path.relpath(Path(path).absolute(), Path(start).absolute())).as_posix()


def fmt(x, digits: int = 4) -> str:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return str(x)
    if math.isnan(x):
        return "n/a"
    return f"{x:.{digits}g}"


def value_ci(r, digits: int = 4) -> str:
    return f"{fmt(r.value, digits)} [{fmt(r.ci_low, digits)}, {fmt(r.ci_high, digits)}]"


def _num(r, col: str) -> float:
    try:
        return float(getattr(r, col, math.nan))
    except (TypeError, ValueError):
        return math.nan


def level_text(r) -> str:
    """'97.5%': the confidence level of the interval shown (the one the verdict was made from); '' if unknown
    or exact."""
    lv = _num(r, "ci_level")
    if not math.isfinite(lv):
        return ""
    pct = 100 * lv
    return f"{pct:.1f}%" if abs(pct - round(pct)) > 0.05 else f"{pct:.0f}%"


def level_suffix(r) -> str:
    lv = level_text(r)
    return f" ({lv})" if lv else ""


def sesoi_text(r) -> str:
    """'sesoi 0.01' when the row declares a smallest effect of interest other than its threshold's number."""
    v = _num(r, "sesoi")
    if not math.isfinite(v) or fmt(v) in str(getattr(r, "threshold", "")):
        return ""
    return f"sesoi {fmt(v)}"


def power_short(r) -> str:
    """For an inconclusive row: the seeds that would decide it at 80% power, or that more seeds would not help."""
    if str(getattr(r, "verdict", "")) != "inconclusive":
        return ""
    need = _num(r, "seeds_needed")
    if need == math.inf:
        return "more seeds would not help (on a margin)"
    if not math.isfinite(need):
        return ""
    det = _num(r, "detectable")
    return f"~{int(need)} seeds would decide it" + (f" (detects {fmt(det, 3)} at {r.n_seeds})"
                                                   if math.isfinite(det) else "")


def p_text(r) -> str:
    p = getattr(r, "p_adj", math.nan)
    try:
        p = float(p)
    except (TypeError, ValueError):
        return ""
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


def count_line(c: dict) -> str:
    return ", ".join(f"{c[v]} {v}" for v in VERDICTS)


def short_title(title: str) -> str:
    """'S1: Santurkar et al. 2018, How does ...' -> 'S1: Santurkar et al. 2018' (cut at ', ' or ' (')."""
    return re.split(r",\s|\s\(", title, maxsplit=1)[0]


def measured(r) -> str:
    """'metric = value [low, high] (level), n seeds (claim: threshold; sesoi x); what more seeds would buy'."""
    claim_txt = "; ".join(x for x in (fmt(r.threshold), sesoi_text(r)) if x)
    more = power_short(r)
    seeds = f"{r.n_seeds} seed{'' if str(r.n_seeds) == '1' else 's'}"
    return (f"{r.metric} = {value_ci(r)}{level_suffix(r)}, {seeds} (claim: {claim_txt})"
            + (f"; {more}" if more else ""))


# ---------------------------------------------------------------------------- markdown
def paper_links_md(s: dict) -> str:
    return "; ".join(f"[{md_cell(p['cite'])}]({p['url']})" if p["url"] else md_cell(p["cite"]) for p in s["papers"])


def claims_table_md(s: dict, claims: pd.DataFrame, out_dir: Path, full_text: bool = True) -> list[str]:
    lines = ["| claim | verdict | value [CI] | level | threshold | sesoi | p_adj | seeds | more seeds | claim text | "
             "basis | source | figures |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in claims.itertuples():
        mapped = figures_of(s, r.claim_id, all_if_unmapped=False)
        figs = ", ".join(f"[{f.stem}]({rel(f, out_dir)})" for f in mapped) or "all, below"
        text = md_cell(r.claim) if full_text else md_cell(short(r.claim, 160))
        lines.append(f"| {md_cell(r.claim_id)} | **{r.verdict}** | {value_ci(r)} | {level_text(r)} | {fmt(r.threshold)} | "
                     f"{fmt(r.sesoi) if math.isfinite(_num(r, 'sesoi')) else ''} | "
                     f"{p_text(r).removeprefix('p_adj ')} | {r.n_seeds} | {md_cell(power_short(r))} | {text} "
                     f"(`{md_cell(r.metric)}`) | {md_cell(getattr(r, 'basis', ''))} | {md_cell(r.source)} | {figs} |")
    return lines


def render_markdown(loaded: list[dict], df: pd.DataFrame, out_dir: Path, matrix: dict | None = None) -> str:
    lines = ["# Replication scorecard", "", f"**{summary_line(df)}**", "",
             f"{len(loaded)} {'study' if len(loaded) == 1 else 'studies'}, {len(df)} claims in all. {VERDICT_RULE} Checks (instrument identities, "
             "controls) and per-cell detail are listed per study below, apart from the papers' claims. "
             "*Departs from the paper* is the study's declaration for its default config; each claim's own text "
             "(per study, below) describes this run's setup.", "",
             "| study | claim | verdict | the paper says | we measured | departs from the paper | figure |",
             "|---|---|---|---|---|---|---|"]
    groups = grouped_headlines(loaded)
    for kind, entries in groups.items():
        if len(groups) > 1 or kind == "identity":
            lines.append(f"| **{md_cell(GROUP_TITLES[kind])}** | | | | | | |")
        for i, h in enumerate(entries):
            s, r = h["study"], h["row"]
            first = i == 0 or entries[i - 1]["study"] is not s
            study = f"[{md_cell(short_title(s['title']))}](#{anchor(s['title'])})" if first else ""
            verdict = f"**{r.verdict}**" + (f" ({p_text(r)})" if p_text(r) else "") if r is not None else "**missing**"
            meas = md_cell(measured(r)) if r is not None else "no row in claims.csv"
            fig = ", ".join(f"[{f.stem}]({rel(f, out_dir)})" for f in h["figures"][:1])
            lines.append(f"| {study} | {md_cell(h['claim_id'])} | "
                         f"{verdict} | {md_cell(short(h['statement']))} | {meas} | "
                         f"{md_cell(short(h['departures']))} | {fig} |")
    if not any(headline_rows(s) for s in loaded):
        lines.append("| | | | no study declares headline claims yet | | | |")
    if matrix is not None:
        lines += ["", "## Replication matrix", "", matrix_note(matrix), "", matrix_markdown(matrix, out_dir)]
    lines += ["", "## Studies", "", "| study | version | " + " | ".join(KIND_TITLES[k].lower() for k in KINDS) + " |",
              "|---|---|" + "---|" * len(KINDS)]
    for s in loaded:
        sd = df[df.study == s["name"]]
        lines.append(f"| [{md_cell(s['title'])}](#{anchor(s['title'])}) | `{s['version']}` | "
                     + " | ".join(kind_line(sd, k) for k in KINDS) + " |")
    for s in loaded:
        vd = rel(s["vdir"], out_dir)
        c = s["claims"]
        lines += ["", f"## {s['title']}", ""]
        if s["papers"]:
            lines += [f"Papers: {paper_links_md(s)}.", ""]
        lines += [(f"Study `{s['name']}`, version [`{s['version']}`]({vd}/): [claims.csv]({vd}/claims.csv), "
                  f"[manifest.json]({vd}/manifest.json), runs under [{vd}/runs/]({vd}/runs/) "
                  f"(W&B group `{s['name']}/{s['version']}`).")]
        heads = headline_rows(s)
        if heads:
            lines += ["", "### Headline claims", ""]
            for h in heads:
                r = h["row"]
                tag = " (identity)" if h["kind"] == "identity" else ""
                lines += [f"- **{md_cell(h['claim_id'])}{tag}: {r.verdict if r is not None else 'missing'}.** "
                          f"The paper: {md_cell(h['statement'])}"
                          + (f" Measured: {md_cell(r.claim)}; {md_cell(measured(r))}" if r is not None else "")
                          + (f"; {p_text(r)}." if r is not None and p_text(r) else ".")
                          + (f" Departures: {md_cell(h['departures'])}." if h["departures"] else "")]
        for kind in KINDS:
            rows = c[c.kind == kind]
            if len(rows):
                lines += ["", f"### {KIND_TITLES[kind]} ({kind_line(rows, kind)})", "",
                          *claims_table_md(s, rows, out_dir)]
        if s["figures"]:
            lines += ["", "Figures: " + ", ".join(f"[{f.stem}]({rel(f, out_dir)})" for f in s["figures"])]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- html
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1em auto;max-width:1500px;
 padding:0 1em;color:#1f2328;font-size:14px}
h1{margin:.1em 0 .2em;font-size:1.35em}
table{border-collapse:collapse;margin:.5em 0 1em;font-size:.92em}
th,td{border:1px solid #d0d7de;padding:.25em .45em;text-align:left;vertical-align:top}
th{background:#f6f8fa}
.verdict{font-weight:600;color:#fff;border-radius:.3em;padding:.1em .45em;white-space:nowrap}
.holds{background:#1a7f37}.fails{background:#cf222e}.inconclusive{background:#6e7781}.missing{background:#9a6700}
.num{font-family:ui-monospace,monospace;white-space:nowrap}
.figs{display:flex;flex-wrap:wrap;gap:1em}
figure{margin:0;max-width:420px}figure img{max-width:420px;border:1px solid #d0d7de}
figcaption{font-size:.8em;color:#57606a}
code{background:#f6f8fa;padding:0 .2em}
#counts{font-size:1.15em;margin:.2em 0}
#counts b{font-size:1.05em}
.rule{color:#57606a;font-size:.88em;margin:.2em 0 .4em}
table.headlines{width:100%;font-size:.8em}
table.headlines td{line-height:1.2;padding:.15em .4em}
table.headlines small{font-size:.92em}
.clamp{display:-webkit-box;-webkit-line-clamp:2;-webkit-box-orient:vertical;overflow:hidden}
.clamp:hover{-webkit-line-clamp:unset}
td.study{background:#f6f8fa;max-width:10em}
td.study a.t{font-weight:600}
td.thumb{padding:.1em .2em}td.thumb img{height:28px;border:1px solid #d0d7de;display:block}
#counts .others{font-size:.8em;color:#57606a}
small.line{display:block;white-space:nowrap;overflow:hidden;text-overflow:ellipsis;max-width:19em}
small{color:#57606a}
details{margin:.4em 0}summary{cursor:pointer;font-weight:600}
ul.papers{margin:.2em 0}
table.matrix{font-size:.85em}table.matrix a{text-decoration:none}
"""


def thumbnail_uri(png: Path, width: int = 420) -> str:
    """A small PNG of the figure as a data URI, so the page shows figures wherever it is opened."""
    try:
        from PIL import Image

        im = Image.open(png)
        if im.width > width:
            im = im.resize((width, round(im.height * width / im.width)), Image.LANCZOS)
        buf = io.BytesIO()
        im.save(buf, format="PNG", optimize=True)
        data = buf.getvalue()
    except ImportError:  # pillow ships with matplotlib; fall back to the full image
        data = Path(png).read_bytes()
    return "data:image/png;base64," + base64.b64encode(data).decode()


def caption_text(study: str, stem: str) -> str:
    """The figure's caption as its study package declares it (``captions/<stem>.rst``), else ''."""
    if study not in studies.STUDIES:
        return ""
    f = studies.caption_path(study, stem)
    return " ".join(f.read_text().split()) if f.exists() else ""


def verdict_html(v: str) -> str:
    return f'<span class="verdict {html.escape(v)}">{html.escape(v)}</span>'


def claims_table_html(claims: pd.DataFrame, fig_links=None) -> str:
    """Claims as an HTML table (``fig_links(claim_id) -> html`` adds a figures column)."""
    e = html.escape
    head = ["claim", "verdict", "value [CI]", "level", "threshold", "sesoi", "p_adj", "seeds", "more seeds",
            "claim text", "basis of the verdict", "metric", "source"]
    head += ["figures"] if fig_links else []
    rows = ["<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for r in claims.itertuples():
        sesoi = _num(r, "sesoi")
        cells = [e(str(r.claim_id)), verdict_html(str(r.verdict)), f'<span class="num">{e(value_ci(r))}</span>',
                 f'<span class="num">{e(level_text(r))}</span>', f'<span class="num">{e(fmt(r.threshold))}</span>',
                 f'<span class="num">{e(fmt(sesoi)) if math.isfinite(sesoi) else ""}</span>',
                 f'<span class="num">{e(p_text(r).removeprefix("p_adj "))}</span>', str(r.n_seeds),
                 f"<small>{e(power_short(r))}</small>", e(str(r.claim)),
                 f"<small>{e(str(getattr(r, 'basis', '')))}</small>", f"<code>{e(str(r.metric))}</code>",
                 e(str(r.source))]
        if fig_links:
            cells.append(fig_links(str(r.claim_id)))
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return "\n".join(rows) + "</table>"


def runs_table_html(s: dict, out_dir: Path) -> str:
    runs = s["runs"]
    if runs.empty:
        return "<p>No summary.parquet.</p>"
    e = html.escape
    finals = [c for c in runs.columns if c.startswith("final_")]
    head = ["variant", "seed", "status", *[c.removeprefix("final_") for c in finals], "files"]
    rows = ["<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for r in runs.sort_values(["variant", "seed"]).itertuples(index=False):
        d = Path(s["vdir"]) / "runs" / str(r.variant) / f"seed{r.seed}"
        links = " ".join(f'<a href="{e(rel(d / f, out_dir))}">{f}</a>' for f in ("summary.json", "metrics.parquet"))
        vals = [f'<span class="num">{fmt(getattr(r, c))}</span>' for c in finals]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in [e(str(r.variant)), str(r.seed), e(str(r.status)),
                                                                 *vals, links]) + "</tr>")
    return "\n".join(rows) + "</table>"


def paper_links_html(s: dict) -> str:
    e = html.escape
    return "".join(f"<li><a href='{e(p['url'])}'>{e(p['cite'])}</a></li>" if p["url"] else f"<li>{e(p['cite'])}</li>"
                   for p in s["papers"])


def headline_table_html(loaded: list[dict], out_dir: Path, thumbs: bool = True) -> str:
    """The front table: one row per paper-level claim of every study, the empirical headline claims first and
    the identities apart below (study cell spans its claims of the group)."""
    e = html.escape
    head = ["study", "claim", "verdict", "the paper says", "we measured", "departs from the paper", "figure"]
    rows = ["<table class='headlines' id='headlines'><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    thumb_cache: dict[Path, str] = {}
    groups = grouped_headlines(loaded)
    for kind, entries in groups.items():
        if len(groups) > 1 or kind == "identity":
            rows.append(f"<tr class='group'><td colspan='{len(head)}'><b>{e(GROUP_TITLES[kind])}</b></td></tr>")
        for i, h in enumerate(entries):
            s, r = h["study"], h["row"]
            cells = []
            if i == 0 or entries[i - 1]["study"] is not s:
                span = sum(1 for x in entries if x["study"] is s)
                paper = s["papers"][0]["url"] if s["papers"] else ""
                link = (f"<br><small><a href='{e(paper)}' title='{e(s['papers'][0]['cite'])}'>paper</a></small>"
                        if paper else "")
                cells.append(f"<td class='study' rowspan='{span}'><a class='t' href='#{anchor(s['name'])}' "
                             f"title='{e(s['title'])}'>{e(short_title(s['title']))}</a>{link}</td>")
            cells.append(f"<td><a href='#{anchor(s['name'])}-{anchor(h['claim_id'])}'><b>{e(h['claim_id'])}</b></a></td>")
            if r is None:
                cells += [f"<td>{verdict_html('missing')}</td>",
                          f"<td><div class='clamp'>{e(h['statement'])}</div></td>",
                          "<td>no row in claims.csv</td>"]
            else:
                claim_txt = "; ".join(x for x in (fmt(r.threshold), sesoi_text(r)) if x)
                more = power_short(r)
                cells += [f"<td title='{e(str(getattr(r, 'basis', '')))}'>{verdict_html(str(r.verdict))}<br>"
                          f"<small>{e(p_text(r))}</small></td>",
                          f"<td><div class='clamp' title='{e(h['statement'])}'>{e(h['statement'])}</div></td>",
                          (f"<td title='{e(str(r.claim))}'><span class='num'>{e(value_ci(r, 3))}</span>"
                           f"<small> {e(level_text(r))}</small><small "
                           f"class='line'><code>{e(str(r.metric))}</code> {e(claim_txt)}, "
                           f"{e(str(r.n_seeds))} seeds</small>"
                           + (f"<small class='line' title='{e(more)}'>{e(more)}</small>" if more else "") + "</td>")]
            cells.append(f"<td><div class='clamp' title='{e(h['departures'])}'>{e(h['departures'])}</div></td>")
            fig = h["figures"][0] if h["figures"] else None
            if fig is None:
                cells.append("<td></td>")
            elif thumbs:
                uri = thumb_cache.setdefault(fig, thumbnail_uri(fig, 160))
                cells.append(f"<td class='thumb'><a href='{e(rel(fig, out_dir))}' title='{e(fig.stem)}'>"
                             f"<img alt='{e(fig.stem)}' src='{uri}'></a></td>")
            else:
                cells.append(f"<td><a href='{e(rel(fig, out_dir))}'>{e(fig.stem)}</a></td>")
            rows.append("<tr>" + "".join(c if c.startswith("<td") else f"<td>{c}</td>" for c in cells) + "</tr>")
    if len(rows) == 1:
        rows.append(f"<tr><td colspan='{len(head)}'>No study declares headline claims yet.</td></tr>")
    return "\n".join(rows) + "</table>"


def matrix_html(m: dict, out_dir: Path, inline: bool = False) -> str:
    """The replication matrix as an HTML table; each verdict links to its version's claims (claims.html
    when the Snakemake rule made it, else claims.csv), hover: the version. ``inline``: inline styles
    (the Snakemake report's front page), else the scorecard's CSS classes."""
    e = html.escape
    td = "border:1px solid #d0d7de;padding:2px 4px;vertical-align:top;" if inline else ""
    cell = f"<td style='{td}'>" if inline else "<td>"
    th = f"<th style='{td}background:#f6f8fa'>" if inline else "<th>"
    head = ["study", "claim", *(matrix_header(m, n) for n in m["configs"])]
    table = ("<table style='border-collapse:collapse;font-size:.8em;width:100%'>" if inline
             else "<table class='matrix' id='matrix'>")
    rows = [table + "<tr>" + "".join(f"{th}{e(h)}</th>" for h in head) + "</tr>"]
    for i, row in enumerate(m["rows"]):
        if first_of_group(m, i):
            rows.append(("<tr>" if inline else "<tr class='group'>") + f"<td colspan='{len(head)}'"
                        + (f" style='{td}background:#f6f8fa'>" if inline else ">")
                        + f"<b>{e(GROUP_TITLES[row.get('kind', 'headline')].split(':')[0])}</b></td></tr>")
        cells = [f"{cell}{e(short_title(row['title'])) if first_of_study(m, i) else ''}</td>",
                 f"<td style='{td}white-space:nowrap' title='{e(row['statement'])}'><b>{e(row['claim_id'])}</b></td>"
                 if inline else f"<td title='{e(row['statement'])}'><b>{e(row['claim_id'])}</b></td>"]
        for n in m["configs"]:
            h = row["cells"][n]
            if h is None:
                cells.append(f"{cell}<small>not run</small></td>")
                continue
            s, r = h["study"], h["row"]
            vd = Path(s["vdir"])
            target = vd / ("claims.html" if (vd / "claims.html").exists() else "claims.csv")
            v = "missing" if r is None else str(r.verdict)
            badge = (f"<span style='background:{COLORS.get(v, '#6e7781')};color:#fff;border-radius:3px;"
                     f"padding:0 4px;font-weight:600'>{e(v)}</span>" if inline else verdict_html(v))
            num = "" if r is None else (f" <span style='font-family:monospace'>{e(value_ci(r, 3))}</span>" if inline
                                        else f" <span class='num'>{e(value_ci(r, 3))}</span>")
            if r is not None and level_text(r):
                num += f" <small>{e(level_text(r))}</small>"
            more = power_short(r) if r is not None else ""
            num += f"<br><small>{e(more)}</small>" if more else ""
            cells.append(f"{cell}<a href='{e(rel(target, out_dir))}' title='{e(s['name'])}/{e(s['version'])}'>"
                         f"{badge}</a>{num}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    if not m["rows"]:
        rows.append(f"<tr><td colspan='{len(head)}' style='{td}'>No headline claims under any config yet.</td></tr>")
    return "\n".join(rows) + "</table>"


def md_inline(text: str) -> str:
    """Markdown `code` spans of a note as HTML <code> (escaped)."""
    return re.sub(r"`([^`]*)`", r"<code>\1</code>", html.escape(text))


def front_fragment(loaded: list[dict], df: pd.DataFrame, matrix: dict | None = None,
                   out_dir: Path | None = None) -> str:
    """The headline table as an HTML fragment with inline styles, for the Snakemake report's front page
    (``workflow.rst`` includes it; the report's narrow description column gets a compact table)."""
    e = html.escape
    td = "border:1px solid #d0d7de;padding:2px 4px;vertical-align:top;"
    out = [f"<p><b>{e(summary_line(df))}</b></p>",
           "<p style='font-size:.8em'>One multiplicity rule per study (any wrong verdict at most 5% per family); "
           "value [the Student t interval over seeds its verdict was made from] at its level (claim; smallest effect "
           "of interest); identities (true by construction) apart. Hover a row: the paper's statement, what departs "
           "from it, how the verdict was reached.</p>",
           "<table style='border-collapse:collapse;font-size:.8em;width:100%'><tr>"
           + "".join(f"<th style='{td}background:#f6f8fa'>{h}</th>" for h in ("claim", "verdict", "the paper says",
                                                                           "we measured")) + "</tr>"]
    groups = grouped_headlines(loaded)
    for kind, entries in groups.items():
        if len(groups) > 1 or kind == "identity":
            out.append(f"<tr><td colspan='4' style='{td}background:#f6f8fa'><b>{e(GROUP_TITLES[kind])}</b></td></tr>")
        for h in entries:
            r = h["row"]
            v = "missing" if r is None else str(r.verdict)
            badge = (f"<span style='background:{COLORS.get(v, '#6e7781')};color:#fff;border-radius:3px;"
                     f"padding:0 4px;font-weight:600'>{e(v)}</span>")
            claim_txt = "" if r is None else "; ".join(x for x in (fmt(r.threshold), sesoi_text(r)) if x)
            more = "" if r is None else power_short(r)
            meas = "no row" if r is None else (f"{e(value_ci(r, 3))}{e(level_suffix(r))} ({e(claim_txt)})"
                                               + (f"<br>{e(more)}" if more else ""))
            tip = e(f"{h['statement']} | Departs: {h['departures']}"
                    + (f" | {r.basis}" if r is not None and str(getattr(r, 'basis', '')) else ""))
            out.append(f"<tr title='{tip}'><td style='{td}white-space:nowrap'><b>{e(h['claim_id'])}</b></td>"
                       f"<td style='{td}'>{badge}</td><td style='{td}'>{e(short(h['statement'], 90))}</td>"
                       f"<td style='{td}font-family:monospace'>{meas}</td></tr>")
    out.append("</table>")
    if matrix is not None:
        out += ["<p><b>Replication matrix</b></p>", f"<p style='font-size:.8em'>{md_inline(matrix_note(matrix))}</p>",
                matrix_html(matrix, Path(out_dir or "."), inline=True)]
    return "\n".join(out) + "\n"


def render_html(loaded: list[dict], df: pd.DataFrame, out_dir: Path, matrix: dict | None = None) -> str:
    e = html.escape
    parts = [(f"<!doctype html><html><head><meta charset='utf-8'><title>normlab scorecard</title>"
             f"<style>{CSS}</style></head><body>"),
             "<h1>Replication scorecard: what replicated</h1>",
             f"<p id='counts'><b>{e(summary_line(df, ('headline',)))}</b> <span class='others'>"
             f"{e(summary_line(df, ('identity', 'cell', 'check')))}</span></p>",
             f"<p class='rule'>{RULE_SHORT} Hover a clipped cell to read it all.</p>",
             headline_table_html(loaded, out_dir),
             *([] if matrix is None else ["<h2 id='replication-matrix'>Replication matrix</h2>",
                                          f"<p class='rule'>{md_inline(matrix_note(matrix))}</p>",
                                          matrix_html(matrix, out_dir)]),
             "<h2>Studies</h2><table><tr><th>study</th><th>version</th>"
             + "".join(f"<th>{KIND_TITLES[k].lower()}</th>" for k in KINDS) + "</tr>"]
    for s in loaded:
        sd = df[df.study == s["name"]]
        parts.append(f"<tr><td><a href='#{anchor(s['name'])}'>{e(s['title'])}</a></td><td><code>{e(s['version'])}"
                     f"</code></td>" + "".join(f"<td>{e(kind_line(sd, k))}</td>" for k in KINDS) + "</tr>")
    parts.append("</table>")
    for s in loaded:
        vd = rel(s["vdir"], out_dir)
        c = s["claims"]

        def fig_links(cid, s=s):
            mapped = figures_of(s, cid, all_if_unmapped=False)
            return (" ".join(f'<a href="{e(rel(f, out_dir))}">{e(f.stem)}</a>' for f in mapped)
                    or f"<a href='#{anchor(s['name'])}-figures'>all figures</a>")

        parts += [f"<h2 id='{anchor(s['name'])}'>{e(s['title'])}</h2>",
                  f"<ul class='papers'>{paper_links_html(s)}</ul>" if s["papers"] else "",
                  (f"<p>Study <code>{e(s['name'])}</code>, version <a href='{e(vd)}/'><code>{e(s['version'])}"
                  f"</code></a>: <a href='{e(vd)}/claims.csv'>claims.csv</a>, "
                  f"<a href='{e(vd)}/manifest.json'>manifest.json</a>, <a href='#{anchor(s['name'])}-runs'>runs</a>;"
                  f" W&amp;B group <code>{e(s['name'])}/{e(s['version'])}</code>.</p>")]
        heads = headline_rows(s)
        if heads:
            items = []
            for h in heads:
                r = h["row"]
                items.append(
                    f"<li id='{anchor(s['name'])}-{anchor(h['claim_id'])}'><b>{e(h['claim_id'])}</b> "
                    + ("<small>(identity)</small> " if h["kind"] == "identity" else "")
                    + verdict_html("missing" if r is None else str(r.verdict))
                    + f" <i>The paper:</i> {e(h['statement'])}"
                    + (f"<br><i>Measured:</i> {e(str(r.claim))} <span class='num'>{e(measured(r))}</span> "
                       f"<small>{e(p_text(r))}</small>" if r is not None else "")
                    + (f"<br><i>Verdict:</i> <small>{e(str(r.basis))}</small>"
                       if r is not None and str(getattr(r, "basis", "")) else "")
                    + (f"<br><i>Departs from the paper:</i> {e(h['departures'])}" if h["departures"] else "")
                    + "</li>")
            parts.append(f"<h3>Headline claims</h3><ul>{''.join(items)}</ul>")
        for kind in KINDS:
            rows = c[c.kind == kind]
            if len(rows):
                parts += [f"<details class='{kind}'><summary>"
                          f"{KIND_TITLES[kind]} of {e(s['name'])}: {e(kind_line(rows, kind))}</summary>",
                          claims_table_html(rows, fig_links), "</details>"]
        parts += [f"<details id='{anchor(s['name'])}-figures'><summary>Figures of {e(s['name'])} "
                  f"({len(s['figures'])})</summary><div class='figs'>"]
        for f in s["figures"]:
            cap = caption_text(s["name"], f.stem)
            parts.append(f"<figure><a href='{e(rel(f, out_dir))}'><img alt='{e(f.stem)}' src='{thumbnail_uri(f)}'>"
                         f"</a><figcaption><b>{e(f.stem)}</b>. {e(cap)}</figcaption></figure>")
        parts += ["</div></details>", (f"<details id='{anchor(s['name'])}-runs'><summary>Runs of {e(s['name'])} "
                  f"({len(s['runs'])})</summary>"), runs_table_html(s, out_dir), "</details>"]
    parts.append("</body></html>")
    return "\n".join(p for p in parts if p) + "\n"


def standalone_claims_html(vdir: Path) -> str:
    """One study's claims as a self-contained page (the Snakemake report shows it as a table):
    headline claims first, then cells, then checks."""
    s = load_study(vdir)
    e = html.escape
    c = s["claims"]
    body = []
    for kind in KINDS:
        rows = c[c.kind == kind]
        if len(rows):
            body += [f"<h4>{KIND_TITLES[kind]}: {e(kind_line(rows, kind))}</h4>", claims_table_html(rows)]
    papers = f"<ul class='papers'>{paper_links_html(s)}</ul>" if s["papers"] else ""
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{e(s['name'])} claims</title>"
            f"<style>{CSS}</style></head><body><h3>{e(s['title'])}: claims of "
            f"<code>{e(s['version'])}</code></h3>{papers}<p class='rule'>{e(VERDICT_RULE)}</p>"
            + "\n".join(body) + "</body></html>\n")


# ---------------------------------------------------------------------------- CLI
def write_text(text: str, path: Path) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))
    os.chmod(path, 0o644)  # atomic_write's temp files are private; these pages are for reading


def results_root(version_dirs: list[Path], default: Path) -> Path:
    """The results folder the version folders live in (``results/<study>/<version>``), else ``default``."""
    return Path(version_dirs[0]).parent.parent if version_dirs else Path(default)


def build(version_dirs: list[Path], out_dir: Path, results: Path | None = None,
          configs: Path | None = Path("config")) -> pd.DataFrame:
    """Write the scorecard of ``version_dirs`` into ``out_dir``; its replication matrix reads every version
    under ``results`` (default: the folder the version folders are in) and names the configs in ``configs``
    that have no column yet."""
    out_dir = Path(out_dir)
    loaded = sorted((load_study(v) for v in version_dirs), key=lambda s: study_order(s["title"]))
    df = collect(loaded, out_dir)
    matrix = replication_matrix(results or results_root(version_dirs, out_dir), loaded, configs)
    write_csv(df[ALL_COLUMNS], out_dir / "claims_all.csv")
    os.chmod(out_dir / "claims_all.csv", 0o644)
    write_text(render_markdown(loaded, df, out_dir, matrix), out_dir / "scorecard.md")
    write_text(render_html(loaded, df, out_dir, matrix), out_dir / "scorecard.html")
    write_text(front_fragment(loaded, df, matrix, out_dir), out_dir / "scorecard_front.html")
    return df


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, default=None,
                    help="results folder (default: results; with --version-dir: the folder those are in): its "
                         "latest versions (without --version-dir) and every config's newest version (the matrix)")
    ap.add_argument("--configs", type=Path, default=Path("config"),
                    help="folder of the config files the matrix suggests for its empty columns")
    ap.add_argument("--version-dir", type=Path, nargs="*", default=None,
                    help="study version folders (default: every results/<study>/latest)")
    ap.add_argument("--out-dir", type=Path, default=None, help="default: --results")
    ap.add_argument("--claims-html", type=Path, default=None, metavar="VERSION_DIR",
                    help="only write VERSION_DIR/claims.html (one study's claims table)")
    ap.add_argument("--out", type=Path, default=None, help="with --claims-html: output file")
    a = ap.parse_args(argv)
    if a.claims_html is not None:
        out = a.out or a.claims_html / "claims.html"
        write_text(standalone_claims_html(a.claims_html), out)
        print(f"[scorecard] wrote {out}")
        return
    results = a.results or Path("results")
    vdirs = a.version_dir if a.version_dir else latest_versions(results)
    if not vdirs:
        raise SystemExit(f"error: no study results under {results}/ (run snakemake first)")
    df = build(vdirs, a.out_dir or results, a.results, a.configs)
    print(f"[scorecard] {len(vdirs)} {'study' if len(vdirs) == 1 else 'studies'}: {summary_line(df)}")


if __name__ == "__main__":
    main()
