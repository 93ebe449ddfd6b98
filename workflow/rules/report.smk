# Browsing results: the replication scorecard (part of `all`; it leads with the papers' headline
# claims, also shown on the report's front page), each study's claims as an HTML table
# for the Snakemake report, comparisons of two versions of a study, and W&B Reports (optional,
# online only). Nothing here is study-specific: it grows with the studies registry. Helpers are in
# common.smk; see docs/browsing.md.


wildcard_constraints:
    version="[A-Za-z0-9_.-]+-[0-9a-f]{8}",
    a="[A-Za-z0-9_.-]+-[0-9a-f]{8}",
    b="[A-Za-z0-9_.-]+-[0-9a-f]{8}",


rule claims_table:
    """One study version's claims as an HTML table, for the Snakemake report."""
    input:
        "results/{study}/{version}/claims.csv",
    output:
        report(
            "results/{study}/{version}/claims.html",
            caption="../report/scorecard/claims_table.rst",
            category=study_category,
            labels={"figure": "claims and verdicts"},
        ),
    log:
        "results/{study}/{version}/logs/claims_table.log",
    threads: 1
    params:
        code=PAGES_CODE,
    shell:
        "python -m normlab.scorecard --claims-html $(dirname {input}) --out {output} > {log} 2>&1"


rule scorecard:
    """The replication scorecard of this config: headline claims of every study first, the replication matrix (headline claims x configs), then cells and checks (md, html, csv). The default config's pages are results/scorecard.*, another config's results/scorecards/<name>.* (common.smk's PAGES)."""
    input:
        scorecard_inputs,
    output:
        md=PAGES["md"],
        html=report(
            PAGES["html"],
            caption="../report/scorecard/scorecard.rst",
            category="Scorecard",
            labels={"figure": "scorecard"},
        ),
        csv=PAGES["csv"],
        # the headline table and the matrix as an HTML fragment: workflow/report/workflow.rst puts it on the
        # report's front page
        front=PAGES["front"],
    log:
        f"results/logs/scorecard-{config['name']}.log",
    threads: 1
    params:
        vdirs=scorecard_vdirs,
        name=config["name"],
        configs=f"{workflow.basedir}/config",
        code=PAGES_CODE,
    # The replication matrix reads the newest version of every config name from disk (not inputs: other
    # configs' versions may be absent). Each config's pages are its own files, so running another config
    # leaves these untouched (and plans nothing here afterwards); they rerun when this config's claims or
    # versions change, and then show every config's newest column.
    shell:
        "python -m normlab.scorecard --version-dir {params.vdirs} --name {params.name} --out-dir results"
        " --results results --configs {params.configs} > {log} 2>&1"


# snakemake --cores 1 results/compare/<study>/<A>_vs_<B>/claims.md  (A, B: version folder names)
rule compare:
    """Two versions of one study side by side (claims and figures)."""
    input:
        a="results/{study}/{a}/claims.csv",
        b="results/{study}/{b}/claims.csv",
    output:
        md="results/compare/{study}/{a}_vs_{b}/claims.md",
        csv="results/compare/{study}/{a}_vs_{b}/claims.csv",
        figures="results/compare/{study}/{a}_vs_{b}/figures.md",
    log:
        "results/compare/{study}/{a}_vs_{b}/compare.log",
    threads: 1
    shell:
        "python -m normlab.compare $(dirname {input.a}) $(dirname {input.b}) --out $(dirname {output.md})"
        " > {log} 2>&1"


# Not part of `all`: snakemake --cores 1 wandb_reports (online and logged in; offline it prints
# how to `wandb sync` first and exits cleanly).
rule wandb_reports:
    """W&B Reports, one per study version, updated in place (online; offline it says how to sync)."""
    input:
        rules.scorecard.output.csv,
    log:
        "results/logs/wandb_reports.log",
    threads: 1
    params:
        vdirs=scorecard_vdirs,
        project=config["wandb"]["project"],
    shell:
        "python -m normlab.wandb_reports --version-dir {params.vdirs} --project {params.project}"
        " 2>&1 | tee {log}"
