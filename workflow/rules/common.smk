# Config validation and target helpers. Rules call these; they hold no logic of their own.
import json
import os
import shlex
import sys

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from normlab import plan as _plan
from normlab import studies as _studies
from normlab.config import ConfigError, validate

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

ENABLED = _plan.enabled(config)
# The run plan (normlab.plan): every job keyed by what its numbers depend on. Nothing is written at
# parse time (a dry run writes nothing): each job gets its spec as a param and writes it itself.
PLANS = {}
for (
    _s
) in (
    _studies.STUDIES
):  # disabled studies too: `snakemake <study>` runs one on its defaults
    try:
        PLANS[_s] = _plan.build(config, _s)
    except (
        ConfigError
    ) as _e:  # a study's cross-key check raised while its variants were made
        if _s in ENABLED:
            print(f"Config error: {_e}", file=sys.stderr)
            sys.exit(1)

# W&B settings reach jobs through the environment, not through params (a rerun trigger), so that changing
# the W&B mode never reruns training; with them the config's name and its version of each study, which the
# jobs' W&B runs carry (normlab.tracking.labels: tags config:<name>, version:<version>).
os.environ.update(
    NORMLAB_WANDB=json.dumps(
        {
            **config["wandb"],
            "config": config["name"],
            "versions": {_s: Path(_p.version_dir).name for _s, _p in PLANS.items()},
        }
    )
)


def vdir(study):
    """results/<study>/<config name>-<hash of the analysis inputs>: the study's version folder."""
    return PLANS[study].version_dir


def data_file(study):
    return _plan.data_file(config, study)


def gpus(study):
    """1 when the study's jobs will use CUDA (device cuda, or auto on a host with a GPU), else 0."""
    return 1 if _plan.device_kind(config) == "cuda" else 0


def _run_spec(wildcards):
    d = f"results/{wildcards.study}/runs/{wildcards.variant}/{wildcards.block}"
    spec = PLANS[wildcards.study].runs.get(d) if wildcards.study in PLANS else None
    if spec is None:
        raise WorkflowError(
            f"{d} is not a run of the current config (normlab.plan lists them)"
        )
    return spec


def train_spec(wildcards):
    """One training job's run spec (JSON): what its numbers depend on, hashed into its folder name."""
    return json.dumps(_run_spec(wildcards), sort_keys=True)


def train_data(wildcards):
    return _run_spec(wildcards)["data"]


def train_gpus(wildcards):
    return 1 if _run_spec(wildcards)["device"] == "cuda" else 0


def dataset_params(wildcards):
    return shlex.quote(
        json.dumps(config["datasets"].get(wildcards.dataset, {}), sort_keys=True)
    )


def _looks_decision(study, k):
    """Look k's decision (its checkpoint's JSON): raises Snakemake's incomplete-checkpoint signal until it exists."""
    out = getattr(checkpoints, f"{study}_look").get(k=str(k)).output.decision
    return json.loads(Path(out).read_text())


def runs_at(study, k):
    """The run folders look k reads: the first look's blocks, then each earlier look's chosen blocks."""
    p = PLANS[study]
    runs = [d for dirs in p.by_variant.values() for d in dirs]
    for j in range(1, min(k, len(p.looks))):
        dec = _looks_decision(study, j)
        runs += dec["next_runs"]
        if dec["done"]:
            break
    return runs


def look_runs(study):
    """Input function of a look's checkpoint (wildcard k)."""
    return lambda wildcards: runs_at(study, int(wildcards.k))


def final_runs(study):
    """Input function of the final analysis: every block the looks chose (a fixed design: all its runs)."""
    return lambda wildcards: runs_at(study, len(PLANS[study].looks))


def study_targets(study):
    return [f"{vdir(study)}/claims.csv", f"{vdir(study)}/manifest.json"]


# The scorecard's files of this config (normlab.io.scorecard_paths): results/scorecard.* for the config named
# `default`, results/scorecards/<name>.* for any other, so a subset config never rewrites the default's pages.
from normlab.io import scorecard_paths as _scorecard_paths

PAGES = {k: str(v) for k, v in _scorecard_paths(config["name"]).items()}
SCORECARD = [PAGES["md"], PAGES["html"], PAGES["csv"]]
# The code of the pages (a rule param: an edit to it rebuilds the scorecard and the claims tables).
PAGES_CODE = _plan.code_hash(
    ["scorecard", "templates", "plotting.py", "stats", "studies"]
)


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
