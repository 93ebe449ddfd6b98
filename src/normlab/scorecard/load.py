"""Loading results: a study version folder (``results/<study>/<version>``) -> what the scorecard shows of it
(its claims table, manifest, figures, runs and the study module's declarations), and every study's claims as
one table (``claims_all.csv``). Nothing here formats or renders."""

from __future__ import annotations

import json
import math
import os
import re
import sys
from pathlib import Path

import pandas as pd

from .. import studies
from ..stats import CLAIM_COLUMNS, KINDS

ALL_COLUMNS = ["study", "version", *CLAIM_COLUMNS, "figures", "version_dir"]
# Columns added to claims.csv since its first format, with the value an older file gets.
NEW_COLUMNS = {"p_adj": math.nan, "fail_margin": math.nan, "ci_level": math.nan, "basis": "", "detectable": math.nan,
               "seeds_needed": math.nan, "strata": "", "look": 1, "looks": 1, "nominal": math.nan, "stop": ""}
TEXT_COLUMNS = ("basis", "strata", "stop")


def rel(path: Path, start: Path) -> str:
    """``path`` relative to ``start`` (a link from a page in ``start``)."""
    return Path(os.path.relpath(Path(path).absolute(), Path(start).absolute())).as_posix()


def latest_versions(results: Path) -> list[Path]:
    """``results/<study>/latest`` of every study folder: registered studies in order, then others."""
    found = {p.parent.name: p.resolve() for p in sorted(Path(results).glob("*/latest")) if p.is_dir()}
    order = [s for s in studies.STUDIES if s in found] + sorted(s for s in found if s not in studies.STUDIES)
    return [Path(results) / s / found[s].name for s in order]


BROKEN: set[str] = set()  # study modules that failed to import (said once on stderr)


def study_module(name: str):
    """The study's module, or None (unregistered study, or a module that fails to import: the scorecard
    still shows its results, without the module's declarations, and says so once on stderr)."""
    try:
        return studies.get(name)
    except ValueError:
        return None
    except Exception as e:  # noqa: BLE001 (a broken study module must not hide every other study's results)
        if name not in BROKEN:
            BROKEN.add(name)
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


def normalize_claims(claims: pd.DataFrame) -> pd.DataFrame:
    """claims.csv of any age: ``kind`` (missing or blank: cell), ``p_adj`` and the columns added since (missing:
    NaN; the text columns ``basis`` and ``strata``: '') present."""
    claims = claims.copy()
    if "kind" not in claims:
        claims["kind"] = "cell"
    claims["kind"] = claims["kind"].where(claims["kind"].isin(KINDS), "cell")
    if "sesoi" in claims and "fail_margin" not in claims:  # its name before 2026-12-07 (it held the fail margin)
        claims = claims.rename(columns={"sesoi": "fail_margin"})
    for c, v in NEW_COLUMNS.items():
        if c not in claims:
            claims[c] = v
    for c in TEXT_COLUMNS:
        claims[c] = [b if isinstance(b, str) else "" for b in claims[c]]
    return claims


def load_study(vdir: Path) -> dict:
    """Everything the scorecard shows of one study version: {name, version, vdir, manifest, claims, figures,
    runs, claim_figures, title, papers, headlines}."""
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
    'missing'), then rows of those kinds the module does not declare. Each entry: {study, claim_id, row (the
    claims.csv row as a namedtuple, or None), kind, statement, departures, figures}."""
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
