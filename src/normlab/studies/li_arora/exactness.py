"""S2 exactness job: pairs of runs that Li & Arora's theorem says compute the same functions.

Each pair starts from one initialization and sees the same batches (``train.batch_indices``):

- ``exp``:  A = constant eta + weight decay lambda + momentum gamma;  B = ``exponential`` schedule, no WD;
- ``texp``: A = step decay (milestones, factor) + WD + momentum;      B = ``texp`` schedule, no WD;
- ``exp_zero_buffer``: like ``exp`` but B starts from PyTorch's default (zero) momentum buffer instead
  of the derived one: a control showing that the initial state is part of the equivalence.

Per logged step s (after s updates) it writes, tidy (setting, lr, weight_decay, momentum, pair, dtype,
seed, step, metric, value); float64 runs one seed (``exactness.seed``), float32 ``exactness.float32_seeds``
seeds (the drift rate of S2.d varies by seed):

- ``weight_gap``: || w_A/||w_A|| - w_B/||w_B|| || over all trained weights (one vector);
- ``softmax_gap``: max |softmax f_A(x) - softmax f_B(x)| on a fixed probe batch (the first
  ``probe_size`` test inputs), computed with batch statistics as in training, running stats untouched
  (the running averages mix weights of different scales, so eval-mode outputs are not exactly equal);
- ``norm_ratio_err``: | (||w_B|| / ||w_A||) / c_s - 1 | with c_s the schedule's predicted scalar;
- ``norm_a``, ``norm_b``, ``scale`` (c_s), ``lr_a``, ``lr_b``, ``loss_a`` for context.

BN's epsilon: (x - mu) / sqrt(var + eps) is not scale invariant for eps > 0, and PyTorch refuses
eps = 0 in training; the pair therefore runs with ``exactness.bn_eps`` (default 1e-30), far below
one ulp of any batch variance here, so BN is scale invariant to machine precision. Every model is
checked numerically for scale invariance before training.

CLI (the ``li_arora_exact_<dtype>`` rules, declared by ``side_jobs``):
    python -m normlab.studies.li_arora.exactness --config RESOLVED.json --data DATA.pt --dtype float64 --out F.parquet
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ...io import read_spec
from .variants import milestone_steps


def setting_label(s: dict) -> str:
    return f"lr={s['lr']:g}, wd={s['weight_decay']:g}, m={s['momentum']:g}"


def trained(model) -> list[torch.Tensor]:
    return [p for p in model.parameters() if p.requires_grad]


def flat(model) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in trained(model)])


@torch.no_grad()
def batch_stat_outputs(model, x) -> torch.Tensor:
    """Softmax outputs in training mode (batch statistics) without touching the running statistics."""
    from torch.func import functional_call

    state = {**dict(model.named_parameters()), **{k: v.clone() for k, v in model.named_buffers()}}
    return torch.softmax(functional_call(model, state, (x,)), dim=1)


def check_scale_invariant(model, x, c: float = 3.7, tol: float | None = None) -> float:
    """max |f(c w) - f(w)| of the softmax outputs (batch statistics); raises if not invariant."""
    tol = tol if tol is not None else (1e-9 if x.dtype == torch.float64 else 1e-4)
    probe = copy.deepcopy(model)
    y0 = batch_stat_outputs(probe, x)
    with torch.no_grad():
        for p in trained(probe):
            p.mul_(c)
    gap = (batch_stat_outputs(probe, x) - y0).abs().max().item()
    if not gap <= tol:
        raise ValueError(f"model is not scale invariant (max output change {gap:.3g} when every trained weight "
                         f"is scaled by {c}): set model.scale_invariant: true and model.norm: bn_pre")
    return gap


def run_pair(model_spec, data, *, setting: dict, pair: str, dtype, steps: int, batch_size: int, seed: int,
             milestones: list[int], factor: float, probe_x, log_every: int = 1, device="cpu") -> list[tuple]:
    """Train the pair in lockstep; return rows (step, metric, value)."""
    from ...engine import batch_indices
    from ...models import build_model
    from ...optim import build_optimizer
    from ...schedules import build_schedule

    lr, wd, mom = setting["lr"], setting["weight_decay"], setting["momentum"]
    torch.manual_seed(seed)
    model_a = build_model(model_spec, data.input_shape, data.n_classes).to(device=device, dtype=dtype)
    model_b = copy.deepcopy(model_a)
    model_a.train(), model_b.train()
    opt_a = build_optimizer(trained(model_a), {"name": "sgd", "momentum": mom, "weight_decay": wd}, lr)
    opt_b = build_optimizer(trained(model_b), {"name": "sgd", "momentum": mom, "weight_decay": 0.0}, lr)
    if pair == "texp":
        sched_a = {"name": "step", "milestones": milestones, "factor": factor}
        sched_b = {"name": "texp", "milestones": milestones, "factor": factor, "weight_decay": wd}
    else:
        sched_a, sched_b = {"name": "constant"}, {"name": "exponential", "weight_decay": wd}
    lr_a = build_schedule(sched_a, lr, {"name": "sgd", "momentum": mom, "weight_decay": wd})
    lr_b = build_schedule(sched_b, lr, {"name": "sgd", "momentum": mom})
    if pair != "exp_zero_buffer":
        lr_b.init_optimizer_state(opt_b)

    rows: list[tuple] = []

    def record(s, loss_a):
        wa, wb = flat(model_a), flat(model_b)
        na, nb = wa.norm().item(), wb.norm().item()
        c = lr_b.scale(s)
        vals = {
            "weight_gap": (wa / na - wb / nb).norm().item(),
            "softmax_gap": (batch_stat_outputs(model_a, probe_x) - batch_stat_outputs(model_b, probe_x)).abs().max().item(),
            "norm_ratio_err": abs(nb / (na * c) - 1.0),
            "norm_a": na, "norm_b": nb, "scale": c, "lr_a": lr_a(s), "lr_b": lr_b(s), "loss_a": loss_a,
        }
        rows.extend((s, k, float(v)) for k, v in vals.items())

    record(0, float("nan"))
    n = len(data.x_train)
    for t in range(steps):
        idx = batch_indices(seed, t, n, batch_size, device)
        x, y = data.x_train[idx], data.y_train[idx]
        losses = []
        for model, opt, sched in ((model_a, opt_a, lr_a), (model_b, opt_b, lr_b)):
            for g in opt.param_groups:
                g["lr"] = sched(t)
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        if not all(math.isfinite(v) for v in losses):
            rows.append((t, "diverged", 1.0))
            break
        if (t + 1) % log_every == 0 or t + 1 == steps:
            record(t + 1, losses[0])
    return rows


def run(cfg: dict, data_path, dtype_name: str, device="cpu"):
    """Every (setting, pair) of ``cfg["exactness"]`` in one dtype, as one tidy DataFrame."""
    import pandas as pd

    from ... import data as data_mod

    ex = cfg["exactness"]
    dtype = torch.float64 if dtype_name == "float64" else torch.float32
    data = data_mod.load(data_path, device=device, dtype=dtype)
    model_spec = {**ex["model"], "bn_eps": ex["bn_eps"]}
    probe_x = data.x_test[: ex["probe_size"]]
    torch.manual_seed(ex["seed"])
    from ...models import build_model

    m = build_model(model_spec, data.input_shape, data.n_classes).to(device=device, dtype=dtype)
    print(f"[exactness] scale invariance at init: max output change {check_scale_invariant(m, probe_x):.2e}",
          file=sys.stderr)
    # float32 (S2.d) runs the exp pair only: the texp pair is the same run until the first milestone, and
    # the float32 gap has separated long before it (measured: identical drift rates), so it adds no information.
    pairs = ex["pairs"] if dtype_name == "float64" else [p for p in ex["pairs"] if p == "exp"]
    milestones = milestone_steps(cfg["step_decay"]["milestones"], ex["steps"])
    # float64 is deterministic: one seed. float32 drift varies by seed: float32_seeds seeds (S2.d's interval).
    seeds = [ex["seed"]] if dtype_name == "float64" else [ex["seed"] + i for i in range(ex["float32_seeds"])]
    frames = []
    for setting in ex["settings"]:
        for pair in pairs:
            if pair == "exp_zero_buffer" and setting["momentum"] == 0:
                continue  # without momentum there is no buffer: the control would repeat the exp pair
            for seed in seeds:
                t0 = time.perf_counter()
                rows = run_pair(model_spec, data, setting=setting, pair=pair, dtype=dtype, steps=ex["steps"],
                                batch_size=ex["batch_size"], seed=seed, milestones=milestones,
                                factor=cfg["step_decay"]["factor"], probe_x=probe_x, log_every=ex["log_every"],
                                device=device)
                df = pd.DataFrame(rows, columns=["step", "metric", "value"])
                df = df.assign(setting=setting_label(setting), lr=setting["lr"], weight_decay=setting["weight_decay"],
                               momentum=setting["momentum"], pair=pair, dtype=dtype_name, seed=seed)
                frames.append(df)
                g = df[df.metric == "weight_gap"].value
                print(f"[exactness] {dtype_name} {pair:16s} {setting_label(setting)} seed {seed}: max weight gap "
                      f"{g.max():.3e} ({time.perf_counter() - t0:.1f}s)", file=sys.stderr)
    out = pd.concat(frames, ignore_index=True)
    out["step"] = out["step"].astype("int64")
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="the study's resolved config (JSON file or string)")
    ap.add_argument("--data", required=True)
    ap.add_argument("--dtype", choices=["float64", "float32"], required=True)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    resolved = read_spec(a.config)
    torch.set_num_threads(a.threads)
    from ...engine import resolve_device
    from ...io import write_parquet

    # The job's spec holds only the sections it reads (exactness, step_decay): see side_jobs.
    cfg = resolved["study_config"]
    device = resolve_device(resolved.get("device", "cpu"))
    write_parquet(run(cfg, a.data, a.dtype, device), a.out)


if __name__ == "__main__":
    main()
