"""The replication matrix: the headline claims across configs (one column per config name with results under
``results/``, each cell from the NEWEST version of that config name, not the ``latest`` link). This module
finds and loads the versions and lays out rows and cells; ``table`` and ``render`` show them."""

from __future__ import annotations

from pathlib import Path

from .. import studies
from ..clean import VERSION, newest_by_name
from .load import headline_rows, load_study, study_order

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


def dataset_names(per_config: dict) -> dict[str, str]:
    """{config name: the datasets its versions trained on, e.g. 'fashion_mnist, mnist1d'}."""
    out = {}
    for n, ss in per_config.items():
        ds = {((s["manifest"].get("resolved_config") or {}).get("dataset") or {}).get("name") for s in ss.values()}
        out[n] = ", ".join(sorted(d for d in ds if d))
    return out


def matrix_rows(per_config: dict, names: list[str]) -> list[dict]:
    """One row per headline claim of any config (empirical claims first, then identities; studies in scorecard
    order, each study's claims in declared order, then others)."""
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
    return rows


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
    todo = {n: cmd for n, cmd in config_files(configs).items() if n not in names and n != SMOKE}
    return {"configs": names, "studies": per_config, "datasets": dataset_names(per_config),
            "rows": matrix_rows(per_config, names), "dropped": dropped, "todo": todo}


def matrix_header(m: dict, n: str) -> str:
    """A column's heading: the config name and its datasets."""
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
            "seeds that would decide it at 80% power, or that it sits on a margin; for a mixed claim its "
            "strata on each side; for a claim not run, what it needs that the config lacks; \"study not run\": "
            "the study has no version of that config.")
    if m["dropped"]:
        text += f" Left out: {', '.join(f'`{n}`' for n in m['dropped'])} (a pipeline test of a few steps, not evidence)."
    if m["todo"]:
        text += " More columns: " + "; ".join(f"{n}: `{cmd}`" for n, cmd in m["todo"].items()) + "."
    elif len(m["configs"]) < 2:
        text += " More columns: run another config, e.g. `snakemake --cores all --configfile config/<name>.yaml`."
    return text
