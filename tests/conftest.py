"""Shared fixtures. ``smoke_workdir`` runs the smoke config of every study through real
Snakemake once per test session, in a temporary folder that links the workflow's sources."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LINKED = ["Snakefile", "workflow", "config", "src", "profiles", "pyproject.toml"]


def make_workdir(path: Path) -> Path:
    """A folder where snakemake runs the repo's workflow but writes results/ and resources/ locally."""
    path.mkdir(parents=True, exist_ok=True)
    for name in LINKED:
        if not (path / name).exists():
            (path / name).symlink_to(ROOT / name)
    return path


def snakemake(workdir: Path, *args, timeout=1800, check=True, env=None) -> subprocess.CompletedProcess:
    e = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "WANDB_MODE": "offline", **(env or {})}
    p = subprocess.run([str(BIN / "snakemake"), *args], cwd=workdir, capture_output=True, text=True,
                       timeout=timeout, env=e)
    if check and p.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({p.returncode}):\n{p.stdout[-4000:]}\n{p.stderr[-6000:]}")
    return p


@pytest.fixture(scope="session")
def smoke_workdir(tmp_path_factory) -> Path:
    wd = make_workdir(tmp_path_factory.mktemp("smoke"))
    snakemake(wd, "--cores", "2", "--configfile", "config/smoke.yaml")
    return wd


@pytest.fixture
def workdir(tmp_path) -> Path:
    return make_workdir(tmp_path / "wd")
