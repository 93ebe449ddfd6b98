"""The run plan: a validated config in, every job of each study and its spec out, each keyed by what
its numbers depend on (so that an edit reruns only the jobs whose numbers it changes).

Torch-free (called at DAG parse time by ``workflow/rules/common.smk``, and by the benchmark and the
tests). Nothing here writes a file: each job receives its spec from its rule (a param, which Snakemake
tracks) and writes it into its own output folder.

- **Runs** (``train`` jobs): one per variant and block of seeds (``seed_block``: seeds 0..b-1,
  b..2b-1, ...; a seed's numbers do not depend on its block). The spec is the study's partial spec
  from ``variants(cfg)`` plus study, variant, seeds, the dataset file (named by its parameters), the
  device kind it runs on (cpu or cuda) and the engine's numerics version (``normlab.numerics``). Its
  folder is ``results/<study>/runs/<variant>/s<first>-<last>-<hash of the spec>``: the same spec is
  the same folder, whatever the config's name, W&B settings, claims or other variants.
- **Side jobs** (checks, the deep linear network, ...): keyed the same way by the sections of the
  study's config they read (``SideJob.reads``): ``results/<study>/side/<name>-<hash>/<output>``.
- **The analysis** (claims, figures, manifest): ``results/<study>/<config name>-<hash>``, the hash of
  its inputs (the run and side-job folders it reads), of the study's config (claims, figures) and of
  the analysis code (the study's package, ``ANALYSIS_CODE``): an edit to a claim reruns the analysis.
  Its spec lists the runs; the analysis links them into the version folder (``runs/<variant>/seed<k>``).
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from . import studies
from .config import config_hash, resolved_study_config
from .datakey import data_key
from .gpu import will_use_cuda
from .numerics import NUMERICS

RESULTS = "results"


def enabled(config: dict) -> list[str]:
    return [s for s in studies.STUDIES if config["studies"].get(s, {}).get("enabled", False)]


def device_kind(config: dict) -> str:
    """The kind of device the jobs run on: ``cuda`` (device cuda, or auto on a host with a GPU) or ``cpu``."""
    return "cuda" if will_use_cuda(config.get("device", "auto")) else "cpu"


def data_file(config: dict, study: str) -> str:
    ds = config["studies"][study]["dataset"]
    params = config["datasets"].get(ds, {})
    return f"resources/data/{ds}-{config_hash(data_key(ds, params))}.pt"  # params + the generator's version


def variants(config: dict, study: str) -> dict:
    return studies.get(study).variants(config["studies"][study])


def seed_blocks(n_seeds: int, block: int) -> list[list[int]]:
    """Seeds 0..n-1 in fixed blocks of ``block`` (the last one partial when ``block`` does not divide n)."""
    return [list(range(lo, min(lo + block, n_seeds))) for lo in range(0, n_seeds, block)]


@dataclass
class StudyPlan:
    """Every job of one study: run folders and their specs, side jobs, the analysis and its version."""

    study: str
    version: str
    runs: dict[str, dict] = field(default_factory=dict)  # run folder -> train spec (every look's blocks)
    by_variant: dict[str, list[str]] = field(default_factory=dict)  # variant -> its run folders (the first look's)
    looks: list[int] = field(default_factory=list)  # seed counts of the planned looks (one: the fixed design)
    # variant -> the block each later look may add (looks 2..K): trained only when that look's checkpoint asks
    later: dict[str, list[str]] = field(default_factory=dict)
    side: dict[str, tuple] = field(default_factory=dict)  # side job name -> (SideJob, spec, output path)
    analysis: dict = field(default_factory=dict)  # the analysis spec (written as <version dir>/config.json)

    @property
    def version_dir(self) -> str:
        return f"{RESULTS}/{self.study}/{self.version}"


def looks_of(cfg: dict) -> list[int]:
    """The planned looks of a study's config (``stats.sequential.planned_looks``): [seeds] in a fixed design."""
    from .stats.sequential import planned_looks

    return planned_looks(cfg["seeds"], cfg.get("seed_block") or cfg["seeds"], cfg.get("max_seeds"))


def look_blocks(cfg: dict) -> list[list[list[int]]]:
    """The seed blocks of each planned look: the first look's seeds in blocks of ``seed_block`` (as in a fixed
    design), then one block per later look (the seeds it adds)."""
    looks = looks_of(cfg)
    first = seed_blocks(looks[0], cfg.get("seed_block") or cfg["seeds"])  # (no seed_block: one block)
    return [first] + [[list(range(a, b))] for a, b in zip(looks, looks[1:])]


def run_specs(config: dict, study: str) -> dict[str, dict]:
    """{run folder: full train spec} of a study: one per variant and block of seeds (of every planned look)."""
    cfg = config["studies"][study]
    out = {}
    for name, partial in variants(config, study).items():
        for seeds in (b for blocks in look_blocks(cfg) for b in blocks):
            spec = copy.deepcopy(partial)
            spec.update(study=study, variant=name, seeds=seeds, data=data_file(config, study),
                        device=device_kind(config), numerics=NUMERICS)
            block = f"s{seeds[0]}-{seeds[-1]}-{config_hash(spec)}"
            spec["key"] = f"{name}/{block}"
            out[f"{RESULTS}/{study}/runs/{name}/{block}"] = spec
    return out


def section(cfg: dict, keys) -> dict:
    """The part of ``cfg`` named by ``keys`` (``"dln"``, or ``"exactness.steps"`` for one key of a section)."""
    out: dict = {}
    for key in keys:
        *parents, last = key.split(".")
        src, dst = cfg, out
        for k in parents:
            src, dst = src[k], dst.setdefault(k, {})
        dst[last] = copy.deepcopy(src[last])
    return out


def side_specs(config: dict, study: str) -> dict[str, tuple]:
    """{side job name: (SideJob, spec, output path)}: each spec holds only the config sections it reads."""
    cfg = config["studies"][study]
    out = {}
    for name, job in studies.side_jobs(study, cfg).items():
        spec = {"study": study, "job": name, "module": job.module, "args": list(job.args), "device": device_kind(config),
                "data": data_file(config, study) if job.data else None, "numerics": NUMERICS,
                "study_config": section(cfg, job.reads)}
        out[name] = (job, spec, f"{RESULTS}/{study}/side/{name}-{config_hash(spec)}/{job.output}")
    return out


PACKAGE = Path(__file__).resolve().parent
# The code an analysis runs besides its study package (which is hashed whole: analysis, figures, captions).
ANALYSIS_CODE = ("analyze.py", "stats", "plotting.py", "io.py", "studies/__init__.py", "studies/setup_text.py")


def code_hash(paths) -> str:
    """A hash of the files' contents (paths relative to the package; a folder: its code, captions, templates and
    styles). A path that does not exist is an error (a renamed module must not silently drop out of the hash)."""
    h = hashlib.sha256()
    for rel in paths:
        p = PACKAGE / rel
        if not p.exists():
            raise FileNotFoundError(f"code_hash: {p} does not exist")
        for f in sorted(p.rglob("*")) if p.is_dir() else [p]:
            if f.suffix in (".py", ".rst", ".j2", ".css") and f.is_file() and "__pycache__" not in f.parts:
                h.update(str(f.relative_to(PACKAGE)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:12]


def build(config: dict, study: str) -> StudyPlan:
    runs = run_specs(config, study)
    side = side_specs(config, study)
    looks = looks_of(config["studies"][study])
    by_variant: dict[str, list[str]] = {}
    later: dict[str, list[str]] = {}
    for d, spec in runs.items():
        if spec["seeds"][-1] < looks[0]:
            by_variant.setdefault(spec["variant"], []).append(d)
        else:
            later.setdefault(spec["variant"], []).append(d)
    # the analysis code is an input too (cheap to rerun): an edit to a study's claims or figures makes a new version
    analysis = {**resolved_study_config(config, study), "device": device_kind(config), "runs": by_variant,
                "side": {name: path for name, (_, _, path) in side.items()},
                "code": code_hash([*ANALYSIS_CODE, f"studies/{study}"])}
    if len(looks) > 1:  # sequential seeds: the planned looks and each later look's block per variant
        analysis.update(looks=looks, later=later)
    version = f"{config.get('name', 'default')}-{config_hash(analysis)}"
    analysis = {**analysis, "name": config.get("name", "default"), "version": version}
    return StudyPlan(study, version, runs, by_variant, looks=looks, later=later, side=side, analysis=analysis)


def version(config: dict, study: str) -> str:
    return build(config, study).version


def main(argv=None):
    """``python -m normlab.plan STUDY [CONFIG ...]``: print the study's version folder for config/config.yaml
    merged with the given config files (as ``--configfile`` merges them), e.g.
    ``snakemake --cores 2 "$(python -m normlab.plan santurkar)/claims.csv"``. With ``--runs``: its run
    folders, one per line."""
    import argparse
    import sys

    import yaml

    from .config import ConfigError, merge, validate

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("study")
    ap.add_argument("configs", nargs="*", help="config files merged over config/config.yaml")
    ap.add_argument("--runs", action="store_true", help="print the study's run folders instead")
    a = ap.parse_args(argv)
    cfg = yaml.safe_load(Path("config/config.yaml").read_text())
    for f in a.configs:
        cfg = merge(cfg, yaml.safe_load(Path(f).read_text()) or {})
    try:
        validate(cfg)
    except ConfigError as e:
        sys.exit(f"Config error: {e}")
    if a.study not in studies.STUDIES:
        sys.exit(f"unknown study {a.study!r} (known: {', '.join(studies.STUDIES)})")
    p = build(cfg, a.study)
    print("\n".join(p.runs) if a.runs else p.version_dir)


if __name__ == "__main__":
    main()
