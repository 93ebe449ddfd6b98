"""Optimizers and weight constraints.

``build_optimizer(params, spec, lr)``: sgd (momentum, nesterov, weight_decay; PyTorch's
convention v <- gamma v + g + lambda w, w <- w - eta v), adam and adamw. ``CONSTRAINTS`` are
applied after each optimizer step (e.g. ``unit_norm``: each BN-fed unit's incoming weights are
projected back to the unit sphere).
"""

from __future__ import annotations

import torch

from .models import bn_fed_layers


def build_optimizer(params, spec: dict, lr: float) -> torch.optim.Optimizer:
    name = spec["name"]
    wd = spec.get("weight_decay", 0.0)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=spec.get("momentum", 0.0), weight_decay=wd,
                               nesterov=spec.get("nesterov", False))
    betas = tuple(spec.get("betas", (0.9, 0.999)))
    eps = spec.get("eps", 1e-8)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=betas, eps=eps, weight_decay=wd)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=betas, eps=eps, weight_decay=wd)
    raise ValueError(f"unknown optimizer {name!r} (known: sgd, adam, adamw)")


@torch.no_grad()
def unit_norm(model) -> None:
    """Project each BN-fed unit's incoming weight vector w_j to ||w_j|| = 1."""
    for layer in bn_fed_layers(model):
        w = layer.weight
        norms = w.flatten(1).norm(dim=1).clamp_min(1e-12)
        w.div_(norms.view(-1, *([1] * (w.dim() - 1))))


CONSTRAINTS = {"unit_norm": unit_norm}
