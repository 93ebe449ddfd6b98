"""Fully connected networks with a normalization setting per hidden layer."""

from __future__ import annotations

import math

from torch import nn

from .layers import norm_block, uses_bias


def mlp(spec: dict, input_shape, n_classes: int) -> nn.Module:
    """``depth`` hidden layers of ``width`` units, then a linear read-out."""
    d_in = math.prod(input_shape)
    kind, act = spec["norm"], spec["act"]
    si = spec.get("scale_invariant", False)
    layers: list[nn.Module] = [nn.Flatten()]
    for _ in range(spec["depth"]):
        layers.append(nn.Linear(d_in, spec["width"], bias=False if si else uses_bias(kind, spec.get("bias", True))))
        layers += norm_block(kind, spec["width"], act, 1, eps=spec.get("bn_eps", 1e-5), affine=not si, noise=spec.get("noise"))
        d_in = spec["width"]
    layers.append(nn.Linear(d_in, n_classes))
    return nn.Sequential(*layers)
