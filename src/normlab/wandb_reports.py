"""W&B Reports built by the pipeline from its own results (``wandb-workspaces`` Reports API).

    python -m normlab.wandb_reports [--results results] [--version-dir results/<study>/<version> ...]
                                    [--project P] [--entity E] [--dry-run]

One Report per study version: panel grids of the study's key metrics over its training runs
(job_type ``train``, the runs the version read: config ``key`` among its run keys) grouped by variant, the claims table (as
text and as the analysis run's ``claims`` table) and the figures the analysis run logged; plus an
overview Report with the scorecard counts of every study. Needs the user to be online and logged
in (``wandb login``) and the offline runs uploaded first (``make sync``: every study's latest
version; ``make sync STUDY=<study>``: one); offline it prints these instructions and exits 0. ``--dry-run`` builds the reports without saving and prints their panels.

``build_reports`` makes the Report objects from a results folder without any network access,
from the pipeline's own files only: ``manifest.json`` (study, version, W&B project, figures) and the
runs' ``metrics.parquet`` (the engine logs to W&B exactly the rows it writes there). The claims
tables list headline claims first (then cells, then checks), and the overview opens with the
scorecard's headline table, then its replication matrix (headline claims x configs, the newest
version of each config name); the panels name only metrics that the runs logged. A study module may
define ``WANDB_METRICS`` (list of logged metric names) to choose its key metrics; the default is
the engine's evaluation metrics.

Saving updates in place: a report is found again by its title (one per study version, plus the
overview) in the project and overwritten; a new one is created only when none has that title.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import pandas as pd

from . import studies
from .scorecard import (
    KIND_TITLES,
    fmt,
    headlines_markdown,
    kind_line,
    latest_versions,
    matrix_note,
    md_cell,
    normalize_claims,
    p_text,
    replication_matrix,
    results_root,
    study_title,
    summary_line,
)
from .scorecard import matrix_markdown as matrix_table_markdown
from .stats import KINDS

DEFAULT_METRICS = ["test_acc", "train_acc", "test_loss", "train_loss", "batch_loss"]
PLACEHOLDER_ENTITY = "offline"  # entity of reports built without an API (dry run, tests)


# ---------------------------------------------------------------------------- what to show
def study_meta(version_dir: Path) -> dict:
    """Study, version, W&B group and project of a result version (project: as its W&B runs recorded it)."""
    vdir = Path(version_dir)
    man = json.loads((vdir / "manifest.json").read_text())
    w = man.get("resolved_config", {}).get("wandb") or {}
    study = man.get("study", vdir.parent.name)
    try:  # the runs it read (runs are keyed by their spec and shared between versions: no group of their own)
        runs = json.loads((vdir / "config.json").read_text()).get("runs") or {}
    except (OSError, ValueError):
        runs = {}
    keys = sorted("/".join(Path(d).parts[-2:]) for dirs in runs.values() for d in dirs)
    return {"study": study, "version": vdir.resolve().name, "group": f"{study}/{vdir.resolve().name}",
            "project": w.get("project") or "normlab", "entity": w.get("entity"), "manifest": man,
            "claims": _claims(vdir), "dir": vdir, "run_keys": keys}


def _claims(vdir: Path) -> pd.DataFrame:
    """claims.csv with kind/p_adj filled (old files: every row a cell), headline claims first."""
    c = normalize_claims(pd.read_csv(Path(vdir) / "claims.csv"))
    order = c["kind"].map({k: i for i, k in enumerate(KINDS)})
    return c.iloc[order.argsort(kind="stable")].reset_index(drop=True)


def logged_metrics(version_dir: Path) -> set[str]:
    """The metrics every training run of the version logged (its metrics.parquet: the engine logs
    the same rows to W&B)."""
    files = sorted(Path(version_dir).glob("runs/*/seed*/metrics.parquet"))
    sets = [set(pd.read_parquet(f, columns=["metric"]).metric) for f in files]
    return set.intersection(*sets) if sets else set()


def key_metrics(version_dir: Path) -> list[str]:
    """The study's key metrics that every one of its training runs logged.

    Candidates: the study module's ``WANDB_METRICS`` or DEFAULT_METRICS; kept: those in every run's
    metrics.parquet."""
    meta = study_meta(version_dir)
    try:
        cand = list(getattr(studies.get(meta["study"]), "WANDB_METRICS", DEFAULT_METRICS))
    except (ValueError, ImportError):
        cand = list(DEFAULT_METRICS)
    logged = logged_metrics(version_dir)
    return [m for m in cand if m in logged]


def figure_keys(version_dir: Path) -> list[str]:
    """The image keys (``figures/<name>``) the analysis run logs: the manifest's PNG figures."""
    meta = study_meta(version_dir)
    return sorted({f"figures/{Path(f).stem}" for f in meta["manifest"].get("figures", []) if f.endswith(".png")})


def claims_markdown(claims: pd.DataFrame) -> str:
    """Claims as a markdown table, headline claims first (then cells, then checks)."""
    claims = normalize_claims(claims)
    claims = claims.iloc[claims["kind"].map({k: i for i, k in enumerate(KINDS)}).argsort(kind="stable")]
    lines = ["| claim | verdict | kind | value [CI] | p_adj | seeds | source |", "|---|---|---|---|---|---|---|"]
    for r in claims.itertuples():
        lines.append(f"| {md_cell(r.claim_id)} | **{r.verdict}** | {r.kind} | {fmt(r.value)} [{fmt(r.ci_low)}, "
                     f"{fmt(r.ci_high)}] | {p_text(r).removeprefix('p_adj ')} | {r.n_seeds} | {md_cell(r.source)} |")
    return "\n".join(lines)


def matrix_markdown(results: Path, configs: Path | None = Path("config")) -> str:
    """The scorecard's replication matrix (headline claims x configs, newest version of each config name
    under ``results``) as markdown: its note, then the table; each cell names its version (the W&B group
    ``<study>/<version>``) instead of linking to local files."""
    m = replication_matrix(results, configs=configs)
    return matrix_note(m) + "\n\n" + matrix_table_markdown(m)


# ---------------------------------------------------------------------------- building
def _runset(wr, expr, meta, project, entity, job_type, name, groupby=None):
    """The version's runs of one job type: its training runs by their run keys (config.key: a run is shared by
    every version that reads it), its analysis run by its group (``<study>/<version>``; versions made before
    runs were keyed also grouped their training runs so)."""
    if job_type == "train" and meta.get("run_keys"):
        which = expr.And(expr.Config("study") == meta["study"], expr.Config("key").isin(meta["run_keys"]))
    else:
        which = expr.Metric("Group") == meta["group"]
    return wr.Runset(entity=entity, project=project, name=name, groupby=groupby or [],
                     filters=expr.And(which, expr.Metric("JobType") == job_type))


def build_study_report(version_dir: Path, project: str | None = None, entity: str | None = None):
    """The Report of one study version (not saved)."""
    import wandb_workspaces.reports.v2 as wr
    from wandb_workspaces import expr

    meta = study_meta(version_dir)
    project = project or meta["project"]
    entity = entity or meta["entity"] or PLACEHOLDER_ENTITY
    metrics = key_metrics(version_dir)
    figs = figure_keys(version_dir)
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


def build_overview(version_dirs: list[Path], project: str | None = None, entity: str | None = None,
                   results: Path | None = None):
    """The overview Report: counts, the headline table, the replication matrix (every config's newest
    version under ``results``, default: the folder the version folders are in) and the studies."""
    import wandb_workspaces.reports.v2 as wr
    from wandb_workspaces import expr

    metas = [study_meta(v) for v in version_dirs]
    project = project or (metas[0]["project"] if metas else "normlab")
    entity = entity or (metas[0]["entity"] if metas else None) or PLACEHOLDER_ENTITY
    all_claims = pd.concat([m["claims"] for m in metas]) if metas else pd.DataFrame(columns=["verdict"])
    rows = ["| study | version | " + " | ".join(KIND_TITLES[k].lower() for k in KINDS) + " |",
            "|---|---|" + "---|" * len(KINDS)]
    for m in metas:
        rows.append(f"| {study_title(m['study'])} | {m['version']} | "
                    + " | ".join(kind_line(m["claims"], k) for k in KINDS) + " |")
    runsets = [_runset(wr, expr, m, project, entity, "train", m["group"], ["config.variant"]) for m in metas]
    metric = "test_acc" if all("test_acc" in key_metrics(m["dir"]) for m in metas) else None
    blocks = [wr.H1("normlab replication scorecard"),
              wr.P(f"{len(metas)} studies. {summary_line(all_claims)} Verdicts use one multiplicity rule per "
                   "family (Holm's step-down over both tests of every claim; a study's headline claims and their "
                   "strata are one family, its cells another; identities and checks are judged alone)."),
              wr.H2("Headline claims"),
              wr.MarkdownBlock(headlines_markdown([m["dir"] for m in metas])),
              wr.H2("Replication matrix"),
              wr.MarkdownBlock(matrix_markdown(results or results_root(version_dirs, Path("results")))),
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
    return latest_versions(results)


def build_reports(results: Path | None = None, version_dirs=None, project=None, entity=None) -> dict:
    """{name: Report} for every study version and the overview; nothing is saved."""
    vdirs = [Path(v) for v in version_dirs] if version_dirs else version_dirs_of(Path(results or "results"))
    out = {f"{study_meta(v)['study']}": build_study_report(v, project, entity) for v in vdirs}
    out["overview"] = build_overview(vdirs, project, entity, results)
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


def find_report(api, entity: str, project: str, title: str):
    """The project's saved report with this title (the most recently updated one), else None."""
    found = [r for r in api.reports(f"{entity}/{project}") if getattr(r, "display_name", None) == title]
    return max(found, key=lambda r: str(getattr(r, "updated_at", "") or "")) if found else None


def save_in_place(api, rep):
    """Save ``rep``: over the report of the same title when there is one (same id and URL), else new.
    Returns (the saved report, whether an existing one was updated)."""
    import wandb_workspaces.reports.v2 as wr

    old = find_report(api, rep.entity, rep.project, rep.title)
    if old is None:
        rep.save()
        return rep, False
    try:
        target = wr.Report.from_url(old.url)
        target.title, target.description, target.width, target.blocks = rep.title, rep.description, rep.width, rep.blocks
    except Exception:  # noqa: BLE001 (an unreadable old spec: overwrite it by id)
        target = rep
        target.id = old.id
    target.save()
    return target, True


# ---------------------------------------------------------------------------- CLI
OFFLINE_HELP = """W&B reports need the online W&B service: nothing was saved.
To create them:
  1. wandb login                      (once; or set WANDB_API_KEY)
  2. make sync                        (runs `wandb sync` on the offline runs of every study's latest
                                       version and the dataset runs; one study: make sync STUDY=<study>)
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
            saved, updated = save_in_place(api, rep)
            print(f"{name}: {'updated' if updated else 'created'} {saved.url}")
        except Exception as e:  # noqa: BLE001 (report every failure, go on with the next report)
            failed += 1
            print(f"{name}: saving the report failed: {type(e).__name__}: {e}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
