# Config validation and target helpers. Rules call these; they hold no logic of their own.
import json
import os
import shlex
import sys

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from normlab import studies as _studies
from normlab.config import (
    ConfigError,
    config_hash,
    resolved_study_config,
    study_version,
    validate,
)

try:
    validate(config)
    # A study left out of the config is present but disabled.
    for _s in _studies.STUDIES:
        config["studies"].setdefault(_s, {"enabled": False})
    validate(config)
except ConfigError as _e:
    # One line naming the key, no traceback (a WorkflowError would print one).
    print(f"Config error: {_e}", file=sys.stderr)
    sys.exit(1)

# Jobs run with the interpreter of the environment Snakemake itself runs in, so that
# `.venv/bin/snakemake` works without activating the venv (shell commands call `python`; cluster
# jobs inherit this PATH through sbatch's default --export=ALL).
_bindir = str(Path(sys.executable).parent)
if os.environ.get("PATH", "").split(os.pathsep)[0] != _bindir:
    os.environ["PATH"] = _bindir + os.pathsep + os.environ.get("PATH", "")

ENV = "../envs/normlab.yaml"  # every rule's software environment (relative to workflow/rules)
# W&B settings reach jobs through the environment, not through params (a rerun trigger),
# so that changing the W&B mode never reruns training.

os.environ.update(NORMLAB_WANDB=json.dumps(config["wandb"]))
VERSIONS = {s: study_version(config, s) for s in _studies.STUDIES}
ENABLED = [s for s in _studies.STUDIES if config["studies"][s]["enabled"]]


def vdir(study):
    """results/<study>/<version>: the version folder of the current config."""
    return f"results/{study}/{VERSIONS[study]}"


def resolved(study):
    return resolved_study_config(config, study)


def _variants(study):
    return _studies.get(study).variants(config["studies"][study])


def data_file(study):
    ds = config["studies"][study]["dataset"]
    params = config["datasets"].get(ds, {})
    return f"resources/data/{ds}-{config_hash(params)}.pt"


def run_dirs(study):
    return [f"{vdir(study)}/runs/{v}" for v in _variants(study)]


def gpus(study):
    return 1 if config["device"] == "cuda" else 0


def train_spec(wildcards):
    """The run spec of one training job, as a shell-quoted JSON string."""
    study = wildcards.study
    if wildcards.version != VERSIONS[study]:
        raise WorkflowError(
            f"{vdir(study)} is the version of the current config; {wildcards.version} belongs to another config"
        )
    spec = dict(_variants(study)[wildcards.variant])
    cfg = config["studies"][study]
    spec.update(
        study=study,
        version=wildcards.version,
        variant=wildcards.variant,
        seeds=list(range(cfg["seeds"])),
        data=data_file(study),
        device=config["device"],
    )
    return shlex.quote(json.dumps(spec, sort_keys=True))


def train_data(wildcards):
    return data_file(wildcards.study)


def train_gpus(wildcards):
    return gpus(wildcards.study)


def dataset_params(wildcards):
    return shlex.quote(
        json.dumps(config["datasets"].get(wildcards.dataset, {}), sort_keys=True)
    )


def study_config_arg(study):
    return shlex.quote(json.dumps(resolved(study), sort_keys=True))


def study_targets(study):
    return [f"{vdir(study)}/claims.csv", f"{vdir(study)}/manifest.json"]


SCORECARD = ["results/scorecard.md", "results/scorecard.html", "results/claims_all.csv"]


def all_targets():
    return [t for s in ENABLED for t in study_targets(s)] + (
        SCORECARD if ENABLED else []
    )


# Helpers of workflow/rules/report.smk (scorecard, claims tables, W&B reports).
def study_category(wildcards):
    """A study's report category: the one its `<study>_analyze` figures use, else the study name."""
    try:
        analyze = workflow.get_rule(f"{wildcards.study}_analyze")
    except Exception:
        return wildcards.study
    for f in analyze.output:
        rep = getattr(f, "flags", {}).get("report")
        if rep is not None and rep.category:
            return rep.category
    return wildcards.study


def scorecard_inputs(wildcards):
    files = ("claims.csv", "manifest.json", "claims.html")
    return [f"{vdir(s)}/{f}" for s in ENABLED for f in files]


def scorecard_vdirs(wildcards):
    return " ".join(vdir(s) for s in ENABLED)
