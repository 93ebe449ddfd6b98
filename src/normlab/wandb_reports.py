"""W&B Reports built by the pipeline from its own results (``wandb-workspaces`` Reports API).

    python -m normlab.wandb_reports [--results results] [--version-dir results/<study>/<version> ...]
                                    [--project P] [--entity E] [--dry-run]

One Report per study version: panel grids of the study's key metrics over its training runs
(W&B group ``<study>/<version>``, job_type ``train``) grouped by variant, the claims table (as
text and as the analysis run's ``claims`` table) and the figures the analysis run logged; plus an
overview Report with the scorecard counts of every study. Needs the user to be online and logged
in (``wandb login``) and the offline runs uploaded first (``make sync STUDY=<study>``, or
``wandb sync results/<study>/<version>/wandb/offline-run-*``); offline it prints these
instructions and exits 0. ``--dry-run`` builds the reports without saving and prints their panels.

``build_reports`` makes the Report objects from a results folder without any network access;
the claims tables list headline claims first (then cells, then checks), and the overview opens
with the scorecard's headline table; the panels name only metrics that the runs really logged, read from the runs' own W&B files
(``wandb/*run-*/run-*.wandb``, see ``read_run``). A study module may define ``WANDB_METRICS``
(list of logged metric names) to choose its key metrics; the default is the engine's evaluation
metrics.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import sys
from pathlib import Path

import pandas as pd

DEFAULT_METRICS = ["test_acc", "train_acc", "test_loss", "train_loss", "batch_loss"]
PLACEHOLDER_ENTITY = "offline"  # entity of reports built without an API (dry run, tests)


# ---------------------------------------------------------------------------- reading W&B run files
_BLOCK, _HEADER = 32768, 7
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def _records(path: Path):
    """The protobuf records of a W&B transaction log (``run-<id>.wandb``: a LevelDB-style log)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path} is not a W&B run file")
    i, buf = _HEADER, b""
    while i + _HEADER <= len(data):
        left = _BLOCK - i % _BLOCK
        if left < _HEADER:  # block trailer padding
            i += left
            continue
        _crc, n, kind = struct.unpack("<IHB", data[i:i + _HEADER])
        chunk = data[i + _HEADER:i + _HEADER + n]
        i += _HEADER + n
        if kind == _FULL:
            payload = chunk
        elif kind == _FIRST:
            buf = chunk
            continue
        elif kind == _MIDDLE:
            buf += chunk
            continue
        elif kind == _LAST:
            payload, buf = buf + chunk, b""
        else:  # zero padding at the end of a block
            continue
        r = pb.Record()
        r.ParseFromString(payload)
        yield r


def _item_key(item) -> str:
    return item.key or item.nested_key[0]


def read_run(run_dir: Path) -> dict:
    """What one W&B run (offline or online, from its local folder) logged.

    Returns run_id, name, group, job_type, config (top-level keys, JSON-decoded), and history:
    {metric: [(step, value), ...]} for the top-level keys logged with ``run.log``.
    """
    run_dir = Path(run_dir)
    files = sorted(run_dir.glob("run-*.wandb"))
    if not files:
        raise FileNotFoundError(f"no run-*.wandb file in {run_dir}")
    info = {"dir": run_dir, "run_id": None, "name": None, "group": None, "job_type": None, "project": None,
            "entity": None, "config": {}, "history": {}}
    for r in _records(files[0]):
        kind = r.WhichOneof("record_type")
        if kind == "run":
            info.update(run_id=r.run.run_id, name=r.run.display_name, group=r.run.run_group, job_type=r.run.job_type,
                        project=r.run.project or None, entity=r.run.entity or None)
            updates = r.run.config.update
        elif kind == "config":
            updates = r.config.update
        elif kind == "history":
            row = {}
            for it in r.history.item:
                if len(it.nested_key) > 1:  # media and tables: {key: {_type, path, ...}}
                    row.setdefault(it.nested_key[0], {})[it.nested_key[1]] = json.loads(it.value_json)
                else:
                    row[_item_key(it)] = json.loads(it.value_json)
            step = row.get("_step")
            for k, v in row.items():
                if not k.startswith("_"):
                    info["history"].setdefault(k, []).append((step, v))
            continue
        else:
            continue
        for it in updates:
            if _item_key(it) != "_wandb":
                info["config"][_item_key(it)] = json.loads(it.value_json)
    return info


def logged_runs(version_dir: Path) -> list[dict]:
    """Every W&B run written under a result version (``wandb/offline-run-*`` and ``wandb/run-*``)."""
    runs = []
    for d in sorted(Path(version_dir).glob("wandb/*run-*")):
        if d.is_dir() and not d.is_symlink() and any(d.glob("run-*.wandb")):
            runs.append(read_run(d))
    return runs


# ---------------------------------------------------------------------------- what to show
def study_meta(version_dir: Path) -> dict:
    """Study, version, W&B group and project of a result version (project: as its W&B runs recorded it)."""
    vdir = Path(version_dir)
    man = json.loads((vdir / "manifest.json").read_text())
    w = man.get("resolved_config", {}).get("wandb") or {}
    study = man.get("study", vdir.parent.name)
    run_file = next(iter(sorted(vdir.glob("wandb/*run-*/run-*.wandb"))), None)
    recorded = read_run(run_file.parent) if run_file is not None else {}
    return {"study": study, "version": vdir.resolve().name, "group": f"{study}/{vdir.resolve().name}",
            "project": recorded.get("project") or w.get("project") or "normlab",
            "entity": recorded.get("entity") or w.get("entity"), "manifest": man,
            "claims": _claims(vdir), "dir": vdir}


def _claims(vdir: Path) -> pd.DataFrame:
    """claims.csv with kind/p_adj filled (old files: every row a cell), headline claims first."""
    from .scorecard import normalize_claims
    from .stats import KINDS

    c = normalize_claims(pd.read_csv(Path(vdir) / "claims.csv"))
    order = c["kind"].map({k: i for i, k in enumerate(KINDS)})
    return c.iloc[order.argsort(kind="stable")].reset_index(drop=True)


def key_metrics(version_dir: Path, runs: list[dict] | None = None) -> list[str]:
    """The study's key metrics that its training runs really logged to W&B.

    Candidates: the study module's ``WANDB_METRICS`` or DEFAULT_METRICS. Kept: those in the history
    of the version's W&B train runs; with no W&B run files (tracking disabled), those in the runs'
    metrics.parquet (the engine logs its evaluation metrics to both).
    """
    from . import studies

    meta = study_meta(version_dir)
    try:
        cand = list(getattr(studies.get(meta["study"]), "WANDB_METRICS", DEFAULT_METRICS))
    except (ValueError, ImportError):
        cand = list(DEFAULT_METRICS)
    runs = logged_runs(version_dir) if runs is None else runs
    train = [r for r in runs if r["job_type"] == "train" and r["group"] == meta["group"]]
    if train:
        logged = set().union(*(set(r["history"]) for r in train))
    else:
        files = sorted(Path(version_dir).glob("runs/*/seed*/metrics.parquet"))
        logged = set(pd.concat([pd.read_parquet(f, columns=["metric"]) for f in files]).metric) if files else set()
    return [m for m in cand if m in logged]


def figure_keys(version_dir: Path, runs: list[dict] | None = None) -> list[str]:
    """The image keys (``figures/<name>``) that the analysis run of this version logged."""
    meta = study_meta(version_dir)
    runs = logged_runs(version_dir) if runs is None else runs
    keys = []
    for r in runs:
        if r["job_type"] == "analysis" and r["group"] == meta["group"]:
            keys += [k for k, v in r["history"].items()
                     if k.startswith("figures/") and any(isinstance(x, dict) and "image" in str(x.get("_type"))
                                                         for _, x in v)]
    if not keys:  # tracking was disabled: the names analyze.py would log
        keys = [f"figures/{Path(f).stem}" for f in meta["manifest"].get("figures", []) if f.endswith(".png")]
    return sorted(set(keys))


def claims_markdown(claims: pd.DataFrame) -> str:
    """Claims as a markdown table, headline claims first (then cells, then checks)."""
    from .scorecard import fmt, md_cell, normalize_claims, p_text
    from .stats import KINDS

    claims = normalize_claims(claims)
    claims = claims.iloc[claims["kind"].map({k: i for i, k in enumerate(KINDS)}).argsort(kind="stable")]
    lines = ["| claim | verdict | kind | value [CI] | p_adj | seeds | source |", "|---|---|---|---|---|---|---|"]
    for r in claims.itertuples():
        lines.append(f"| {md_cell(r.claim_id)} | **{r.verdict}** | {r.kind} | {fmt(r.value)} [{fmt(r.ci_low)}, "
                     f"{fmt(r.ci_high)}] | {p_text(r).removeprefix('p_adj ')} | {r.n_seeds} | {md_cell(r.source)} |")
    return "\n".join(lines)


def headlines_markdown(version_dirs: list[Path]) -> str:
    """The scorecard's headline table (every study's headline claims) as markdown."""
    from .scorecard import headline_rows, load_study, md_cell, p_text, short, value_ci

    lines = ["| claim | verdict | the paper says | we measured | departs from the paper |", "|---|---|---|---|---|"]
    for v in version_dirs:
        for h in headline_rows(load_study(v)):
            r = h["row"]
            verdict = "**missing**" if r is None else f"**{r.verdict}** {p_text(r)}".strip()
            meas = "no row" if r is None else f"{md_cell(r.metric)} = {value_ci(r)}, {r.n_seeds} seeds"
            lines.append(f"| {md_cell(h['claim_id'])} | {verdict} | {md_cell(short(h['statement']))} | {meas} | "
                         f"{md_cell(short(h['departures']))} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- building
def _runset(wr, expr, meta, project, entity, job_type, name, groupby=None):
    return wr.Runset(entity=entity, project=project, name=name, groupby=groupby or [],
                     filters=expr.And(expr.Metric("Group") == meta["group"], expr.Metric("JobType") == job_type))


def build_study_report(version_dir: Path, project: str | None = None, entity: str | None = None):
    """The Report of one study version (not saved)."""
    import wandb_workspaces.reports.v2 as wr
    from wandb_workspaces import expr

    from .scorecard import study_title, summary_line

    meta = study_meta(version_dir)
    project = project or meta["project"]
    entity = entity or meta["entity"] or PLACEHOLDER_ENTITY
    runs = logged_runs(version_dir)
    metrics = key_metrics(version_dir, runs)
    figs = figure_keys(version_dir, runs)
    train = _runset(wr, expr, meta, project, entity, "train", f"{meta['group']} train runs", ["config.variant"])
    analysis = _runset(wr, expr, meta, project, entity, "analysis", f"{meta['group']} analysis")
    lines = [wr.LinePlot(title=m, x="Step", y=[m], groupby_aggfunc="mean", groupby_rangefunc="stderr",
                         layout=wr.Layout(x=(i % 3) * 8, y=(i // 3) * 6, w=8, h=6)) for i, m in enumerate(metrics)]
    finals = [wr.BarPlot(title=f"final {m} by variant", metrics=[m], groupby_aggfunc="mean", groupby_rangefunc="stderr",
                         layout=wr.Layout(x=(i % 3) * 8, y=100 + (i // 3) * 6, w=8, h=6))
              for i, m in enumerate(m for m in metrics if m.startswith("test_"))]
    media = [wr.MediaBrowser(title="figures", media_keys=figs, num_columns=2, layout=wr.Layout(x=0, y=0, w=24, h=12))]
    table = [wr.WeavePanelSummaryTable(table_name="claims", layout=wr.Layout(x=0, y=12, w=24, h=10))]
    blocks = [
        wr.H1(study_title(meta["study"])),
        wr.P(f"Result version {meta['version']} (W&B group {meta['group']}): {summary_line(meta['claims'])} "
             f"Runs are grouped by variant; bands are the standard error over seeds."),
        wr.H2("Key metrics by variant"),
        wr.PanelGrid(runsets=[train], panels=lines + finals),
        wr.H2("Claims"),
        wr.MarkdownBlock(claims_markdown(meta["claims"])),
        wr.H2("Figures and claims table of the analysis run"),
        wr.PanelGrid(runsets=[analysis], panels=media + table),
    ]
    return wr.Report(project=project, entity=entity, title=f"normlab {meta['study']} ({meta['version']})"[:128],
                     description=f"Built by normlab.wandb_reports from results/{meta['study']}/{meta['version']}",
                     blocks=blocks, width="fluid")


def build_overview(version_dirs: list[Path], project: str | None = None, entity: str | None = None):
    import wandb_workspaces.reports.v2 as wr
    from wandb_workspaces import expr

    from .scorecard import KIND_TITLES, kind_line, study_title, summary_line
    from .stats import KINDS

    metas = [study_meta(v) for v in version_dirs]
    project = project or (metas[0]["project"] if metas else "normlab")
    entity = entity or (metas[0]["entity"] if metas else None) or PLACEHOLDER_ENTITY
    all_claims = pd.concat([m["claims"] for m in metas]) if metas else pd.DataFrame(columns=["verdict"])
    rows = ["| study | version | " + " | ".join(KIND_TITLES[k].lower() for k in KINDS) + " |", "|---|---|---|---|---|"]
    for m in metas:
        rows.append(f"| {study_title(m['study'])} | {m['version']} | "
                    + " | ".join(kind_line(m["claims"], k) for k in KINDS) + " |")
    runsets = [_runset(wr, expr, m, project, entity, "train", m["group"], ["config.variant"]) for m in metas]
    metric = "test_acc" if all("test_acc" in key_metrics(m["dir"]) for m in metas) else None
    blocks = [wr.H1("normlab replication scorecard"),
              wr.P(f"{len(metas)} studies. {summary_line(all_claims)} Verdicts are Holm-adjusted within each "
                   "study (its headline claims are one family)."),
              wr.H2("Headline claims"),
              wr.MarkdownBlock(headlines_markdown([m["dir"] for m in metas])),
              wr.H2("Studies"),
              wr.MarkdownBlock("\n".join(rows))]
    if metric and runsets:
        blocks += [wr.H2(f"{metric} of every study, by variant"),
                   wr.PanelGrid(runsets=runsets, panels=[wr.LinePlot(title=metric, x="Step", y=[metric],
                                                                      groupby_aggfunc="mean",
                                                                      layout=wr.Layout(x=0, y=0, w=24, h=8))])]
    return wr.Report(project=project, entity=entity, title="normlab overview", blocks=blocks, width="fluid",
                     description="Built by normlab.wandb_reports from the pipeline's results")


def version_dirs_of(results: Path) -> list[Path]:
    from .scorecard import latest_versions

    return latest_versions(results)


def build_reports(results: Path | None = None, version_dirs=None, project=None, entity=None) -> dict:
    """{name: Report} for every study version and the overview; nothing is saved."""
    vdirs = [Path(v) for v in version_dirs] if version_dirs else version_dirs_of(Path(results or "results"))
    out = {f"{study_meta(v)['study']}": build_study_report(v, project, entity) for v in vdirs}
    out["overview"] = build_overview(vdirs, project, entity)
    return out


def panels_of(report) -> list:
    """Every panel of a Report's panel grids (for checks and --dry-run)."""
    return [p for b in report.blocks if type(b).__name__ == "PanelGrid" for p in b.panels]


def panel_metrics(panel) -> list[str]:
    for attr in ("y", "metrics", "media_keys"):
        v = getattr(panel, attr, None)
        if v:
            return [str(getattr(m, "name", m)) for m in v]
    return []


# ---------------------------------------------------------------------------- CLI
OFFLINE_HELP = """W&B reports need the online W&B service: nothing was saved.
To create them:
  1. wandb login                      (once; or set WANDB_API_KEY)
  2. make sync STUDY=<study>          (uploads results/<study>/latest/wandb/offline-run-*;
                                       or: wandb sync results/<study>/<version>/wandb/offline-run-*)
  3. snakemake --cores 1 wandb_reports   (or: python -m normlab.wandb_reports)
"""


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, default=Path("results"))
    ap.add_argument("--version-dir", type=Path, nargs="*", default=None)
    ap.add_argument("--project", default=None, help="default: the wandb.project of the results' config")
    ap.add_argument("--entity", default=None, help="default: wandb.entity of the config, else your default entity")
    ap.add_argument("--dry-run", action="store_true", help="build and print the reports' panels, save nothing")
    a = ap.parse_args(argv)
    from .tracking import logged_in

    online = logged_in() and os.environ.get("WANDB_MODE") not in ("offline", "disabled")
    entity = a.entity
    if not a.dry_run:
        if not online:
            print(OFFLINE_HELP)
            return 0
        import wandb

        try:
            api = wandb.Api(timeout=30)
            entity = entity or api.default_entity
        except Exception as e:  # noqa: BLE001 (unreachable server, bad key: say so, never crash)
            print(f"W&B is not reachable ({type(e).__name__}: {e}).\n{OFFLINE_HELP}")
            return 0
    vdirs = [Path(v) for v in a.version_dir] if a.version_dir else version_dirs_of(a.results)
    if not vdirs:
        print(f"no study results under {a.results}/ (run snakemake first)", file=sys.stderr)
        return 1
    reports = build_reports(a.results, vdirs, a.project, entity)
    if a.dry_run:
        for name, rep in reports.items():
            print(f"{name}: {rep.title!r} ({rep.entity}/{rep.project})")
            for p in panels_of(rep):
                print(f"  {type(p).__name__}: {panel_metrics(p)}")
        return 0
    groups = {study_meta(v)["study"]: study_meta(v)["group"] for v in vdirs}
    failed = 0
    for name, rep in reports.items():
        try:
            if name in groups and not len(api.runs(f"{rep.entity}/{rep.project}", filters={"group": groups[name]},
                                                   per_page=1)):
                print(f"{name}: no runs of group {groups[name]} in {rep.entity}/{rep.project} yet; upload them "
                      f"first: make sync STUDY={name}")
                continue
            rep.save()
            print(f"{name}: {rep.url}")
        except Exception as e:  # noqa: BLE001 (report every failure, go on with the next report)
            failed += 1
            print(f"{name}: saving the report failed: {type(e).__name__}: {e}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
