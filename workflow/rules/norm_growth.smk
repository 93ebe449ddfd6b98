# S3: weight-norm growth and the implicit learning-rate decay. Target: snakemake --cores N norm_growth
NG = vdir("norm_growth")
NG_CAT = "S3 Norm growth"


rule norm_growth_invariance:
    """S3: float64 checks of the scale-invariance identities and the Pythagorean recursion."""
    input:
        data_file("norm_growth"),
    output:
        f"{NG}/invariance.parquet",
    log:
        f"{NG}/logs/invariance.log",
    benchmark:
        f"{NG}/benchmarks/invariance.tsv"
    threads: 1
    params:
        cfg=study_config_arg("norm_growth"),
    shell:
        "python -m normlab.studies.norm_growth_invariance --data {input} --config {params.cfg}"
        " --out {output} > {log} 2>&1"


rule norm_growth_analyze:
    """S3: claims (invariance, sqrt(k) law where G is steady, WD equilibrium, projection, output layer), figures."""
    input:
        runs=run_dirs("norm_growth"),
        invariance=f"{NG}/invariance.parquet",
    output:
        summary=f"{NG}/summary.parquet",
        claims=report(
            f"{NG}/claims.csv",
            caption="../report/norm_growth/claims.rst",
            category=NG_CAT,
            labels={"figure": "claims table"},
        ),
        manifest=f"{NG}/manifest.json",
        growth=report(
            f"{NG}/figures/norm_growth.png",
            caption="../report/norm_growth/norm_growth.rst",
            category=NG_CAT,
            labels={"figure": "norm growth"},
        ),
        g2=report(
            f"{NG}/figures/g2_steady.png",
            caption="../report/norm_growth/g2_steady.rst",
            category=NG_CAT,
            labels={"figure": "G^2 steadiness"},
        ),
        efflr=report(
            f"{NG}/figures/effective_lr.png",
            caption="../report/norm_growth/effective_lr.rst",
            category=NG_CAT,
            labels={"figure": "effective learning rate"},
        ),
        wd=report(
            f"{NG}/figures/wd_equilibrium.png",
            caption="../report/norm_growth/wd_equilibrium.rst",
            category=NG_CAT,
            labels={"figure": "weight-decay equilibrium"},
        ),
        spread=report(
            f"{NG}/figures/unit_spread.png",
            caption="../report/norm_growth/unit_spread.rst",
            category=NG_CAT,
            labels={"figure": "per-unit spread"},
        ),
        inv=report(
            f"{NG}/figures/invariance.png",
            caption="../report/norm_growth/invariance.rst",
            category=NG_CAT,
            labels={"figure": "invariance checks"},
        ),
    log:
        f"{NG}/logs/analyze.log",
    benchmark:
        f"{NG}/benchmarks/analyze.tsv"
    threads: 1
    params:
        cfg=study_config_arg("norm_growth"),
    shell:
        "python -m normlab.analyze --study norm_growth --version-dir $(dirname {output.manifest}) --config {params.cfg}"
        " --extra invariance={input.invariance} > {log} 2>&1"


rule norm_growth:
    """S3 target: weight-norm growth and the implicit learning-rate decay (snakemake --cores N norm_growth)."""
    input:
        study_targets("norm_growth"),
