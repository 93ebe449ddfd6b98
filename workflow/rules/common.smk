# Config validation and target helpers. Rules call these; they hold no logic of their own.
import json
import os
import shlex
import sys

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from normlab import gpu as _gpu
from normlab import plan as _plan
from normlab import studies as _studies
from normlab.config import (
    ConfigError,
    resolved_study_config,
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

# W&B settings reach jobs through the environment, not through params (a rerun trigger),
# so that changing the W&B mode never reruns training.

os.environ.update(NORMLAB_WANDB=json.dumps(config["wandb"]))
VERSIONS = {s: _plan.version(config, s) for s in _studies.STUDIES}
ENABLED = _plan.enabled(config)
# The run plan (normlab.plan) writes each enabled study's resolved config and run specs into its
# version folder once; jobs read those files (no JSON on command lines).
for _s in ENABLED:
    _plan.write(config, _s)


def vdir(study):
    """results/<study>/<version>: the version folder of the current config."""
    return f"results/{study}/{VERSIONS[study]}"


def resolved(study):
    return resolved_study_config(config, study)


def _variants(study):
    return _plan.variants(config, study)


def data_file(study):
    return _plan.data_file(config, study)


def run_dirs(study):
    return [f"{vdir(study)}/runs/{v}" for v in _variants(study)]


def gpus(study):
    """1 when the study's jobs will use CUDA (device cuda, or auto on a host with a GPU), else 0."""
    return 1 if _gpu.will_use_cuda(config["device"]) else 0


def train_spec(wildcards):
    """The path of one training job's run spec (written by the plan)."""
    study = wildcards.study
    if wildcards.version != VERSIONS[study]:
        raise WorkflowError(
            f"{vdir(study)} is the version of the current config; {wildcards.version} belongs to another config"
        )
    return _plan.spec_path(config, study, wildcards.variant)


def train_data(wildcards):
    return data_file(wildcards.study)


def train_gpus(wildcards):
    return gpus(wildcards.study)


def dataset_params(wildcards):
    return shlex.quote(
        json.dumps(config["datasets"].get(wildcards.dataset, {}), sort_keys=True)
    )


def study_config_arg(study):
    """The path of the study's resolved config (config.json in its version folder)."""
    return _plan.config_path(config, study)


def study_targets(study):
    return [f"{vdir(study)}/claims.csv", f"{vdir(study)}/manifest.json"]


SCORECARD = ["results/scorecard.md", "results/scorecard.html", "results/claims_all.csv"]


def all_targets():
    return [t for s in ENABLED for t in study_targets(s)] + (
        SCORECARD if ENABLED else []
    )


# Helpers of workflow/rules/report.smk (scorecard, claims tables, W&B reports).
def study_category(wildcards):
    """A study's report category (declared by its package), else the study name."""
    try:
        return _studies.get(wildcards.study).CATEGORY
    except ValueError:
        return wildcards.study


def scorecard_inputs(wildcards):
    files = ("claims.csv", "manifest.json", "claims.html")
    return [f"{vdir(s)}/{f}" for s in ENABLED for f in files]


def scorecard_vdirs(wildcards):
    return " ".join(vdir(s) for s in ENABLED)
