"""docs/adding-a-study.md: the example study in docs/example_study/ (a package in the one study layout, a
schema, a config section, no rule file) is built through real Snakemake from its declarations alone: side job,
training, analysis, figures with captions in the report, scorecard."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from conftest import ROOT, snakemake

EXAMPLE = ROOT / "docs" / "example_study"
IGNORE = shutil.ignore_patterns("__pycache__", "*.egg-info", ".ckpt")


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A copy of the workflow with the example study added the way docs/adding-a-study.md says: three additions."""
    wd = tmp_path_factory.mktemp("add_study")
    for name in ("Snakefile", "workflow", "src", "config", "profiles", "pyproject.toml"):
        src = ROOT / name
        (shutil.copytree(src, wd / name, ignore=IGNORE) if src.is_dir() else shutil.copy(src, wd / name))
    shutil.copytree(EXAMPLE / "example", wd / "src/normlab/studies/example", ignore=IGNORE)
    shutil.copy(EXAMPLE / "example.schema.yaml", wd / "workflow/schemas/studies/example.schema.yaml")
    shutil.copy(EXAMPLE / "config.yaml", wd / "config/example.yaml")
    return wd


def env(wd: Path) -> dict:
    # the jobs import normlab from the copy (the editable install points at the repository)
    return {"PYTHONPATH": f"{wd / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def test_example_study_has_the_one_layout():
    """Declarations in __init__.py; variants.py, claims.py, figures.py, the side job's module, captions/ (as every
    study in src/normlab/studies/)."""
    pkg = EXAMPLE / "example"
    assert {p.name for p in pkg.glob("*.py")} == {"__init__.py", "variants.py", "claims.py", "figures.py", "sizes.py"}
    assert {p.name for p in (pkg / "captions").glob("*.rst")} == {"loss.rst", "claims_table.rst"}
    init = (pkg / "__init__.py").read_text()
    for line in ("from .variants import check_config, variants", "from .claims import analyze",
                 "from .figures import figures"):
        assert line in init
    assert "def analyze" not in init and "def figures" not in init and "def variants" not in init
    for f in pkg.glob("*.py"):  # light at import: the Snakefile imports every study when it parses
        top = [ln for ln in f.read_text().splitlines() if ln.startswith(("import ", "from "))]
        assert not [ln for ln in top if any(m in ln for m in ("numpy", "pandas", "torch", "matplotlib", "seaborn"))]
    assert "matplotlib.use" not in (pkg / "figures.py").read_text()  # plotting.setup() is the one set-up


def test_example_study_is_declared_and_discovered(repo):
    code = ("from normlab import studies as S; m = S.get('example'); "
            "print(S.STUDIES, [f.file for f in m.FIGURES], list(S.side_jobs('example', {})), "
            "m.check_config({'seeds': 1}), m.check_config({'seeds': 2}))")
    p = subprocess.run([str(ROOT / ".venv/bin/python") if (ROOT / ".venv/bin/python").exists() else "python",
                        "-c", code], capture_output=True, text=True, env={**os.environ, **env(repo)}, check=True)
    assert "'example'" in p.stdout and "loss.png" in p.stdout and "sizes" in p.stdout
    assert "'seeds' 1 must be at least 2" in p.stdout and p.stdout.rstrip().endswith("[]")
    rules = snakemake(repo, "--list-rules", env=env(repo)).stdout
    for r in ("example_sizes", "example_analyze", "example"):
        assert r in rules.split(), rules
    assert not (repo / "workflow/rules/example.smk").exists()  # no rule file needed


@pytest.mark.slow
def test_example_study_runs_through_snakemake(repo):
    snakemake(repo, "--cores", "2", "--configfile", "config/example.yaml", env=env(repo))
    vdirs = list((repo / "results/example").glob("example-*"))
    assert len(vdirs) == 1
    v = vdirs[0]
    claims = pd.read_csv(v / "claims.csv").set_index("claim_id")
    assert claims.loc["EX.a", "kind"] == "headline" and claims.loc["EX.check", "kind"] == "check"
    assert claims.loc["EX.check", "verdict"] == "holds"  # 4,000 MNIST-1D training signals counted
    assert claims.loc["EX.a", "verdict"] in ("holds", "fails", "inconclusive")
    assert abs(claims.loc["EX.a", "fail_margin"]) == 0.01  # its smallest effect of interest, from claims.loss_min
    assert (v / "figures/loss.png").stat().st_size > 1000
    assert (v / "sizes.json").exists() and len(list((v / "runs").iterdir())) == 2
    card = (repo / "results/scorecards/example.md").read_text()  # the example config's own page
    assert "EX: BatchNorm lowers" in card and "EX.a" in card
    # the report takes the category and the caption from the package's declarations
    snakemake(repo, "--report", "report.html", "--configfile", "config/example.yaml", env=env(repo))
    page = (repo / "report.html").read_text()
    assert "EX Example" in page and "Training loss of the plain MLP" in page
