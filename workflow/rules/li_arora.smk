# S2: Li & Arora 2020, weight decay + momentum = exponential learning rate. Target: snakemake --cores N li_arora
LIA = vdir("li_arora")

# One exactness file per dtype of the config (float64 and/or float32), passed to analyze as --extra.
LIA_EXACT = [
    f"{LIA}/exactness/{d}.parquet"
    for d in config["studies"]["li_arora"]["exactness"]["dtypes"]
]
LIA_EXTRA = " ".join(f"exact_{Path(f).stem}={f}" for f in LIA_EXACT)


rule li_arora_exactness:
    """S2: paired runs (constant lr + WD vs exponential lr, step decay vs TEXP) in one dtype, for exactness and drift."""
    input:
        data_file("li_arora"),
    output:
        f"{LIA}/exactness/{{dtype}}.parquet",
    log:
        f"{LIA}/logs/exactness/{{dtype}}.log",
    benchmark:
        f"{LIA}/benchmarks/exactness/{{dtype}}.tsv"
    wildcard_constraints:
        dtype="float64|float32",
    threads: 1
    resources:
        gpu=gpus("li_arora"),
    params:
        cfg=study_config_arg("li_arora"),
    shell:
        "python -m normlab.studies.li_arora_exact --config {params.cfg} --data {input} --dtype {wildcards.dtype}"
        " --out {output} --threads {threads} > {log} 2>&1"


rule li_arora_analyze:
    """S2: claims (exact equivalence, practical TEXP, norm growth, float32 drift), figures, manifest."""
    input:
        runs=run_dirs("li_arora"),
        exact=LIA_EXACT,
    output:
        summary=f"{LIA}/summary.parquet",
        claims=report(
            f"{LIA}/claims.csv",
            caption="../report/li_arora/claims.rst",
            category="S2 Li-Arora",
            labels={"figure": "claims table"},
        ),
        manifest=f"{LIA}/manifest.json",
        gap=report(
            f"{LIA}/figures/exactness_gap.png",
            caption="../report/li_arora/exactness_gap.rst",
            category="S2 Li-Arora",
            labels={"figure": "exactness gap"},
        ),
        lrs=report(
            f"{LIA}/figures/lr_schedules.png",
            caption="../report/li_arora/lr_schedules.rst",
            category="S2 Li-Arora",
            labels={"figure": "learning-rate schedules"},
        ),
        norms=report(
            f"{LIA}/figures/norms.png",
            caption="../report/li_arora/norms.rst",
            category="S2 Li-Arora",
            labels={"figure": "norms"},
        ),
        drift=report(
            f"{LIA}/figures/drift.png",
            caption="../report/li_arora/drift.rst",
            category="S2 Li-Arora",
            labels={"figure": "float32 drift"},
        ),
        acc=report(
            f"{LIA}/figures/test_accuracy.png",
            caption="../report/li_arora/test_accuracy.rst",
            category="S2 Li-Arora",
            labels={"figure": "test accuracy"},
        ),
    log:
        f"{LIA}/logs/analyze.log",
    benchmark:
        f"{LIA}/benchmarks/analyze.tsv"
    threads: 1
    params:
        cfg=study_config_arg("li_arora"),
        extra=LIA_EXTRA,
    shell:
        "python -m normlab.analyze --study li_arora --version-dir $(dirname {output.manifest}) --config {params.cfg}"
        " --extra {params.extra} > {log} 2>&1"


rule li_arora:
    """S2 target: Li & Arora 2020, the exponential learning rate (snakemake --cores N li_arora)."""
    input:
        study_targets("li_arora"),
