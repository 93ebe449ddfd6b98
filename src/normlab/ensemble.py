"""Batched seeds: every seed of one variant trained together, as one ensemble, in one job.

Used by ``train.run`` when ``train.ensemble`` is true. Each member is the model the one-seed path
would build for its seed (``torch.manual_seed(seed)`` then ``build_model``); the members' tensors
are stacked along a leading ensemble dimension E (``torch.func.stack_module_state``), and one
optimizer updates the stacked tensors (SGD, Adam, AdamW and weight decay act elementwise, so each
member gets exactly its own update). Per member: its own data order (``train.batch_indices``), its
own noise stream (a ``torch.Generator`` holding the RNG state the one-seed path would have), its
own BN statistics, labels, probes, divergence and W&B run. Outputs are those of the one-seed path:
``<out>/seed<k>/{metrics.parquet,summary.json}``; ``wall_s`` and ``steps_per_s`` are the member's
share of the job (job wall time / E), and ``ensemble`` in the summary gives the whole job's.

Forward pass. Models made of known layers (the registry's Sequential models: Linear, Conv1d/2d,
BatchNorm, Noise, BatchCenter, pooling, activations) run layer by layer on activations shaped
(E, B, ...): a Linear is one ``baddbmm``; a convolution is one grouped convolution and a BN one
``batch_norm`` with the members folded into the channels (per-member statistics, exactly).
Any other model runs through ``torch.func.vmap(functional_call)``; there the noise of Noise layers
comes from one job-level stream (same distribution as the one-seed path, not the same numbers).
The layer path was 1.4x faster than vmap on the default MLP (1 CPU thread; see bench/).

Exactness (tests/test_ensemble.py): initial weights, batches, noise and labels are identical to the
one-seed path; the losses and gradients of the first step agree to float32 rounding (a batched
matmul may sum in another order than a single one), so per-seed curves agree closely for a while
and then only in distribution (SGD on a non-convex loss amplifies rounding differences).

Checkpoints: one atomic file ``<ckpt_dir>/ensemble.pt`` with every member's state (weights, BN
statistics, optimizer state, noise RNG, metric rows, status); a resumed job continues exactly.
A member whose loss becomes non-finite ends as ``diverged`` (its step recorded) while the others
train on; the job stops early once every member has ended.
"""

from __future__ import annotations

import copy
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from . import train as T
from .accel import augment
from .config import config_hash
from .io import atomic_torch_save, now
from .models import build_model
from .models.layers import BatchCenter, Noise
from .optim import CONSTRAINTS, build_optimizer
from .probes import ProbeContext, build_probe
from .schedules import build_schedule
from .tracking import Tracker

ELEMENTWISE = (nn.ReLU, nn.Tanh, nn.Sigmoid, nn.Identity, nn.GELU, nn.SiLU, nn.LeakyReLU, nn.ELU, nn.Softplus)
POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d,
         nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d)


def _fold(x):
    """(E, B, C, *S) -> (B, E*C, *S): members folded into channels."""
    e, b = x.shape[:2]
    return x.transpose(0, 1).reshape(b, e * x.shape[2], *x.shape[3:])


def _unfold(x, e):
    """(B, E*C, *S) -> (E, B, C, *S)."""
    return x.view(x.shape[0], e, x.shape[1] // e, *x.shape[2:]).transpose(0, 1)


class StackedModel:
    """E copies of one architecture with stacked tensors; ``forward(x)`` maps (E, B, ...) -> (E, B, out)."""

    def __init__(self, models: list[nn.Module], generators: list[torch.Generator], force_vmap: bool = False):
        from torch.func import stack_module_state

        self.size = len(models)
        self.template = copy.deepcopy(models[0])
        self.params, self.buffers = stack_module_state(models)
        self.generators = generators
        self.training = True
        self.ops = None if force_vmap else self._layer_ops(self.template)
        self.path = "vmap" if self.ops is None else "layers"
        # Per-member modules whose tensors are views of the stacked ones (for in-place constraints).
        self.aliases = [self._alias(e) for e in range(self.size)]

    # state ---------------------------------------------------------------------------------
    def state(self) -> dict:
        return {**self.params, **self.buffers}

    def trainable(self) -> list[torch.Tensor]:
        return [p for p in self.params.values() if p.requires_grad]

    def _alias(self, e: int) -> nn.Module:
        m = copy.deepcopy(self.template)
        for mod_name, mod in m.named_modules():
            pre = f"{mod_name}." if mod_name else ""
            for n, p in list(mod._parameters.items()):
                if p is not None:
                    mod._parameters[n] = nn.Parameter(self.params[pre + n].detach()[e], requires_grad=p.requires_grad)
            for n, b in list(mod._buffers.items()):
                if b is not None:
                    mod._buffers[n] = self.buffers[pre + n][e]
        return m

    def member(self, e: int, grads: bool = False) -> nn.Module:
        """An independent copy of member ``e`` (weights, buffers and, if asked, gradients)."""
        return self.copy_into(e, copy.deepcopy(self.template), grads)

    @torch.no_grad()
    def copy_into(self, e: int, model: nn.Module, grads: bool = False) -> nn.Module:
        """Write member ``e``'s current weights and buffers (and gradients) into ``model``, in place."""
        model.train(self.training)
        for n, p in model.named_parameters():
            p.copy_(self.params[n][e])
            g = self.params[n].grad
            if grads:
                p.grad = g[e].clone() if g is not None else None
        for n, b in model.named_buffers():
            b.copy_(self.buffers[n][e])
        return model

    # forward -------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, shared: bool = False) -> torch.Tensor:
        """``x``: (E, B, ...) per-member inputs, or (B, ...) for all members if ``shared``."""
        if self.ops is None:
            from torch.func import functional_call, vmap

            self.template.train(self.training)

            def fn(p, b, xx):
                return functional_call(self.template, (p, b), (xx,))
            return vmap(fn, in_dims=(0, 0, None if shared else 0), randomness="different")(
                self.params, self.buffers, x)
        if shared:
            x = x.unsqueeze(0).expand(self.size, *x.shape)
        for op in self.ops:
            x = op(x)
        return x

    def _layer_ops(self, model: nn.Module):
        """One function per leaf module, in forward order; None if the model is not a plain Sequential."""
        ops = []
        for name, m in model.named_modules():
            if isinstance(m, nn.Sequential):
                continue
            if list(m.children()):
                return None
            op = self._op(name, m)
            if op is None:
                return None
            ops.append(op)
        return ops if isinstance(model, nn.Sequential) else None

    def _op(self, name: str, m: nn.Module):
        P, Bf, E = self.params, self.buffers, self.size
        key = (lambda n: f"{name}.{n}") if name else (lambda n: n)
        if isinstance(m, ELEMENTWISE):
            return m
        if isinstance(m, nn.Flatten):
            end = m.end_dim if m.end_dim < 0 else m.end_dim + 1
            return lambda x: x.flatten(m.start_dim + 1, end)
        if isinstance(m, POOLS):
            return lambda x: m(x.flatten(0, 1)).unflatten(0, x.shape[:2])
        if isinstance(m, nn.Linear):
            w, b = P[key("weight")], P.get(key("bias"))
            return (lambda x: torch.bmm(x, w.transpose(1, 2))) if b is None else \
                (lambda x: torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2)))
        if isinstance(m, (nn.Conv1d, nn.Conv2d)) and m.padding_mode == "zeros":
            conv = F.conv1d if isinstance(m, nn.Conv1d) else F.conv2d
            w, b = P[key("weight")], P.get(key("bias"))

            def conv_op(x):
                out = conv(_fold(x), w.flatten(0, 1), None if b is None else b.flatten(), m.stride, m.padding,
                           m.dilation, E * m.groups)
                return _unfold(out, E)
            return conv_op
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            w, b = P.get(key("weight")), P.get(key("bias"))
            rm, rv, nbt = Bf.get(key("running_mean")), Bf.get(key("running_var")), Bf.get(key("num_batches_tracked"))

            def bn_op(x):  # nn.BatchNorm's forward, with the members folded into the channels
                factor = 0.0 if m.momentum is None else m.momentum
                if self.training and m.track_running_stats and nbt is not None:
                    nbt.add_(1)
                    factor = 1.0 / float(nbt[0]) if m.momentum is None else m.momentum
                use_batch = self.training or (rm is None and rv is None)
                track = not self.training or m.track_running_stats
                out = F.batch_norm(_fold(x), rm.view(-1) if track and rm is not None else None,
                                   rv.view(-1) if track and rv is not None else None,
                                   None if w is None else w.flatten(), None if b is None else b.flatten(),
                                   use_batch, factor, m.eps)
                return _unfold(out, E)
            return bn_op
        if isinstance(m, Noise):
            def noise_op(x):
                if not self.training:
                    return x
                s, a = zip(*(m.sample(x.shape[1:], x.device, x.dtype, generator=g) for g in self.generators))
                return torch.stack(s) * x + torch.stack(a)
            return noise_op
        if isinstance(m, BatchCenter):
            rm = Bf[key("running_mean")]

            def center_op(x):
                shape = (E, 1, -1) + (1,) * (x.dim() - 3)
                if self.training:
                    mean = x.mean(dim=[1] + list(range(3, x.dim())))
                    with torch.no_grad():
                        rm.lerp_(mean.detach(), m.momentum)
                else:
                    mean = rm
                return x - mean.view(shape)
            return center_op
        return None


def _member_optimizer(ens: StackedModel, optimizer, model: nn.Module, e: int, spec: dict, lr: float):
    """An independent optimizer for a member copy, holding member ``e``'s slice of the stacked state."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = build_optimizer(params, spec["optimizer"], spec["lr"])
    sd = optimizer.state_dict()
    stacked = ens.trainable()
    sd["state"] = {i: {k: (v[e].clone() if torch.is_tensor(v) and v.shape == stacked[i].shape else
                           (v.clone() if torch.is_tensor(v) else v)) for k, v in st.items()}
                   for i, st in sd["state"].items()}
    opt.load_state_dict(sd)
    for g in opt.param_groups:
        g["lr"] = lr
    return opt


@torch.no_grad()
def evaluate(ens: StackedModel, x, y, loss_fn, members, chunk: int = 4096):
    """Per member: (loss, accuracy) on (x, y[e]); ``y`` is (E, N) or (E, N, K)."""
    was = ens.training
    ens.training = False
    total = {e: 0.0 for e in members}
    correct = {e: 0.0 for e in members}
    for i in range(0, len(x), chunk):
        out = ens.forward(x[i:i + chunk], shared=True)
        for e in members:
            ye = y[e, i:i + chunk]
            total[e] += loss_fn(out[e], ye).item() * len(ye)
            if ye.dim() == 1:
                correct[e] += (out[e].argmax(1) == ye).sum().item()
    ens.training = was
    cls = y.dim() == 2
    return {e: (total[e] / len(x), correct[e] / len(x) if cls else float("nan")) for e in members}


def run_ensemble(spec: dict, data, device, out_dir: Path, ckpt_dir: Path | None = None,
                 force_vmap: bool = False) -> list[dict]:
    """Train every seed of ``spec`` as one ensemble; write each seed's outputs; return the summaries."""
    tr = spec["train"]
    dtype = torch.float64 if tr.get("dtype") == "float64" else torch.float32
    steps, bs = tr["steps"], tr["batch_size"]
    seeds = list(spec["seeds"])
    E = len(seeds)
    loss_fn = T.LOSSES[spec.get("loss", "cross_entropy")]
    spec_key = config_hash({k: v for k, v in spec.items() if k not in ("wandb", "seeds")})
    constraints = [CONSTRAINTS[c] for c in spec.get("constraints", [])]
    aug = {k: v for k, v in (tr.get("augment") or {}).items() if v}  # per member, as train.py does
    if tr.get("amp"):
        print("[ensemble] train.amp is not supported by the ensemble path: training in full precision",
              file=sys.stderr)

    # Members exactly as the one-seed path builds them; each keeps the RNG state it would continue from.
    models, gens, probes = [], [], []
    for seed in seeds:
        torch.manual_seed(seed)
        m = build_model(spec["model"], data.input_shape, data.n_classes, dtype=dtype).to(device)
        probes.append([build_probe(p) for p in spec.get("probes", [])])
        for c in constraints:
            c(m)
        models.append(m)
        gens.append(torch.Generator(device).set_state(torch.get_rng_state() if device.type == "cpu"
                                                      else torch.cuda.get_rng_state(device)))
    torch.manual_seed(1_000_003 * E + sum(seeds))  # the job-level noise stream of the vmap path
    ens = StackedModel(models, gens, force_vmap=force_vmap)
    del models
    optimizer = build_optimizer(ens.trainable(), spec["optimizer"], spec["lr"])
    lr_at = build_schedule(spec.get("schedule"), spec["lr"], spec["optimizer"])

    n = len(data.x_train)
    if spec.get("random_labels"):
        y_train = torch.stack([T.random_labels(data.y_train, data.n_classes, s) for s in seeds])
    else:
        y_train = data.y_train.unsqueeze(0).expand(E, *data.y_train.shape)
    n_eval = min(tr.get("eval_train_max", 5000), n)
    x_eval, y_eval = data.x_train[:n_eval], y_train[:, :n_eval]
    y_test = data.y_test.unsqueeze(0).expand(E, *data.y_test.shape)
    rows_of = torch.arange(E, device=device).unsqueeze(1)

    rows: list[list] = [[] for _ in seeds]
    status, first_bad = ["ok"] * E, [-1] * E
    start_step, wall_before = 0, 0.0
    ckpt = ckpt_dir / "ensemble.pt" if ckpt_dir is not None else None
    bad = torch.full((E,), -1, dtype=torch.long, device=device)
    if ckpt is not None and ckpt.exists():
        ck = torch.load(ckpt, map_location=device, weights_only=False)
        if ck["spec_key"] == spec_key and ck["seeds"] == seeds:
            if ck.get("done"):
                return [T._finish(spec, s, ck["rows"][e], ck["summaries"][e], out_dir) for e, s in enumerate(seeds)]
            with torch.no_grad():
                for k, v in ens.state().items():
                    v.copy_(ck["state"][k])
            optimizer.load_state_dict(ck["optimizer"])
            for g, st in zip(gens, ck["gens"]):
                g.set_state(st)
            torch.set_rng_state(ck["rng"])
            rows, status, first_bad, bad = ck["rows"], ck["status"], ck["first_bad"], ck["bad"]
            start_step, wall_before = ck["step"], ck["wall_s"]
            print(f"[ensemble] seeds {seeds}: resumed from step {start_step}", file=sys.stderr)

    w = T.wandb_settings(spec, out_dir.parent.parent)
    trackers = [Tracker(mode=w.get("mode", "disabled"), project=w.get("project", "normlab"), entity=w.get("entity"),
                        group=f"{spec['study']}/{spec['version']}", name=f"{spec['variant']}/seed{s}",
                        job_type="train", config={**spec, "seed": s}, dir=w.get("dir", out_dir),
                        init_timeout=w.get("init_timeout", 20), tags=[spec["study"], spec["version"]])
                for s in seeds]

    def active():
        return [e for e in range(E) if status[e] == "ok"]

    def log_eval(t):
        before = [len(r) for r in rows]
        for split, (x, y) in {"train": (x_eval, y_eval), "test": (data.x_test, y_test)}.items():
            for e, (loss, acc) in evaluate(ens, x, y, loss_fn, active()).items():
                rows[e].append((t, f"{split}_loss", loss))
                if y.dim() == 2:
                    rows[e].append((t, f"{split}_acc", acc))
        for e in active():
            trackers[e].log({m: v for _, m, v in rows[e][before[e]:]}, step=t)

    probe_models: dict[int, nn.Module] = {}

    def probes_before(t, x, y, losses, lr):
        """Per member: a copy of its model and optimizer, as the one-seed path's probes see them."""
        if not any(p.due(t) for p in probes[0]):
            return None
        rng, ctxs = torch.get_rng_state(), {}
        for e in active():  # one model copy per member, made once and refreshed in place (deepcopy is slow)
            model = ens.copy_into(e, probe_models[e], grads=True) if e in probe_models else ens.member(e, grads=True)
            probe_models[e] = model
            opt = _member_optimizer(ens, optimizer, model, e, spec, lr)
            ctxs[e] = ProbeContext(t, model, opt, loss_fn, x[e], y[e], lr, data, spec, losses[e])
            T._call_probes(probes[e], "before_step", ctxs[e], rows[e])
        torch.set_rng_state(rng)
        return ctxs

    def probes_after(ctxs, lr):
        rng = torch.get_rng_state()
        for e, ctx in ctxs.items():  # the same model object, now holding w_{t+1} (grads kept, as in train.py)
            ens.copy_into(e, ctx.model)
            ctx.optimizer = _member_optimizer(ens, optimizer, ctx.model, e, spec, lr)
            T._call_probes(probes[e], "after_step", ctx, rows[e])
        torch.set_rng_state(rng)

    t0 = time.perf_counter()
    started = now()
    ens.training = True
    if start_step == 0:
        if hasattr(lr_at, "init_optimizer_state"):  # e.g. the exponential schedules' initial momentum
            lr_at.init_optimizer_state(optimizer)
        log_eval(0)
    for t in range(start_step, steps):
        if not active():
            break
        lr = lr_at(t)
        for g in optimizer.param_groups:
            g["lr"] = lr
        idx = torch.stack([T.batch_indices(s, t, n, bs, device) for s in seeds])
        x, y = data.x_train[idx], y_train[rows_of, idx]
        if spec.get("random_labels") == "fresh":
            y = torch.stack([T.fresh_labels(s, t, idx.shape[1], data.n_classes, device) for s in seeds])
        if aug:
            x = torch.stack([augment(x[e], s, t, **aug) for e, s in enumerate(seeds)])
        optimizer.zero_grad(set_to_none=True)
        out = ens.forward(x)
        losses = torch.stack([loss_fn(out[e], y[e]) for e in range(E)])
        losses.sum().backward()
        losses = losses.detach()
        bad = torch.where((bad < 0) & ~torch.isfinite(losses), t, bad)
        ctxs = probes_before(t, x, y, losses, lr)
        optimizer.step()
        for c in constraints:
            for e in range(E):
                c(ens.aliases[e])
        if ctxs:
            probes_after(ctxs, lr)
        if t % tr.get("log_every", 10) == 0 or t == steps - 1:
            bad_l, loss_l = bad.tolist(), losses.tolist()
            acc_l = (out.detach().argmax(-1) == y).float().mean(1).tolist() if y.dim() == 2 else None
            for e in active():
                if bad_l[e] >= 0:
                    status[e], first_bad[e] = "diverged", bad_l[e]
                    rows[e].append((bad_l[e], "diverged", 1.0))
                    continue
                rows[e] += [(t, "batch_loss", loss_l[e]), (t, "lr", lr)]
                if acc_l is not None:
                    rows[e].append((t, "batch_acc", acc_l[e]))
                trackers[e].log({"batch_loss": loss_l[e], "lr": lr}, step=t)
        if active() and ((t + 1) % tr.get("eval_every", 100) == 0 or t + 1 == steps):
            log_eval(t + 1)
        if ckpt is not None and (t + 1) % tr.get("ckpt_every", 500) == 0 and t + 1 < steps:
            atomic_torch_save({"spec_key": spec_key, "seeds": seeds, "step": t + 1, "state": ens.state(),
                               "optimizer": optimizer.state_dict(), "gens": [g.get_state() for g in gens],
                               "rng": torch.get_rng_state(), "rows": rows, "status": status,
                               "first_bad": first_bad, "bad": bad,
                               "wall_s": wall_before + time.perf_counter() - t0}, ckpt)

    elapsed = time.perf_counter() - t0
    wall = wall_before + elapsed
    summaries = []
    for e, seed in enumerate(seeds):
        final = {}
        if status[e] == "ok":
            for _, m, v in rows[e]:
                if m in ("train_loss", "train_acc", "test_loss", "test_acc"):
                    final[m] = v
        summaries.append({
            "study": spec["study"], "version": spec["version"], "variant": spec["variant"], "seed": seed,
            "keys": spec.get("keys", {}), "status": status[e],
            "diverged_step": first_bad[e] if status[e] == "diverged" else None,
            "steps": steps, "final": final, "wall_s": wall / E,
            "steps_per_s": (steps - start_step) * E / max(elapsed, 1e-9) if status[e] == "ok" else None,
            "device": str(device), "threads": torch.get_num_threads(), "dtype": str(dtype).replace("torch.", ""),
            "amp": False, "augment": aug or None, "started": started, "finished": now(), "resumed_from": start_step or None,
            "wandb": {"mode": trackers[e].mode, "dir": trackers[e].run_dir},
            "slurm_job_id": T.os.environ.get("SLURM_JOB_ID"),
            "ensemble": {"size": E, "path": ens.path, "job_wall_s": wall},
        })
        trackers[e].summary({"status": status[e], **final})
        trackers[e].finish()
    if ckpt is not None:  # keep the finished job until every output is written (a kill may come later)
        atomic_torch_save({"spec_key": spec_key, "seeds": seeds, "done": True, "rows": rows,
                           "summaries": summaries}, ckpt)
    return [T._finish(spec, s, rows[e], summaries[e], out_dir) for e, s in enumerate(seeds)]
