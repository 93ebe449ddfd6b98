"""Docs that must not drift: config/README.md is generated from the schemas; the repo's own
references (LICENSE, CITATION.cff, docs/studies.md) exist and config comments point at real files."""

import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_config_readme_is_up_to_date():
    r = subprocess.run([sys.executable, "-m", "normlab.config_doc", "--check"], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr + "\n(run `python -m normlab.config_doc` to regenerate config/README.md)"


def test_config_readme_lists_every_study_and_key():
    text = (ROOT / "config" / "README.md").read_text()
    for path in (ROOT / "workflow" / "schemas" / "studies").glob("*.schema.yaml"):
        name = path.name.split(".")[0]
        assert f"### `studies.{name}`" in text
        for key in yaml.safe_load(path.read_text())["properties"]:
            assert f"`studies.{name}.{key}`" in text, (name, key)


def test_citation_and_license():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] and cff["title"]
    urls = " ".join(r.get("url", "") for r in cff["references"])
    for arxiv in ("1805.11604", "1910.07454"):
        assert arxiv in urls
    assert "MIT License" in (ROOT / "LICENSE").read_text()


def test_config_comments_point_at_files_that_exist():
    for cfg in (ROOT / "config").glob("*.yaml"):
        for ref in re.findall(r"([\w./-]+\.md)\b", cfg.read_text()):
            assert (ROOT / ref).exists() or (cfg.parent / ref).exists(), f"{cfg.name} points at {ref}"
