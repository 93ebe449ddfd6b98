"""Model registry: ``build_model(spec, input_shape, n_classes)``.

An architecture is a function ``(spec, input_shape, n_classes) -> nn.Module`` registered in
``ARCHS``. Shared options in ``spec`` (see workflow/schemas/config.schema.yaml, definitions.model):
norm, act, init (default | glorot), scale_invariant (no bias before BN, BN affine frozen,
output layer fixed), bn_eps, noise.
"""

from __future__ import annotations

import torch
from torch import nn

from .cnn import cnn1d, vgg
from .mlp import mlp
from .preresnet import preresnet
from .shifted import shifted_mlp

ARCHS = {"mlp": mlp, "cnn1d": cnn1d, "vgg": vgg, "shifted_mlp": shifted_mlp, "preresnet": preresnet}

WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d)


def weight_layers(model: nn.Module) -> list[nn.Module]:
    """The linear/conv layers in forward order: "layer i" of the ICS and norm probes."""
    return [m for m in model.modules() if isinstance(m, WEIGHT_LAYERS)]


def build_model(spec: dict, input_shape, n_classes: int, dtype=torch.float32) -> nn.Module:
    if spec["arch"] not in ARCHS:
        raise ValueError(f"unknown model arch {spec['arch']!r} (known: {', '.join(ARCHS)})")
    model = ARCHS[spec["arch"]](spec, tuple(input_shape), n_classes)
    if spec.get("init", "default") == "glorot":
        for m in weight_layers(model):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    if spec.get("scale_invariant", False):
        out = weight_layers(model)[-1]
        for p in out.parameters():
            p.requires_grad_(False)
    return model.to(dtype)


NORM_LAYERS = (nn.BatchNorm1d, nn.BatchNorm2d)


def bn_fed_layers(model: nn.Module) -> list[nn.Module]:
    """Weight layers whose output goes straight into a BatchNorm (their units are scale invariant)."""
    mods = [m for m in model.modules() if not list(m.children())]
    return [m for m, nxt in zip(mods, mods[1:]) if isinstance(m, WEIGHT_LAYERS) and isinstance(nxt, NORM_LAYERS)]
