"""Convolutional networks: a 1-D CNN for MNIST-1D and a VGG-style CNN for images."""

from __future__ import annotations

from torch import nn

from .layers import norm_block, uses_bias


def _conv_stack(spec, in_ch: int, dims: int, pool_every: int):
    conv, pool = (nn.Conv1d, nn.MaxPool1d) if dims == 2 else (nn.Conv2d, nn.MaxPool2d)
    kind, act = spec["norm"], spec["act"]
    si = spec.get("scale_invariant", False)
    layers: list[nn.Module] = []
    for i, ch in enumerate(spec["channels"]):
        layers.append(conv(in_ch, ch, 3, padding=1, bias=False if si else uses_bias(kind, spec.get("bias", True))))
        layers += norm_block(kind, ch, act, dims, eps=spec.get("bn_eps", 1e-5), affine=not si, noise=spec.get("noise"))
        if pool_every and (i + 1) % pool_every == 0:
            layers.append(pool(2))
        in_ch = ch
    return layers, in_ch


def cnn1d(spec: dict, input_shape, n_classes: int) -> nn.Module:
    """3-tap 1-D convolutions (``channels``), a max-pool after every second one, global average pool."""
    spec = {"channels": [32, 32, 64, 64], **spec}
    layers, ch = _conv_stack(spec, input_shape[0], 2, pool_every=2)
    layers += [nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(ch, n_classes)]
    return nn.Sequential(*layers)


def vgg(spec: dict, input_shape, n_classes: int) -> nn.Module:
    """VGG-style: two 3x3 convolutions per stage, max-pool after each stage (``channels`` lists every conv)."""
    spec = {"channels": [64, 64, 128, 128, 256, 256, 512, 512, 512, 512], **spec}
    layers, ch = _conv_stack(spec, input_shape[0], 3, pool_every=2)
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(ch, n_classes)]
    return nn.Sequential(*layers)
