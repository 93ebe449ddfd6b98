"""S3.a/S3.b float64 checks of the norm-growth study: the invariances and the exact Pythagorean recursion.

On the pipeline's own BN models (``build_model`` with ``norm: bn_pre``, float64, the study's ``bn_eps``)
and a real batch of the study's dataset, for every BN-fed layer l (``models.bn_fed_layers``):

- ``bn_identity``: ||BN(A W^T Gamma) - BN(A W^T)|| / ||BN(A W^T)||, A = the layer's input, Gamma > 0 diagonal;
- ``loss_invariance``: |J(Gamma w) - J(w)| / |J(w)|, only layer l rescaled per unit;
- ``grad_homogeneity``: ||Gamma grad_l J(Gamma w) - grad_l J(w)|| / ||grad_l J(w)|| (degree -1, per unit);
- ``orthogonality``: max_j |<w_j, g_j>| / (||w_j|| ||g_j||);
- controls, which must NOT be small: ``loss_invariance`` of the output layer (not BN-fed) and of every
  BN-fed layer with PyTorch's default ``bn_eps`` = 1e-5 (the epsilon breaks exact invariance);
- ``pythagoras``: ``pyth_steps`` steps of SGD; per step the largest residual over units of
  r = (||w'||^2 - ||w||^2) - eta^2 ||g||^2, relative to eta^2 ||g||^2 (``pythagoras_max``/``_median``
  over steps) and to ||w||^2 (``pythagoras_rel_w``, the scale of float round-off), for plain SGD (must
  be at float64 precision) and for momentum and weight decay (where it must not hold: how far off).

Gammas are log-uniform in ``gamma_range``; grads come from ``torch.func.grad`` of
``functional_call``. Writes one tidy table (model, seed, layer, check, variant, rel_error).

CLI: python -m normlab.studies.norm_growth.invariance --config C.json --data D.pt --out X.parquet [--threads 1]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from ...io import read_spec


def _checks(model_spec: dict, data, seed: int, cfg: dict) -> list[dict]:
    import torch
    import torch.nn.functional as F
    from torch.func import functional_call, grad, replace_all_batch_norm_modules_

    from ...models import bn_fed_layers, build_model, weight_layers

    inv = cfg["invariance"]
    torch.manual_seed(seed)
    model = build_model(model_spec, data.input_shape, data.n_classes, dtype=torch.float64).train()
    replace_all_batch_norm_modules_(model)  # batch statistics only, no running-stat buffers to mutate
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(data.x_train), generator=g)[: inv["batch_size"]]
    x, y = data.x_train[idx].to(torch.float64), data.y_train[idx]
    names = {m: n for n, m in model.named_modules()}
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    lo, hi = (math.log(v) for v in inv["gamma_range"])

    def gammas(n_units):
        return torch.exp(lo + (hi - lo) * torch.rand(n_units, generator=g, dtype=torch.float64))

    def J(ps):
        return F.cross_entropy(functional_call(model, ps, (x,)), y)

    def scaled(ps, name, gam):
        w = ps[name]
        return {**ps, name: w * gam.view(-1, *([1] * (w.dim() - 1)))}

    rows = []
    tag = {"model": model_spec["arch"], "seed": seed, "variant": "bn_eps=%g" % model_spec.get("bn_eps", 1e-5)}
    with torch.no_grad():
        J0 = J(params).item()
    g0 = grad(J)(params)
    bn_layers = bn_fed_layers(model)
    mods = [m for m in model.modules() if not list(m.children())]
    for i, layer in enumerate(bn_layers):
        name = names[layer] + ".weight"
        gam = gammas(layer.weight.shape[0])
        # BN(A W^T Gamma) = BN(A W^T): the layer's input A from a forward hook
        store = {}
        h = layer.register_forward_hook(lambda m, inp, out: store.update(a=inp[0].detach()))
        with torch.no_grad():
            model(x)
        h.remove()
        bn = mods[mods.index(layer) + 1]
        with torch.no_grad():
            z = layer(store["a"])
            shape = (1, -1) + (1,) * (z.dim() - 2)
            ref, alt = bn(z), bn(z * gam.view(shape))
        rows.append({**tag, "layer": f"bn{i}", "check": "bn_identity", "rel_error": ((alt - ref).norm() / ref.norm()).item()})
        ps = scaled(params, name, gam)
        with torch.no_grad():
            rows.append({**tag, "layer": f"bn{i}", "check": "loss_invariance", "rel_error": abs(J(ps).item() - J0) / abs(J0)})
        gs = grad(J)(ps)[name]
        gref = g0[name]
        back = gs * gam.view(-1, *([1] * (gs.dim() - 1)))
        rows.append({**tag, "layer": f"bn{i}", "check": "grad_homogeneity", "rel_error": ((back - gref).norm() / gref.norm()).item()})
        w, gr = params[name].flatten(1), gref.flatten(1)
        cos = (w * gr).sum(1).abs() / (w.norm(dim=1) * gr.norm(dim=1))
        rows.append({**tag, "layer": f"bn{i}", "check": "orthogonality", "rel_error": cos.max().item()})
    out = weight_layers(model)[-1]
    if out not in bn_layers:
        name = names[out] + ".weight"
        ps = scaled(params, name, gammas(out.weight.shape[0]))
        with torch.no_grad():
            rows.append({**tag, "layer": "out", "check": "control_output_layer", "rel_error": abs(J(ps).item() - J0) / abs(J0)})
    return rows


def _pythagoras(model_spec: dict, data, seed: int, cfg: dict, opt: dict, variant: str) -> list[dict]:
    import torch
    import torch.nn.functional as F

    from ...models import bn_fed_layers, build_model

    inv = cfg["invariance"]
    torch.manual_seed(seed)
    model = build_model(model_spec, data.input_shape, data.n_classes, dtype=torch.float64).train()
    params = [p for p in model.parameters() if p.requires_grad]
    sgd = torch.optim.SGD(params, lr=opt["lr"], momentum=opt.get("momentum", 0.0), weight_decay=opt.get("weight_decay", 0.0))
    layers = bn_fed_layers(model)
    g = torch.Generator().manual_seed(seed)
    worst = {i: [] for i in range(len(layers))}
    worst_w = {i: [] for i in range(len(layers))}
    for _ in range(inv["pyth_steps"]):
        idx = torch.randint(len(data.x_train), (inv["batch_size"],), generator=g)
        x, y = data.x_train[idx].to(torch.float64), data.y_train[idx]
        sgd.zero_grad()
        F.cross_entropy(model(x), y).backward()
        before = [(l.weight.detach().flatten(1).clone(), l.weight.grad.detach().flatten(1).clone()) for l in layers]
        sgd.step()
        for i, (l, (w0, gr)) in enumerate(zip(layers, before)):
            d = l.weight.detach().flatten(1) - w0
            dw2 = 2 * (w0 * d).sum(1) + (d * d).sum(1)
            inc = opt["lr"] ** 2 * (gr * gr).sum(1)
            worst[i].append(((dw2 - inc).abs() / inc).max().item())
            worst_w[i].append(((dw2 - inc).abs() / (w0 * w0).sum(1)).max().item())
    rows = []
    for i, v in worst.items():
        t = torch.tensor(v)
        base = {"model": model_spec["arch"], "seed": seed, "layer": f"bn{i}", "variant": variant}
        rows.append({**base, "check": "pythagoras_max", "rel_error": t.max().item()})
        rows.append({**base, "check": "pythagoras_median", "rel_error": t.median().item()})
        rows.append({**base, "check": "pythagoras_rel_w", "rel_error": max(worst_w[i])})
    return rows


def run(cfg: dict, data_path: str, threads: int = 1) -> "object":
    import pandas as pd
    import torch

    from ... import data as data_mod

    torch.set_num_threads(threads)
    data = data_mod.load(data_path, dtype=torch.float64)
    inv = cfg["invariance"]
    eps = cfg["model"].get("bn_eps", 1e-5)
    rows = []
    for m in inv["models"]:
        spec = {**cfg["model"], **m, "norm": "bn_pre", "scale_invariant": m.get("scale_invariant", False)}
        for seed in range(inv["seeds"]):
            rows += _checks({**spec, "bn_eps": eps}, data, seed, cfg)
            for r in _checks({**spec, "bn_eps": 1e-5}, data, seed, cfg):  # control: PyTorch's default epsilon
                if r["check"] == "loss_invariance":
                    rows.append({**r, "check": "control_default_eps"})
            lr = inv["pyth_lr"]
            for variant, opt in {"sgd": {"lr": lr}, "sgd_momentum": {"lr": lr * 0.1, "momentum": 0.9},
                                 "sgd_wd": {"lr": lr, "weight_decay": inv["pyth_weight_decay"]}}.items():
                rows += _pythagoras({**spec, "bn_eps": eps, "scale_invariant": True}, data, seed, cfg, opt, variant)
    return pd.DataFrame(rows)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--config", required=True, help="the study's resolved config (JSON file or string)")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    from ...io import write_parquet

    resolved = read_spec(a.config)
    df = run(resolved["study_config"], a.data, a.threads)
    write_parquet(df, a.out)
    print(df.groupby(["check", "variant"]).rel_error.max().to_string())


if __name__ == "__main__":
    main()
