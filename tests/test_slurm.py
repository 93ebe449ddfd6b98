"""The smoke DAG through a real one-node SLURM cluster (``--workflow-profile profiles/slurm``).

tests/slurm/setup.sh installs munge + SLURM (apt) and the executor plugin (pip) when missing,
starts the daemons and tests/slurm/stop.sh stops the ones it started. Skipped only where the
packages cannot be installed (setup.sh exits 3: no root, no apt); CI runs it (root, Debian).
Proof that every job ran as a SLURM job: the ids Snakemake got from sbatch, the job-completion
log (/var/log/slurm/jobcomp.log, one line per finished job) and the SLURM_JOB_ID that each train
job writes into summary.json and each analysis job into manifest.json all agree.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import BIN, ROOT, make_workdir

pytestmark = pytest.mark.slow

SCRIPTS = ROOT / "tests" / "slurm"
JOBCOMP = Path("/var/log/slurm/jobcomp.log")
SUBMITTED = re.compile(r"submitted with SLURM jobid (\d+) \(log: .*?/slurm_logs/rule_([A-Za-z0-9_]+)/")


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    env = {**os.environ, "NORMLAB_SLURM_STATE": str(tmp_path_factory.mktemp("slurm-state"))}
    p = subprocess.run(["bash", str(SCRIPTS / "setup.sh"), sys.executable], capture_output=True, text=True,
                       timeout=900, env=env, check=False)
    if p.returncode == 3:
        pytest.skip(f"SLURM cannot be installed here: {p.stderr.strip().splitlines()[-1]}")
    assert p.returncode == 0, f"tests/slurm/setup.sh failed ({p.returncode}):\n{p.stdout}\n{p.stderr}"
    try:
        yield
    finally:
        subprocess.run(["bash", str(SCRIPTS / "stop.sh")], capture_output=True, text=True, timeout=120, env=env,
                       check=False)


def _jobcomp() -> dict[str, dict[str, str]]:
    """JobId -> fields, from the job-completion log (empty if this cluster does not keep one)."""
    if not JOBCOMP.exists():
        return {}
    out = {}
    for line in JOBCOMP.read_text().splitlines():
        f = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
        if "JobId" in f:
            out[f["JobId"]] = f
    return out


def _failed_job_logs(log: str, wd: Path) -> str:
    """The tails of the log files of the jobs that failed (pytest removes the workdir later)."""
    out = []
    for block in log.split("Error in rule ")[1:]:
        m = re.search(r"^\s+log: (.*?)(?: \(check log file|$)", block, flags=re.MULTILINE)
        for f in (m.group(1).split(", ") if m else []):
            path = wd / f if not f.startswith("/") else Path(f)
            text = path.read_text(errors="replace")[-3000:] if path.exists() else "(missing)"
            out.append(f"\n--- {f} ---\n{text}")
    return "".join(out)


def test_smoke_dag_runs_every_job_through_slurm(slurm_cluster, tmp_path, capsys):
    wd = make_workdir(tmp_path / "wd")
    before = set(_jobcomp())
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "WANDB_MODE": "offline"}
    # SIGINT, not SIGTERM/SIGKILL: a hung snakemake only stops on SIGINT (and then cancels its jobs).
    cmd = ["timeout", "-s", "INT", "-k", "60", "2400", str(BIN / "snakemake"), "--workflow-profile",
           "profiles/slurm", "--configfile", "config/smoke.yaml", "--jobs", "2"]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=wd, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - t0
    log = p.stdout + p.stderr
    assert p.returncode == 0, (f"snakemake via SLURM failed ({p.returncode}) after {wall:.0f}s:\n{log[-8000:]}"
                               + _failed_job_logs(log, wd))

    # 1. Every job Snakemake ran outside its own process was submitted to SLURM ...
    submitted = dict(SUBMITTED.findall(log))  # SLURM job id -> rule
    # local rules print "localrule x:"; checkpoints (the sequential looks) "checkpoint x:"
    remote_jobs = re.findall(r"^(?:rule|checkpoint) (\w+):$", log, flags=re.MULTILINE)
    assert remote_jobs and len(submitted) == len(remote_jobs), (remote_jobs, submitted)
    assert sorted(submitted.values()) == sorted(remote_jobs)
    assert {"prepare_data", "train"} <= set(submitted.values())
    assert "li_arora_look" in submitted.values(), "the smoke config's sequential looks run as cluster jobs too"

    # 2. ... and finished there: one COMPLETED line each in the job-completion log, in this workdir.
    comp = _jobcomp()
    if JOBCOMP.exists():
        new = set(comp) - before
        assert set(submitted) <= new, f"not in {JOBCOMP}: {sorted(set(submitted) - new)}"
        for jid in submitted:
            assert comp[jid]["JobState"] == "COMPLETED", comp[jid]
            assert Path(comp[jid]["WorkDir"]).resolve() == wd.resolve(), comp[jid]

    # 3. Each job saw its own SLURM_JOB_ID: train jobs in summary.json, analysis jobs in manifest.json.
    summaries = list(wd.glob("results/*/runs/*/*/seed*/summary.json"))  # run folders (keyed by their spec)
    manifests = [p for p in wd.glob("results/*/*/manifest.json") if p.parts[-2] != "latest"]
    assert summaries and manifests
    run_ids = {json.loads(s.read_text())["slurm_job_id"] for s in summaries}
    assert run_ids <= set(submitted), sorted(run_ids - set(submitted))
    assert {j for j, r in submitted.items() if r == "train"} <= run_ids
    manifest_ids = {json.loads(m.read_text())["slurm_job_id"] for m in manifests}
    assert manifest_ids <= set(submitted), sorted(manifest_ids - set(submitted))
    assert {j for j, r in submitted.items() if r.endswith("_analyze")} <= manifest_ids
    assert all((m.parent / "claims.csv").exists() for m in manifests if m.parts[-3] != "scorecard")

    with capsys.disabled():  # shown in CI's log even when the test passes
        by_rule: dict[str, list[str]] = {}
        for jid, rule in sorted(submitted.items(), key=lambda kv: int(kv[0])):
            by_rule.setdefault(rule, []).append(jid)
        print(f"\n[slurm] {len(submitted)} jobs ran as SLURM jobs in {wall:.0f}s; ids by rule: "
              + "; ".join(f"{r}: {','.join(ids)}" for r, ids in by_rule.items()))
