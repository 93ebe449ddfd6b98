"""An MLP whose hidden activations are shifted by a controlled amount, optionally re-centered.

Per hidden layer: Linear -> normalization/activation (``norm_block``: none | bn_pre | bn_post |
center) -> FixedAffine (a -> scale * a + shift, fixed buffers; scale 1 and shift ``shift`` by
default) -> BatchCenter when ``center_acts`` (explicit centering of the activations the next
layer sees). Then a linear read-out. Spec keys (beyond the shared ones): ``shift`` (float, added
to every unit of every hidden activation: m = shift * 1 on top of the activation's own mean),
``center_acts`` (bool).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .layers import BatchCenter, norm_block, uses_bias


class FixedAffine(nn.Module):
    """a -> scale * a + shift per unit, with fixed (non-trained) ``scale`` and ``shift`` buffers."""

    def __init__(self, num_features: int, scale: float = 1.0, shift: float = 0.0):
        super().__init__()
        self.register_buffer("scale", torch.full((num_features,), float(scale)))
        self.register_buffer("shift", torch.full((num_features,), float(shift)))

    def forward(self, x):
        return x * self.scale + self.shift


def shifted_mlp(spec: dict, input_shape, n_classes: int) -> nn.Module:
    d_in = math.prod(input_shape)
    kind, act, w = spec["norm"], spec["act"], spec["width"]
    if kind not in ("none", "bn_pre", "bn_post", "center"):
        raise ValueError(f"shifted_mlp: norm {kind!r} not supported (none, bn_pre, bn_post, center)")
    layers: list[nn.Module] = [nn.Flatten()]
    for _ in range(spec["depth"]):
        layers.append(nn.Linear(d_in, w, bias=uses_bias(kind, spec.get("bias", True))))
        layers += norm_block(kind, w, act, 1, eps=spec.get("bn_eps", 1e-5), affine=True)
        layers.append(FixedAffine(w, 1.0, spec.get("shift", 0.0)))
        if spec.get("center_acts", False):
            layers.append(BatchCenter(w))
        d_in = w
    layers.append(nn.Linear(d_in, n_classes))
    return nn.Sequential(*layers)


def affine_modules(model: nn.Module) -> list[FixedAffine]:
    """The FixedAffine modules in forward order (one per hidden layer)."""
    return [m for m in model.modules() if isinstance(m, FixedAffine)]
