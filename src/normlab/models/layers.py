"""Building blocks: activations, normalizations (BN, noisy BN, noise only, centering)."""

from __future__ import annotations

import torch
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "logistic": nn.Sigmoid, "identity": nn.Identity}

NOISE_DEFAULTS = {"n_mu": 0.5, "n_sigma": 1.25, "r_mu": 0.1, "r_sigma": 0.1}


class Noise(nn.Module):
    """Santurkar et al.'s Algorithm 1: a non-stationary random affine distortion of each unit.

    Every training step, per unit j: mu_j ~ U(-n_mu, n_mu), sigma_j ~ U(1, n_sigma); then per
    sample i (and per spatial position: height/width count as batch) m_ij ~ U(mu_j - r_mu, mu_j + r_mu),
    s_ij ~ N(sigma_j, r_sigma^2), and a_ij <- s_ij * a_ij + m_ij. Identity at evaluation.
    """

    generator = None  # the stream of the draws (None: the global one); set by a stacked model's member path

    def __init__(self, n_mu=0.5, n_sigma=1.25, r_mu=0.1, r_sigma=0.1):
        super().__init__()
        self.n_mu, self.n_sigma, self.r_mu, self.r_sigma = n_mu, n_sigma, r_mu, r_sigma

    def sample(self, shape, device, dtype, generator=None):
        """The (s, m) tensors for an activation of ``shape`` (unit axis 1): one member's draws."""
        s, m = self.sample_members(shape, device, dtype, [generator])
        return s[0], m[0]

    def sample_members(self, shape, device, dtype, generators):
        """The (s, m) tensors of E members, shaped (E, *shape): member e draws from ``generators[e]``
        (None: the global generator) in the order mu, sigma, m, s (what torch.rand / torch.randn would
        draw), so a member's noise does not depend on the others; the arithmetic runs once for all."""
        c, E = shape[1], len(generators)
        unit = (E, 1, c) + (1,) * (len(shape) - 2)
        kw = dict(device=device, dtype=dtype)
        mu, sigma = torch.empty(unit, **kw), torch.empty(unit, **kw)
        m, s = torch.empty((E, *shape), **kw), torch.empty((E, *shape), **kw)
        for e, g in enumerate(generators):  # torch.rand / torch.randn are these fills
            mu[e].uniform_(0, 1, generator=g)
            sigma[e].uniform_(0, 1, generator=g)
            m[e].uniform_(0, 1, generator=g)
            s[e].normal_(0, 1, generator=g)
        mu.mul_(2).sub_(1).mul_(self.n_mu)
        sigma.mul_(self.n_sigma - 1).add_(1)
        m.mul_(2).sub_(1).mul_(self.r_mu).add_(mu)
        s.mul_(self.r_sigma).add_(sigma)
        return s, m

    def forward(self, x):
        if not self.training:
            return x
        s, m = self.sample(x.shape, x.device, x.dtype, self.generator)
        return s * x + m

    def extra_repr(self):
        return f"n_mu={self.n_mu}, n_sigma={self.n_sigma}, r_mu={self.r_mu}, r_sigma={self.r_sigma}"


class BatchCenter(nn.Module):
    """Subtract the batch mean per unit (running mean at evaluation); no scaling."""

    def __init__(self, num_features: int, momentum: float = 0.1):
        super().__init__()
        self.momentum = momentum
        self.register_buffer("running_mean", torch.zeros(num_features))

    def forward(self, x):
        dims = [0] + list(range(2, x.dim()))
        shape = (1, -1) + (1,) * (x.dim() - 2)
        if self.training:
            mean = x.mean(dim=dims)
            with torch.no_grad():
                self.running_mean.lerp_(mean.detach(), self.momentum)
        else:
            mean = self.running_mean
        return x - mean.view(shape)


def batchnorm(num_features: int, dims: int, eps: float, affine: bool) -> nn.Module:
    cls = {1: nn.BatchNorm1d, 2: nn.BatchNorm1d, 3: nn.BatchNorm2d}[dims]
    return cls(num_features, eps=eps, affine=affine)


def norm_block(kind: str, num_features: int, act: str, dims: int, *, eps=1e-5, affine=True, noise=None):
    """The layers that follow a linear map: normalization placed per ``kind``, and the activation.

    ``dims`` is 1 for (N, C) features, 2 for (N, C, L), 3 for (N, C, H, W) (BatchNorm1d covers 1 and 2).
    kinds: none | bn_pre (BN, act) | bn_post (act, BN) | noisy_bn (BN, noise, act) |
    noise_only (noise, act) | center (batch centering, act).
    """
    a = ACTIVATIONS[act]()
    noise = {**NOISE_DEFAULTS, **(noise or {})}
    if kind == "none":
        return [a]
    if kind == "bn_pre":
        return [batchnorm(num_features, dims, eps, affine), a]
    if kind == "bn_post":
        return [a, batchnorm(num_features, dims, eps, affine)]
    if kind == "noisy_bn":
        return [batchnorm(num_features, dims, eps, affine), Noise(**noise), a]
    if kind == "noise_only":
        return [Noise(**noise), a]
    if kind == "center":
        return [BatchCenter(num_features), a]
    raise ValueError(f"unknown norm {kind!r}")


def uses_bias(kind: str, bias: bool) -> bool:
    """A bias right before BN (or centering) is redundant: drop it there."""
    return bias and kind not in ("bn_pre", "noisy_bn", "center")
