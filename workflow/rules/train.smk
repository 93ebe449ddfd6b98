# Engine rules shared by every study: prepare a dataset, train all seeds of one variant.


wildcard_constraints:
    study="[a-z0-9_]+",
    version="[A-Za-z0-9_.-]+-[0-9a-f]{8}",
    variant="[^/]+",


rule prepare_data:
    """Generate or read one dataset (MNIST-1D by code, Fashion-MNIST/CIFAR-10 from disk) into one file."""
    output:
        "resources/data/{dataset}-{hash}.pt",
    log:
        "resources/logs/prepare_data/{dataset}-{hash}.log",
    benchmark:
        "resources/benchmarks/prepare_data/{dataset}-{hash}.tsv"
    threads: 1
    params:
        ds=dataset_params,
    shell:
        "python -m normlab.data --name {wildcards.dataset} --params {params.ds} --out {output} > {log} 2>&1"


rule train:
    """Train every seed of one variant of a study, batched (checkpointed: a retry resumes)."""
    input:
        train_data,
    output:
        directory("results/{study}/{version}/runs/{variant}"),
    log:
        "results/{study}/{version}/logs/train/{variant}.log",
    benchmark:
        "results/{study}/{version}/benchmarks/train/{variant}.tsv"
    retries: 2  # after a preemption or a crash the job resumes from its checkpoint
    threads: 1
    resources:
        gpu=train_gpus,
    params:
        spec=train_spec,
        ckpt="results/{study}/{version}/.ckpt/{variant}",
    shell:
        "python -m normlab.train --spec {params.spec} --out {output} --ckpt-dir {params.ckpt}"
        " --threads {threads} > {log} 2>&1"
