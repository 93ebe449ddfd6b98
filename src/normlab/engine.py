"""The training engine: one loop, every seed of one variant trained together (batched).

Knows nothing of any study. A run spec (JSON, built by the study module and passed by the
Snakemake rule) says what to train:

    {study, variant, key, keys: {...}, seeds: [0, 1, ...], data: "resources/data/....pt",
     model: {...}, optimizer: {...}, lr: 0.1, schedule: {...}, train: {...}, probes: [...],
     loss: "cross_entropy" | "mse", random_labels: false | true | "fresh", constraints: [],
     device: "auto", numerics: 1, wandb: {...}}

``key`` names the run (``<variant>/<block>``, the folder ``normlab.plan`` names by the spec's hash);
``numerics`` is the numerics version the spec was planned for (``normlab.numerics``): a spec planned
for other numerics is refused.

The seeds of a spec are the members of one stacked model (``normlab.ensemble.StackedModel``):
each member is the model ``torch.manual_seed(seed); build_model(...)`` gives, with its own data
order (``batch_indices``), its own noise stream, BN statistics, labels, probes, divergence and
W&B run. One seed is the same loop with one member. ``train.ensemble`` is accepted and ignored
(batching is the only path). A member's numbers do not depend on which other seeds share its job
(tests/test_ensemble.py).

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
from .numerics import NUMERICS
from .models import build_model
from .optim import CONSTRAINTS, build_optimizer
from .probes import ProbeContext, build_probe
from .schedules import build_schedule
from .tracking import Tracker, artifact_name, run_artifact, run_files, run_id

LOSSES = {"cross_entropy": F.cross_entropy, "mse": F.mse_loss}


def config_hash(obj) -> str:
    """``normlab.config.config_hash`` (same value), without importing the config validator at start-up."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:8]


def deterministic() -> None:
    """``torch.use_deterministic_algorithms(True, warn_only=True)`` without its import of
    ``torch._inductor`` (which pulls in ``torch._dynamo``: seconds of start-up). The public call also
    sets inductor's flag, which only compiled code reads; the engine compiles nothing.

    Uninitialized memory is not filled with NaN (``torch.utils.deterministic.fill_uninitialized_memory``,
    on by default with deterministic algorithms): no correct op reads it, and filling every ``torch.empty``
    cost a quarter of a small model's training step on CPU (``make bench`` profile)."""
    setter = getattr(torch._C, "_set_deterministic_algorithms", None)
    if setter is None or "torch._inductor.config" in sys.modules:
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        setter(True, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = False  # (imported by torch itself)


def lean_optimizers() -> None:
    """Keep ``torch.optim`` from importing ``torch._dynamo`` (seconds of start-up) on first use.

    Optimizer methods are wrapped by ``torch._compile._disable_dynamo``, which imports torch._dynamo
    on the first call to build ``torch._dynamo.disable(fn)`` and caches it as ``fn.__dynamo_disable``.
    The engine never compiles, so the cache is filled with ``fn`` itself (what the wrapper does when
    dynamo is off). A no-op once torch._dynamo is imported (then the real wrapper is used)."""
    if "torch._dynamo" in sys.modules:
        return
    try:
        from torch._compile import _disable_dynamo

        inner = _disable_dynamo(lambda: None).__code__  # the wrapper's code, shared by every wrapped method
    except (ImportError, AttributeError, TypeError):
        return
    for cls in (torch.optim.Optimizer, torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW):
        for f in vars(cls).values():
            fn = getattr(f, "__wrapped__", None)
            if (fn is not None and getattr(f, "__code__", None) is inner
                    and getattr(fn, "__dynamo_disable", None) is None):
                fn.__dynamo_disable = fn


def optimizer_step(optimizer, lean: bool | None = None) -> None:
    """``optimizer.step()`` without its wrapper's ``import torch._dynamo`` (the wrapper only turns grad
    off and marks a graph break for compiled code): the undecorated step under ``torch.no_grad()``.
    Same update, bitwise; step hooks are not run (the engine registers none). ``lean`` (default: while
    torch._dynamo is not imported) chooses the undecorated step; otherwise the public one runs."""
    lean = "torch._dynamo" not in sys.modules if lean is None else lean
    raw = type(optimizer).step
    while hasattr(raw, "__wrapped__"):  # the profile-hook wrapper, then _use_grad_for_differentiable
        raw = raw.__wrapped__
    if not lean or raw is type(optimizer).step or optimizer.defaults.get("differentiable"):
        optimizer.step()
        return
    with torch.no_grad():
        raw(optimizer)


def process_age() -> float | None:
    """Seconds since this process started (Linux ``/proc``; 10 ms resolution), else None."""
    try:
        fields = Path("/proc/self/stat").read_text().rpartition(")")[2].split()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


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


@torch.no_grad()
def evaluate(model, x, y, loss_fn, chunk: int = 4096, prec: Precision | None = None) -> tuple[float, float]:
    """(mean loss, accuracy) of one ``nn.Module`` on (x, y), in eval mode (for side jobs and probes)."""
    was_training = model.training
    model.eval()
    prec = prec or Precision(False, x.device)
    total = torch.zeros((), dtype=torch.float64, device=x.device)
    correct = torch.zeros((), dtype=torch.long, device=x.device)
    for i in range(0, len(x), chunk):
        with prec.autocast():
            out = model(prec.batch(x[i:i + chunk]))
            total += loss_fn(out, y[i:i + chunk]).double() * len(out)
        if y.dim() == 1:
            correct += (out.argmax(1) == y[i:i + chunk]).sum()
    model.train(was_training)
    return total.item() / len(x), (correct.item() / len(x) if y.dim() == 1 else float("nan"))


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


def wandb_settings(spec: dict, run_dir: Path) -> dict:
    """W&B settings: the spec's, else those the Snakefile exports in NORMLAB_WANDB (kept out of rule
    params so that switching W&B mode does not rerun training). Offline runs go under the run folder."""
    w = spec.get("wandb") or json.loads(os.environ.get("NORMLAB_WANDB", '{"mode": "disabled"}'))
    return {"dir": str(run_dir), **w}


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


@torch.no_grad()
def evaluate_members(ens: StackedModel, x, y, loss_name: str, members, chunk: int = 4096, prec=None):
    """Per member e: (mean loss, accuracy) on (x, y[e]); ``y`` is (E, N) or (E, N, K). One sync."""
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


def train(spec: dict, data, device, out_dir: Path, ckpt_dir: Path | None = None,
          force_vmap: bool = False) -> list[dict]:
    """Train every seed of ``spec`` (batched); write each seed's outputs; return the summaries."""
    out_dir = Path(out_dir)
    tr = spec["train"]
    dtype = torch.float64 if tr.get("dtype") == "float64" else torch.float32
    steps, bs = tr["steps"], tr["batch_size"]
    log_every, eval_every, ckpt_every = tr.get("log_every", 10), tr.get("eval_every", 100), tr.get("ckpt_every", 500)
    seeds = list(spec["seeds"])
    E = len(seeds)
    loss_name = spec.get("loss", "cross_entropy")
    loss_fn = LOSSES[loss_name]
    spec_key = config_hash({k: v for k, v in spec.items() if k not in ("wandb", "seeds")})
    constraints = [CONSTRAINTS[c] for c in spec.get("constraints", [])]
    aug = {k: v for k, v in (tr.get("augment") or {}).items() if v}  # on-device flips / crops, per member
    prec = Precision(tr.get("amp", False), device, dtype)  # bf16 autocast, fp32 normalization: CUDA only
    lean_optimizers()

    # Members exactly as a one-seed run builds them; each keeps the RNG state it would continue from.
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
    torch.manual_seed(1_000_003 * E + sum(seeds))  # the job-level stream (vmap path's noise, probes)
    ens = StackedModel(models, gens, force_vmap=force_vmap, fp32_norm=prec.amp)
    del models
    optimizer = build_optimizer(ens.trainable(), spec["optimizer"], spec["lr"])
    lr_at = build_schedule(spec.get("schedule"), spec["lr"], spec["optimizer"])
    any_probes = bool(spec.get("probes"))

    n = len(data.x_train)
    rl = spec.get("random_labels")
    fresh = rl == "fresh"
    if rl and not fresh:
        y_train = torch.stack([random_labels(data.y_train, data.n_classes, s) for s in seeds])
    else:
        y_train = data.y_train.unsqueeze(0).expand(E, *data.y_train.shape)
    n_eval = min(tr.get("eval_train_max", 5000), n)
    x_eval, y_eval = data.x_train[:n_eval], y_train[:, :n_eval]
    y_test = data.y_test.unsqueeze(0).expand(E, *data.y_test.shape)
    rows_of = torch.arange(E, device=device).unsqueeze(1)

    rows: list[list] = [[] for _ in seeds]
    status, first_bad = ["ok"] * E, [-1] * E
    start_step, wall_before = 0, 0.0
    ckpt = Path(ckpt_dir) / "ensemble.pt" if ckpt_dir is not None else None
    bad = torch.full((E,), -1, dtype=torch.long, device=device)
    if ckpt is not None and ckpt.exists():
        ck = torch.load(ckpt, map_location=device, weights_only=False)
        if ck["spec_key"] == spec_key and ck["seeds"] == seeds:
            if ck.get("done"):
                for e, s in enumerate(seeds):
                    if ck.get("weights"):
                        (out_dir / f"seed{s}").mkdir(parents=True, exist_ok=True)
                        atomic_torch_save(ck["weights"][e], out_dir / f"seed{s}" / "weights.pt")
                written = [write_run(spec, s, ck["rows"][e], ck["summaries"][e], out_dir) for e, s in enumerate(seeds)]
                write_json({"spec": spec, "numerics": NUMERICS, "seeds": seeds}, out_dir / "run.json")
                return written
            with torch.no_grad():
                for k, v in ens.state().items():
                    v.copy_(ck["state"][k])
            optimizer.load_state_dict(ck["optimizer"])
            for g, st in zip(gens, ck["gens"]):
                g.set_state(st)
            torch.set_rng_state(ck["rng"])
            rows, status, first_bad, bad = ck["rows"], ck["status"], ck["first_bad"], ck["bad"]
            start_step, wall_before = ck["step"], ck["wall_s"]
            print(f"[train] seeds {seeds}: resumed from step {start_step}", file=sys.stderr)

    w = wandb_settings(spec, out_dir)
    # One W&B run per seed, its id from (study, run key, seed): a rerun resumes it, and a run reused by
    # other configs and versions is one W&B run.
    key, block = spec["key"], spec["key"].rsplit("/", 1)[-1]
    trackers = [Tracker(mode=w.get("mode", "disabled"), project=w.get("project", "normlab"), entity=w.get("entity"),
                        group=f"{spec['study']}/{spec['variant']}", name=f"{spec['variant']}/seed{s}",
                        job_type="train", config={**spec, "seed": s}, dir=w.get("dir", out_dir),
                        init_timeout=w.get("init_timeout", 20), tags=[spec["study"], spec["variant"], block],
                        id=run_id(spec["study"], key, s))
                for s in seeds]
    tracking = any(t.run is not None for t in trackers)
    if tracking and spec.get("data"):  # lineage: the dataset artifact prepare_data logged
        for tk in (tk for tk in trackers if hasattr(tk, "use_artifact")):  # (test doubles may have none)
            tk.use_artifact(Path(spec["data"]).stem, "dataset", {Path(spec["data"]).name: spec["data"]})
    if tracking and start_step:
        # A resumed run (same id) first logs the checkpoint's history, so that its W&B run alone holds
        # every step, continuous: a killed process's W&B records are lost or partial (its folder is
        # superseded: ``make sync`` uploads the newest folder of each run id). Online, W&B keeps the
        # steps the server already has (the same numbers: resume is exact) and drops the repeats.
        for e in range(E):
            by_step: dict[int, dict] = {}
            for u, m, v in sorted(rows[e], key=lambda r: r[0]):
                if m != "diverged":
                    by_step.setdefault(u, {})[m] = v
            for u, metrics in by_step.items():
                trackers[e].log(metrics, step=u)

    def active():
        return [e for e in range(E) if status[e] == "ok"]

    def log_new(t, before):
        if tracking:
            for e in active():
                if len(rows[e]) > before[e]:
                    trackers[e].log({m: v for _, m, v in rows[e][before[e]:]}, step=t)

    spent = {"probes_s": 0.0, "evals_s": 0.0}  # this process's loop time in probes and in evaluations

    def log_eval(t):
        t_in = time.perf_counter()
        before = [len(r) for r in rows]
        for split, (x, y) in {"train": (x_eval, y_eval), "test": (data.x_test, y_test)}.items():
            for e, (loss, acc) in evaluate_members(ens, x, y, loss_name, active(), prec=prec).items():
                rows[e].append((t, f"{split}_loss", loss))
                if y.dim() == 2:
                    rows[e].append((t, f"{split}_acc", acc))
        log_new(t, before)
        spent["evals_s"] += time.perf_counter() - t_in

    probe_models: dict[int, nn.Module] = {}
    probe_opts: dict[int, torch.optim.Optimizer] = {}

    def member_opt(e, model, lr):
        """Member e's optimizer (built once, its state refreshed from the stacked optimizer's slice)."""
        probe_opts[e] = member_optimizer(ens, optimizer, model, e, spec, lr, into=probe_opts.get(e))
        return probe_opts[e]

    def probes_before(t, x, y, losses, lr):
        """Per member: a copy of its model and optimizer, as a one-seed training loop would hold them."""
        due = [p for p in probes[0] if p.due(t)]
        if not due:
            return None
        read_only = all(p.read_only for p in due)
        rng, ctxs = torch.get_rng_state(), {}
        for e in active():
            if read_only:  # the member's tensors themselves, as views (nothing copied)
                model, opt = ens.view(e), None
            else:  # one model copy per member, made once and refreshed in place (deepcopy is slow)
                model = ens.copy_into(e, probe_models[e], grads=True) if e in probe_models else ens.member(e, grads=True)
                probe_models[e] = model
                opt = member_opt(e, model, lr)
            ctxs[e] = ProbeContext(t, model, opt, loss_fn, x[e], y[e], lr, data, spec, losses[e])
            call_probes(probes[e], "before_step", ctxs[e], rows[e], skip=together)
        members_at_once("before_members", ctxs)
        torch.set_rng_state(rng)
        return ctxs

    # read-only probes that measure all members in one call (probes[0]'s instance serves every member)
    together = {j for j, p in enumerate(probes[0]) if by_members(p)}

    def members_at_once(hook, ctxs):
        step = next(iter(ctxs.values())).step if ctxs else None
        for j in sorted(together):
            if step is not None and probes[0][j].due(step):
                for e, metrics in getattr(probes[0][j], hook)(ctxs).items():
                    rows[e] += [(step, k, float(v)) for k, v in metrics.items()]

    def probes_after(ctxs, lr):
        rng = torch.get_rng_state()
        for e, ctx in ctxs.items():  # the same model object, now holding w_{t+1} (grads kept)
            if ctx.optimizer is not None:  # a copy (a view already holds w_{t+1})
                ens.copy_into(e, ctx.model)
            ctx.optimizer = member_opt(e, ctx.model, lr) if ctx.optimizer is not None else None
            call_probes(probes[e], "after_step", ctx, rows[e], skip=together)
        members_at_once("after_members", ctxs)
        torch.set_rng_state(rng)

    startup_s = process_age()  # process start -> training starts (imports, data, models, W&B)
    t0 = time.perf_counter()
    started = now()
    ens.training = True
    if start_step == 0:
        if hasattr(lr_at, "init_optimizer_state"):  # e.g. the exponential schedules' initial momentum
            lr_at.init_optimizer_state(optimizer)
        log_eval(0)
    groups = optimizer.param_groups
    progress = Progress(f"{spec['study']}/{spec['variant']} seeds {seeds}", steps, start_step)
    t = start_step
    for t in range(start_step, steps):
        if not active():
            break
        lr = lr_at(t)
        for g in groups:
            g["lr"] = lr
        idx = torch.stack([batch_indices(s, t, n, bs, device) for s in seeds])
        x, y = data.x_train[idx], y_train[rows_of, idx]
        if fresh:
            y = torch.stack([fresh_labels(s, t, idx.shape[1], data.n_classes, device) for s in seeds])
        if aug:
            x = torch.stack([augment(x[e], s, t, **aug) for e, s in enumerate(seeds)])
        optimizer.zero_grad(set_to_none=True)
        with prec.autocast():
            out = ens.forward(x)
        losses = _member_losses(loss_name, out.float() if prec.amp else out, y)
        losses.sum().backward()
        losses = losses.detach()
        bad = torch.where((bad < 0) & ~torch.isfinite(losses), t, bad)  # no host-device sync
        t_in = time.perf_counter()
        before = [len(r) for r in rows] if any_probes else None
        ctxs = probes_before(t, x, y, losses, lr) if any_probes else None
        spent["probes_s"] += time.perf_counter() - t_in
        optimizer_step(optimizer)
        for c in constraints:
            for e in range(E):
                c(ens.aliases[e])
        if ctxs:
            t_in = time.perf_counter()
            probes_after(ctxs, lr)
            log_new(t, before)
            spent["probes_s"] += time.perf_counter() - t_in
        if t % log_every == 0 or t == steps - 1:
            bad_l, loss_l = bad.tolist(), losses.tolist()
            acc_l = (out.detach().argmax(-1) == y).float().mean(1).tolist() if y.dim() == 2 else None
            for e in active():
                if bad_l[e] >= 0:
                    status[e], first_bad[e] = "diverged", bad_l[e]
                    rows[e].append((bad_l[e], "diverged", 1.0))
                    continue
                logged = [(t, "batch_loss", loss_l[e]), (t, "lr", lr)]
                if acc_l is not None:
                    logged.append((t, "batch_acc", acc_l[e]))
                rows[e] += logged
                if tracking:
                    trackers[e].log({m: v for _, m, v in logged}, step=t)
        if t + 1 >= progress.next_step or t + 1 == steps or progress.time_due():
            if not (t % log_every == 0 or t == steps - 1):  # numbers of a step the loop did not read back
                loss_l = losses.tolist()
                acc_l = (out.detach().argmax(-1) == y).float().mean(1).tolist() if y.dim() == 2 else None
            tp = throughput((t + 1 - progress.start) / max(time.perf_counter() - progress.t0, 1e-9), bs,
                            len(active()), device)
            rate = progress.line(t + 1, [loss_l[e] for e in active()],
                                 [acc_l[e] for e in active()] if acc_l is not None else None, throughput_text(tp))
            if tracking:  # live in the run's summary (its history holds exactly the metrics file's rows)
                for e in active():
                    trackers[e].summary({"progress/step": t + 1, "progress/steps_per_s": rate,
                                         "progress/eta_s": (steps - t - 1) / rate if rate > 0 else None,
                                         **{f"progress/{k}": v for k, v in tp.items()}})
        if active() and ((t + 1) % eval_every == 0 or t + 1 == steps):
            log_eval(t + 1)
        if ckpt is not None and (t + 1) % ckpt_every == 0 and t + 1 < steps:
            atomic_torch_save({"spec_key": spec_key, "seeds": seeds, "step": t + 1, "state": ens.state(),
                               "optimizer": optimizer.state_dict(), "gens": [g.get_state() for g in gens],
                               "rng": torch.get_rng_state(), "rows": rows, "status": status,
                               "first_bad": first_bad, "bad": bad,
                               "wall_s": wall_before + time.perf_counter() - t0}, ckpt)

    elapsed = time.perf_counter() - t0
    wall = wall_before + elapsed
    tp_run = throughput((steps - start_step) / max(elapsed, 1e-9), bs, E, device)
    summaries = []
    for e, seed in enumerate(seeds):
        final = {}
        if status[e] == "ok":
            for _, m, v in rows[e]:
                if m in ("train_loss", "train_acc", "test_loss", "test_acc"):
                    final[m] = v
        summaries.append({
            "study": spec["study"], "key": key, "variant": spec["variant"], "seed": seed,
            "keys": spec.get("keys", {}), "status": status[e],
            "diverged_step": first_bad[e] if status[e] == "diverged" else None,
            "steps": steps, "final": final, "wall_s": wall / E,
            "steps_per_s": (steps - start_step) * E / max(elapsed, 1e-9) if status[e] == "ok" else None,
            **tp_run, **({} if status[e] == "ok" else {"images_per_s": None}),
            "device": str(device), "threads": torch.get_num_threads(), "dtype": str(dtype).replace("torch.", ""),
            "amp": prec.amp, "augment": aug or None, "started": started, "finished": now(),
            "resumed_from": start_step or None, "startup_s": startup_s,
            "wandb": {"mode": trackers[e].mode, "dir": trackers[e].run_dir,
                      "run_id": run_id(spec["study"], key, seed)},
            "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
            "ensemble": {"size": E, "path": ens.path, "job_wall_s": wall},
            # this process's training loop: its wall time, and the part of it spent in probes and evaluations
            "loop": {"wall_s": elapsed, **spent},
        })
    # Final weights per seed (W&B setting save_weights, default on): <out>/seed<k>/weights.pt, the state
    # dict of the member's one-seed model (CPU tensors).
    weights = None
    if w.get("save_weights", True):
        weights = [{k: v.detach().cpu() for k, v in ens.member(e).state_dict().items()} for e in range(E)]
        for e, s in enumerate(seeds):
            (out_dir / f"seed{s}").mkdir(parents=True, exist_ok=True)
            atomic_torch_save(weights[e], out_dir / f"seed{s}" / "weights.pt")
    if ckpt is not None:  # keep the finished job until every output is written (a kill may come later)
        atomic_torch_save({"spec_key": spec_key, "seeds": seeds, "done": True, "rows": rows,
                           "summaries": summaries, "weights": weights}, ckpt)
    written = [write_run(spec, s, rows[e], summaries[e], out_dir) for e, s in enumerate(seeds)]
    write_json({"spec": spec, "numerics": NUMERICS, "seeds": seeds}, out_dir / "run.json")
    for e, s in enumerate(seeds):  # outputs as artifacts: the analysis run uses the "run" ones
        d, tk = out_dir / f"seed{s}", trackers[e]
        tk.summary({"status": status[e], **summaries[e]["final"]})
        if tk.run is not None and hasattr(tk, "log_artifact"):  # (test doubles may have no artifacts)
            tk.log_artifact(run_artifact(spec["study"], block, spec["variant"], s), "run",
                            run_files(d), metadata={"status": status[e], **summaries[e]["final"]})
            if weights is not None:
                tk.log_artifact(artifact_name("model", spec["study"], block, spec["variant"], f"seed{s}"),
                                "model", {"weights.pt": d / "weights.pt"},
                                metadata={"model": spec["model"], "seed": s, "status": status[e]})
        tk.finish()
    return written


def run(spec: dict, out: Path, ckpt_dir: Path | None = None) -> list[dict]:
    """Load the spec's data, train all its seeds, write their outputs; return the summaries."""
    if spec.get("numerics", NUMERICS) != NUMERICS:
        raise SystemExit(f"error: the spec was planned for numerics version {spec['numerics']}, this engine is "
                         f"version {NUMERICS} (normlab.numerics): plan the run again")
    device = resolve_device(spec.get("device", "auto"))
    dtype = torch.float64 if spec["train"].get("dtype") == "float64" else torch.float32
    data = data_mod.load(spec["data"], device=device, dtype=dtype)
    if ckpt_dir is not None:
        Path(ckpt_dir).mkdir(parents=True, exist_ok=True)
    summaries = train(spec, data, device, Path(out), ckpt_dir)
    if ckpt_dir is not None:
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    return summaries
