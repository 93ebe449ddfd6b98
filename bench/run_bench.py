"""Benchmark of the training engine (``make bench``): writes results/bench/*.json and prints a table.

Run side by side in one process, on the same cores (``--threads``, default 1):

1. throughput: the engine (all seeds batched in one job, its only path; and one job per seed, the
   same loop with one member) against a plain PyTorch reference loop written here (one seed at a time, a DataLoader over a
   TensorDataset, the same model, optimizer, batch size and steps), on a ``--seeds``-seed workload
   (the default config's bn_placement model). Runs are interleaved and repeated; the best time of
   each counts. ``speedup_vs_reference`` = engine seed-steps/s / reference seed-steps/s (wall; and
   ``speedup_vs_reference_cpu`` from this process's CPU seconds, less sensitive to other load).
   ``per_study``: the same on every study's largest training job (``--study-steps`` per seed).
   ``ceiling``: the seed-steps/s if every FLOP of a step ran at this machine's matmul rate at the
   model's layer size, as a multiple of the reference (what 3x would take); ``profile``: torch.profiler
   of the batched job (results/bench/profile.txt: operators by self CPU time).
2. flops: achieved FLOP/s of a training job (``torch.utils.flop_counter.FlopCounterMode`` counts
   the training steps and evaluations) on the largest model of the default config, against the
   measured peak of a large float32 matmul (and of a matmul at the model's own layer size).
3. probes: each probe that exists (``normlab.probes``), with the parameters a default study uses
   (else ``--probe-every``): its cost as a fraction of the training time of the same job at the
   study's ``every``, over the first steps of the job (``probe_costs``).
4. startup: ``python -X importtime -c 'import normlab.train'``, a 1-step training job's process
   start to first step (``startup_s`` of its summary) and its wall time minus its training time; and the DAG's overhead from the ``benchmark:`` .tsv files Snakemake
   wrote and the runs' summary.json (default-config versions if present, else whatever exists).

5. fashion: the Fashion-MNIST jobs as config/fashion.yaml runs them (each image study's largest job): the
   engine against the reference loop and against the old image path (``conv_path="grouped"``: members folded
   into grouped convolutions) in the same run, images/s and CPU time; achieved GFLOP/s against this machine's
   conv and matmul peaks; for the largest VGG job and the PreResNet job, the job's own process split into
   training steps, evaluations, probes, start-up and the rest (``--fashion-steps``, ``--fashion-split-steps``).

Usage: python bench/run_bench.py [--out results/bench] [--seeds 5] [--steps 300] [--threads 1]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from normlab import data as data_mod
from normlab import plan
from normlab.config import config_hash, validate
from normlab.datakey import data_key
from normlab.engine import run as engine_run
from normlab.models import build_model
from normlab.startup import deterministic
from normlab.train import keep_freed_memory

INPUT_SHAPES = {"mnist1d": (1, 40), "fashion_mnist": (1, 28, 28), "cifar10": (3, 32, 32)}


# ---------------------------------------------------------------------------------------------
def default_config() -> dict:
    import yaml

    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    validate(cfg)
    return cfg


def fashion_config() -> dict:
    """config/fashion.yaml merged over the default config, as ``make fashion`` runs it."""
    import yaml

    from normlab.config import merge

    cfg = merge(yaml.safe_load((ROOT / "config" / "config.yaml").read_text()),
                yaml.safe_load((ROOT / "config" / "fashion.yaml").read_text()))
    validate(cfg)
    return cfg


def study_specs(cfg: dict):
    """(study, variant, spec) of every enabled study's training jobs, from the run plan (normlab.plan),
    as the Snakemake rules run them; device cpu and W&B off for the benchmark."""
    for name in plan.enabled(cfg):
        for spec in plan.run_specs(cfg, name).values():
            v = spec["variant"]
            spec = {**copy.deepcopy(spec), "device": "cpu",
                    "dataset": cfg["studies"][name].get("dataset", "mnist1d"), "wandb": {"mode": "disabled"}}
            spec.setdefault("keys", {})
            yield name, v, spec


def data_file(cfg: dict, dataset: str, tmp: Path) -> Path:
    params = cfg["datasets"].get(dataset, {})
    path = ROOT / "resources" / "data" / f"{dataset}-{config_hash(data_key(dataset, params))}.pt"
    if not path.exists():
        path = tmp / f"{dataset}.pt"
        if not path.exists():
            data_mod.prepare(dataset, params, path)
    return path


def with_train(spec: dict, **train) -> dict:
    s = copy.deepcopy(spec)
    s["train"] = {**s["train"], **train}
    return s


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def timed_cpu(fn):
    """(wall seconds, CPU seconds of this process, result): CPU time is less sensitive to other load."""
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - t, time.process_time() - c, out


# 1. throughput ---------------------------------------------------------------------------------
def reference_loop(spec: dict, steps: int) -> float:
    """Plain PyTorch: per seed, a DataLoader over a TensorDataset, the same model and optimizer, and the
    engine's evaluations (loss and accuracy on the first ``eval_train_max`` training samples and on the
    test set, at step 0 and at the end), so that both do the same work. Returns the mean test accuracy."""
    from torch.utils.data import DataLoader, TensorDataset

    blob = torch.load(spec["data"], weights_only=False)
    x, y, xt, yt = blob["x_train"], blob["y_train"], blob["x_test"], blob["y_test"]
    n_eval = min(spec["train"].get("eval_train_max", 5000), len(x))
    opt_spec, bs, acc = spec["optimizer"], spec["train"]["batch_size"], 0.0

    @torch.no_grad()
    def evaluate(model):
        model.eval()
        out = []
        for xs, ys in ((x[:n_eval], y[:n_eval]), (xt, yt)):
            o = model(xs)
            out.append((F.cross_entropy(o, ys).item(), (o.argmax(1) == ys).float().mean().item()))
        model.train()
        return out[1][1]

    for seed in spec["seeds"]:
        torch.manual_seed(seed)
        model = build_model(spec["model"], tuple(x.shape[1:]), int(blob["n_classes"]))
        if opt_spec["name"] == "sgd":
            opt = torch.optim.SGD(model.parameters(), lr=spec["lr"], momentum=opt_spec.get("momentum", 0.0),
                                  weight_decay=opt_spec.get("weight_decay", 0.0))
        else:
            opt = torch.optim.Adam(model.parameters(), lr=spec["lr"], weight_decay=opt_spec.get("weight_decay", 0.0))
        loader = DataLoader(TensorDataset(x, y), batch_size=bs, shuffle=True, drop_last=True,
                            generator=torch.Generator().manual_seed(seed))
        evaluate(model)
        step = 0
        while step < steps:
            for xb, yb in loader:
                loss = F.cross_entropy(model(xb), yb)
                opt.zero_grad()
                loss.backward()
                opt.step()
                step += 1
                if step == steps:
                    break
        acc += evaluate(model) / len(spec["seeds"])
    return acc


def engine(spec: dict, tmp: Path, one_seed_jobs: bool = False, conv_path: str | None = None, **train) -> list[dict]:
    """The engine (normlab.train.run): all seeds in one batched job, or (``one_seed_jobs``) one job
    per seed, each the same loop with one member. ``conv_path``: how image models run their members
    (``normlab.ensemble.CONV_PATHS``: ``members``, today's; ``grouped``, the old path); None: the default."""
    if one_seed_jobs:
        return [s for seed in spec["seeds"] for s in engine({**spec, "seeds": [seed]}, tmp, conv_path=conv_path,
                                                            **train)]
    out = Path(tempfile.mkdtemp(dir=tmp))
    return engine_run(with_train(spec, **train), out, conv_path=conv_path)


def throughput(spec: dict, steps: int, repeats: int, tmp: Path, one_seed: bool = True, old_path: bool = False) -> dict:
    """Seed-steps/s of the engine (all seeds batched; and one job per seed; and, ``old_path``, all seeds
    batched on the old image path, ``conv_path="grouped"``) against the reference loop.
    Both wall and CPU seconds of this process; the best of ``repeats`` interleaved runs counts."""
    kw = {"steps": steps, "eval_every": steps, "ckpt_every": 10 * steps}
    n = len(spec["seeds"]) * steps
    kinds = ["reference", "ensemble"] + (["one_seed_path"] if one_seed else []) + (["old_path"] if old_path else [])
    times = {k: [] for k in kinds}
    cpu = {k: [] for k in kinds}
    acc = {}
    runs = {"reference": lambda: reference_loop(spec, steps),
            "ensemble": lambda: engine(spec, tmp, **kw),
            "one_seed_path": lambda: engine(spec, tmp, one_seed_jobs=True, **kw),
            "old_path": lambda: engine(spec, tmp, conv_path="grouped", **kw)}
    for _ in range(repeats):  # interleaved, so that load from other processes hits all alike
        for k in kinds:
            dt, dc, out = timed_cpu(runs[k])
            times[k].append(dt)
            cpu[k].append(dc)
            acc[k] = out if k == "reference" else statistics.mean(x["final"].get("test_acc", float("nan")) for x in out)
    rate = {k: n / min(v) for k, v in times.items()}
    rate_cpu = {k: n / min(v) for k, v in cpu.items()}
    res = {
        "workload": {"study": spec["study"], "variant": spec["variant"], "model": spec["model"],
                     "optimizer": spec["optimizer"], "lr": spec["lr"], "batch_size": spec["train"]["batch_size"],
                     "seeds": len(spec["seeds"]), "steps_per_seed": steps, "repeats": repeats},
        "seconds": times, "cpu_seconds": cpu, "seed_steps_per_s": rate, "seed_steps_per_cpu_s": rate_cpu,
        "mean_test_acc": acc,
        "speedup_vs_reference": rate["ensemble"] / rate["reference"],
        "speedup_vs_reference_cpu": rate_cpu["ensemble"] / rate_cpu["reference"],
        "speedup_vs_reference_median": statistics.median(times["reference"]) / statistics.median(times["ensemble"]),
    }
    if old_path:
        res["speedup_vs_old_path"] = rate["ensemble"] / rate["old_path"]
        res["speedup_vs_old_path_cpu"] = rate_cpu["ensemble"] / rate_cpu["old_path"]
        res["speedup_old_path_vs_reference"] = rate["old_path"] / rate["reference"]
    if one_seed:
        res["speedup_one_seed_path_vs_reference"] = rate["one_seed_path"] / rate["reference"]
        res["speedup_ensemble_vs_one_seed_path"] = rate["ensemble"] / rate["one_seed_path"]
    return res


def ceiling(spec: dict, reference_rate: float) -> dict:
    """What 3x would take: the seed-steps/s a step of this workload's FLOPs would run at if every FLOP ran
    at this machine's matmul rate at the model's own layer size (batch x width x width, one thread), and
    that ceiling as a multiple of the reference loop's measured rate."""
    shape = INPUT_SHAPES[spec.get("dataset", "mnist1d")]
    train_f, _ = step_flops(spec, shape)
    width = spec["model"].get("width", 128)
    at_layer = matmul_gflops(spec["train"]["batch_size"], width, width, reps=20)
    rate = at_layer * 1e9 / train_f
    return {"train_flops_per_seed_step": train_f, "matmul_gflops_at_layer_size": at_layer,
            "ceiling_seed_steps_per_s": rate, "ceiling_speedup_vs_reference": rate / reference_rate,
            "reference_fraction_of_ceiling": reference_rate / rate}


def profile(spec: dict, tmp: Path, steps: int, out: Path) -> dict:
    """torch.profiler over an engine job (all seeds batched): the top operators by self CPU time written
    to ``out`` and the share of self CPU time spent in matrix products."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as tprofile

    kw = {"steps": steps, "eval_every": steps, "ckpt_every": 10 * steps}
    engine(spec, tmp, **kw)  # warm
    with tprofile(activities=[ProfilerActivity.CPU]) as prof:
        engine(spec, tmp, **kw)
    avg = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in avg)
    mm = sum(e.self_cpu_time_total for e in avg if any(k in e.key for k in ("mm", "matmul", "linear", "addmm")))
    top = sorted(avg, key=lambda e: -e.self_cpu_time_total)[:25]
    out.write_text(avg.table(sort_by="self_cpu_time_total", row_limit=40) + "\n")
    return {"steps": steps, "seeds": len(spec["seeds"]), "self_cpu_s": total / 1e6,
            "matmul_share_of_self_cpu": mm / total if total else float("nan"),
            "ops_per_seed_step": sum(e.count for e in avg) / (steps * len(spec["seeds"])),
            "top": [{"op": e.key, "self_cpu_share": e.self_cpu_time_total / total, "calls": e.count} for e in top],
            "table": str(out)}


def largest_jobs(cfg: dict, tmp: Path) -> dict:
    """Each study's largest training job (FLOPs per seed-step x steps), as the bench runs it."""
    best = {}
    for name, v, spec in study_specs(cfg):
        shape = INPUT_SHAPES.get(spec["dataset"])
        if shape is None:
            continue
        try:
            f = step_flops(spec, shape)[0] * spec["train"]["steps"]
        except Exception as e:  # noqa: BLE001 - report and go on
            print(f"[bench] largest job: skipping {name}/{v}: {e}", file=sys.stderr)
            continue
        if name not in best or f > best[name][0]:
            best[name] = (f, spec)
    return {n: {**s, "data": str(data_file(cfg, s["dataset"], tmp))} for n, (_, s) in best.items()}


def per_study(cfg: dict, tmp: Path, steps: int, repeats: int) -> dict:
    """speedup_vs_reference on every study's largest training job (``steps`` per seed, no probes)."""
    out = {}
    for name, spec in largest_jobs(cfg, tmp).items():
        spec = {**spec, "probes": []}
        try:
            r = throughput(spec, steps, repeats, tmp, one_seed=False)
            out[name] = {k: r[k] for k in ("workload", "seed_steps_per_s", "seed_steps_per_cpu_s",
                                           "speedup_vs_reference", "speedup_vs_reference_cpu")}
        except Exception as e:  # noqa: BLE001 - report and go on
            out[name] = {"status": f"error: {type(e).__name__}: {e}"}
    return out


# 2. FLOP/s --------------------------------------------------------------------------------------
def count_flops(fn) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc:
        fn()
    return fc.get_total_flops()


def step_flops(spec: dict, shape, n_classes: int = 10) -> tuple[int, int]:
    """(FLOPs of one training step of one seed, forward FLOPs per sample)."""
    bs = spec["train"]["batch_size"]
    torch.manual_seed(0)
    model = build_model(spec["model"], shape, n_classes)
    x, y = torch.randn(bs, *shape), torch.randint(n_classes, (bs,))
    train = count_flops(lambda: F.cross_entropy(model(x), y).backward())
    model.eval()
    with torch.no_grad():
        fwd = count_flops(lambda: model(x))
    return train, fwd // bs


def matmul_gflops(n: int, m: int | None = None, k: int | None = None, reps: int = 5) -> float:
    m, k = m or n, k or n
    a, b = torch.randn(n, k), torch.randn(k, m)
    a @ b
    best = min(timed(lambda: [a @ b for _ in range(max(1, int(2e8 // (n * m * k))))])[0] for _ in range(reps))
    return 2 * n * m * k * max(1, int(2e8 // (n * m * k))) / best / 1e9


def flops(cfg: dict, tmp: Path, steps: int) -> dict:
    best = None
    for name, v, spec in study_specs(cfg):
        shape = INPUT_SHAPES.get(spec["dataset"])
        if shape is None or spec["model"].get("arch") is None:
            continue
        try:
            train_f, fwd_f = step_flops(spec, shape)
        except Exception as e:  # noqa: BLE001 - report and go on
            print(f"[bench] flops: skipping {name}/{v}: {e}", file=sys.stderr)
            continue
        if best is None or train_f > best[0]:
            best = (train_f, fwd_f, spec)
    train_f, fwd_f, spec = best
    spec = {**spec, "data": str(data_file(cfg, spec["dataset"], tmp))}
    blob = torch.load(spec["data"], weights_only=False)
    n_eval = min(spec["train"].get("eval_train_max", 5000), len(blob["x_train"])) + len(blob["x_test"])
    E = len(spec["seeds"])
    total = E * (steps * train_f + 2 * n_eval * fwd_f)  # training steps + evaluations at 0 and at the end
    kw = {"steps": steps, "eval_every": steps, "ckpt_every": 10 * steps}
    dt = min(timed(lambda: engine(spec, tmp, **kw))[0] for _ in range(2))
    peak = max(matmul_gflops(2048) for _ in range(2))
    width = spec["model"].get("width", 128)
    small = matmul_gflops(spec["train"]["batch_size"], width, width, reps=20)
    achieved = total / dt / 1e9
    return {"model": spec["model"], "study": spec["study"], "variant": spec["variant"], "seeds": E,
            "steps": steps, "batch_size": spec["train"]["batch_size"],
            "train_flops_per_seed_step": train_f, "job_flops": total, "job_seconds": dt,
            "achieved_gflops": achieved, "peak_matmul_gflops_2048": peak,
            "fraction_of_peak": achieved / peak,
            "matmul_gflops_at_layer_size": small, "layer_size": [spec["train"]["batch_size"], width, width]}


def conv_gflops(reps: int = 10) -> dict:
    """This machine's convolution rate (one thread): the best GFLOP/s of a channels-last 3x3 convolution's
    forward over a few sizes (batch 128; channels 32 to 128; 14x14 and 7x7 images)."""
    from normlab.ensemble import channels_last

    best, at = 0.0, None
    for c, hw in ((32, 14), (64, 14), (128, 7), (64, 7)):
        x, w = channels_last(torch.randn(128, c, hw, hw)), torch.randn(c, c, 3, 3)
        F.conv2d(x, w, padding=1)
        t = min(timed(lambda: F.conv2d(x, w, padding=1))[0] for _ in range(reps))
        g = 2 * 9 * c * c * hw * hw * 128 / t / 1e9
        if g > best:
            best, at = g, [128, c, c, hw, hw]
    return {"gflops": best, "shape_b_cin_cout_h_w": at}


def job_split(spec: dict, tmp: Path, steps: int) -> dict:
    """The job as the config runs it (its probes, evaluation cadence, one thread), its first ``steps`` steps, in
    its own process (``python -m normlab.train``): seconds of start-up (process start to the first step), training
    steps, evaluations and probes (its summary's ``loop``), and the rest (writing outputs, exit)."""
    spec = with_train(spec, steps=min(steps, spec["train"]["steps"]), ckpt_every=10 ** 9)
    out = Path(tempfile.mkdtemp(dir=tmp))
    wall, cpu, p = sh([sys.executable, "-m", "normlab.train", "--spec", json.dumps(spec), "--out", str(out),
                       "--threads", "1"])
    if p.returncode != 0:
        raise RuntimeError(p.stderr[-2000:])
    summ = json.loads((out / f"seed{spec['seeds'][0]}" / "summary.json").read_text())
    loop = summ["loop"]
    parts = {"startup_s": summ.get("startup_s") or 0.0, "evals_s": loop["evals_s"], "probes_s": loop["probes_s"],
             "step_s": loop["wall_s"] - loop["evals_s"] - loop["probes_s"]}
    parts["other_s"] = max(wall - sum(parts.values()), 0.0)
    return {"steps": spec["train"]["steps"], "eval_every": spec["train"].get("eval_every"),
            "probes": spec.get("probes", []), "job_wall_s": wall, "job_cpu_s": cpu, **parts,
            "shares": {k[:-2]: v / wall for k, v in parts.items()}}


def image_jobs(cfg: dict, tmp: Path) -> dict:
    """Each study's largest training job on an image conv net (vgg, preresnet) of ``cfg``."""
    return {n: s for n, s in largest_jobs(cfg, tmp).items() if s["model"].get("arch") in ("vgg", "preresnet")}


def fashion(tmp: Path, steps: int, repeats: int, split_steps: int) -> dict:
    """The Fashion-MNIST jobs as config/fashion.yaml runs them: per study with an image conv net, its largest
    job (no probes, ``steps`` per seed, evaluations at 0 and at the end), the engine against the plain loop and
    against the old image path (``conv_path="grouped"``), in the same run (``throughput``); its achieved
    GFLOP/s (training steps and evaluations counted by FlopCounterMode) against this machine's measured conv
    and matmul peaks; and, for the largest VGG job and the PreResNet job, the job's split (``job_split``)."""
    try:
        cfg = fashion_config()
        jobs = image_jobs(cfg, tmp)
    except Exception as e:  # noqa: BLE001 - Fashion-MNIST missing: say so
        return {"status": f"error: {type(e).__name__}: {e} (Fashion-MNIST: `make datasets`)"}
    peaks = {"conv": conv_gflops(), "matmul_2048": max(matmul_gflops(2048) for _ in range(2))}
    flops_of = {n: step_flops(s, INPUT_SHAPES[s["dataset"]]) for n, s in jobs.items()}
    vggs = [n for n, s in jobs.items() if s["model"]["arch"] == "vgg"]
    largest_vgg = max(vggs, key=lambda n: flops_of[n][0] * jobs[n]["train"]["steps"]) if vggs else None
    out = {"peaks": peaks, "jobs": {}}
    for name, spec in jobs.items():
        try:
            r = throughput({**spec, "probes": []}, steps, repeats, tmp, one_seed=False, old_path=True)
            train_f, fwd_f = flops_of[name]
            blob = torch.load(spec["data"], weights_only=False)
            n_eval = min(spec["train"].get("eval_train_max", 5000), len(blob["x_train"])) + len(blob["x_test"])
            E = len(spec["seeds"])
            job_flops = E * (steps * train_f + 2 * n_eval * fwd_f)
            gf = {k: job_flops / min(v) / 1e9 for k, v in r["seconds"].items()}
            bs = spec["train"]["batch_size"]
            row = {"workload": r["workload"], "largest_vgg": name == largest_vgg,
                   "images_per_s": {k: v * bs for k, v in r["seed_steps_per_s"].items()},
                   "images_per_cpu_s": {k: v * bs for k, v in r["seed_steps_per_cpu_s"].items()},
                   **{k: r[k] for k in ("speedup_vs_reference", "speedup_vs_reference_cpu", "speedup_vs_old_path",
                                        "speedup_vs_old_path_cpu", "speedup_old_path_vs_reference", "seconds",
                                        "cpu_seconds", "mean_test_acc")},
                   "train_flops_per_seed_step": train_f, "fwd_flops_per_sample": fwd_f, "job_flops": job_flops,
                   "achieved_gflops": gf, "fraction_of_conv_peak": gf["ensemble"] / peaks["conv"]["gflops"],
                   "fraction_of_matmul_peak": gf["ensemble"] / peaks["matmul_2048"]}
            if name == largest_vgg or spec["model"]["arch"] == "preresnet":
                row["split"] = job_split(spec, tmp, split_steps)
            out["jobs"][name] = row
        except Exception as e:  # noqa: BLE001 - report and go on
            out["jobs"][name] = {"status": f"error: {type(e).__name__}: {e}"}
    return out


# 3. probes -------------------------------------------------------------------------------------
def probe_entries(cfg: dict, default_every: int):
    """Each existing probe with the (spec, entry) of a default study using it, else the workload's."""
    from normlab import probes as P

    used = {}
    for _, _, spec in study_specs(cfg):
        for p in spec.get("probes", []):
            used.setdefault(p["name"], (spec, p))
    names = sorted(set(P.PROBES) | set(P.PROBE_MODULES))
    return names, used


def probe_costs(cfg: dict, workload: dict, tmp: Path, default_every: int, repeats: int, m: int) -> dict:
    """Per probe, its cost as a fraction of training at the cadence the study uses (``every``): over the
    first ``n = min(study steps, max(2m, 10 every))`` steps of the study's job, the time the engine's loop
    spent in the probe's calls (its summary's ``loop.probes_s``: the calls with their copies, snapshots and
    restores) / the loop's time in training (``loop.wall_s`` - probes - evaluations); the run with the
    smallest fraction of ``repeats`` counts. The prefix holds the call at step 0, the dearest (curvature at
    initialization), so the fraction over a whole run is at most this. A probe called only at listed steps
    (``at``) is measured per call (the probe at t = 0 and t = m of 2m steps) and charged len(at) calls.
    ``fraction_by_difference``: the same from (time with the probe - time without) / training time,
    training time = 2 x (time of n steps - time of n/2 steps) (noisier: a difference of short timings)."""
    names, used = probe_entries(cfg, default_every)
    out = {}
    for name in names:
        spec, entry = used.get(name, (workload, {"name": name, "every": default_every}))
        spec = {**spec, "data": str(data_file(cfg, spec["dataset"], tmp)), "seeds": workload["seeds"]}
        try:
            plain = {**spec, "probes": []}
            if "at" in entry:
                n, probed, calls = 2 * m, {**spec, "probes": [{**entry, "every": m}]}, 2
            else:
                n = min(spec["train"]["steps"], max(2 * m, 10 * entry["every"]))
                probed, calls = {**spec, "probes": [entry]}, len(range(0, n, entry["every"]))  # steps 0..n-1
            kw = {"eval_every": 10 * n, "ckpt_every": 10 * n}
            short, base, with_p, inside = [], [], [], []
            for _ in range(repeats):
                short.append(timed_cpu(partial(engine, plain, tmp, steps=n // 2, **kw))[1])
                base.append(timed_cpu(partial(engine, plain, tmp, steps=n, **kw))[1])
                _, dc, summaries = timed_cpu(partial(engine, probed, tmp, steps=n, **kw))
                with_p.append(dc)
                loop = summaries[0]["loop"]
                inside.append((loop["probes_s"], max(loop["wall_s"] - loop["probes_s"] - loop["evals_s"], 1e-9)))
            probe_s, train_s = min(inside, key=lambda pt: pt[0] / pt[1])
            diff_train_s = max(2 * (min(base) - min(short)), 1e-9)
            diff_probe_s = max(min(with_p) - min(base), 0.0)

            def charged(p_s, t_s):
                if "at" in entry:
                    return p_s / calls * len(entry["at"]) / (t_s / n * spec["train"]["steps"])
                return p_s / t_s
            fraction = charged(probe_s, train_s)
            out[name] = {"status": "ok", "entry": entry, "study": spec["study"], "model": spec["model"],
                         "path": "ensemble", "seeds": len(spec["seeds"]), "steps_measured": n,
                         "calls_measured": calls, "train_step_s": train_s / n, "call_s": probe_s / calls,
                         "call_s_per_seed": probe_s / calls / len(spec["seeds"]), "fraction_of_training": fraction,
                         "fraction_by_difference": charged(diff_probe_s, diff_train_s)}
        except Exception as e:  # noqa: BLE001 - a probe that fails is reported, not fatal
            out[name] = {"status": f"error: {type(e).__name__}: {e}", "entry": entry}
    for name in ("ics", "landscape", "weight_norms", "units", "curvature"):
        out.setdefault(name, {"status": "missing: not in normlab.probes when this ran"})
    return out


# 4. start-up and DAG overhead ------------------------------------------------------------------
def sh(cmd, **kw):
    """Run ``cmd``; return (wall seconds, CPU seconds of the child, CompletedProcess)."""
    import resource

    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "WANDB_MODE": "disabled"}
    r0, t = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    p = subprocess.run(cmd, check=False, capture_output=True, text=True, cwd=ROOT, env=env, **kw)
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.perf_counter() - t, r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime, p


def startup(workload: dict, tmp: Path) -> dict:
    py = sys.executable
    bare = min(sh([py, "-c", "pass"])[:2] for _ in range(3))
    imp = min(sh([py, "-c", "import normlab.train"])[:2] for _ in range(3))
    p = sh([py, "-X", "importtime", "-c", "import normlab.train"])[2]
    rows = [re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", ln) for ln in p.stderr.splitlines()]
    rows = [(m.group(4), int(m.group(2)) / 1e6, len(m.group(3))) for m in rows if m]
    top = sorted([r for r in rows if r[2] <= 3], key=lambda r: -r[1])[:8]
    spec = with_train(workload, steps=1, eval_every=1)
    spec["seeds"] = [0]
    out = tmp / "startup_job"
    job_wall, job_cpu, p = sh([py, "-m", "normlab.train", "--spec", json.dumps(spec), "--out", str(out),
                               "--threads", "1"])
    if p.returncode != 0:
        raise RuntimeError(p.stderr[-2000:])
    summary = json.loads((out / "seed0" / "summary.json").read_text())
    train_s = summary["wall_s"]
    return {"startup_to_first_step_s": summary.get("startup_s"),
            "python_bare_s": bare[0], "import_normlab_train_s": imp[0], "import_normlab_train_cpu_s": imp[1],
            "importtime_top": [{"module": m, "cumulative_s": s} for m, s, _ in top],
            "job_1step_wall_s": job_wall, "job_1step_cpu_s": job_cpu, "job_1step_training_s": train_s,
            "job_overhead_s": job_wall - train_s, "job_overhead_cpu_s": job_cpu - train_s,
            "load_average": os.getloadavg()[0], "note": "wall times grow with the machine's load; CPU seconds less so"}


def version_benchmarks(vdir: Path) -> tuple[list[Path], list[Path]]:
    """(every benchmark .tsv of a version's jobs, those of its train jobs): its analysis's, and those of the
    run and side-job folders its config.json lists (results/<study>/benchmarks/{train,side}/...)."""
    study = vdir.parent
    tsv = list((vdir / "benchmarks").rglob("*.tsv"))
    train = []
    try:
        spec = json.loads((vdir / "config.json").read_text())
    except (OSError, ValueError):
        spec = {}
    for dirs in (spec.get("runs") or {}).values():
        for d in dirs:
            variant, block = Path(d).parts[-2:]
            train.append(study / "benchmarks" / "train" / variant / f"{block}.tsv")
    side = [study / "benchmarks" / "side" / f"{Path(p).parts[3]}.tsv" for p in (spec.get("side") or {}).values()]
    train = [t for t in train if t.exists()]
    if not spec.get("runs"):  # a version made before runs were keyed: its train jobs' files are inside it
        train = [t for t in tsv if "train" in t.parts[len(vdir.parts):-1]]
    return tsv + [t for t in train + side if t.exists() and t not in tsv], train


def dag_span(results: Path, name: str) -> dict | None:
    """The training part of a config's DAG as its result files record it, over the newest version of each study
    of config ``name``: from the first training run's start to the last one's finish (summary.json times; the
    side jobs run beside them, the analyses after: their wall times are in their benchmark files). Meaningful
    for a DAG run from an empty results/ folder (runs reused from earlier DAGs started earlier)."""
    from datetime import datetime

    from normlab.clean import newest_by_name, study_dirs, versions_of

    starts, ends, n_runs = [], [], 0
    for study in study_dirs(results) if results.is_dir() else []:
        v = newest_by_name([d for d in versions_of(study) if (d / "manifest.json").exists()]).get(name)
        if v is None:
            continue
        for s in v.glob("runs/*/seed*/summary.json"):
            summ = json.loads(s.read_text())
            starts.append(summ["started"])
            ends.append(summ["finished"])
            n_runs += 1
    if not starts:
        return None
    first, last = min(starts), max(ends)
    span = (datetime.fromisoformat(last) - datetime.fromisoformat(first)).total_seconds()
    return {"config": name, "first_run_started": first, "last_run_finished": last, "wall_s": span,
            "seed_runs": n_runs}


def dag_overhead() -> dict:
    """Per result version: sum of Snakemake's job wall times (benchmark .tsv) minus training compute."""
    import pandas as pd

    found = {}
    for vdir in sorted(ROOT.glob("results/*/*-*")):
        if vdir.is_symlink() or not (vdir / "benchmarks").is_dir():
            continue
        tsv, train_tsv = version_benchmarks(vdir)
        jobs_s = sum(float(pd.read_csv(t, sep="\t")["s"].iloc[0]) for t in tsv)
        train_jobs_s = sum(float(pd.read_csv(t, sep="\t")["s"].iloc[0]) for t in train_tsv)
        compute = sum(json.loads(p.read_text())["wall_s"] for p in vdir.glob("runs/*/seed*/summary.json"))
        found[f"{vdir.parent.name}/{vdir.name}"] = {
            "config": vdir.name.rsplit("-", 1)[0], "jobs": len(tsv), "train_jobs": len(train_tsv),
            "sum_job_wall_s": jobs_s, "sum_train_job_wall_s": train_jobs_s, "training_compute_s": compute,
            "overhead_s": jobs_s - compute, "overhead_fraction": (jobs_s - compute) / jobs_s if jobs_s else None}
    default = {k: v for k, v in found.items() if v["config"] == "default"}
    return {"versions": found, "default_present": bool(default), "span": dag_span(ROOT / "results", "default"),
            "how": "sum over a version's jobs (its analysis, and the train and side jobs of the runs it links) of "
                   "the 's' column of their benchmark .tsv, minus the sum of wall_s over runs/*/seed*/summary.json "
                   "(training compute); for the whole default DAG run `make run` and then `make bench`"}


# -----------------------------------------------------------------------------------------------
def table(res: dict) -> str:
    t, f, s = res["throughput"], res["flops"], res["startup"]
    lines = ["| quantity | value | aim |", "|---|---|---|"]
    for k in ("reference", "one_seed_path", "ensemble"):
        lines.append(f"| seed-steps/s, {k} | {t['seed_steps_per_s'][k]:.0f} | |")
    lines += [
        (f"| **speedup_vs_reference** (ensemble, {t['workload']['seeds']} seeds) | **{t['speedup_vs_reference']:.2f}x** "
         f"(median {t['speedup_vs_reference_median']:.2f}x) | 3x |"),
        f"| speedup_vs_reference by CPU time | {t['speedup_vs_reference_cpu']:.2f}x | |",
        f"| one job per seed (same loop, E = 1) vs reference | {t['speedup_one_seed_path_vs_reference']:.2f}x | |",
        *([(f"| ceiling: every FLOP at the layer-size matmul rate ({t['ceiling']['matmul_gflops_at_layer_size']:.0f} "
            f"GFLOP/s) | {t['ceiling']['ceiling_seed_steps_per_s']:.0f} seed-steps/s = "
            f"{t['ceiling']['ceiling_speedup_vs_reference']:.2f}x reference | |"),
           (f"| profile of the batched job: matmul share of CPU time / operators per seed-step | "
            f"{t['profile']['matmul_share_of_self_cpu']:.0%} / {t['profile']['ops_per_seed_step']:.0f} | |")]
          if "ceiling" in t else []),
        f"| achieved GFLOP/s ({f['model']['arch']} {f['study']}/{f['variant']}) | {f['achieved_gflops']:.1f} | |",
        (f"| matmul peak GFLOP/s (2048^3) / at layer size {f['layer_size']} | {f['peak_matmul_gflops_2048']:.1f} / "
         f"{f['matmul_gflops_at_layer_size']:.1f} | |"),
        f"| fraction of matmul peak | {f['fraction_of_peak']:.1%} | >50% |",
    ]
    for name, p in res["probes"].items():
        if not isinstance(p, dict):
            continue
        if p["status"] == "ok":
            when = f"at {len(p['entry']['at'])} steps" if "at" in p["entry"] else f"every {p['entry']['every']}"
            lines.append(f"| probe {name} ({when}, {p['study']}) | "
                         f"{p['fraction_of_training']:.1%} of training ({p['call_s_per_seed'] * 1e3:.1f} ms"
                         f"/call/seed; by difference of runs {p['fraction_by_difference']:.1%}) | <25% |")
        else:
            lines.append(f"| probe {name} | {p['status']} | <25% |")
    for name, r in res.get("per_study", {}).items():
        if not isinstance(r, dict):
            continue
        if "speedup_vs_reference" in r:
            w = r["workload"]
            lines.append(f"| speedup_vs_reference, {name} largest job ({w['variant']}, {w['seeds']} seeds) | "
                         f"{r['speedup_vs_reference']:.2f}x (CPU {r['speedup_vs_reference_cpu']:.2f}x) | 3x |")
        else:
            lines.append(f"| speedup_vs_reference, {name} | {r.get('status')} | 3x |")
    lines += fashion_rows(res.get("fashion"))
    lines += [(f"| process start to first step (1-step job) | {s.get('startup_to_first_step_s') or float('nan'):.2f} s"
               " | <2 s |"),
              (f"| import normlab.train: wall / CPU (load avg {s['load_average']:.1f}) | "
               f"{s['import_normlab_train_s']:.2f} s / {s['import_normlab_train_cpu_s']:.2f} s | <3 s |"),
              (f"| 1-step training job: wall / CPU / overhead (wall, CPU) | {s['job_1step_wall_s']:.2f} s / "
               f"{s['job_1step_cpu_s']:.2f} s / {s['job_overhead_s']:.2f} s, {s['job_overhead_cpu_s']:.2f} s | <3 s |")]
    for k, v in res["dag"]["versions"].items():
        if not v["jobs"] or v["overhead_fraction"] is None:
            continue
        lines.append(f"| DAG {k}: job wall sum / training / overhead | {v['sum_job_wall_s']:.1f} s / "
                     f"{v['training_compute_s']:.1f} s / {v['overhead_s']:.1f} s ({v['overhead_fraction']:.0%}) | |")
    span = res["dag"].get("span")
    if span:
        lines.append(f"| DAG default, training: first run started to last run finished ({span['first_run_started']} "
                     f"to {span['last_run_finished']}, {span['seed_runs']} seed runs) | {span['wall_s'] / 60:.1f} min | |")
    if not res["dag"]["default_present"]:
        lines.append("| DAG default | no default run present: `make run`, then `make bench` | |")
    return "\n".join(lines)


def fashion_rows(fa: dict | None) -> list[str]:
    """The Fashion-MNIST rows of the table (``fashion``)."""
    if not fa:
        return []
    if "jobs" not in fa:
        return [f"| Fashion-MNIST jobs | {fa.get('status')} | |"]
    pk = fa["peaks"]
    lines = [(f"| Fashion: conv peak GFLOP/s (channels-last 3x3, {pk['conv']['shape_b_cin_cout_h_w']}) / matmul peak "
              f"(2048^3) | {pk['conv']['gflops']:.1f} / {pk['matmul_2048']:.1f} | |")]
    for name, r in fa["jobs"].items():
        if "workload" not in r:
            lines.append(f"| Fashion {name} | {r.get('status')} | |")
            continue
        w, ips = r["workload"], r["images_per_s"]
        tag = f"Fashion {name} {w['variant']} ({w['model']['arch']}, {w['seeds']} seeds, {w['steps_per_seed']} steps)"
        lines += [
            (f"| {tag}: images/s engine / plain loop / old path | {ips['ensemble']:.0f} / {ips['reference']:.0f} / "
             f"{ips['old_path']:.0f} | |"),
            (f"| **{tag}: speedup vs plain loop** (CPU time) | **{r['speedup_vs_reference']:.2f}x** "
             f"({r['speedup_vs_reference_cpu']:.2f}x); old path {r['speedup_old_path_vs_reference']:.2f}x | 2x |"),
            (f"| {tag}: speedup vs old path (grouped convolutions) (CPU time) | {r['speedup_vs_old_path']:.2f}x "
             f"({r['speedup_vs_old_path_cpu']:.2f}x) | >2x |"),
            (f"| {tag}: achieved GFLOP/s engine / plain loop / old path; engine's fraction of conv / matmul peak | "
             f"{r['achieved_gflops']['ensemble']:.1f} / {r['achieved_gflops']['reference']:.1f} / "
             f"{r['achieved_gflops']['old_path']:.1f}; {r['fraction_of_conv_peak']:.0%} / "
             f"{r['fraction_of_matmul_peak']:.0%} | |")]
        sp = r.get("split")
        if sp:
            sh_ = sp["shares"]
            lines.append(f"| {tag}: the job ({sp['steps']} steps, eval every {sp['eval_every']}, "
                         f"{len(sp['probes'])} probes), its own process: step / evaluation / probes / start-up / rest | "
                         f"{sp['step_s']:.1f} / {sp['evals_s']:.1f} / {sp['probes_s']:.1f} / {sp['startup_s']:.1f} / "
                         f"{sp['other_s']:.1f} s ({sh_['step']:.0%} / {sh_['evals']:.0%} / {sh_['probes']:.0%} / "
                         f"{sh_['startup']:.0%} / {sh_['other']:.0%}) | |")
    return lines


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "bench")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=300, help="training steps per seed in the throughput runs")
    ap.add_argument("--flop-steps", type=int, default=100)
    ap.add_argument("--probe-every", type=int, default=25, help="for probes no default study uses")
    ap.add_argument("--probe-steps", type=int, default=50, help="m: probe runs of m and 2m steps")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--study-steps", type=int, default=100, help="steps per seed, every study's largest job")
    ap.add_argument("--fashion-steps", type=int, default=40, help="steps per seed, the Fashion-MNIST jobs")
    ap.add_argument("--fashion-split-steps", type=int, default=100, help="steps of the Fashion jobs' split runs")
    ap.add_argument("--only", nargs="*", default=["throughput", "per_study", "flops", "probes", "startup", "fashion"])
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    deterministic()  # as every training job sets it (normlab.train), for the reference loop too
    keep_freed_memory()  # likewise
    os.environ["WANDB_MODE"] = "disabled"
    cfg = default_config()
    load_before = os.getloadavg()[0]
    a.out.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        specs = [s for n, _, s in study_specs(cfg) if n == "bn_placement"]
        workload = next((s for s in specs if s["model"].get("norm") == "bn_pre" and s["model"].get("act") == "relu"
                         and s["lr"] == 0.1), specs[0])
        workload = {**workload, "seeds": list(range(a.seeds)), "data": str(data_file(cfg, workload["dataset"], tmp))}
        res = {"device": "cpu", "threads": a.threads, "torch": torch.__version__, "cpu": cpu_name(),
               "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None}
        def throughput_with_limits():
            r = throughput(workload, a.steps, a.repeats, tmp)
            r["ceiling"] = ceiling(workload, r["seed_steps_per_s"]["reference"])
            r["profile"] = profile(workload, tmp, a.steps, a.out / "profile.txt")
            return r

        steps = {"throughput": throughput_with_limits,
                 "flops": lambda: flops(cfg, tmp, a.flop_steps),
                 "probes": lambda: probe_costs(cfg, workload, tmp, a.probe_every, a.repeats, a.probe_steps),
                 "per_study": lambda: per_study(cfg, tmp, a.study_steps, 1),
                 "startup": lambda: startup(workload, tmp),
                 "fashion": lambda: fashion(tmp, a.fashion_steps, a.repeats, a.fashion_split_steps)}
        for name in a.only:
            t = time.perf_counter()
            res[name] = steps[name]()
            res[name]["bench_seconds"] = time.perf_counter() - t
            write(a.out / f"{name}.json", res[name])
            print(f"[bench] {name}: {res[name]['bench_seconds']:.0f} s", file=sys.stderr)
    res["dag"] = dag_overhead()
    write(a.out / "dag.json", res["dag"])
    res["bench_seconds"] = time.perf_counter() - t_all
    if "throughput" in res:
        res["speedup_vs_reference"] = res["throughput"]["speedup_vs_reference"]
    write(a.out / "summary.json", res)
    if set(a.only) >= {"throughput", "flops", "probes", "startup"}:
        res.setdefault("per_study", {})
        print(table(res))
        write_measurements(res, load_before, ROOT / "docs" / "measurements.md")
    print(f"[bench] wrote {a.out}/*.json in {res['bench_seconds']:.0f} s", file=sys.stderr)


def write_measurements(res: dict, load_before: float, path: Path) -> None:
    """docs/measurements.md: every measured figure the docs quote, with its date and machine (generated: the
    README links here instead of copying numbers by hand)."""
    from normlab.io import git_state, now

    git = git_state(ROOT)
    text = "\n".join([
        "# Measurements", "",
        f"Generated by `make bench` (`bench/run_bench.py`) on {now()}, commit {git.get('commit') or '?'}"
        f"{' (dirty)' if git.get('dirty') else ''}; do not edit by hand.", "",
        f"Machine: {res['cpu']}, {os.cpu_count()} cores, torch {res['torch']}, {res['threads']} thread(s) per job; "
        f"load average {load_before:.1f} before the benchmark, {os.getloadavg()[0]:.1f} after (other load slows "
        "wall times; the CPU-time ratios less).", "",
        "The engine against a plain PyTorch loop in the same run (ratios), probe costs, job start-up, and the "
        "default DAG as its result files record it (run `make run` from an empty `results/` first):", "",
        table(res), ""])
    path.write_text(text)
    print(f"[bench] wrote {path}", file=sys.stderr)


def cpu_name() -> str:
    try:
        return next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name"))
    except (OSError, StopIteration):
        return "unknown"


def write(path: Path, obj) -> None:
    from normlab.io import write_json

    write_json(obj, path)


if __name__ == "__main__":
    main()
