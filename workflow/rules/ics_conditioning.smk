# S5: the ICS conditioning hypothesis (lecture 5's class project). Target: snakemake --cores N ics_conditioning
ICS = vdir("ics_conditioning")


rule ics_conditioning_check:
    """S5: one float64 check job (invariance of the trajectory to shifts under BN, or the batch-centering identity)."""
    input:
        data_file("ics_conditioning"),
    output:
        f"{ICS}/checks/{{check}}.{{ext}}",
    log:
        f"{ICS}/logs/checks/{{check}}.{{ext}}.log",
    benchmark:
        f"{ICS}/benchmarks/checks/{{check}}.{{ext}}.tsv"
    wildcard_constraints:
        check="invariance|centering",
        ext="parquet|json",
    threads: 1
    params:
        cfg=study_config_arg("ics_conditioning"),
    shell:
        "python -m normlab.studies.ics_checks {wildcards.check} --config {params.cfg} --data {input}"
        " --out {output} --threads {threads} > {log} 2>&1"


rule ics_conditioning_analyze:
    """S5: claims (K-FAC outliers, centering, invariance, share of BN advantage recovered), figures, manifest."""
    input:
        runs=run_dirs("ics_conditioning"),
        invariance=f"{ICS}/checks/invariance.parquet",
        centering=f"{ICS}/checks/centering.json",
    output:
        summary=f"{ICS}/summary.parquet",
        claims=report(
            f"{ICS}/claims.csv",
            caption="../report/ics_conditioning/claims.rst",
            category="S5 ICS conditioning",
            labels={"figure": "claims table"},
        ),
        manifest=f"{ICS}/manifest.json",
        nu=report(
            f"{ICS}/figures/eig_vs_nu.png",
            caption="../report/ics_conditioning/eig_vs_nu.rst",
            category="S5 ICS conditioning",
            labels={"figure": "eigenvalues vs nu"},
        ),
        spectra=report(
            f"{ICS}/figures/spectra_centering.png",
            caption="../report/ics_conditioning/spectra_centering.rst",
            category="S5 ICS conditioning",
            labels={"figure": "spectra with and without centering"},
        ),
        invariance=report(
            f"{ICS}/figures/invariance.png",
            caption="../report/ics_conditioning/invariance.rst",
            category="S5 ICS conditioning",
            labels={"figure": "invariance trajectories"},
        ),
        curves=report(
            f"{ICS}/figures/training_curves.png",
            caption="../report/ics_conditioning/training_curves.rst",
            category="S5 ICS conditioning",
            labels={"figure": "training curves"},
        ),
        over_training=report(
            f"{ICS}/figures/curvature_over_training.png",
            caption="../report/ics_conditioning/curvature_over_training.rst",
            category="S5 ICS conditioning",
            labels={"figure": "curvature along training"},
        ),
        share=report(
            f"{ICS}/figures/bn_advantage_share.png",
            caption="../report/ics_conditioning/bn_advantage_share.rst",
            category="S5 ICS conditioning",
            labels={"figure": "share of BN's speed advantage recovered by centering"},
        ),
    log:
        f"{ICS}/logs/analyze.log",
    benchmark:
        f"{ICS}/benchmarks/analyze.tsv"
    threads: 1
    params:
        cfg=study_config_arg("ics_conditioning"),
    shell:
        "python -m normlab.analyze --study ics_conditioning --version-dir $(dirname {output.manifest}) --config {params.cfg}"
        " --extra invariance={input.invariance} centering={input.centering} > {log} 2>&1"


rule ics_conditioning:
    """S5 target: the ICS conditioning hypothesis (snakemake --cores N ics_conditioning)."""
    input:
        study_targets("ics_conditioning"),
