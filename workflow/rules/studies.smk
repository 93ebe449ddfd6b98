# Every study's rules, made from its package's declarations (normlab.studies) and its run plan
# (normlab.plan): one job per side job, `<study>_analyze` (claims, figures with their captions,
# manifest) and the target `<study>`. Nothing here names a study. A study with needs the declarations
# cannot express adds workflow/rules/<study>.smk, which the Snakefile includes.

for _s, _p in PLANS.items():
    _mod = _studies.get(_s)
    _v = _p.version_dir

    # A side job's folder is named by the hash of its spec (the config sections it reads): it reruns
    # only when those change. It writes its spec beside its output (spec.json) and reads it.
    for _name, (_job, _spec, _out) in _p.side.items():
        _dir = _out[: -len(_job.output) - 1]

        rule:
            name:
                f"{_s}_{_name}"
            input:
                _spec["data"] or [],
            output:
                out=directory(_out) if _job.directory else _out,
                spec=f"{_dir}/spec.json",
            log:
                f"results/{_s}/logs/side/{Path(_dir).name}.log",
            benchmark:
                f"results/{_s}/benchmarks/side/{Path(_dir).name}.tsv"
            threads: 1
            resources:
                gpu=gpus(_s) if _job.gpu else 0,
            params:
                module=_job.module,
                args=" ".join(_job.args),
                spec=json.dumps(_spec, sort_keys=True),
                data=f"--data {_spec['data']}" if _job.data else "",
            shell:
                "printf '%s\\n' {params.spec:q} > {output.spec} && python -m {params.module} {params.args}"
                " --config {output.spec} {params.data} --out {output.out} --threads {threads} > {log} 2>&1"

    # Sequential seeds (max_seeds): look k's analysis is a checkpoint; its decision (looks/look<k>.json) names the
    # block of seeds the next look trains, only for the variants of the headline claims still open.
    if len(_p.looks) > 1:

        checkpoint:
            name:
                f"{_s}_look"
            input:
                **{_name: _out for _name, (_job, _spec, _out) in _p.side.items()},
                runs=look_runs(_s),
            output:
                decision=f"{_v}/looks/look{{k}}.json",
                claims=f"{_v}/looks/look{{k}}.csv",
            log:
                f"{_v}/logs/look{{k}}.log",
            wildcard_constraints:
                k="[0-9]+",
            threads: 1
            params:
                study=_s,
                spec=json.dumps(_p.analysis, sort_keys=True),
            shell:
                "python -m normlab.analyze --study {params.study} --version-dir $(dirname $(dirname {output.decision}))"
                " --config {params.spec:q} --look {wildcards.k} > {log} 2>&1"

        workflow.get_rule(f"{_s}_look").docstring = (
            f"{_mod.TITLE}: one look of the sequential seeds (which variants the next look trains)."
        )

    rule:
        # The version folder: named by the config's name and the hash of the analysis's inputs (run and side
        # folders) and of the study's config; the job writes config.json and links the runs it read.
        name:
            f"{_s}_analyze"
        input:
            **{_name: _out for _name, (_job, _spec, _out) in _p.side.items()},
            runs=final_runs(_s),
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
            spec=json.dumps(_p.analysis, sort_keys=True),
        shell:
            "python -m normlab.analyze --study {params.study} --version-dir $(dirname {output.manifest})"
            " --config {params.spec:q} > {log} 2>&1"

    rule:
        name:
            _s
        input:
            study_targets(_s),
        localrule: True

    # `snakemake --list-rules` shows these (a rule made in a loop cannot carry a literal docstring)
    for _name, (_job, _spec, _out) in _p.side.items():
        workflow.get_rule(f"{_s}_{_name}").docstring = _job.doc
    workflow.get_rule(f"{_s}_analyze").docstring = (
        f"{_mod.TITLE}: claims, figures, manifest."
    )
    workflow.get_rule(_s).docstring = (
        f"Target: {_mod.TITLE} (snakemake --cores N {_s})."
    )
    if Path(workflow.basedir, "workflow", "rules", f"{_s}.smk").exists():

        include: f"{_s}.smk"
