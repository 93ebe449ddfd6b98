"""Exactness checks of the ICS conditioning study (S5), run as their own jobs.

``invariance`` (S5.c): a shifted_mlp with BN before every nonlinearity (norm bn_pre) is trained
several times from the same initialization on the same batches, in float64, with a fixed
transform T inserted after the activation of hidden layer ``layer`` (the input of the next,
BN-normalized layer):

- ``base``: T = identity;
- ``shift_scale``: a -> s a + m (s > 0 a scalar, m a fixed random vector) with the next BN's
  epsilon set to s^2 eps, so that BN(W(s a + m)) = BN(W a) holds exactly in real arithmetic:
  (s (z - mu)) / sqrt(s^2 var + s^2 eps) = (z - mu) / sqrt(var + eps);
- ``shift_scale_eps_fixed``: the same T with epsilon left at eps (how much BN's epsilon breaks the
  invariance);
- ``per_unit`` (control): a -> D a with D a fixed positive diagonal, not a multiple of I;
- ``per_unit_matched`` (control): the same D with the next layer's weights W D^-1 at init, so that
  the initial function is identical and only the dynamics can differ.

Recorded: the batch loss of every step and the logits on a fixed probe batch (the first
``probe_size`` test inputs) every ``probe_every`` steps, in training mode (batch statistics, the
mode in which the invariance holds exactly; running averages mix statistics of past weights).
Writes a tidy parquet: run, step, metric (loss | loss_gap | logit_gap | param_gap), value; gaps are
maximum absolute differences from ``base``.

``centering`` (S5.d): a shifted_mlp with batch centering of the pre-activations (norm center:
Linear -> BatchCenter -> act -> + shift), float64. For each hidden layer, with A its input,
A~ = A - mean(A) and S_bar the gradient w.r.t. the centering's output, the autograd gradient of W
is compared with S_bar^T A~ and S_bar^T A; then again with the statistics path cut (the batch
mean detached), where the gradient must equal S_bar^T A. Writes JSON rows of relative errors.

CLI: python -m normlab.studies.ics_conditioning.checks {invariance|centering} --config JSON --data PT --out PATH
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

from ...io import read_spec

SECTIONS = {"invariance": "invariance", "centering": "centering_check"}
RUNS = ["base", "shift_scale", "shift_scale_eps_fixed", "per_unit", "per_unit_matched"]


def _model_spec(c: dict, norm: str) -> dict:
    return {"arch": "shifted_mlp", "depth": c["depth"], "width": c["width"], "norm": norm, "act": c["act"],
            "shift": c.get("shift", 0.0), "bn_eps": c.get("bn_eps", 1e-5)}


def invariance(c: dict, data_path: str):
    import numpy as np
    import pandas as pd
    import torch
    import torch.nn.functional as F

    from ...data import load
    from ...engine import batch_indices
    from ...models import build_model, weight_layers
    from ...models.shifted import affine_modules

    dtype = {"float64": torch.float64, "float32": torch.float32}[c["dtype"]]
    d = load(data_path, device="cpu", dtype=dtype)
    layer, s, eps = c["layer"], c["scale"], c["bn_eps"]
    if not 1 <= layer < c["depth"]:
        raise SystemExit(f"error: invariance.layer must be in 1..depth-1 = {c['depth'] - 1} (a BN layer must follow)")
    g = torch.Generator().manual_seed(c["seed"] + 12345)
    width = c["width"]
    m = (c["shift_mean"] + c["shift_std"] * torch.randn(width, generator=g)).to(dtype)
    r = float(np.log(c["per_unit_range"]))
    D = torch.exp((torch.rand(width, generator=g) * 2 - 1) * r).to(dtype)
    xp = d.x_test[:c["probe_size"]]

    def build(run):
        torch.manual_seed(c["seed"])
        # c["norm"] (not a config key): bn_post lets the tests show that the measurement can fail
        net = build_model(_model_spec(c, c.get("norm", "bn_pre")), d.input_shape, d.n_classes, dtype=dtype).train()
        aff = affine_modules(net)[layer - 1]
        bns = [b for b in net.modules() if isinstance(b, torch.nn.BatchNorm1d)]
        with torch.no_grad():
            if run.startswith("shift_scale"):
                aff.scale.fill_(s)
                aff.shift.copy_(m)
                if run == "shift_scale":
                    bns[layer].eps = eps * s * s
            elif run.startswith("per_unit"):
                aff.scale.copy_(D)
                if run == "per_unit_matched":
                    weight_layers(net)[layer].weight.div_(D)
        return net

    out, logits, params = [], {}, {}
    for run in RUNS:
        net = build(run)
        opt = torch.optim.SGD(net.parameters(), lr=c["lr"], momentum=c["momentum"])
        logits[run] = {}
        for t in range(c["steps"] + 1):
            if t % c["probe_every"] == 0 or t == c["steps"]:
                with torch.no_grad():
                    logits[run][t] = net(xp).clone()
            if t == c["steps"]:
                break
            idx = batch_indices(c["seed"], t, len(d.x_train), c["batch_size"], "cpu")
            loss = F.cross_entropy(net(d.x_train[idx]), d.y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            out.append((run, t, "loss", loss.item()))
        params[run] = [p.detach().clone() for p in net.parameters()]
    base_loss = {t: v for r, t, k, v in out if r == "base"}
    for run in RUNS[1:]:
        for r, t, k, v in list(out):
            if r == run and k == "loss":
                out.append((run, t, "loss_gap", abs(v - base_loss[t])))
        for t, z in logits[run].items():
            out.append((run, t, "logit_gap", (z - logits["base"][t]).abs().max().item()))
        gaps = [(p - q).abs().max().item() for p, q in zip(params[run], params["base"])]
        out.append((run, c["steps"], "param_gap", max(gaps)))
    for t, z in logits["base"].items():
        out.append(("base", t, "logit_scale", z.abs().max().item()))
    return pd.DataFrame(out, columns=["run", "step", "metric", "value"])


class _DetachedCenter:
    """Batch centering with the mean detached: only the direct path is differentiated."""

    def forward(self, x):
        dims = [0] + list(range(2, x.dim()))
        return x - x.mean(dim=dims, keepdim=True).detach()


def centering(c: dict, data_path: str) -> list[dict]:
    import torch
    import torch.nn.functional as F

    from ...data import load
    from ...models import build_model
    from ...models.layers import BatchCenter

    dtype = {"float64": torch.float64, "float32": torch.float32}[c["dtype"]]
    d = load(data_path, device="cpu", dtype=dtype)
    rows = []
    for b in range(c["batches"]):
        torch.manual_seed(c["seed"] + b)
        net = build_model(_model_spec(c, "center"), d.input_shape, d.n_classes, dtype=dtype).train()
        g = torch.Generator().manual_seed(c["seed"] + 1000 + b)
        idx = torch.randperm(len(d.x_train), generator=g)[:c["batch_size"]]
        x, y = d.x_train[idx], d.y_train[idx]
        det = copy.deepcopy(net)
        for mod in det.modules():
            if isinstance(mod, BatchCenter):
                mod.forward = _DetachedCenter.forward.__get__(mod)
        res = {}
        for name, model in [("full", net), ("detached", det)]:
            mods = list(model.modules())
            pairs = [(lin, bc) for lin, bc in zip(mods, mods[1:])
                     if isinstance(lin, torch.nn.Linear) and isinstance(bc, BatchCenter)]
            store, hooks = {}, []
            for i, (lin, bc) in enumerate(pairs):
                hooks.append(lin.register_forward_hook(lambda m_, inp, o, i=i: store.__setitem__(("a", i), inp[0].detach())))

                def keep(m_, inp, o, i=i):
                    o.retain_grad()
                    store[("s", i)] = o

                hooks.append(bc.register_forward_hook(keep))
            loss = F.cross_entropy(model(x), y)
            model.zero_grad()
            loss.backward()
            for h in hooks:
                h.remove()
            res[name] = [(lin.weight.grad.clone(), store[("a", i)], store[("s", i)].grad) for i, (lin, _) in enumerate(pairs)]
        for i, ((gw, a, sbar), (gd, _, sbar_d)) in enumerate(zip(res["full"], res["detached"])):
            at = a - a.mean(0, keepdim=True)

            def rel(u, v):
                return ((u - v).norm() / u.norm()).item()

            rows.append({"batch": b, "layer": i, "m_norm2": a.mean(0).pow(2).sum().item(),
                         "err_centered": rel(gw, sbar.T @ at), "err_plain": rel(gw, sbar.T @ a),
                         "err_detached_plain": rel(gd, sbar_d.T @ a), "err_detached_centered": rel(gd, sbar_d.T @ at),
                         "sbar_equal": (sbar - sbar_d).abs().max().item(), "dtype": c["dtype"]})
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("check", choices=["invariance", "centering"])
    ap.add_argument("--config", required=True, help="the study's resolved config or the check's section (JSON)")
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    import torch

    from ...io import write_json, write_parquet

    torch.set_num_threads(a.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    c = read_spec(a.config)
    if "study_config" in c:  # the study's resolved config: take the check's section
        c = c["study_config"][SECTIONS[a.check]]
    if a.check == "invariance":
        df = invariance(c, a.data)
        write_parquet(df, a.out)
        mx = df[df.metric.isin(["loss_gap", "logit_gap"])].groupby(["run", "metric"]).value.max()
        print(mx.to_string(), file=sys.stderr)
    else:
        rows = centering(c, a.data)
        write_json({"config": c, "rows": rows}, a.out)
        for r in rows:
            print(r, file=sys.stderr)


if __name__ == "__main__":
    main()
