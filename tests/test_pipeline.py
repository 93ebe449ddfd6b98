"""End to end through real Snakemake on the smoke config (the session fixture runs it once)."""

import hashlib
import json
import os

import pandas as pd
import yaml
from conftest import snakemake

from normlab.io import point_latest
from normlab.stats import CLAIM_COLUMNS, VERDICTS


def files_digest(folder):
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file() and not p.is_symlink():
            h.update(str(p.relative_to(folder)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def job_stats(plan: str) -> set:
    """Rule names in the 'Job stats' table of a dry run."""
    return set(job_counts(plan))


def test_bn_placement_layout(smoke_workdir):
    study = smoke_workdir / "results" / "bn_placement"
    latest = study / "latest"
    assert latest.is_symlink() and os.readlink(latest).startswith("smoke-")
    v = latest.resolve()
    man = json.loads((v / "manifest.json").read_text())
    for key in ("resolved_config", "git", "packages", "started", "finished", "command", "runs"):
        assert key in man
    assert set(man["git"]) == {"commit", "dirty"}
    cfg = yaml.safe_load((smoke_workdir / "config" / "smoke.yaml").read_text())["studies"]["bn_placement"]
    n_variants = 3 * len(cfg["activations"]) * len(cfg["lrs"])
    runs = sorted(v.glob("runs/*/seed*/metrics.parquet"))
    assert len(runs) == n_variants * cfg["seeds"]
    # the version folder links its runs; each run folder is keyed by its spec and records it
    for link in v.glob("runs/*/seed*"):
        assert link.is_symlink() and not os.path.isabs(os.readlink(link))
        run = link.resolve().parent
        assert run.parent.parent == (study / "runs").resolve()
        rec = json.loads((run / "run.json").read_text())
        assert rec["spec"]["key"] == f"{run.parent.name}/{run.name}" and rec["numerics"] == rec["spec"]["numerics"]
        assert list(run.glob("wandb/offline-run-*")), "each run's offline W&B runs are under its folder"
    m = pd.read_parquet(runs[0])
    assert {"step", "metric", "value", "variant", "seed", "norm", "act", "lr"} <= set(m.columns)
    summary = pd.read_parquet(v / "summary.parquet")
    assert len(summary) == len(runs) and set(summary.status) <= {"ok", "diverged"}
    claims = pd.read_csv(v / "claims.csv")
    assert list(claims.columns) == CLAIM_COLUMNS
    assert set(claims.verdict) <= set(VERDICTS)
    assert (claims.ci_low <= claims.value + 1e-12).all() and (claims.value <= claims.ci_high + 1e-12).all()
    for fig in ("learning_curves", "final_accuracy", "steps_to_target", "placement_difference"):
        assert (v / "figures" / f"{fig}.png").stat().st_size > 5000
        assert (v / "figures" / f"{fig}.pdf").exists()
    assert list(v.glob("wandb/offline-run-*")), "the analysis's offline W&B run is under the version folder"


def test_second_dry_run_plans_nothing(smoke_workdir):
    p = snakemake(smoke_workdir, "-n", "--configfile", "config/smoke.yaml")
    assert "Nothing to be done" in p.stdout + p.stderr


def job_counts(plan: str) -> dict:
    """{rule: jobs} from the 'Job stats' table of a dry run (empty when nothing is to be done)."""
    if "Job stats:" not in plan:
        return {}
    out = {}
    for line in plan.split("Job stats:")[1].splitlines()[3:]:
        if not line.strip() or line.split()[0] == "total":
            break
        out[line.split()[0]] = int(line.split()[1])
    return out


ANALYSIS = {"claims_table": 1, "scorecard": 1, "all": 1}
# (edit merged over config/smoke.yaml, the jobs a dry run must plan): README "Change one thing"
EDITS = [
    ("a claim threshold", {"studies": {"santurkar": {"claims": {"equiv_margin": 0.04}}}},
     {"santurkar_analyze": 1, **ANALYSIS}),
    # li_arora has sequential seeds: a new version replans its first look (a checkpoint) before anything else
    ("a CI level", {"studies": {"li_arora": {"claims": {"ci": 0.9}}}},
     {"li_arora_look": 1, "li_arora_analyze": 1, **ANALYSIS}),
    ("the config's name", {"name": "renamed"},
     {**{f"{s}_analyze": 1 for s in ("bn_placement", "ics_conditioning", "li_arora", "norm_growth", "santurkar")},
      "li_arora_look": 1, "claims_table": 5, "scorecard": 1, "all": 1}),
    ("a W&B setting", {"wandb": {"mode": "disabled", "project": "elsewhere"}}, {}),
    ("one more lr", {"studies": {"bn_placement": {"lrs": [0.1, 0.2]}}},
     {"train": 6, "bn_placement_analyze": 1, **ANALYSIS}),
    ("one more seed (blocks of 2)", {"studies": {"bn_placement": {"seeds": 3}}},
     {"train": 6, "bn_placement_analyze": 1, **ANALYSIS}),
    ("one variant's lr", {"studies": {"norm_growth": {"variants": {"adam": {"lr": 0.02}}}}},
     {"train": 1, "norm_growth_analyze": 1, **ANALYSIS}),
    ("a side job's setting", {"studies": {"santurkar": {"dln": {"steps": 50}}}},
     {"santurkar_dln": 1, "santurkar_analyze": 1, **ANALYSIS}),
    ("a float32 exactness setting", {"studies": {"li_arora": {"exactness": {"float32_seeds": 3}}}},
     {"li_arora_exact_float32": 1, "li_arora_look": 1, "li_arora_analyze": 1, **ANALYSIS}),
    # more looks: the first look is replanned (new boundaries); what it trains is known once it has run
    ("a higher max_seeds", {"studies": {"li_arora": {"max_seeds": 9}}},
     {"li_arora_look": 1, "li_arora_analyze": 1, **ANALYSIS}),
]


def test_edits_replan_only_what_they_change(smoke_workdir):
    wrong = []
    for what, edit, expected in EDITS:
        (smoke_workdir / "edit.yaml").write_text(yaml.safe_dump(edit))
        p = snakemake(smoke_workdir, "-n", "--configfile", "config/smoke.yaml", "edit.yaml")
        got = job_counts(p.stdout + p.stderr)
        if got != expected:
            wrong.append(f"{what}: planned {got}, expected {expected}")
    assert not wrong, "\n".join(wrong)


def test_one_more_seed_trains_its_block_alone_and_keeps_the_old_version(smoke_workdir):
    study = smoke_workdir / "results" / "bn_placement"
    old = study / os.readlink(study / "latest")
    before = files_digest(old)
    (smoke_workdir / "more_seeds.yaml").write_text(yaml.safe_dump({"studies": {"bn_placement": {"seeds": 3}}}))
    try:
        snakemake(smoke_workdir, "bn_placement", "--cores", "2", "--configfile", "config/smoke.yaml", "more_seeds.yaml")
        new = study / os.readlink(study / "latest")
        assert new != old and new.name.startswith("smoke-")
        assert files_digest(old) == before
        # seeds 0-1 are the old runs (linked, not retrained), seed 2 a block of its own; read as one set
        for variant in (p.name for p in (old / "runs").iterdir()):
            for seed in (0, 1):
                assert (new / "runs" / variant / f"seed{seed}").resolve() == (old / "runs" / variant / f"seed{seed}").resolve()
            assert (new / "runs" / variant / "seed2").resolve().parent.name.startswith("s2-2-")
        summary = pd.read_parquet(new / "summary.parquet")
        assert sorted(summary.seed.unique()) == [0, 1, 2] and len(summary) == 3 * len(list((old / "runs").iterdir()))
    finally:  # leave the shared smoke results as the other tests expect them
        point_latest(old)


def test_dry_run_on_a_fresh_clone_writes_nothing(workdir):
    p = snakemake(workdir, "-n", "--configfile", "config/smoke.yaml")
    assert "Job stats:" in p.stdout + p.stderr
    assert not (workdir / "results").exists() and not (workdir / "resources").exists()


def test_forcerun_reruns_the_analysis_only(smoke_workdir):
    p = snakemake(smoke_workdir, "bn_placement", "-n", "--forcerun", "bn_placement_analyze",
                  "--configfile", "config/smoke.yaml")
    stats = job_stats(p.stdout)
    assert "bn_placement_analyze" in stats and "train" not in stats


def test_jobs_use_snakemakes_interpreter_without_activation(workdir):
    """`.venv/bin/snakemake` works without activating the venv: jobs call the interpreter Snakemake runs in."""
    import subprocess
    import sys
    from pathlib import Path

    bin_dir = Path(sys.executable).parent
    env = {"HOME": os.environ.get("HOME", "/root"), "PATH": "/usr/bin:/bin", "WANDB_MODE": "offline"}
    p = subprocess.run([str(bin_dir / "snakemake"), "--cores", "1", "--until", "prepare_data"], cwd=workdir,
                       capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    assert list((workdir / "resources" / "data").glob("mnist1d-*.pt"))


def test_sequential_looks_train_only_what_open_claims_read(smoke_workdir):
    """li_arora has looks at 3 and 6 seeds (config/smoke.yaml): the first look's checkpoint names the variants of
    the headline claims still open, the second look trains seeds 3-5 of those variants only, and the final claims
    table records the look each verdict was reached at (a rerun planning nothing: test_second_dry_run_plans_nothing)."""
    from normlab import studies

    v = smoke_workdir / "results" / "li_arora" / "latest"
    cfg = json.loads((v / "config.json").read_text())["study_config"]
    look1 = json.loads((v / "looks" / "look1.json").read_text())
    final = json.loads((v / "looks" / "final.json").read_text())
    mod = studies.get("li_arora")
    variants = sorted(mod.variants(cfg))
    declared = mod.claim_variants(cfg)
    assert look1["look"] == 1 and look1["looks"] == 2 and look1["seeds"] == 3
    assert look1["train"] == sorted({x for c in look1["open"] for x in declared[c]} & set(variants))
    assert 0 < len(look1["train"]) < len(variants), "the second look trains some variants, not all"
    summary = pd.read_parquet(v / "summary.parquet")
    seeds = summary.groupby("variant")["seed"].apply(sorted).to_dict()
    for name in variants:
        assert seeds[name] == (list(range(6)) if name in look1["train"] else list(range(3))), name
        blocks = sorted(p.name.split("-")[0] for p in (smoke_workdir / "results" / "li_arora" / "runs" / name).iterdir())
        assert blocks == (["s0", "s3"] if name in look1["train"] else ["s0"]), (name, blocks)
    assert final["look"] == 2 and final["done"]
    claims = pd.read_csv(v / "claims.csv")
    head = claims[claims.kind == "headline"]
    side_only = head["claim_id"].isin([c for c, vs in declared.items() if not vs])  # S2.d: its seeds never grow
    assert side_only.any() and set(head.loc[side_only, "looks"]) == {1}
    assert head.loc[side_only, "basis"].str.contains("fixed by design").all()
    head = head[~side_only]
    assert set(head["looks"]) == {2}
    # one claim stopped at the first look (decided or futile) and another was judged at the second
    first = head[(head["look"] == 1) & head["stop"].isin(["decided", "futility"])]
    assert len(first) and (head["look"] == 2).any(), head[["claim_id", "verdict", "look", "stop"]]
    assert set(head.loc[head["look"] == 2, "n_seeds"]) == {6}
    for r in head.itertuples():  # the row says how: look k of 2 and its nominal level
        if r.stop in ("decided", "futility", "max_seeds"):
            assert f"look {int(r.look)} of 2" in r.basis, r.basis
