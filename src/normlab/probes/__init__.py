"""Probes: measurements taken during training, every ``every`` steps.

A probe is a class registered with ``@register("name")``; the training loop builds it as
``cls(every=N, **params)`` from a spec entry ``{name: ..., every: N, ...}`` and calls

- ``before_step(ctx) -> dict[str, float]`` at steps t with t % every == 0, after the gradient
  of the step's batch is computed (``ctx.model``'s .grad fields hold it) and before the
  optimizer updates w_t to w_{t+1};
- ``after_step(ctx) -> dict[str, float]`` right after that update (same t).

A ``read_only`` probe may instead measure every member of a batched job in one call:
``before_members(ctxs)`` / ``after_members(ctxs)`` with ``ctxs = {member: ctx}``, returning
``{member: metrics}`` (the engine then calls these, on one instance, in place of the per-member hooks).

The returned metrics are written as rows (step, metric, value). The engine snapshots the
model's state (parameters, buffers, grads), the optimizer's state and the RNG around every call
and restores them, so a probe can move weights, run forward passes or step a copy of the
optimizer freely: training after a probe is bit-identical to training without it.
Probe modules are imported lazily by name (``normlab.probes.<module>``) via ``PROBE_MODULES``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

import torch

PROBES: dict[str, type] = {}

# probe name -> module that registers it (imported on first use, keeping job start-up lean)
PROBE_MODULES: dict[str, str] = {
    "ics": "normlab.probes.ics",
    "unit_activations": "normlab.probes.ics",
    "bn_clean_eval": "normlab.probes.ics",
    "landscape": "normlab.probes.landscape",
    "units": "normlab.probes.units",
    "curvature": "normlab.probes.curvature",
}


def register(name: str, module: str | None = None):
    def deco(cls):
        PROBES[name] = cls
        cls.probe_name = name
        return cls

    return deco


@dataclass
class ProbeContext:
    step: int
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    loss_fn: Callable  # loss_fn(logits, y) -> scalar
    x: torch.Tensor  # this step's batch
    y: torch.Tensor
    lr: float  # the rate of this step's update
    data: Any  # the whole dataset (normlab.data.Data)
    spec: dict  # the run spec
    loss: torch.Tensor | None = None  # this step's batch loss (before the update)


class Probe:
    # A probe that only reads the model (weights, buffers, grads) and neither changes it, nor the RNG, nor
    # uses the optimizer declares ``read_only = True``: the engine then skips the snapshot/restore and the
    # per-member optimizer it otherwise builds around each call, and ``ctx.model`` is the member's own
    # tensors (views into the batched job: a write would change training) when every due probe reads only.
    read_only = False

    def __init__(self, every: int, **params):
        self.every = every
        self.params = params

    def due(self, step: int) -> bool:
        return step % self.every == 0

    def before_step(self, ctx: ProbeContext) -> dict:
        return {}

    def after_step(self, ctx: ProbeContext) -> dict:
        return {}


def build_probe(entry: dict) -> Probe:
    entry = dict(entry)
    name, every = entry.pop("name"), entry.pop("every")
    if name not in PROBES and name in PROBE_MODULES:
        importlib.import_module(PROBE_MODULES[name])
    if name not in PROBES:
        raise ValueError(f"unknown probe {name!r} (known: {', '.join(sorted(set(PROBES) | set(PROBE_MODULES)))})")
    return PROBES[name](every=every, **entry)


# Built-in light probes -------------------------------------------------------------------------

@register("weight_norms")
class WeightNorms(Probe):
    """||W_i|| of every weight layer (i = forward order) and the norm of the whole gradient."""

    read_only = True

    def before_step(self, ctx):
        from ..models import weight_layers

        out = {}
        for i, layer in enumerate(weight_layers(ctx.model)):
            out[f"weight_norm/{i}"] = layer.weight.detach().norm().item()
        grads = [p.grad.flatten() for p in ctx.model.parameters() if p.grad is not None]
        if grads:
            out["grad_norm"] = torch.cat(grads).norm().item()
        return out
