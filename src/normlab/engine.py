"""The training engine: one loop, every seed of one variant trained together (batched).

Knows nothing of any study. A run spec (JSON, built by the study module and passed by the
Snakemake rule) says what to train:

    {study, variant, key, keys: {...}, seeds: [0, 1, ...], data: "resources/data/....pt",
     model: {...}, optimizer: {...}, lr: 0.1, schedule: {...}, train: {...}, probes: [...],
     loss: "cross_entropy" | "mse", random_labels: false | true | "fresh", constraints: [],
     device: "auto", numerics: 2, wandb: {...}}

``key`` names the run (``<variant>/<block>``, the folder ``normlab.plan`` names by the spec's hash);
``numerics`` is the numerics version the spec was planned for (``normlab.numerics``): a spec planned
for other numerics is refused.

The seeds of a spec are the members of one stacked model (``normlab.ensemble.StackedModel``):
each member is the model ``torch.manual_seed(seed); build_model(...)`` gives, with its own data
order (``batch_indices``), its own noise stream, BN statistics, labels, probes, divergence and
W&B run. One seed is the same loop with one member (batching is the only path). A member's numbers
do not depend on which other seeds share its job (tests/test_ensemble.py).

Per seed it writes ``<out>/seed<k>/metrics.parquet`` (tidy: step, metric, value + the run's keys)
and ``<out>/seed<k>/summary.json``, both atomically (``write_run``), and ``<out>/run.json`` (the spec
and the engine's numerics version). Checkpoints: one atomic file
``<ckpt_dir>/ensemble.pt`` every ``train.ckpt_every`` steps; a rerun resumes from it and gives the
same numbers as an uninterrupted run. A member whose loss becomes non-finite ends as ``diverged``
(its step recorded) while the others train on.

Probes act on one ``nn.Module`` per member (a copy holding the member's weights, buffers and
gradients, with an optimizer holding its slice of the optimizer state) through ``ProbeContext``;
``call_probes`` snapshots and restores model, optimizer and RNG around every probe (``Snapshot``),
so training is bit-identical with and without probes.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import sys
import time
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from . import data as data_mod
from .accel import Precision, augment, to_device
from .ensemble import StackedModel, member_optimizer
from .io import atomic_torch_save, now, package_versions, write_json, write_parquet
from .models import build_model
from .numerics import NUMERICS
from .optim import CONSTRAINTS, build_optimizer
from .probes import ProbeContext, build_probe
from .schedules import build_schedule
from .startup import lean_optimizers, optimizer_step, process_age
from .tracking import artifact_name, label_tags, labels, run_artifact, run_files, run_id, tracker, train_group
from .tracking import settings as tracking_settings

LOSSES = {"cross_entropy": F.cross_entropy, "mse": F.mse_loss}


def config_hash(obj) -> str:
    """``normlab.config.config_hash`` (same value), without importing the config validator at start-up."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:8]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: device 'cuda' requested in the config but no CUDA device is available")
    return torch.device(name)


@lru_cache(maxsize=256)
def _epoch_perm(seed: int, epoch: int, n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(1_000_003 * (seed + 1) + epoch)
    return torch.randperm(n, generator=g)


def batch_indices(seed: int, step: int, n: int, batch_size: int, device) -> torch.Tensor:
    """The sample indices of step ``step``: a fresh permutation per epoch, from (seed, epoch) alone.

    Stateless, so a resumed run draws exactly the batches an uninterrupted one would (the epoch's
    permutation is cached: one draw per epoch, not per step).
    """
    per_epoch = max(n // batch_size, 1)
    epoch, k = divmod(step, per_epoch)
    return to_device(_epoch_perm(seed, epoch, n)[k * batch_size:(k + 1) * batch_size], device)


def random_labels(y: torch.Tensor, n_classes: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(7919 * (seed + 1))
    return torch.randint(n_classes, y.shape, generator=g).to(y.device)


def fresh_labels(seed: int, step: int, size: int, n_classes: int, device) -> torch.Tensor:
    """Labels drawn anew at every step (``random_labels: fresh``): the data never repeats, so the
    gradient never vanishes. Stateless, from (seed, step) alone, so resume is exact."""
    g = torch.Generator().manual_seed(104_729 * (seed + 1) + 7 * step + 3)
    return to_device(torch.randint(n_classes, (size,), generator=g), device)


def _save_optimizer(optimizer) -> tuple:
    state = {p: {k: (v.clone() if torch.is_tensor(v) else copy.deepcopy(v)) for k, v in st.items()}
             for p, st in optimizer.state.items()}
    groups = [{k: copy.deepcopy(v) for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
    return state, groups


def _restore_optimizer(optimizer, saved: tuple) -> None:
    state, groups = saved
    optimizer.state.clear()
    for p, st in state.items():
        optimizer.state[p] = {k: (v.clone() if torch.is_tensor(v) else copy.deepcopy(v)) for k, v in st.items()}
    for g, s in zip(optimizer.param_groups, groups):
        g.update(copy.deepcopy(s))


class Snapshot:
    """Model (params, buffers, grads), optimizer (state, hyperparameters) and RNG state, to undo
    whatever a probe does (in place: the model's and optimizer's tensors keep their identity)."""

    def __init__(self, model, optimizer):
        self.model, self.optimizer = model, optimizer
        self.params, self.buffers = list(model.parameters()), list(model.buffers())
        self.values = [t.detach().clone() for t in self.params + self.buffers]
        self.grads = [None if p.grad is None else p.grad.detach().clone() for p in self.params]
        self.opt = _save_optimizer(optimizer)
        self.rng = torch.get_rng_state()
        self.cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
        self.training = model.training

    def restore(self):
        with torch.no_grad():
            for t, v in zip(self.params + self.buffers, self.values):
                t.copy_(v)
            for p, g in zip(self.params, self.grads):
                p.grad = None if g is None else g.clone()
        _restore_optimizer(self.optimizer, self.opt)
        torch.set_rng_state(self.rng)
        if self.cuda_rng is not None:
            torch.cuda.set_rng_state_all(self.cuda_rng)
        self.model.train(self.training)


def by_members(probe) -> bool:
    """A read-only probe that measures every member in one call (``before_members``/``after_members``)."""
    return probe.read_only and hasattr(probe, "before_members")


def call_probes(probes, hook: str, ctx: ProbeContext, rows: list, skip=()) -> None:
    """Call ``hook`` ("before_step" | "after_step") of the due probes (but those in ``skip``); append
    (step, metric, value) rows; restore model, optimizer and RNG after each call (not needed by
    ``read_only`` probes)."""
    due = [p for j, p in enumerate(probes) if p.due(ctx.step) and j not in skip]
    if not due:
        return
    snap = None if all(p.read_only for p in due) else Snapshot(ctx.model, ctx.optimizer)
    for p in due:
        for k, v in getattr(p, hook)(ctx).items():
            rows.append((ctx.step, k, float(v)))
        if snap is not None:
            snap.restore()


class Progress:
    """Progress lines on stderr (the job's log: ``tail -f``): at least every 10% of the steps and every
    ``every_s`` seconds, with step, mean batch loss and accuracy of the training seeds, steps/s, ETA and the
    training loop's throughput (images/s; on CUDA also the peak GPU memory, ``throughput``).
    The loop calls ``line`` with numbers it has already read back (one extra read when a line falls
    between two logging steps: at most ~10 per job plus one per ``every_s``)."""

    def __init__(self, label: str, steps: int, start_step: int = 0, every_s: float = 30.0, out=None):
        self.label, self.steps, self.start, self.every_s, self.out = label, steps, start_step, every_s, out
        self.chunk = max(steps // 10, 1)
        self.next_step = (start_step // self.chunk + 1) * self.chunk
        self.t0 = self.last = time.perf_counter()

    def time_due(self) -> bool:
        return time.perf_counter() - self.last >= self.every_s

    def line(self, done: int, losses: list, accs: list | None = None, tail: str = "") -> float:
        """Print one line for ``done`` steps (``tail`` appended, e.g. throughput); return the steps/s of this
        process's training so far."""
        now_t = time.perf_counter()
        rate = (done - self.start) / max(now_t - self.t0, 1e-9)
        eta = (self.steps - done) / rate if rate > 0 else float("inf")

        def mean(v):
            v = [x for x in v if x == x and abs(x) != float("inf")]
            return sum(v) / len(v) if v else float("nan")

        acc = f" acc {mean(accs):.3f}" if accs else ""
        eta_s = "?" if eta == float("inf") else time.strftime("%H:%M:%S", time.gmtime(eta)) if eta < 86400 \
            else f"{eta / 86400:.1f} d"
        print(f"[progress] {self.label}: step {done}/{self.steps} ({100 * done / max(self.steps, 1):.0f}%) "
              f"loss {mean(losses):.4g}{acc} | {rate:.1f} steps/s | ETA {eta_s}{tail}",
              file=self.out or sys.stderr, flush=True)
        self.last = now_t
        self.next_step = (done // self.chunk + 1) * self.chunk
        return rate


def throughput(rate: float, batch_size: int, members: int, device) -> dict:
    """Training throughput at a progress point: images/s through the model (``members`` seeds, each ``batch_size``
    images per step, at ``rate`` steps/s) and, on CUDA, the peak GPU memory allocated so far (GiB). Cheap: one
    host-side counter read, no device sync."""
    out = {"images_per_s": rate * batch_size * members}
    if torch.device(device).type == "cuda":
        out["gpu_mem_peak_gib"] = torch.cuda.max_memory_allocated(device) / 2 ** 30
    return out


def throughput_text(tp: dict) -> str:
    """' | 12,345 img/s[ | GPU mem peak 1.23 GiB]': appended to the progress line."""
    txt = f" | {tp['images_per_s']:,.0f} img/s"
    if "gpu_mem_peak_gib" in tp:
        txt += f" | GPU mem peak {tp['gpu_mem_peak_gib']:.2f} GiB"
    return txt


def metrics_frame(spec: dict, seed: int, rows):
    import pandas as pd

    df = pd.DataFrame(rows, columns=["step", "metric", "value"])
    df["step"] = df["step"].astype("int64")
    df = df.assign(study=spec["study"], variant=spec["variant"], seed=seed)
    for k, v in spec.get("keys", {}).items():
        df[k] = v
    return df


def write_run(spec: dict, seed: int, rows, summary: dict, out_dir: Path) -> dict:
    """Write ``<out_dir>/seed<seed>/{metrics.parquet,summary.json}`` atomically; return the summary."""
    d = Path(out_dir) / f"seed{seed}"
    write_parquet(metrics_frame(spec, seed, rows), d / "metrics.parquet")
    write_json({**summary, "spec": spec, "packages": package_versions(("torch",))}, d / "summary.json")
    return summary


def _member_losses(loss_name: str, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-member mean loss of stacked outputs ``out`` (E, B, K) against ``y`` (E, B[, K])."""
    if loss_name == "cross_entropy" and y.dim() == 2:
        per = F.cross_entropy(out.flatten(0, 1), y.flatten(), reduction="none")
        return per.view(out.shape[0], -1).mean(1)
    loss_fn = LOSSES[loss_name]
    return torch.stack([loss_fn(out[e], y[e]) for e in range(out.shape[0])])


EVAL_CHUNK = {"members": 256}  # evaluation batch per path (images: small batches stay in cache); else 4096


@torch.no_grad()
def evaluate_members(ens: StackedModel, x, y, loss_name: str, members, chunk: int | None = None, prec=None):
    """Per member e: (mean loss, accuracy) on (x, y[e]); ``y`` is (E, N) or (E, N, K). One sync."""
    chunk = chunk or EVAL_CHUNK.get(ens.path, 4096)
    was = ens.training
    ens.training = False
    prec = prec or Precision(False, x.device)
    E = ens.size
    total = torch.zeros(E, dtype=torch.float64, device=x.device)
    correct = torch.zeros(E, dtype=torch.long, device=x.device)
    cls = y.dim() == 2
    for i in range(0, len(x), chunk):
        with prec.autocast():
            out = ens.forward(x[i:i + chunk], shared=True)
        out = out.float() if out.dtype == torch.bfloat16 else out
        yc = y[:, i:i + chunk]
        total += _member_losses(loss_name, out, yc).double() * yc.shape[1]
        if cls:
            correct += (out.argmax(-1) == yc).sum(1)
    ens.training = was
    tl, cl = (total / len(x)).tolist(), correct.tolist()
    return {e: (tl[e], cl[e] / len(x) if cls else float("nan")) for e in members}


class Job:
    """One batched training job's state: the stacked members, optimizer, schedule, labels, and per member
    its metric rows, status and first non-finite step. The loop in ``train`` drives it step by step."""

    def __init__(self, spec: dict, data, device, force_vmap: bool = False, conv_path: str | None = None):
        self.spec, self.data, self.device = spec, data, device
        tr = spec["train"]
        self.dtype = torch.float64 if tr.get("dtype") == "float64" else torch.float32
        self.steps, self.bs = tr["steps"], tr["batch_size"]
        self.log_every, self.eval_every = tr.get("log_every", 10), tr.get("eval_every", 100)
        self.ckpt_every = tr.get("ckpt_every", 500)
        self.seeds = list(spec["seeds"])
        E = self.E = len(self.seeds)
        self.loss_name = spec.get("loss", "cross_entropy")
        self.loss_fn = LOSSES[self.loss_name]
        self.ckpt_key = config_hash({k: v for k, v in spec.items() if k not in ("wandb", "seeds")})
        self.constraints = [CONSTRAINTS[c] for c in spec.get("constraints", [])]
        self.aug = {k: v for k, v in (tr.get("augment") or {}).items() if v}  # on-device flips / crops, per member
        self.prec = Precision(tr.get("amp", False), device, self.dtype)  # bf16 autocast, fp32 norm: CUDA only
        lean_optimizers()

        # Members exactly as a one-seed run builds them; each keeps the RNG state it would continue from.
        models, self.gens, self.probes = [], [], []
        for seed in self.seeds:
            torch.manual_seed(seed)
            m = build_model(spec["model"], data.input_shape, data.n_classes, dtype=self.dtype).to(device)
            self.probes.append([build_probe(p) for p in spec.get("probes", [])])
            for c in self.constraints:
                c(m)
            models.append(m)
            self.gens.append(torch.Generator(device).set_state(torch.get_rng_state() if device.type == "cpu"
                                                               else torch.cuda.get_rng_state(device)))
        torch.manual_seed(1_000_003 * E + sum(self.seeds))  # the job-level stream (vmap path's noise, probes)
        self.ens = StackedModel(models, self.gens, force_vmap=force_vmap, fp32_norm=self.prec.amp, conv_path=conv_path)
        self.optimizer = build_optimizer(self.ens.trainable(), spec["optimizer"], spec["lr"])
        self.lr_at = build_schedule(spec.get("schedule"), spec["lr"], spec["optimizer"])

        self.n = len(data.x_train)
        rl = spec.get("random_labels")
        self.fresh = rl == "fresh"
        if rl and not self.fresh:
            self.y_train = torch.stack([random_labels(data.y_train, data.n_classes, s) for s in self.seeds])
        else:
            self.y_train = data.y_train.unsqueeze(0).expand(E, *data.y_train.shape)
        n_eval = min(tr.get("eval_train_max", 5000), self.n)
        self.x_eval, self.y_eval = data.x_train[:n_eval], self.y_train[:, :n_eval]
        self.y_test = data.y_test.unsqueeze(0).expand(E, *data.y_test.shape)
        self.rows_of = torch.arange(E, device=device).unsqueeze(1)

        self.rows: list[list] = [[] for _ in self.seeds]
        self.status, self.first_bad = ["ok"] * E, [-1] * E
        self.bad = torch.full((E,), -1, dtype=torch.long, device=device)  # first non-finite step, on the device
        self.start_step, self.wall_before = 0, 0.0
        self.spent = {"probes_s": 0.0, "evals_s": 0.0}  # this process's loop time in probes and in evaluations

    def active(self) -> list[int]:
        return [e for e in range(self.E) if self.status[e] == "ok"]

    def state(self, step: int, wall: float) -> dict:
        """A checkpoint of the job after ``step`` steps (everything a resumed job continues from)."""
        return {"spec_key": self.ckpt_key, "seeds": self.seeds, "step": step, "state": self.ens.state(),
                "optimizer": self.optimizer.state_dict(), "gens": [g.get_state() for g in self.gens],
                "rng": torch.get_rng_state(), "rows": self.rows, "status": self.status,
                "first_bad": self.first_bad, "bad": self.bad, "wall_s": wall}

    def restore(self, ck: dict) -> None:
        with torch.no_grad():
            for k, v in self.ens.state().items():
                v.copy_(ck["state"][k])
        self.optimizer.load_state_dict(ck["optimizer"])
        for g, st in zip(self.gens, ck["gens"]):
            g.set_state(st)
        torch.set_rng_state(ck["rng"])
        self.rows, self.status, self.first_bad, self.bad = ck["rows"], ck["status"], ck["first_bad"], ck["bad"]
        self.start_step, self.wall_before = ck["step"], ck["wall_s"]
        print(f"[train] seeds {self.seeds}: resumed from step {self.start_step}", file=sys.stderr)

    def set_lr(self, t: int) -> float:
        lr = self.lr_at(t)
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        return lr

    def batch(self, t: int):
        """Step t's inputs and labels, (E, B, ...) and (E, B): each member's own, from (seed, step) alone."""
        idx = torch.stack([batch_indices(s, t, self.n, self.bs, self.device) for s in self.seeds])
        x, y = self.data.x_train[idx], self.y_train[self.rows_of, idx]
        if self.fresh:
            y = torch.stack([fresh_labels(s, t, idx.shape[1], self.data.n_classes, self.device) for s in self.seeds])
        if self.aug:
            x = torch.stack([augment(x[e], s, t, **self.aug) for e, s in enumerate(self.seeds)])
        return x, y

    def forward_backward(self, t: int, x, y):
        """The members' outputs and losses on their batches, gradients accumulated; a member's first
        non-finite loss recorded on the device (no host sync)."""
        self.optimizer.zero_grad(set_to_none=True)
        with self.prec.autocast():
            out = self.ens.forward(x)
        losses = _member_losses(self.loss_name, out.float() if self.prec.amp else out, y)
        losses.sum().backward()
        losses = losses.detach()
        self.bad = torch.where((self.bad < 0) & ~torch.isfinite(losses), t, self.bad)
        return out, losses

    def update(self) -> None:
        optimizer_step(self.optimizer)
        for c in self.constraints:
            for e in range(self.E):
                c(self.ens.aliases[e])

    def read_back(self, out, y, losses) -> tuple[list, list, list | None]:
        """(first non-finite step, batch loss, batch accuracy or None) per member, read to the host."""
        acc = (out.detach().argmax(-1) == y).float().mean(1).tolist() if y.dim() == 2 else None
        return self.bad.tolist(), losses.tolist(), acc

    def log_batch(self, t: int, lr: float, read, trackers: "RunTrackers") -> None:
        """Rows of a logging step; a member whose loss went non-finite ends as diverged (its step kept)."""
        bad_l, loss_l, acc_l = read
        for e in self.active():
            if bad_l[e] >= 0:
                self.status[e], self.first_bad[e] = "diverged", bad_l[e]
                self.rows[e].append((bad_l[e], "diverged", 1.0))
                continue
            logged = [(t, "batch_loss", loss_l[e]), (t, "lr", lr)]
            if acc_l is not None:
                logged.append((t, "batch_acc", acc_l[e]))
            self.rows[e] += logged
            trackers.log(e, {m: v for _, m, v in logged}, t)

    def evaluate(self, t: int, trackers: "RunTrackers") -> None:
        """Train (up to ``eval_train_max`` samples) and test loss and accuracy of the training members."""
        t_in = time.perf_counter()
        before = [len(r) for r in self.rows]
        for split, (x, y) in {"train": (self.x_eval, self.y_eval), "test": (self.data.x_test, self.y_test)}.items():
            for e, (loss, acc) in evaluate_members(self.ens, x, y, self.loss_name, self.active(), prec=self.prec).items():
                self.rows[e].append((t, f"{split}_loss", loss))
                if y.dim() == 2:
                    self.rows[e].append((t, f"{split}_acc", acc))
        trackers.log_new(self, t, before)
        self.spent["evals_s"] += time.perf_counter() - t_in

    def weights(self) -> list[dict]:
        """Each member's final state dict as its one-seed model holds it (CPU tensors)."""
        return [{k: v.detach().cpu() for k, v in self.ens.member(e).state_dict().items()} for e in range(self.E)]

    def summaries(self, started: str, startup_s, elapsed: float, trackers: "RunTrackers") -> list[dict]:
        wall = self.wall_before + elapsed
        tp_run = throughput((self.steps - self.start_step) / max(elapsed, 1e-9), self.bs, self.E, self.device)
        out = []
        for e, seed in enumerate(self.seeds):
            ok = self.status[e] == "ok"
            final = {m: v for _, m, v in self.rows[e] if m in ("train_loss", "train_acc", "test_loss", "test_acc")} \
                if ok else {}
            out.append({
                "study": self.spec["study"], "key": self.spec["key"], "variant": self.spec["variant"], "seed": seed,
                "keys": self.spec.get("keys", {}), "status": self.status[e],
                "diverged_step": None if ok else self.first_bad[e],
                "steps": self.steps, "final": final, "wall_s": wall / self.E,
                "steps_per_s": (self.steps - self.start_step) * self.E / max(elapsed, 1e-9) if ok else None,
                **tp_run, **({} if ok else {"images_per_s": None}),
                "device": str(self.device), "threads": torch.get_num_threads(),
                "dtype": str(self.dtype).replace("torch.", ""), "amp": self.prec.amp, "augment": self.aug or None,
                "started": started, "finished": now(), "resumed_from": self.start_step or None,
                "startup_s": startup_s, "wandb": trackers.info(e),
                "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
                "ensemble": {"size": self.E, "path": self.ens.path, "job_wall_s": wall},
                # this process's training loop: its wall time, and the part of it spent in probes and evaluations
                "loop": {"wall_s": elapsed, **self.spent},
            })
        return out


class Checkpoint:
    """One atomic file ``<ckpt_dir>/ensemble.pt``: the job every ``train.ckpt_every`` steps, then the finished
    job (rows, summaries, weights) until every output is written. Read back only for the same spec and seeds."""

    def __init__(self, ckpt_dir: Path | None, key: str, seeds: list[int]):
        self.path = Path(ckpt_dir) / "ensemble.pt" if ckpt_dir is not None else None
        self.key, self.seeds = key, seeds

    def load(self, device) -> dict | None:
        if self.path is None or not self.path.exists():
            return None
        ck = torch.load(self.path, map_location=device, weights_only=False)
        return ck if ck["spec_key"] == self.key and ck["seeds"] == self.seeds else None

    def save(self, state: dict) -> None:
        if self.path is not None:
            atomic_torch_save(state, self.path)

    def save_done(self, rows, summaries, weights) -> None:
        self.save({"spec_key": self.key, "seeds": self.seeds, "done": True, "rows": rows, "summaries": summaries,
                   "weights": weights})


class RunTrackers:
    """One W&B run per seed, its id from (study, run key, seed): a rerun resumes it, and a run reused by other
    configs and versions is one W&B run. Offline runs go under the run folder. The config and version that
    trained it (from the W&B settings, never the spec) are its group's first part, its tags and its config
    ``normlab``; ``make sync`` adds those of every later reader (``tracking.label_runs``)."""

    def __init__(self, spec: dict, seeds: list[int], out_dir: Path):
        w = self.settings = {"dir": str(out_dir), **tracking_settings(spec)}  # offline runs: the run folder
        self.spec, self.seeds = spec, seeds
        self.block = spec["key"].rsplit("/", 1)[-1]
        self.ids = [run_id(spec["study"], spec["key"], s) for s in seeds]
        lab = labels(w, spec["study"])
        self.runs = [tracker(w, group=train_group(spec["study"], spec["variant"], lab),
                             name=f"{spec['variant']}/seed{s}", job_type="train",
                             config={**spec, "seed": s, **({"normlab": lab} if lab else {})}, dir=w.get("dir", out_dir),
                             tags=[spec["study"], spec["variant"], self.block, *label_tags(lab)], id=i)
                     for s, i in zip(seeds, self.ids)]
        self.on = any(t.run is not None for t in self.runs)
        if self.on and spec.get("data"):  # lineage: the dataset artifact prepare_data logged
            for tk in (tk for tk in self.runs if hasattr(tk, "use_artifact")):  # (test doubles may have none)
                tk.use_artifact(Path(spec["data"]).stem, "dataset", {Path(spec["data"]).name: spec["data"]})

    def replay(self, rows: list[list]) -> None:
        """A resumed run (same id) first logs the checkpoint's history, so that its W&B run alone holds every
        step, continuous: a killed process's W&B records are lost or partial (its folder is superseded:
        ``make sync`` uploads the newest folder of each run id). Online, W&B keeps the steps the server
        already has (the same numbers: resume is exact) and drops the repeats."""
        if not self.on:
            return
        for e, tk in enumerate(self.runs):
            by_step: dict[int, dict] = {}
            for u, m, v in sorted(rows[e], key=lambda r: r[0]):
                if m != "diverged":
                    by_step.setdefault(u, {})[m] = v
            for u, metrics in by_step.items():
                tk.log(metrics, step=u)

    def log(self, e: int, metrics: dict, step: int) -> None:
        if self.on:
            self.runs[e].log(metrics, step=step)

    def log_new(self, job: Job, t: int, before: list[int]) -> None:
        """Log the rows the training members gained since ``before`` (row counts)."""
        if self.on:
            for e in job.active():
                if len(job.rows[e]) > before[e]:
                    self.runs[e].log({m: v for _, m, v in job.rows[e][before[e]:]}, step=t)

    def progress(self, members: list[int], values: dict) -> None:
        """Live in each run's summary (its history holds exactly the metrics file's rows)."""
        if self.on:
            for e in members:
                self.runs[e].summary(values)

    def info(self, e: int) -> dict:
        return {"mode": self.runs[e].mode, "dir": self.runs[e].run_dir, "run_id": self.ids[e]}

    def finish(self, out_dir: Path, summaries: list[dict], weights) -> None:
        """Each seed's outputs as artifacts (the analysis run uses the "run" ones), then the run ends."""
        spec = self.spec
        for e, s in enumerate(self.seeds):
            d, tk, summ = Path(out_dir) / f"seed{s}", self.runs[e], summaries[e]
            tk.summary({"status": summ["status"], **summ["final"]})
            if tk.run is not None and hasattr(tk, "log_artifact"):  # (test doubles may have no artifacts)
                tk.log_artifact(run_artifact(spec["study"], self.block, spec["variant"], s), "run",
                                run_files(d), metadata={"status": summ["status"], **summ["final"]})
                if weights is not None:
                    tk.log_artifact(artifact_name("model", spec["study"], self.block, spec["variant"], f"seed{s}"),
                                    "model", {"weights.pt": d / "weights.pt"},
                                    metadata={"model": spec["model"], "seed": s, "status": summ["status"]})
            tk.finish()


class Probing:
    """The probes of a job, called around each update. A probe sees one member as a one-seed loop holds it
    (``ProbeContext``): a copy of its model and optimizer, or its own tensors as views when every due probe
    only reads. Read-only probes with ``before_members``/``after_members`` measure all members in one call
    (one instance, ``job.probes[0]``'s, serves every member)."""

    def __init__(self, job: Job):
        self.job = job
        self.together = {j for j, p in enumerate(job.probes[0]) if by_members(p)}
        self.models: dict[int, nn.Module] = {}
        self.opts: dict[int, torch.optim.Optimizer] = {}

    def member_opt(self, e: int, model, lr):
        """Member e's optimizer (built once, its state refreshed from the stacked optimizer's slice)."""
        job = self.job
        self.opts[e] = member_optimizer(job.ens, job.optimizer, model, e, job.spec, lr, into=self.opts.get(e))
        return self.opts[e]

    def before(self, t: int, x, y, losses, lr) -> dict | None:
        """Per member: the due probes' ``before_step``; returns the contexts for ``after`` (None: none due)."""
        job = self.job
        due = [p for p in job.probes[0] if p.due(t)]
        if not due:
            return None
        read_only = all(p.read_only for p in due)
        rng, ctxs = torch.get_rng_state(), {}
        for e in job.active():
            if read_only:  # the member's tensors themselves, as views (nothing copied)
                model, opt = job.ens.view(e), None
            else:  # one model copy per member, made once and refreshed in place (deepcopy is slow)
                model = (job.ens.copy_into(e, self.models[e], grads=True) if e in self.models
                         else job.ens.member(e, grads=True))
                self.models[e] = model
                opt = self.member_opt(e, model, lr)
            ctxs[e] = ProbeContext(t, model, opt, job.loss_fn, x[e], y[e], lr, job.data, job.spec, losses[e])
            call_probes(job.probes[e], "before_step", ctxs[e], job.rows[e], skip=self.together)
        self.members_at_once("before_members", ctxs)
        torch.set_rng_state(rng)
        return ctxs

    def after(self, ctxs: dict, lr) -> None:
        job = self.job
        rng = torch.get_rng_state()
        for e, ctx in ctxs.items():  # the same model object, now holding w_{t+1} (grads kept)
            if ctx.optimizer is not None:  # a copy (a view already holds w_{t+1})
                job.ens.copy_into(e, ctx.model)
            ctx.optimizer = self.member_opt(e, ctx.model, lr) if ctx.optimizer is not None else None
            call_probes(job.probes[e], "after_step", ctx, job.rows[e], skip=self.together)
        self.members_at_once("after_members", ctxs)
        torch.set_rng_state(rng)

    def members_at_once(self, hook: str, ctxs: dict) -> None:
        step = next(iter(ctxs.values())).step if ctxs else None
        for j in sorted(self.together):
            if step is not None and self.job.probes[0][j].due(step):
                for e, metrics in getattr(self.job.probes[0][j], hook)(ctxs).items():
                    self.job.rows[e] += [(step, k, float(v)) for k, v in metrics.items()]


def report_progress(job: Job, progress: Progress, trackers: RunTrackers, t: int, read) -> None:
    """A progress line (and the W&B runs' live summary) after step t."""
    _, loss_l, acc_l = read
    members = job.active()
    tp = throughput((t + 1 - progress.start) / max(time.perf_counter() - progress.t0, 1e-9), job.bs,
                    len(members), job.device)
    rate = progress.line(t + 1, [loss_l[e] for e in members],
                         [acc_l[e] for e in members] if acc_l is not None else None, throughput_text(tp))
    trackers.progress(members, {"progress/step": t + 1, "progress/steps_per_s": rate,
                                "progress/eta_s": (job.steps - t - 1) / rate if rate > 0 else None,
                                **{f"progress/{k}": v for k, v in tp.items()}})


def write_outputs(job: Job, out_dir: Path, rows, summaries, weights) -> list[dict]:
    """Each seed's weights, metrics and summary, and the run's record (run.json: its spec, the numerics)."""
    for e, s in enumerate(job.seeds):
        if weights is not None:
            (out_dir / f"seed{s}").mkdir(parents=True, exist_ok=True)
            atomic_torch_save(weights[e], out_dir / f"seed{s}" / "weights.pt")
    written = [write_run(job.spec, s, rows[e], summaries[e], out_dir) for e, s in enumerate(job.seeds)]
    write_json({"spec": job.spec, "numerics": NUMERICS, "seeds": job.seeds}, out_dir / "run.json")
    return written


def train(spec: dict, data, device, out_dir: Path, ckpt_dir: Path | None = None,
          force_vmap: bool = False, conv_path: str | None = None) -> list[dict]:
    """Train every seed of ``spec`` (batched); write each seed's outputs; return the summaries. ``conv_path``:
    how image models run their members (``normlab.ensemble.CONV_PATHS``; default: the device's), for the
    benchmark's side-by-side runs."""
    out_dir = Path(out_dir)
    job = Job(spec, data, device, force_vmap, conv_path)
    ckpt = Checkpoint(ckpt_dir, job.ckpt_key, job.seeds)
    saved = ckpt.load(device)
    if saved is not None and saved.get("done"):  # killed after training, before every output was written
        return write_outputs(job, out_dir, saved["rows"], saved["summaries"], saved.get("weights"))
    if saved is not None:
        job.restore(saved)
    trackers = RunTrackers(spec, job.seeds, out_dir)
    if job.start_step:
        trackers.replay(job.rows)
    probing = Probing(job) if spec.get("probes") else None
    progress = Progress(f"{spec['study']}/{spec['variant']} seeds {job.seeds}", job.steps, job.start_step)

    startup_s = process_age()  # process start -> training starts (imports, data, models, W&B)
    t0, started = time.perf_counter(), now()
    job.ens.training = True
    if job.start_step == 0:
        if hasattr(job.lr_at, "init_optimizer_state"):  # e.g. the exponential schedules' initial momentum
            job.lr_at.init_optimizer_state(job.optimizer)
        job.evaluate(0, trackers)
    for t in range(job.start_step, job.steps):
        if not job.active():
            break
        lr = job.set_lr(t)
        x, y = job.batch(t)
        out, losses = job.forward_backward(t, x, y)
        ctxs = None
        if probing is not None:
            t_in, before = time.perf_counter(), [len(r) for r in job.rows]
            ctxs = probing.before(t, x, y, losses, lr)
            job.spent["probes_s"] += time.perf_counter() - t_in
        job.update()
        if ctxs:
            t_in = time.perf_counter()
            probing.after(ctxs, lr)
            trackers.log_new(job, t, before)
            job.spent["probes_s"] += time.perf_counter() - t_in
        read = None
        if t % job.log_every == 0 or t == job.steps - 1:
            read = job.read_back(out, y, losses)
            job.log_batch(t, lr, read, trackers)
        if t + 1 >= progress.next_step or t + 1 == job.steps or progress.time_due():
            report_progress(job, progress, trackers, t, read or job.read_back(out, y, losses))
        if job.active() and ((t + 1) % job.eval_every == 0 or t + 1 == job.steps):
            job.evaluate(t + 1, trackers)
        if (t + 1) % job.ckpt_every == 0 and t + 1 < job.steps:
            ckpt.save(job.state(t + 1, job.wall_before + time.perf_counter() - t0))

    summaries = job.summaries(started, startup_s, time.perf_counter() - t0, trackers)
    # Final weights per seed (W&B setting save_weights, default on): <out>/seed<k>/weights.pt
    weights = job.weights() if trackers.settings.get("save_weights", True) else None
    ckpt.save_done(job.rows, summaries, weights)  # kept until every output is written (a kill may come later)
    written = write_outputs(job, out_dir, job.rows, summaries, weights)
    trackers.finish(out_dir, summaries, weights)
    return written


def run(spec: dict, out: Path, ckpt_dir: Path | None = None, conv_path: str | None = None) -> list[dict]:
    """Load the spec's data, train all its seeds, write their outputs; return the summaries."""
    if spec.get("numerics", NUMERICS) != NUMERICS:
        raise SystemExit(f"error: the spec was planned for numerics version {spec['numerics']}, this engine is "
                         f"version {NUMERICS} (normlab.numerics): plan the run again")
    device = resolve_device(spec.get("device", "auto"))
    dtype = torch.float64 if spec["train"].get("dtype") == "float64" else torch.float32
    data = data_mod.load(spec["data"], device=device, dtype=dtype)
    if ckpt_dir is not None:
        Path(ckpt_dir).mkdir(parents=True, exist_ok=True)
    summaries = train(spec, data, device, Path(out), ckpt_dir, conv_path=conv_path)
    if ckpt_dir is not None:
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    return summaries
