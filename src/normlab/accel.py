"""The GPU data path: on-device augmentation, bf16 autocast with float32 normalization, async copies.

The dataset already lives on the device as one tensor (``data.load``); a step's batch is an index
slice of it. What this module adds, each used by ``train.py`` only when the run spec asks for it:

- ``augment``: random horizontal flips and random crops (zero padding of ``crop`` pixels, then a
  crop back to the original size), done on the device in one gather. The random draws come from
  a CPU generator seeded by (seed, step) alone, so they are the same on every device and a
  resumed run draws what an uninterrupted one would.
- ``Precision``: ``train.amp: true`` on CUDA runs the model under bf16 autocast with the inputs
  and weights in channels_last (image models). Normalization layers (BatchNorm, centering, the
  noise of noisy BN) are fed float32 inputs, so batch statistics and running statistics stay
  float32; the loss is float32 too (autocast computes cross-entropy in float32). Off on CPU and
  with float64 runs, where it would change nothing or everything.
- ``to_device``: small host tensors (batch indices, augmentation draws) go to the GPU from pinned
  memory without blocking, so the training loop never waits on the GPU between log steps.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

_SEED_MIX = 2_147_483_629


def to_device(t: torch.Tensor, device) -> torch.Tensor:
    """Copy a host tensor to ``device`` without a host-device sync (pinned, non-blocking on CUDA)."""
    device = torch.device(device)
    if device.type != "cuda":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)


def augment(x: torch.Tensor, seed: int, step: int, flip: bool = False, crop: int = 0) -> torch.Tensor:
    """Flip and/or random-crop a batch of images ``(N, C, H, W)`` on its own device."""
    if not flip and not crop:
        return x
    if x.dim() != 4:
        raise ValueError(f"train.augment needs image batches (N, C, H, W); got shape {tuple(x.shape)}")
    n, _, h, w = x.shape
    g = torch.Generator().manual_seed(_SEED_MIX * (seed + 1) + step)
    flips = torch.rand(n, generator=g) < 0.5 if flip else None
    offs = torch.randint(0, 2 * crop + 1, (2, n), generator=g) if crop else None
    if crop:
        dev = x.device
        oy, ox = to_device(offs, dev)
        padded = nn.functional.pad(x, (crop, crop, crop, crop))
        rows = (oy[:, None] + torch.arange(h, device=dev))[:, :, None]  # (N, H, 1)
        cols = (ox[:, None] + torch.arange(w, device=dev))[:, None, :]  # (N, 1, W)
        if flip:  # flipping the crop window's columns = flipping the cropped image
            cols = torch.where(to_device(flips, dev)[:, None, None], cols.flip(2), cols)
        batch = torch.arange(n, device=dev)[:, None, None]
        return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2).contiguous()
    return torch.where(to_device(flips, x.device)[:, None, None, None], x.flip(3), x)


_FLOAT32_MODULES = (nn.modules.batchnorm._BatchNorm,)


def _float32_input(module, args):
    return tuple(a.float() if torch.is_tensor(a) and a.is_floating_point() else a for a in args)


def float32_inputs(model: nn.Module) -> None:
    """Feed float32 inputs to the normalization layers of ``model`` (BatchNorm, centering, noise)."""
    from .models import layers

    for m in model.modules():
        if isinstance(m, _FLOAT32_MODULES + (layers.BatchCenter, layers.Noise)):
            m.register_forward_pre_hook(_float32_input)


class Precision:
    """How a run computes: fp32 (default), or bf16 autocast + channels_last with fp32 normalization."""

    def __init__(self, requested: bool, device, dtype=torch.float32):
        self.amp = bool(requested) and torch.device(device).type == "cuda" and dtype == torch.float32
        self.channels_last = False

    def prepare(self, model: nn.Module, input_shape) -> nn.Module:
        """Set the model up for this precision (in place); call once, after ``.to(device)``."""
        if not self.amp:
            return model
        float32_inputs(model)
        if len(input_shape) == 3:  # images: channels_last lets the convolutions use tensor cores
            self.channels_last = True
            model.to(memory_format=torch.channels_last)
        return model

    def batch(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16) if self.amp else contextlib.nullcontext()
