"""The training engine: one job trains every seed of one variant.

Knows nothing of any study. A run spec (JSON, built by the study module and passed by the
Snakemake rule) says what to train:

    {study, version, variant, keys: {...}, seeds: [0, 1, ...], data: "resources/data/....pt",
     model: {...}, optimizer: {...}, lr: 0.1, schedule: {...}, train: {...}, probes: [...],
     loss: "cross_entropy", random_labels: false | true | "fresh", constraints: [], device: "auto", wandb: {...}}

Per seed it writes ``<out>/seed<k>/metrics.parquet`` (tidy: step, metric, value + the run's keys)
and ``<out>/seed<k>/summary.json``, both atomically. Checkpoints go to ``<ckpt_dir>/seed<k>.pt``
every ``train.ckpt_every`` steps; a rerun resumes from them and gives the same numbers as an
uninterrupted run. A non-finite loss ends the run as ``diverged`` (its step recorded).

CLI: python -m normlab.train --spec SPEC.json|'{...}' --out DIR [--ckpt-dir DIR] [--threads N]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from . import data as data_mod
from .accel import Precision, augment, to_device
from .config import config_hash
from .io import atomic_torch_save, now, package_versions, write_json, write_parquet
from .models import build_model
from .optim import CONSTRAINTS, build_optimizer
from .probes import ProbeContext, build_probe
from .schedules import build_schedule
from .tracking import Tracker

LOSSES = {"cross_entropy": F.cross_entropy, "mse": F.mse_loss}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: device 'cuda' requested in the config but no CUDA device is available")
    return torch.device(name)


def batch_indices(seed: int, step: int, n: int, batch_size: int, device) -> torch.Tensor:
    """The sample indices of step ``step``: a fresh permutation per epoch, from (seed, epoch) alone.

    Stateless, so a resumed run draws exactly the batches an uninterrupted one would.
    """
    per_epoch = max(n // batch_size, 1)
    epoch, k = divmod(step, per_epoch)
    g = torch.Generator().manual_seed(1_000_003 * (seed + 1) + epoch)
    perm = torch.randperm(n, generator=g)
    return to_device(perm[k * batch_size:(k + 1) * batch_size], device)


def random_labels(y: torch.Tensor, n_classes: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(7919 * (seed + 1))
    return torch.randint(n_classes, y.shape, generator=g).to(y.device)


def fresh_labels(seed: int, step: int, size: int, n_classes: int, device) -> torch.Tensor:
    """Labels drawn anew at every step (``random_labels: fresh``): the data never repeats, so the
    gradient never vanishes. Stateless, from (seed, step) alone, so resume is exact."""
    g = torch.Generator().manual_seed(104_729 * (seed + 1) + 7 * step + 3)
    return to_device(torch.randint(n_classes, (size,), generator=g), device)


@torch.no_grad()
def evaluate(model, x, y, loss_fn, chunk: int = 4096, prec: Precision | None = None) -> tuple[float, float]:
    was_training = model.training
    model.eval()
    prec = prec or Precision(False, x.device)
    total = torch.zeros((), dtype=torch.float64, device=x.device)  # summed on the device: one sync at the end
    correct = torch.zeros((), dtype=torch.long, device=x.device)
    for i in range(0, len(x), chunk):
        with prec.autocast():
            out = model(prec.batch(x[i:i + chunk]))
            total += loss_fn(out, y[i:i + chunk]).double() * len(out)
        if y.dim() == 1:
            correct += (out.argmax(1) == y[i:i + chunk]).sum()
    model.train(was_training)
    return total.item() / len(x), (correct.item() / len(x) if y.dim() == 1 else float("nan"))


class _Snapshot:
    """Model (params, buffers, grads), optimizer and RNG state, to undo whatever a probe does."""

    def __init__(self, model, optimizer):
        self.model, self.optimizer = model, optimizer
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.grads = [None if p.grad is None else p.grad.detach().clone() for p in model.parameters()]
        self.opt = copy.deepcopy(optimizer.state_dict())
        self.rng = torch.get_rng_state()
        self.cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
        self.training = model.training

    def restore(self):
        with torch.no_grad():
            for k, v in self.model.state_dict().items():
                v.copy_(self.state[k])
            for p, g in zip(self.model.parameters(), self.grads):
                p.grad = None if g is None else g.clone()
        self.optimizer.load_state_dict(copy.deepcopy(self.opt))  # load_state_dict aliases tensors
        torch.set_rng_state(self.rng)
        if self.cuda_rng is not None:
            torch.cuda.set_rng_state_all(self.cuda_rng)
        self.model.train(self.training)


def _call_probes(probes, hook: str, ctx, rows):
    due = [p for p in probes if p.due(ctx.step)]
    if not due:
        return
    snap = _Snapshot(ctx.model, ctx.optimizer)
    for p in due:
        for k, v in getattr(p, hook)(ctx).items():
            rows.append((ctx.step, k, float(v)))
        snap.restore()


def wandb_settings(spec: dict, version_dir: Path) -> dict:
    """W&B settings: the spec's, else those the Snakefile exports in NORMLAB_WANDB (kept out of rule
    params so that switching W&B mode does not rerun training). Runs go under the version folder."""
    w = spec.get("wandb") or json.loads(os.environ.get("NORMLAB_WANDB", '{"mode": "disabled"}'))
    return {"dir": str(version_dir), **w}


def train_seed(spec: dict, seed: int, data, device, out_dir: Path, ckpt_path: Path | None) -> dict:
    """Train one seed; write its metrics and summary; return the summary."""
    tr = spec["train"]
    dtype = torch.float64 if tr.get("dtype") == "float64" else torch.float32
    steps, bs = tr["steps"], tr["batch_size"]
    loss_fn = LOSSES[spec.get("loss", "cross_entropy")]
    spec_key = config_hash({k: v for k, v in spec.items() if k not in ("wandb", "seeds")})

    torch.manual_seed(seed)
    model = build_model(spec["model"], data.input_shape, data.n_classes, dtype=dtype).to(device)
    prec = Precision(tr.get("amp", False), device, dtype)  # bf16 autocast + channels_last: CUDA only
    prec.prepare(model, data.input_shape)
    aug = {k: v for k, v in (tr.get("augment") or {}).items() if v}  # on-device flips / crops
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = build_optimizer(params, spec["optimizer"], spec["lr"])
    lr_at = build_schedule(spec.get("schedule"), spec["lr"], spec["optimizer"])
    probes = [build_probe(p) for p in spec.get("probes", [])]
    constraints = [CONSTRAINTS[c] for c in spec.get("constraints", [])]
    for c in constraints:
        c(model)

    fresh = spec.get("random_labels") == "fresh"
    y_train = random_labels(data.y_train, data.n_classes, seed) if spec.get("random_labels") else data.y_train
    n_eval = min(tr.get("eval_train_max", 5000), len(data.x_train))
    x_eval, y_eval = data.x_train[:n_eval], y_train[:n_eval]

    rows: list[tuple[int, str, float]] = []
    start_step, first_bad = 0, -1
    wall_before = 0.0
    if ckpt_path is not None and ckpt_path.exists():
        ck = torch.load(ckpt_path, map_location=device, weights_only=False)
        if ck["spec_key"] == spec_key and ck["seed"] == seed:
            if ck.get("done"):
                return _finish(spec, seed, ck["rows"], ck["summary"], out_dir)
            model.load_state_dict(ck["model"])
            optimizer.load_state_dict(ck["optimizer"])
            torch.set_rng_state(ck["rng"])
            rows, start_step, wall_before = ck["rows"], ck["step"], ck["wall_s"]
            print(f"[train] seed {seed}: resumed from step {start_step}", file=sys.stderr)

    w = wandb_settings(spec, out_dir.parent.parent)
    tracker = Tracker(mode=w.get("mode", "disabled"), project=w.get("project", "normlab"), entity=w.get("entity"),
                      group=f"{spec['study']}/{spec['version']}", name=f"{spec['variant']}/seed{seed}",
                      job_type="train", config={**spec, "seed": seed}, dir=w.get("dir", out_dir),
                      init_timeout=w.get("init_timeout", 20), tags=[spec["study"], spec["version"]])

    def log_eval(t):
        before = len(rows)
        for split, (x, y) in {"train": (x_eval, y_eval), "test": (data.x_test, data.y_test)}.items():
            loss, acc = evaluate(model, x, y, loss_fn, prec=prec)
            rows.append((t, f"{split}_loss", loss))
            if y.dim() == 1:
                rows.append((t, f"{split}_acc", acc))
        tracker.log({m: v for _, m, v in rows[before:]}, step=t)

    t0 = time.perf_counter()
    started = now()
    model.train()
    status, t = "ok", start_step
    bad = torch.full((), -1, dtype=torch.long, device=device)
    if start_step == 0:
        if hasattr(lr_at, "init_optimizer_state"):  # e.g. the exponential schedules' initial momentum
            lr_at.init_optimizer_state(optimizer)
        log_eval(0)
    for t in range(start_step, steps):
        lr = lr_at(t)
        for g in optimizer.param_groups:
            g["lr"] = lr
        idx = batch_indices(seed, t, len(data.x_train), bs, device)
        x, y = data.x_train[idx], y_train[idx]
        if fresh:
            y = fresh_labels(seed, t, len(idx), data.n_classes, device)
        if aug:
            x = augment(x, seed, t, **aug)
        x = prec.batch(x)
        optimizer.zero_grad(set_to_none=True)
        with prec.autocast():
            out = model(x)
            loss = loss_fn(out, y)
        loss.backward()
        bad = torch.where((bad < 0) & ~torch.isfinite(loss.detach()), t, bad)  # no host-device sync
        ctx = ProbeContext(t, model, optimizer, loss_fn, x, y, lr, data, spec, loss.detach()) if probes else None
        n_rows = len(rows)
        if probes:
            _call_probes(probes, "before_step", ctx, rows)
        optimizer.step()
        for c in constraints:
            c(model)
        if probes:
            _call_probes(probes, "after_step", ctx, rows)
            if len(rows) > n_rows:
                tracker.log({m: v for _, m, v in rows[n_rows:]}, step=t)
        if t % tr.get("log_every", 10) == 0 or t == steps - 1:
            first_bad = int(bad.item())
            if first_bad >= 0:
                status = "diverged"
                rows.append((first_bad, "diverged", 1.0))
                break
            logged = [(t, "batch_loss", loss.item()), (t, "lr", lr)]
            if y.dim() == 1:
                logged.append((t, "batch_acc", (out.argmax(1) == y).float().mean().item()))
            rows += logged
            tracker.log({m: v for _, m, v in logged}, step=t)
        if (t + 1) % tr.get("eval_every", 100) == 0 or t + 1 == steps:
            log_eval(t + 1)
        if ckpt_path is not None and (t + 1) % tr.get("ckpt_every", 500) == 0 and t + 1 < steps:
            atomic_torch_save({"spec_key": spec_key, "seed": seed, "step": t + 1, "model": model.state_dict(),
                               "optimizer": optimizer.state_dict(), "rng": torch.get_rng_state(), "rows": rows,
                               "wall_s": wall_before + time.perf_counter() - t0}, ckpt_path)

    wall = wall_before + time.perf_counter() - t0
    final = {}
    if status == "ok":
        for _, m, v in rows:
            if m in ("train_loss", "train_acc", "test_loss", "test_acc"):
                final[m] = v
    summary = {
        "study": spec["study"], "version": spec["version"], "variant": spec["variant"], "seed": seed,
        "keys": spec.get("keys", {}), "status": status, "diverged_step": first_bad if status == "diverged" else None,
        "steps": steps, "final": final, "wall_s": wall,
        "steps_per_s": (steps - start_step) / max(time.perf_counter() - t0, 1e-9) if status == "ok" else None,
        "device": str(device), "threads": torch.get_num_threads(), "dtype": str(dtype).replace("torch.", ""),
        "amp": prec.amp, "augment": aug or None,
        "started": started, "finished": now(), "resumed_from": start_step or None,
        "wandb": {"mode": tracker.mode, "dir": tracker.run_dir},
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
    }
    tracker.summary({"status": status, **final})
    tracker.finish()
    if ckpt_path is not None:  # keep the finished seed until the whole job is done (a kill may come later)
        atomic_torch_save({"spec_key": spec_key, "seed": seed, "done": True, "rows": rows, "summary": summary},
                          ckpt_path)
    return _finish(spec, seed, rows, summary, out_dir)


def metrics_frame(spec: dict, seed: int, rows):
    import pandas as pd

    df = pd.DataFrame(rows, columns=["step", "metric", "value"])
    df["step"] = df["step"].astype("int64")
    df = df.assign(study=spec["study"], variant=spec["variant"], seed=seed)
    for k, v in spec.get("keys", {}).items():
        df[k] = v
    return df


def _finish(spec, seed, rows, summary, out_dir: Path) -> dict:
    d = out_dir / f"seed{seed}"
    write_parquet(metrics_frame(spec, seed, rows), d / "metrics.parquet")
    write_json({**summary, "spec": spec, "packages": package_versions(("torch",))}, d / "summary.json")
    return summary


def run(spec: dict, out: Path, ckpt_dir: Path | None = None) -> list[dict]:
    device = resolve_device(spec.get("device", "auto"))
    dtype = torch.float64 if spec["train"].get("dtype") == "float64" else torch.float32
    data = data_mod.load(spec["data"], device=device, dtype=dtype)
    if ckpt_dir is not None:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
    summaries = []
    if spec["train"].get("ensemble"):  # all seeds as one batched ensemble (normlab/ensemble.py)
        from .ensemble import run_ensemble

        summaries = run_ensemble(spec, data, device, out, ckpt_dir)
    for seed in [] if summaries else spec["seeds"]:
        ck = ckpt_dir / f"seed{seed}.pt" if ckpt_dir is not None else None
        summaries.append(train_seed(spec, seed, data, device, out, ck))
    if ckpt_dir is not None:
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    return summaries


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spec", required=True, help="a JSON file or a JSON string")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--ckpt-dir", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args(argv)
    spec = json.loads(Path(a.spec).read_text() if not a.spec.lstrip().startswith("{") else a.spec)
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    for s in run(spec, a.out, a.ckpt_dir):
        print(f"[train] {s['variant']} seed {s['seed']}: {s['status']} {s['final']} ({s['wall_s']:.1f}s)")


if __name__ == "__main__":
    main()
