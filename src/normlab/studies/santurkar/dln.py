"""S1's deep linear network (DLN) experiment: ICS and landscape with and without BN.

Santurkar et al. (2018), App. A/B: 25 square fully connected layers of width 10, a Gaussian
target map A (10x10), 1000 Gaussian inputs x, loss sum_x ||W_k ... W_1 x - A x||^2, full-batch
gradient descent (10,000 steps at eta = 1e-6 in the paper, also 1e-7): every rate in ``lrs``. The BN variant puts a BatchNorm
after every layer but the last (statistics over the full batch). Initialization: Glorot
(normal), which keeps the product's scale near one (not stated in the paper).

Measured with the engine's probes (``ics``, ``landscape``), called exactly as the training loop
calls them (model, optimizer and RNG restored after each call).

CLI (the ``santurkar_dln`` rule, declared by ``side_jobs``):
    python -m normlab.studies.santurkar.dln --config '{study section JSON}' --out DIR [--threads 1]
writes ``DIR/metrics.parquet`` (tidy: step, metric, value, variant, norm, seed) and
``DIR/summary.json``; ``lr`` is a column of the metrics and part of the variant name.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch import nn

from ...io import now, read_spec, write_json, write_parquet


def build_dln(depth: int, width: int, bn: bool, dtype=torch.float64) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(depth):
        layers.append(nn.Linear(width, width, bias=False))
        if bn and i < depth - 1:
            layers.append(nn.BatchNorm1d(width))
    for m in layers:
        if isinstance(m, nn.Linear):
            nn.init.xavier_normal_(m.weight)
    return nn.Sequential(*layers).to(dtype)


def sum_squared(out, y):
    return ((out - y) ** 2).sum()


def problem_map(seed: int, width: int, dtype=torch.float64) -> torch.Tensor:
    """The target map A of one seed (the first draw of ``problem``'s stream)."""
    return torch.randn(width, width, generator=torch.Generator().manual_seed(10_007 * (seed + 1)), dtype=dtype)


def problem(seed: int, n: int, width: int, dtype=torch.float64):
    """The Gaussian inputs X (n x width) and targets A X of one seed."""
    g = torch.Generator().manual_seed(10_007 * (seed + 1))
    a = torch.randn(width, width, generator=g, dtype=dtype)
    x = torch.randn(n, width, generator=g, dtype=dtype)
    return x, x @ a.T


def run_one(cfg: dict, bn: bool, seed: int, lr: float) -> list[tuple[int, str, float]]:
    """The rows of one (seed, lr) run: ``run_group`` with one member."""
    return run_group(cfg, bn, [(seed, lr)])[0]


def run_group(cfg: dict, bn: bool, members: list[tuple[int, float]]) -> list[list[tuple[int, str, float]]]:
    """Train the runs ``members`` = [(seed, lr), ...] of one norm setting together; their rows.

    Each member is the net ``torch.manual_seed(seed); build_dln(...)`` gives, on ``problem(seed)``,
    trained by full-batch gradient descent at its own rate. The training pass runs on the members'
    weights stacked along a leading axis E, with the activations feature-major (E, width, n): a layer
    is one ``bmm`` (W @ H, about 3x faster than the sample-major X @ W^T on these 10-wide matrices)
    and a BN one ``batch_norm`` with the members folded into the channels (per-member statistics over
    the n samples); without BN the loss is computed from the product map and S = X^T X (the same
    loss and gradient, to rounding). Every op acts on each member separately. The probes (``ics``, ``landscape``) get
    each member as its ordinary ``nn.Sequential`` (sample-major inputs, its own optimizer and RNG
    state), called exactly as the training loop calls them; a member whose loss stops being finite
    stops there (a ``diverged`` row), as before."""
    g = _Group(cfg, bn, members)
    n = cfg["n_samples"]
    rows: list[list[tuple[int, str, float]]] = [[] for _ in members]
    active = list(range(len(members)))
    for t in range(cfg["steps"]):
        losses = g.losses()
        if not bool(torch.isfinite(losses[active]).all()):
            active = g.stop_diverged(losses, active, t, rows)
            if not active:
                break
        grads = torch.autograd.grad(losses.sum(), g.stacked)
        if any(p.due(t) for p in g.probes[0]):
            for e in active:
                g.probe(e, t, grads, losses, rows[e])
        g.step(grads)
        if t % cfg["log_every"] == 0:
            vals = losses.tolist()
            for e in active:
                rows[e].append((t, "train_loss", vals[e] / n))
    return rows


class _Group:
    """The members of one ``run_group``: each member's ``nn.Sequential``, data, optimizer, RNG state and
    probes, and the stacked weights (leading axis E) the training pass runs on."""

    def __init__(self, cfg: dict, bn: bool, members: list[tuple[int, float]]):
        from ...probes import build_probe

        n, width = cfg["n_samples"], cfg["width"]
        self.bn, self.members, self.n, self.width, self.E = bn, members, n, width, len(members)
        self.models, self.xs, self.ys, self.rngs = [], [], [], []
        for seed, _ in members:
            x, y = problem(seed, n, width)
            torch.manual_seed(seed)
            self.models.append(build_dln(cfg["depth"], width, bn))
            self.rngs.append(torch.get_rng_state())
            self.xs.append(x)
            self.ys.append(y)
        self.opts = [torch.optim.SGD(m.parameters(), lr=lr) for m, (_, lr) in zip(self.models, members)]
        self.probes = [[build_probe({"name": "ics", "every": cfg["probe_every"], "layers": cfg["ics_layers"]}),
                        build_probe({"name": "landscape", "every": cfg["probe_every"], "scales": cfg["landscape_scales"],
                                     "n": cfg["landscape_n"], "spacing": "log"})] for _ in members]
        self._stack()

    def _stack(self) -> None:
        """The members' weights stacked along axis E, the forward ops, the inputs feature-major and (without BN)
        the product form of the loss."""
        names = [k for k, _ in self.models[0].named_parameters()]
        self.stacked = [torch.stack([dict(m.named_parameters())[k].detach() for m in self.models]).requires_grad_()
                        for k in names]
        by_name = dict(zip(names, self.stacked))
        self.ops = []  # (kind, weight, bias, eps) per module, forward order
        for i, m in enumerate(self.models[0]):
            if isinstance(m, nn.Linear):
                self.ops.append(("linear", by_name[f"{i}.weight"], None, None))
            else:
                self.ops.append(("bn", by_name[f"{i}.weight"], by_name[f"{i}.bias"], m.eps))
        self.neg_lr = torch.tensor([-lr for _, lr in self.members], dtype=torch.float64)
        self.neg_lrs = [self.neg_lr.view(self.E, *([1] * (p.dim() - 1))) for p in self.stacked]
        self.xt = torch.stack([x.T for x in self.xs]).contiguous()  # (E, width, n)
        self.yt = torch.stack([y.T for y in self.ys]).contiguous()
        if not self.bn:
            # Without BN the net is the linear map P = W_depth ... W_1 and the loss a quadratic form in it:
            # sum_i ||(P - A) x_i||^2 = <(P - A) S, P - A> with S = X^T X (width x width products, no n-sample pass).
            self.s_mat = torch.bmm(self.xt, self.xt.transpose(1, 2))
            self.a_mat = torch.stack([problem_map(seed, self.width) for seed, _ in self.members])
            self.weights = [w for _, w, _, _ in self.ops]

    def forward(self):
        import torch.nn.functional as F

        E, width, n = self.E, self.width, self.n
        h = self.xt
        for kind, w, b, eps in self.ops:
            if kind == "linear":
                h = torch.bmm(w, h)
            else:
                h = F.batch_norm(h.reshape(1, E * width, n), None, None, w.reshape(-1), b.reshape(-1),
                                 True, 0.0, eps).view(E, width, n)
        return h

    def losses(self):
        """Each member's loss (a vector of E)."""
        if self.bn:
            return ((self.forward() - self.yt) ** 2).sum(dim=(1, 2))
        p = self.weights[0]
        for w in self.weights[1:]:
            p = torch.bmm(w, p)
        d = p - self.a_mat
        return (torch.bmm(d, self.s_mat) * d).sum(dim=(1, 2))

    def stop_diverged(self, losses, active: list[int], t: int, rows) -> list[int]:
        """Stop the active members whose loss is not finite (a ``diverged`` row, rate 0); the others."""
        finite = torch.isfinite(losses).tolist()
        for e in [e for e in active if not finite[e]]:
            rows[e].append((t, "diverged", 1.0))
            self.neg_lr[e] = 0.0
        return [e for e in active if finite[e]]

    def probe(self, e: int, t: int, grads, losses, rows) -> None:
        """Call member ``e``'s probes on its own ``nn.Sequential`` holding its stacked weights and gradient."""
        from ...engine import call_probes
        from ...probes import ProbeContext

        model = self.models[e]
        with torch.no_grad():
            for p, sp, g in zip(model.parameters(), self.stacked, grads):
                p.copy_(sp[e])
                p.grad = g[e].clone()
        torch.set_rng_state(self.rngs[e])
        ctx = ProbeContext(t, model, self.opts[e], sum_squared, self.xs[e], self.ys[e], self.members[e][1], None,
                           {"constraints": []}, losses[e].detach())
        call_probes(self.probes[e], "before_step", ctx, rows)

    def step(self, grads) -> None:
        """One gradient-descent step of every member at its own rate (0 once stopped)."""
        with torch.no_grad():
            for p, g, nl in zip(self.stacked, grads, self.neg_lrs):
                p.add_(g * nl)


def run(cfg: dict, out: Path) -> None:
    import pandas as pd

    t0, started = time.perf_counter(), now()
    frames = []
    for norm in ("none", "bn"):  # all (lr, seed) runs of a norm setting as one stacked group
        members = [(seed, lr) for lr in cfg["lrs"] for seed in range(cfg["seeds"])]
        for (seed, lr), rows in zip(members, run_group(cfg, norm == "bn", members)):
            df = pd.DataFrame(rows, columns=["step", "metric", "value"]).astype({"step": "int64"})
            frames.append(((cfg["lrs"].index(lr), norm, seed),
                           df.assign(variant=f"dln-{norm}-lr{lr:g}", norm=norm, lr=lr, seed=seed)))
            print(f"[dln] lr {lr:g} {norm} seed {seed}: final loss/sample "
                  f"{df[df.metric == 'train_loss'].value.iloc[-1]:.4g}", flush=True)
    frames = [f for _, f in sorted(frames, key=lambda kf: (kf[0][0], kf[0][1] == "bn", kf[0][2]))]
    write_parquet(pd.concat(frames, ignore_index=True), out / "metrics.parquet")
    write_json({"config": cfg, "started": started, "finished": now(), "wall_s": time.perf_counter() - t0,
                "threads": torch.get_num_threads()}, out / "summary.json")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="the study's resolved config (JSON file or string)")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    resolved = read_spec(a.config)
    torch.set_num_threads(a.threads)
    from ...startup import deterministic

    deterministic()  # torch.use_deterministic_algorithms(True, warn_only=True), without NaN-filling new tensors
    run(resolved["study_config"]["dln"], a.out)


if __name__ == "__main__":
    main()
