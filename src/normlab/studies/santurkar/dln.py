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
import json
import time
from pathlib import Path

import torch
from torch import nn

from ...io import now, write_json, write_parquet


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


def problem(seed: int, n: int, width: int, dtype=torch.float64):
    """The Gaussian inputs X (n x width) and targets A X of one seed."""
    g = torch.Generator().manual_seed(10_007 * (seed + 1))
    a = torch.randn(width, width, generator=g, dtype=dtype)
    x = torch.randn(n, width, generator=g, dtype=dtype)
    return x, x @ a.T


def run_one(cfg: dict, bn: bool, seed: int, lr: float) -> list[tuple[int, str, float]]:
    from ...engine import call_probes
    from ...probes import ProbeContext, build_probe

    x, y = problem(seed, cfg["n_samples"], cfg["width"])
    torch.manual_seed(seed)
    model = build_dln(cfg["depth"], cfg["width"], bn)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    probes = [build_probe({"name": "ics", "every": cfg["probe_every"], "layers": cfg["ics_layers"]}),
              build_probe({"name": "landscape", "every": cfg["probe_every"], "scales": cfg["landscape_scales"],
                           "n": cfg["landscape_n"], "spacing": "log"})]
    spec = {"constraints": []}
    rows: list[tuple[int, str, float]] = []
    model.train()
    for t in range(cfg["steps"]):
        opt.zero_grad(set_to_none=True)
        loss = sum_squared(model(x), y)
        if not torch.isfinite(loss):
            rows.append((t, "diverged", 1.0))
            break
        loss.backward()
        ctx = ProbeContext(t, model, opt, sum_squared, x, y, lr, None, spec, loss.detach())
        call_probes(probes, "before_step", ctx, rows)
        opt.step()
        if t % cfg["log_every"] == 0:
            rows.append((t, "train_loss", loss.item() / len(x)))
    return rows


def run(cfg: dict, out: Path) -> None:
    import pandas as pd

    t0, started = time.perf_counter(), now()
    frames = []
    for lr in cfg["lrs"]:
        for norm in ("none", "bn"):
            for seed in range(cfg["seeds"]):
                rows = run_one(cfg, norm == "bn", seed, lr)
                df = pd.DataFrame(rows, columns=["step", "metric", "value"]).astype({"step": "int64"})
                frames.append(df.assign(variant=f"dln-{norm}-lr{lr:g}", norm=norm, lr=lr, seed=seed))
                print(f"[dln] lr {lr:g} {norm} seed {seed}: final loss/sample "
                      f"{df[df.metric == 'train_loss'].value.iloc[-1]:.4g}", flush=True)
    write_parquet(pd.concat(frames, ignore_index=True), out / "metrics.parquet")
    write_json({"config": cfg, "started": started, "finished": now(), "wall_s": time.perf_counter() - t0,
                "threads": torch.get_num_threads()}, out / "summary.json")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="the study's resolved config (JSON file or string)")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    resolved = json.loads(Path(a.config).read_text() if not a.config.lstrip().startswith("{") else a.config)
    torch.set_num_threads(a.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    run(resolved["study_config"]["dln"], a.out)


if __name__ == "__main__":
    main()
