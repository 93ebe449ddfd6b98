# normlab: replications of BN / weight-decay / learning-rate studies as one DAG.
# Usage: snakemake --cores N [study]; see README.md.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/studies.smk"


# Light rules run on the submitting host, never through a cluster queue (wandb_reports needs a network).
localrules:
    all,
    claims_table,
    scorecard,
    compare,
    wandb_reports,


rule all:
    """Every enabled study's claims and manifest, and the scorecard."""
    default_target: True
    input:
        all_targets(),
