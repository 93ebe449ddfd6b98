"""Pre-activation ResNet (He et al. 2016) for CIFAR: PreResNet32 is ``depth: 32`` (6n + 2, n = 5 blocks per stage).

stem conv -> 3 stages of n blocks (``channels`` 16/32/64, stride 2 at the start of stages 2 and 3)
-> BN -> act -> global average pool -> linear. Block: BN -> act -> conv3x3 -> BN -> act -> conv3x3,
plus the shortcut (identity, or a 1x1 conv of the pre-activated input when the shape changes).
2-D inputs (C, H, W) use Conv2d; 1-D inputs (C, L) (MNIST-1D) use Conv1d. Convolutions have no bias.

``scale_invariant: true`` (Li & Arora's setting): BN affine off, output layer fixed. Then the network
is invariant to scaling *all* trained weights by one c > 0 (each block's output is homogeneous of
degree 1 in that scale, and the final BN removes it), which is what the Li-Arora theorem needs.
Per-unit invariance holds only for each block's first conv (it feeds a BN directly); the second conv
and the shortcut feed a sum. ``norm`` is ``bn_pre`` (the architecture's own BN-before-act) or
``none`` (no BN at all).
"""

from __future__ import annotations

from torch import nn

from .layers import ACTIVATIONS


class PreActBlock(nn.Module):
    def __init__(self, in_ch, out_ch, stride, *, conv, norm, act):
        super().__init__()
        self.bn1, self.act1 = norm(in_ch), ACTIVATIONS[act]()
        self.conv1 = conv(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn2, self.act2 = norm(out_ch), ACTIVATIONS[act]()
        self.conv2 = conv(out_ch, out_ch, 3, stride=1, padding=1, bias=False)
        self.shortcut = conv(in_ch, out_ch, 1, stride=stride, bias=False) if stride != 1 or in_ch != out_ch else None
        self.join = nn.Identity()  # marks the sum (keeps models.bn_fed_layers from pairing a conv with the next BN)

    def forward(self, x):
        o = self.act1(self.bn1(x))
        sc = x if self.shortcut is None else self.shortcut(o)
        o = self.conv2(self.act2(self.bn2(self.conv1(o))))
        return self.join(o + sc)


def preresnet(spec: dict, input_shape, n_classes: int) -> nn.Module:
    depth = spec.get("depth", 32)
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"'model.depth' must be 6n + 2 with n >= 1 for preresnet (e.g. 32), got {depth}")
    kind = spec.get("norm", "bn_pre")
    if kind not in ("bn_pre", "none"):
        raise ValueError(f"'model.norm' must be bn_pre or none for preresnet, got {kind!r}")
    si = spec.get("scale_invariant", False)
    dims = len(input_shape)
    if dims not in (2, 3):
        raise ValueError(f"preresnet needs (C, L) or (C, H, W) inputs, got shape {tuple(input_shape)}")
    conv, bn, pool = ((nn.Conv1d, nn.BatchNorm1d, nn.AdaptiveAvgPool1d) if dims == 2
                      else (nn.Conv2d, nn.BatchNorm2d, nn.AdaptiveAvgPool2d))
    eps = spec.get("bn_eps", 1e-5)

    def norm(ch):
        return bn(ch, eps=eps, affine=not si) if kind == "bn_pre" else nn.Identity()

    channels = spec.get("channels") or [16, 32, 64]
    n = (depth - 2) // 6
    layers: list[nn.Module] = [conv(input_shape[0], channels[0], 3, padding=1, bias=False), nn.Identity()]
    ch = channels[0]
    for s, out_ch in enumerate(channels):
        for b in range(n):
            layers.append(PreActBlock(ch, out_ch, 2 if (s > 0 and b == 0) else 1, conv=conv, norm=norm, act=spec["act"]))
            ch = out_ch
    layers += [norm(ch), ACTIVATIONS[spec["act"]](), pool(1), nn.Flatten(), nn.Linear(ch, n_classes)]
    return nn.Sequential(*layers)
