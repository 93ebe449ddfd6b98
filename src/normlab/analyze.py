"""Per-study analysis driver: runs in, claims, figures, manifest and the ``latest`` link out.

    python -m normlab.analyze --study bn_placement --version-dir results/bn_placement/<version> \
        --config '{analysis spec JSON}' | results/bn_placement/<version>/config.json

The analysis spec (``normlab.plan``: the study's resolved config, ``runs``: {variant: [run folders]},
``side``: {side job: output path}) is written as ``config.json`` into the version folder, which then
links what it reads: ``runs/<variant>/seed<k>`` -> the seed's folder in its run folder, and each side
job's declared output path -> that job's output (relative links: the results folder can move).
Reads every ``runs/<variant>/seed<k>/{metrics.parquet,summary.json}`` under the version folder,
and the outputs of the study's declared side jobs (``extra``: name -> path in the version folder),
calls the study's ``analyze`` and ``figures`` (which must write exactly the declared ``FIGURES``), writes ``summary.parquet``, ``claims.csv``,
``figures/*.png|pdf`` and ``manifest.json`` (all atomically, manifest last), points
``results/<study>/latest`` at the version, and logs the claims and figures to one W&B run (id from
study and version), which uses every seed's "run" artifact and logs claims.csv, summary.parquet,
manifest.json and the figures as one artifact ``analysis-<study>`` (a version per result version).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import pandas as pd

from . import studies
from .io import manifest, point_latest, read_spec, write_csv, write_json, write_parquet
from .tracking import artifact_name, run_artifact, run_files, run_id, settings
from .tracking import tracker as make_tracker


def load_runs(version_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    metrics, rows = [], []
    for summ in sorted(version_dir.glob("runs/*/seed*/summary.json")):
        s = json.loads(summ.read_text())
        metrics.append(pd.read_parquet(summ.parent / "metrics.parquet"))
        rows.append({"variant": s["variant"], "seed": s["seed"], **s.get("keys", {}), "status": s["status"],
                     "diverged_step": s.get("diverged_step"), "wall_s": s.get("wall_s"),
                     "started": s.get("started"), "finished": s.get("finished"),
                     **{f"final_{k}": v for k, v in s.get("final", {}).items()}})
    m = pd.concat(metrics, ignore_index=True) if metrics else pd.DataFrame(columns=["step", "metric", "value"])
    return m, pd.DataFrame(rows)


def _link(target: Path, link: Path) -> None:
    """Atomically make ``link`` a relative symlink to ``target``."""
    link.parent.mkdir(parents=True, exist_ok=True)
    rel = os.path.relpath(target, link.parent)
    if link.is_symlink() and os.readlink(link) == rel:
        return
    tmp = link.with_name(f".{link.name}.{os.getpid()}")
    tmp.unlink(missing_ok=True)
    os.symlink(rel, tmp)
    os.replace(tmp, link)


def link_inputs(study: str, resolved: dict, vdir: Path) -> None:
    """Link the runs (every seed of every run folder of each variant) and the side jobs' outputs that the
    analysis spec lists into the version folder (see the module docstring)."""
    runs = resolved.get("runs") or {}
    wanted = set()
    for variant, dirs in runs.items():
        for d in dirs:
            seeds = sorted(p for p in Path(d).glob("seed*") if p.is_dir())
            if not seeds:
                raise SystemExit(f"error: run folder {d} holds no seed<k>/ folder (did its train job finish?)")
            for s in seeds:
                _link(s, vdir / "runs" / variant / s.name)
                wanted.add((variant, s.name))
    for link in vdir.glob("runs/*/seed*"):  # links of an earlier attempt that the spec no longer lists
        if link.is_symlink() and (link.parent.name, link.name) not in wanted:
            link.unlink()
    jobs = studies.side_jobs(study, resolved["study_config"])
    for name, path in (resolved.get("side") or {}).items():
        _link(Path(path), vdir / jobs[name].output)


def seeds_below(metrics: pd.DataFrame, summary: pd.DataFrame, n: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The runs of seeds 0..n-1 (a look's data: each variant's seeds up to the look's count)."""
    return (metrics[metrics["seed"] < n] if "seed" in metrics else metrics,
            summary[summary["seed"] < n] if "seed" in summary else summary)


def claim_reads(study_mod, cfg: dict) -> dict[str, list[str]]:
    """The study's ``claim_variants``: {headline claim id: the variants its estimate reads} ({} if undeclared)."""
    declared = getattr(study_mod, "claim_variants", None)
    return declared(cfg) if declared else {}


def next_variants(study_mod, cfg: dict, open_claims: list[str], variants: list[str]) -> list[str]:
    """The variants the still-open headline claims read (the study's ``claim_variants``; a claim it does not
    declare reads every variant; a claim that reads no training variant, only side jobs, steers nothing)."""
    mapping = claim_reads(study_mod, cfg)
    out = set()
    for c in open_claims:
        out.update(mapping[c] if c in mapping else variants)
    return sorted(v for v in out if v in variants)


def run_looks(study: str, resolved: dict, vdir: Path, extra: dict, upto: int | None = None):
    """The study's claims over its planned looks (``stats.sequential``), replayed from look 1: after each look the
    family rules decide which headline claims are still open; the next look reads one more block of seeds of
    the variants those claims read (``claim_variants``). Deterministic: the look jobs (checkpoints, ``upto``) and
    the final analysis make the same decisions. Returns (claims, metrics, summary, decision of the last look)."""
    from .stats import Looks, judge_looks

    cfg = resolved["study_config"]
    mod = studies.get(study)
    looks = Looks(resolved.get("looks") or [cfg.get("seeds", 1)])  # the fixed design: one look
    later = resolved.get("later") or {}
    chosen = {v: list(d) for v, d in (resolved.get("runs") or {}).items()}
    ci = cfg.get("claims", {}).get("ci", 0.95)
    history, upto = [], min(upto or looks.K, looks.K)
    fixed = {c for c, vs in claim_reads(mod, cfg).items() if not vs}  # side jobs only: data the looks never grow
    for k in range(1, upto + 1):
        if "runs" in resolved:
            link_inputs(study, {**resolved, "runs": chosen}, vdir)
        metrics, summary = load_runs(vdir)
        m_k, s_k = seeds_below(metrics, summary, looks.n[k - 1])
        history.append(pd.DataFrame(mod.analyze(m_k, s_k, cfg, extra)))
        claims, state = judge_looks(history, looks, ci=ci, fixed=fixed)
        train = [] if k == looks.K else next_variants(mod, cfg, state["open"], sorted(chosen))
        done = not train  # the last look, or no open claim reads a training variant
        nxt = [later[v][k - 1] for v in train]
        decision = {"look": k, "looks": looks.K, "seeds": looks.n[k - 1], "open": state["open"],
                    "futile": state["futile"], "train": train, "next_runs": nxt, "done": done}
        print(f"[look {k}/{looks.K}] {looks.n[k - 1]} seeds: open {state['open']}, futile {state['futile']}; "
              f"next look trains {len(train)} variants")
        if done or k == upto:
            if not done:  # a look's table while later looks are planned: undecided rows are open, not stopped
                claims.loc[claims["stop"] == "study stopped", "stop"] = "open"
            return claims, metrics, summary, decision
        for v, d in zip(train, nxt):
            chosen[v].append(d)
    raise AssertionError("unreachable")


def run_block(vdir: Path, variant: str, seed: int) -> str:
    """The run folder name (block) a linked seed of the version folder was trained in."""
    return Path(os.path.realpath(vdir / "runs" / variant / f"seed{seed}")).parent.name


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--study", required=True)
    ap.add_argument("--version-dir", required=True, type=Path)
    ap.add_argument("--config", required=True, help="the study's resolved config (JSON file or string)")
    ap.add_argument("--look", type=int, default=None,
                    help="sequential seeds: judge looks 1..LOOK and write looks/look<LOOK>.json (which variants the "
                         "next look trains) instead of the analysis")
    a = ap.parse_args(argv)
    resolved = read_spec(a.config)
    cfg = resolved["study_config"]
    study = studies.get(a.study)
    vdir = a.version_dir
    extra = studies.extra_inputs(a.study, cfg, vdir)
    if a.look is not None:  # a look's checkpoint: its decision (and its claims table, for the reader)
        claims, _, _, decision = run_looks(a.study, resolved, vdir, extra, upto=a.look)
        write_csv(claims, vdir / "looks" / f"look{a.look}.csv")
        write_json(decision, vdir / "looks" / f"look{a.look}.json")
        return
    if "runs" in resolved:  # the plan's analysis spec (not an old version's config.json)
        write_json(resolved, vdir / "config.json")
    # One multiplicity rule per family (headline claims, cells), over the looks; identities and checks alone.
    claims, metrics, summary, decision = run_looks(a.study, resolved, vdir, extra)
    write_json(decision, vdir / "looks" / "final.json")
    fig_dir = vdir / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    figs = study.figures(metrics, summary, claims, cfg, fig_dir, extra)
    written = {Path(f).name for f in figs if str(f).endswith(".png")}
    declared = set(studies.figure_files(a.study))
    if written != declared:  # the rule's outputs and the report's captions come from the declaration
        raise SystemExit(f"error: normlab.studies.{a.study}.figures() wrote {sorted(written)} but the package "
                         f"declares FIGURES {sorted(declared)}; declare every figure it writes")

    write_parquet(summary, vdir / "summary.parquet")
    write_csv(claims, vdir / "claims.csv")
    started = summary["started"].min() if "started" in summary and len(summary) else None
    wid = run_id(a.study, vdir.name, "analysis")  # one analysis run per result version (a rerun resumes it)
    tracker = make_tracker(settings(resolved), group=f"{a.study}/{vdir.name}", name=f"{a.study}/analysis",
                           job_type="analysis", config=resolved, dir=vdir, tags=[a.study, vdir.name], id=wid)
    if tracker.run is not None:  # lineage: the training runs' outputs are this run's inputs
        for r in summary[["variant", "seed"]].itertuples():
            tracker.use_artifact(run_artifact(a.study, run_block(vdir, r.variant, r.seed), r.variant, r.seed), "run",
                                 run_files(vdir / "runs" / r.variant / f"seed{r.seed}"))
    tracker.log_table("claims", claims.astype({"value": float, "ci_low": float, "ci_high": float}))
    tracker.log_images([f for f in figs if str(f).endswith(".png")])
    tracker.summary({f"verdict/{r.claim_id}": r.verdict for r in claims.itertuples()})
    write_json(manifest(resolved, started, {"study": a.study, "version": vdir.name, "n_runs": len(summary),
                                            "runs": resolved.get("runs"), "side": resolved.get("side"),
                                            "figures": [Path(f).name for f in figs],
                                            "wandb_mode": tracker.mode, "wandb_run_id": wid}), vdir / "manifest.json")
    # The results of this version as one versioned artifact (one artifact per study, aliased by version).
    tracker.log_artifact(artifact_name("analysis", a.study), "analysis",
                         {"claims.csv": vdir / "claims.csv", "summary.parquet": vdir / "summary.parquet",
                          "manifest.json": vdir / "manifest.json",
                          **{f"figures/{Path(f).name}": Path(f) for f in figs}},
                         aliases=[vdir.name], metadata={"study": a.study, "version": vdir.name,
                                                        "verdicts": claims["verdict"].value_counts().to_dict()})
    tracker.finish()
    point_latest(vdir)
    counts = claims["verdict"].value_counts().to_dict()
    print(f"[analyze] {a.study}/{vdir.name}: {len(summary)} runs, claims {counts}")


if __name__ == "__main__":
    main()
