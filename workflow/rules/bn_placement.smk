# S4: BN before vs after the activation. Target: snakemake --cores N bn_placement
BNP = vdir("bn_placement")


rule bn_placement_analyze:
    """S4: claims (BN before vs after vs none, pooled and per cell), figures and manifest."""
    input:
        run_dirs("bn_placement"),
    output:
        summary=f"{BNP}/summary.parquet",
        claims=report(
            f"{BNP}/claims.csv",
            caption="../report/bn_placement/claims.rst",
            category="S4 BN placement",
            labels={"figure": "claims table"},
        ),
        manifest=f"{BNP}/manifest.json",
        curves=report(
            f"{BNP}/figures/learning_curves.png",
            caption="../report/bn_placement/learning_curves.rst",
            category="S4 BN placement",
            labels={"figure": "learning curves"},
        ),
        final=report(
            f"{BNP}/figures/final_accuracy.png",
            caption="../report/bn_placement/final_accuracy.rst",
            category="S4 BN placement",
            labels={"figure": "final accuracy"},
        ),
        speed=report(
            f"{BNP}/figures/steps_to_target.png",
            caption="../report/bn_placement/steps_to_target.rst",
            category="S4 BN placement",
            labels={"figure": "steps to target"},
        ),
        diff=report(
            f"{BNP}/figures/placement_difference.png",
            caption="../report/bn_placement/placement_difference.rst",
            category="S4 BN placement",
            labels={"figure": "placement difference"},
        ),
    log:
        f"{BNP}/logs/analyze.log",
    benchmark:
        f"{BNP}/benchmarks/analyze.tsv"
    threads: 1
    params:
        cfg=study_config_arg("bn_placement"),
    shell:
        "python -m normlab.analyze --study bn_placement --version-dir $(dirname {output.manifest}) --config {params.cfg}"
        " > {log} 2>&1"


rule bn_placement:
    """S4 target: BN before vs after the activation (snakemake --cores N bn_placement)."""
    input:
        study_targets("bn_placement"),
