# S1: Santurkar et al. 2018 (noisy BN, ICS, landscape). Target: snakemake --cores N santurkar
SAN = vdir("santurkar")
SAN_CAT = "S1 Santurkar et al."


rule santurkar_dln:
    """S1: the deep linear network (25 layers, full-batch GD, 10,000 steps) with and without BN, with ICS and landscape probes."""
    output:
        directory(f"{SAN}/dln"),
    log:
        f"{SAN}/logs/dln.log",
    benchmark:
        f"{SAN}/benchmarks/dln.tsv"
    threads: 1
    params:
        cfg=study_config_arg("santurkar"),
    shell:
        "python -m normlab.studies.santurkar_dln --config {params.cfg} --out {output}"
        " --threads {threads} > {log} 2>&1"


rule santurkar_analyze:
    """S1: claims (noisy BN trains as well as BN, ICS not reduced, smoother landscape; controls), figures, manifest."""
    input:
        runs=run_dirs("santurkar"),
        dln=f"{SAN}/dln",
    output:
        summary=f"{SAN}/summary.parquet",
        claims=report(
            f"{SAN}/claims.csv",
            caption="../report/santurkar/claims.rst",
            category=SAN_CAT,
            labels={"figure": "claims table"},
        ),
        manifest=f"{SAN}/manifest.json",
        train_acc=report(
            f"{SAN}/figures/train_accuracy.png",
            caption="../report/santurkar/train_accuracy.rst",
            category=SAN_CAT,
            labels={"figure": "training accuracy, train mode (Fig. 2)"},
        ),
        test_acc=report(
            f"{SAN}/figures/test_accuracy.png",
            caption="../report/santurkar/test_accuracy.rst",
            category=SAN_CAT,
            labels={"figure": "test accuracy (Fig. 2)"},
        ),
        train_loss=report(
            f"{SAN}/figures/train_loss.png",
            caption="../report/santurkar/train_loss.rst",
            category=SAN_CAT,
            labels={"figure": "training loss, train mode (Figs. 7-8)"},
        ),
        lr_sweep=report(
            f"{SAN}/figures/lr_sweep.png",
            caption="../report/santurkar/lr_sweep.rst",
            category=SAN_CAT,
            labels={"figure": "learning-rate sweep (regime choice)"},
        ),
        hist=report(
            f"{SAN}/figures/activation_histograms.png",
            caption="../report/santurkar/activation_histograms.rst",
            category=SAN_CAT,
            labels={"figure": "activation histograms (Fig. 2)"},
        ),
        ics=report(
            f"{SAN}/figures/ics.png",
            caption="../report/santurkar/ics.rst",
            category=SAN_CAT,
            labels={"figure": "ICS (Figs. 3-4)"},
        ),
        landscape=report(
            f"{SAN}/figures/landscape.png",
            caption="../report/santurkar/landscape.rst",
            category=SAN_CAT,
            labels={"figure": "landscape (Fig. 4)"},
        ),
        dln_fig=report(
            f"{SAN}/figures/dln.png",
            caption="../report/santurkar/dln.rst",
            category=SAN_CAT,
            labels={"figure": "deep linear network (Fig. 5)"},
        ),
        claims_fig=report(
            f"{SAN}/figures/claims.png",
            caption="../report/santurkar/claims_figure.rst",
            category=SAN_CAT,
            labels={"figure": "claims"},
        ),
    log:
        f"{SAN}/logs/analyze.log",
    benchmark:
        f"{SAN}/benchmarks/analyze.tsv"
    threads: 1
    params:
        cfg=study_config_arg("santurkar"),
    shell:
        "python -m normlab.analyze --study santurkar --version-dir $(dirname {output.manifest}) --config {params.cfg}"
        " --extra dln={input.dln} > {log} 2>&1"


rule santurkar:
    """S1 target: Santurkar et al. 2018 (snakemake --cores N santurkar)."""
    input:
        study_targets("santurkar"),
