# Engine rules shared by every study: prepare a dataset, train one block of seeds of one variant.


wildcard_constraints:
    study="[a-z0-9_]+",
    variant="[^/]+",
    block="s[0-9]+-[0-9]+-[0-9a-f]{8}",


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


# A run folder is named by the hash of its spec (normlab.plan): the same spec is the same folder, reused
# by every config and version that asks for it. The job writes its spec into the folder (run.json).
rule train:
    """Train one block of seeds of one variant, batched (checkpointed: a retry resumes)."""
    input:
        train_data,
    output:
        directory("results/{study}/runs/{variant}/{block}"),
    log:
        "results/{study}/logs/train/{variant}/{block}.log",
    benchmark:
        "results/{study}/benchmarks/train/{variant}/{block}.tsv"
    retries: 2  # after a preemption or a crash the job resumes from its checkpoint
    threads: 1
    resources:
        gpu=train_gpus,
    params:
        spec=train_spec,
        ckpt="results/{study}/.ckpt/{variant}/{block}",
    shell:
        "python -m normlab.train --spec {params.spec:q} --out {output} --ckpt-dir {params.ckpt}"
        " --threads {threads} > {log} 2>&1"
