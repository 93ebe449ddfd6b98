"""The run plan: a validated config in, the jobs of each study and their specs out.

Torch-free (called at DAG parse time by ``workflow/rules/common.smk``, and by the benchmark and the
tests). For each enabled study:

- ``version(config, study)``: ``<config name>-<hash of the study's resolved config>``;
- ``version_dir(config, study)``: ``results/<study>/<version>``;
- ``data_file(config, study)``: the prepared dataset the study's jobs read;
- ``train_specs(config, study)``: ``{variant: run spec}``, the full spec each ``train`` job runs
  (the study's partial spec from ``variants(cfg)`` plus study, version, variant, seeds, data, device);
- ``write(config, study)``: writes ``<version dir>/config.json`` (the resolved study config, read by
  the analysis and side jobs) and ``<version dir>/specs/<variant>.json`` (read by ``train``), each only
  when its content differs (so a dry run never changes a file's content and earlier versions are
  never touched: the folder name is the hash of what is written).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from . import studies
from .config import config_hash, resolved_study_config, study_version


def enabled(config: dict) -> list[str]:
    return [s for s in studies.STUDIES if config["studies"].get(s, {}).get("enabled", False)]


def version(config: dict, study: str) -> str:
    return study_version(config, study)


def version_dir(config: dict, study: str, results: str = "results") -> str:
    return f"{results}/{study}/{version(config, study)}"


def data_file(config: dict, study: str) -> str:
    ds = config["studies"][study]["dataset"]
    params = config["datasets"].get(ds, {})
    return f"resources/data/{ds}-{config_hash(params)}.pt"


def variants(config: dict, study: str) -> dict:
    return studies.get(study).variants(config["studies"][study])


def train_specs(config: dict, study: str) -> dict[str, dict]:
    cfg = config["studies"][study]
    out = {}
    for name, partial in variants(config, study).items():
        spec = dict(partial)
        spec.update(study=study, version=version(config, study), variant=name, seeds=list(range(cfg["seeds"])),
                    data=data_file(config, study), device=config["device"])
        out[name] = spec
    return out


def config_path(config: dict, study: str) -> str:
    return f"{version_dir(config, study)}/config.json"


def spec_path(config: dict, study: str, variant: str) -> str:
    return f"{version_dir(config, study)}/specs/{variant}.json"


def _write_if_changed(path: str, obj) -> None:
    text = json.dumps(obj, indent=1, sort_keys=True) + "\n"
    p = Path(path)
    if p.exists() and p.read_text() == text:
        return
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, p)


def write(config: dict, study: str) -> None:
    _write_if_changed(config_path(config, study), resolved_study_config(config, study))
    for name, spec in train_specs(config, study).items():
        _write_if_changed(spec_path(config, study, name), spec)


def main(argv=None):
    """``python -m normlab.plan STUDY [CONFIG ...]``: print the study's version folder for config/config.yaml
    merged with the given config files (as ``--configfile`` merges them), e.g.
    ``snakemake --cores 2 "$(python -m normlab.plan santurkar)/claims.csv"``."""
    import argparse
    import sys

    import yaml

    from .config import ConfigError, validate

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("study")
    ap.add_argument("configs", nargs="*", help="config files merged over config/config.yaml")
    a = ap.parse_args(argv)

    def merge(base, over):
        for k, v in over.items():
            base[k] = merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
        return base

    cfg = yaml.safe_load(Path("config/config.yaml").read_text())
    for f in a.configs:
        cfg = merge(cfg, yaml.safe_load(Path(f).read_text()) or {})
    try:
        validate(cfg)
    except ConfigError as e:
        sys.exit(f"Config error: {e}")
    if a.study not in studies.STUDIES:
        sys.exit(f"unknown study {a.study!r} (known: {', '.join(studies.STUDIES)})")
    print(version_dir(cfg, a.study))


if __name__ == "__main__":
    main()
