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


# ---------------------------------------------------------------------------- commands the docs show
DOCS = [ROOT / "README.md", ROOT / "results" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def doc_commands() -> list[tuple[str, str]]:
    """(doc, command) for every `snakemake ...`, `make ...` and `python -m normlab...` the docs show, in code
    blocks (one per line, comments dropped) and in inline code."""
    out = []
    for doc in DOCS:
        text = doc.read_text()
        lines = [ln for block in re.findall(r"```(?:bash|sh)?\n(.*?)```", text, re.S) for ln in block.splitlines()]
        lines += re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
        for ln in lines:
            ln = ln.split(" #")[0].strip()
            ln = re.sub(r"^(\.venv/bin/|\$\(BIN\)/)", "", ln)
            if re.match(r"^(snakemake|make|python -m normlab)\b", ln):
                out.append((doc.name, ln))
    return out


def test_docs_show_commands():
    cmds = doc_commands()
    assert any(c.startswith("snakemake ") for _, c in cmds) and any(c.startswith("make ") for _, c in cmds)


def test_commands_in_the_docs_match_the_workflow():
    """Rule names, targets, flags, config files, make targets and modules the docs show exist."""
    import importlib.util
    import shlex

    from snakemake.cli import get_argument_parser

    rules = subprocess.run([str(Path(sys.executable).parent / "snakemake"), "--list-rules"], cwd=ROOT,
                           capture_output=True, text=True, timeout=300).stdout.split()
    assert "train" in rules and "all" in rules
    make_targets = set(re.findall(r"^([a-zA-Z][\w-]*):", (ROOT / "Makefile").read_text(), re.M))
    parser = get_argument_parser()
    wrong = []
    for doc, cmd in doc_commands():
        if "<" in cmd or "..." in cmd or "$(" in cmd and not cmd.startswith("snakemake"):
            continue  # a template (<study>, ...), not a command
        try:
            words = shlex.split(re.sub(r"--cores N\b", "--cores 2", cmd))
        except ValueError:
            wrong.append(f"{doc}: cannot parse `{cmd}`")
            continue
        if words[0] == "make":
            for w in words[1:]:
                if "=" not in w and w not in make_targets:
                    wrong.append(f"{doc}: `{cmd}`: no make target {w!r}")
        elif words[0] == "python":
            if importlib.util.find_spec(words[2]) is None:
                wrong.append(f"{doc}: `{cmd}`: no module {words[2]}")
        else:
            try:
                args = parser.parse_args(words[1:])
            except (SystemExit, Exception):
                wrong.append(f"{doc}: `{cmd}`: snakemake refuses its flags")
                continue
            for f in args.configfile or []:
                if not (ROOT / f).exists() and not f.name.endswith(("X.yaml", "changed.yaml")):
                    wrong.append(f"{doc}: `{cmd}`: no config file {f}")
            for t in args.targets or []:
                if "/" not in t and "$(" not in t and t not in rules:
                    wrong.append(f"{doc}: `{cmd}`: no rule {t!r}")
                elif t.startswith("results/") and not re.match(r"results/[\w.-]+(/|$)", t):
                    wrong.append(f"{doc}: `{cmd}`: odd target path {t!r}")
    assert not wrong, "\n".join(wrong)


def test_links_in_the_docs_point_at_files_that_exist():
    wrong = []
    for doc in DOCS:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text()):
            if not re.match(r"^[a-z]+:", target) and not (doc.parent / target).exists():
                wrong.append(f"{doc.relative_to(ROOT)} links to {target}")
    assert not wrong, "\n".join(wrong)


def test_every_config_key_has_a_description():
    rows = [ln for ln in (ROOT / "config" / "README.md").read_text().splitlines() if ln.startswith("| `")]
    assert rows, "config/README.md has no key rows"
    missing = []
    for row in rows:
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", row.strip())[1:-1]]
        if not cells[-1]:
            missing.append(cells[0])
    assert not missing, (f"{len(missing)} config keys have no description (add `description:` to "
                         "their schema):\n" + "\n".join(missing))
