"""End to end through real Snakemake on the smoke config (the session fixture runs it once)."""

import hashlib
import json
import os

import pandas as pd
import yaml
from conftest import snakemake

from normlab.io import point_latest
from normlab.stats import CLAIM_COLUMNS


def files_digest(folder):
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file() and not p.is_symlink():
            h.update(str(p.relative_to(folder)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def job_stats(plan: str) -> set:
    """Rule names in the 'Job stats' table of a dry run."""
    lines = plan.split("Job stats:")[1].splitlines()[3:]
    names = []
    for line in lines:
        if not line.strip() or line.split()[0] == "total":
            break
        names.append(line.split()[0])
    return set(names)


def test_bn_placement_layout(smoke_workdir):
    study = smoke_workdir / "results" / "bn_placement"
    latest = study / "latest"
    assert latest.is_symlink() and os.readlink(latest).startswith("smoke-")
    v = latest.resolve()
    man = json.loads((v / "manifest.json").read_text())
    for key in ("resolved_config", "git", "packages", "started", "finished", "command"):
        assert key in man
    assert set(man["git"]) == {"commit", "dirty"}
    cfg = yaml.safe_load((smoke_workdir / "config" / "smoke.yaml").read_text())["studies"]["bn_placement"]
    n_variants = 3 * len(cfg["activations"]) * len(cfg["lrs"])
    runs = sorted(v.glob("runs/*/seed*/metrics.parquet"))
    assert len(runs) == n_variants * cfg["seeds"]
    m = pd.read_parquet(runs[0])
    assert {"step", "metric", "value", "variant", "seed", "norm", "act", "lr"} <= set(m.columns)
    summary = pd.read_parquet(v / "summary.parquet")
    assert len(summary) == len(runs) and set(summary.status) <= {"ok", "diverged"}
    claims = pd.read_csv(v / "claims.csv")
    assert list(claims.columns) == CLAIM_COLUMNS
    assert set(claims.verdict) <= {"holds", "fails", "inconclusive"}
    assert (claims.ci_low <= claims.value + 1e-12).all() and (claims.value <= claims.ci_high + 1e-12).all()
    for fig in ("learning_curves", "final_accuracy", "steps_to_target", "placement_difference"):
        assert (v / "figures" / f"{fig}.png").stat().st_size > 5000
        assert (v / "figures" / f"{fig}.pdf").exists()
    assert list(v.glob("wandb/offline-run-*")), "offline W&B runs are written under the version folder"


def test_second_dry_run_plans_nothing(smoke_workdir):
    p = snakemake(smoke_workdir, "-n", "--configfile", "config/smoke.yaml")
    assert "Nothing to be done" in p.stdout + p.stderr


def test_config_change_makes_new_version_and_keeps_old(smoke_workdir):
    study = smoke_workdir / "results" / "bn_placement"
    old = study / os.readlink(study / "latest")
    before = files_digest(old)
    cfg = yaml.safe_load((smoke_workdir / "config" / "smoke.yaml").read_text())
    cfg["studies"]["bn_placement"]["lrs"] = [0.05]
    (smoke_workdir / "changed.yaml").write_text(yaml.safe_dump(cfg))
    plan = snakemake(smoke_workdir, "-n", "--configfile", "changed.yaml").stdout
    # only the changed study's jobs are planned
    planned = job_stats(plan) - {"all"}
    assert planned <= {"train", "bn_placement_analyze", "bn_placement", "claims_table", "scorecard"}, planned
    try:
        snakemake(smoke_workdir, "bn_placement", "--cores", "2", "--configfile", "changed.yaml")
        new = study / os.readlink(study / "latest")
        assert new != old and new.name.startswith("smoke-")
        assert files_digest(old) == before
    finally:  # leave the shared smoke results as the other tests expect them
        point_latest(old)


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
