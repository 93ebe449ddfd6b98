# Every study's rules, made from its package's declarations (normlab.studies): one job per side job,
# `<study>_analyze` (claims, figures with their captions, manifest) and the target `<study>`.
# Nothing here names a study. A study with needs the declarations cannot express adds
# workflow/rules/<study>.smk, which the Snakefile includes.

for _s in _studies.STUDIES:
    _mod = _studies.get(_s)
    _v = vdir(_s)
    _jobs = _studies.side_jobs(_s, config["studies"][_s])

    for _name, _job in _jobs.items():

        rule:
            name:
                f"{_s}_{_name}"
            input:
                data_file(_s) if _job.data else [],
            output:
                directory(f"{_v}/{_job.output}")
                if _job.directory
                else f"{_v}/{_job.output}",
            log:
                f"{_v}/logs/{_name}.log",
            benchmark:
                f"{_v}/benchmarks/{_name}.tsv"
            threads: 1
            resources:
                gpu=gpus(_s) if _job.gpu else 0,
            params:
                module=_job.module,
                args=" ".join(_job.args),
                cfg=study_config_arg(_s),
                data=f"--data {data_file(_s)}" if _job.data else "",
            shell:
                "python -m {params.module} {params.args} --config {params.cfg} {params.data} --out {output}"
                " --threads {threads} > {log} 2>&1"

    rule:
        name:
            f"{_s}_analyze"
        input:
            **{_name: f"{_v}/{_job.output}" for _name, _job in _jobs.items()},
            runs=run_dirs(_s),
        output:
            **{
                f"fig_{_f.stem}": report(
                    f"{_v}/figures/{_f.file}",
                    caption=str(_studies.caption_path(_s, _f.stem)),
                    category=_mod.CATEGORY,
                    labels={"figure": _f.label},
                )
                for _f in _mod.FIGURES
            },
            summary=f"{_v}/summary.parquet",
            claims=report(
                f"{_v}/claims.csv",
                caption=str(_studies.caption_path(_s, "claims_table")),
                category=_mod.CATEGORY,
                labels={"figure": "claims table"},
            ),
            manifest=f"{_v}/manifest.json",
        log:
            f"{_v}/logs/analyze.log",
        benchmark:
            f"{_v}/benchmarks/analyze.tsv"
        threads: 1
        params:
            study=_s,
            cfg=study_config_arg(_s),
        shell:
            "python -m normlab.analyze --study {params.study} --version-dir $(dirname {output.manifest})"
            " --config {params.cfg} > {log} 2>&1"

    rule:
        name:
            _s
        input:
            study_targets(_s),
        localrule: True

    # `snakemake --list-rules` shows these (a rule made in a loop cannot carry a literal docstring)
    for _name, _job in _jobs.items():
        workflow.get_rule(f"{_s}_{_name}").docstring = _job.doc
    workflow.get_rule(f"{_s}_analyze").docstring = (
        f"{_mod.TITLE}: claims, figures, manifest."
    )
    workflow.get_rule(_s).docstring = (
        f"Target: {_mod.TITLE} (snakemake --cores N {_s})."
    )
    if Path(workflow.basedir, "workflow", "rules", f"{_s}.smk").exists():

        include: f"{_s}.smk"
