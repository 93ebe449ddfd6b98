"""Stacked models: the seeds of one variant as one model with a leading ensemble dimension E.

``normlab.engine`` trains every run this way (one seed is E = 1). Each member is the model a
one-seed build gives for its seed (``torch.manual_seed(seed)`` then ``build_model``); the members'
tensors are stacked along E (``torch.func.stack_module_state``), and one optimizer updates the
stacked tensors (SGD, Adam, AdamW and weight decay act elementwise, so each member gets exactly its
own update). Each member has its own noise stream (a ``torch.Generator``) and BN statistics.

Forward pass. Image models (any Conv2d) on the CPU run member by member (``path == "members"``, the
default ``conv_path`` there): the model itself on member e's tensors (views of the stacked ones, so
gradients and BN statistics land in them), its images in channels-last memory, where oneDNN's convolutions
are fastest; a member's numbers are then bitwise those of a one-seed job (tests/test_image_path.py).
``conv_path="grouped"`` keeps the path below for them (CUDA's default; the benchmark's old path).
Other models made of known layers (the registry's Sequential models: Linear, Conv1d/2d,
BatchNorm, Noise, BatchCenter, FixedAffine, pooling, activations) run layer by layer on activations shaped
(E, B, ...): a Linear is one ``baddbmm``; a convolution is one grouped convolution and a BN one
``batch_norm`` with the members folded into the channels (per-member statistics, exactly).
Every op acts on each member separately, so a member's numbers do not depend on the other members:
an MLP seed trained alone or with four others gives bitwise the same metrics (a grouped convolution
may pick another kernel for another number of groups: there they agree to rounding; tests/test_ensemble.py).
Any other model runs through ``torch.func.vmap(functional_call)``; there the noise of Noise layers
comes from one job-level stream (same distribution, not the same numbers as a per-member stream).

``member(e)`` / ``copy_into(e, model)`` give member e as an ordinary ``nn.Module`` (for probes; ``view(e)``
the same without copying, for probes that only read) and
``member_optimizer`` an optimizer holding its slice of the stacked optimizer state.
"""


from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from .models.layers import BatchCenter, Noise
from .models.shifted import FixedAffine
from .optim import build_optimizer

ELEMENTWISE = (nn.ReLU, nn.Tanh, nn.Sigmoid, nn.Identity, nn.GELU, nn.SiLU, nn.LeakyReLU, nn.ELU, nn.Softplus)
POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d,
         nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d)


CONV_PATHS = ("members", "grouped")


def has_conv2d(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def default_conv_path(model: nn.Module, device) -> str:
    """How a stacked image model runs its members: ``members`` (one after another, channels-last) on the
    CPU, where it is the faster (``make bench``: ``conv_paths``); ``grouped`` (members folded into the
    channels of grouped convolutions, or vmap) elsewhere."""
    return "members" if torch.device(device).type == "cpu" else "grouped"


def channels_last(x: torch.Tensor) -> torch.Tensor:
    """``x`` (N, C, H, W) in channels-last memory, strided so that a convolution sees it as such even with one
    channel (whose channels-last strides PyTorch otherwise leaves as the contiguous ones: its convolution
    would then run, and hand on its output, in the slow contiguous format)."""
    x = x.contiguous(memory_format=torch.channels_last)
    if x.shape[1] == 1:
        x = x.as_strided(x.shape, (x.shape[2] * x.shape[3], 1, x.shape[3], 1))
    return x


def _fold(x):
    """(E, B, C, *S) -> (B, E*C, *S): members folded into channels."""
    e, b = x.shape[:2]
    return x.transpose(0, 1).reshape(b, e * x.shape[2], *x.shape[3:])


def _unfold(x, e):
    """(B, E*C, *S) -> (E, B, C, *S)."""
    return x.view(x.shape[0], e, x.shape[1] // e, *x.shape[2:]).transpose(0, 1)


def window_max_kernel(m: nn.Module) -> int | None:
    """The window ``k`` when ``m`` is a MaxPool1d over non-overlapping windows (stride = kernel, no
    padding, dilation or ceil mode): the case ``WindowMax`` computes; else None."""
    if not isinstance(m, nn.MaxPool1d):
        return None
    one = (lambda v: v if isinstance(v, int) else (v[0] if len(v) == 1 else None))
    k = one(m.kernel_size)
    whole = (k is not None and one(m.stride if m.stride is not None else k) == k
             and one(m.padding) == 0 and one(m.dilation) == 1 and not m.ceil_mode and not m.return_indices)
    return k if whole else None


class WindowMax(torch.autograd.Function):
    """1-D max pooling over non-overlapping windows of ``k`` (stride ``k``), with nn.MaxPool1d's
    gradient: all of it to the first maximum of each window (a NaN wins, the last one if several).
    The same numbers as ``F.max_pool1d``, bitwise (tests/test_ensemble.py), without its CPU path that
    computes indices (needed for its gradient; it runs as a 2-D pool of height 1, about 12x slower
    than the forward without indices): the backward finds each window's winner by comparing its k
    values. (2-D pools keep ``F.max_pool2d``, whose indices path is fast.)"""

    @staticmethod
    def forward(ctx, x, k: int):
        ctx.save_for_backward(x)
        ctx.k = k
        return F.max_pool1d(x, k)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        k, lo = ctx.k, g.shape[-1]
        if k == 1:  # no pooling: the gradient passes through
            return g, None
        xw = x[..., :lo * k].unflatten(-1, (lo, k))  # (..., Lo, k): whole windows
        # nn.MaxPool1d's rule, position by position: a later value takes over if larger than the best
        # so far, or NaN; the winner is the last position that took over (position 0 if none did)
        best, takes = xw[..., 0], []
        for j in range(1, k):
            v = xw[..., j]
            takes.append((v > best) | v.isnan())
            best = torch.maximum(best, v)  # propagates NaN, as the pooled value does
        mask = torch.empty(xw.shape, dtype=g.dtype, device=g.device)
        later = torch.zeros_like(takes[0])  # some position after j took over
        for j in range(k - 1, 0, -1):
            mask[..., j].copy_(takes[j - 1] & ~later)
            later |= takes[j - 1]
        mask[..., 0].copy_(~later)
        gw = (g.unsqueeze(-1) * mask).flatten(-2)
        if gw.shape[-1] == x.shape[-1]:
            return gw, None
        gx = torch.zeros_like(x)
        gx[..., :lo * k].copy_(gw)
        return gx, None


class StackedModel:
    """E copies of one architecture with stacked tensors; ``forward(x)`` maps (E, B, ...) -> (E, B, out)."""

    def __init__(self, models: list[nn.Module], generators: list[torch.Generator], force_vmap: bool = False,
                 fp32_norm: bool = False, conv_path: str | None = None):
        from torch.func import stack_module_state

        self.size = len(models)
        self.fp32_norm = fp32_norm  # under bf16 autocast: normalization and noise see float32 inputs
        self.template = copy.deepcopy(models[0])
        self.params, self.buffers = stack_module_state(models)
        self.generators = generators
        self.training = True
        self.ops = None
        self.conv_path = conv_path or default_conv_path(self.template, next(iter(self.params.values())).device)
        if self.conv_path not in CONV_PATHS:
            raise ValueError(f"unknown conv_path {conv_path!r} (known: {', '.join(CONV_PATHS)})")
        if not force_vmap and self.conv_path == "members" and has_conv2d(self.template):
            self.path = "members"
            self.runner = copy.deepcopy(self.template)  # what runs (the template stays what members look like)
            for m in self.runner.modules():
                if isinstance(m, nn.ReLU):
                    m.inplace = True  # same values; its input (a conv, BN or noise output) is not saved by them
            self._noise = [m for m in self.runner.modules() if isinstance(m, Noise)]
            if fp32_norm:
                from .accel import float32_inputs

                float32_inputs(self.runner)
        else:
            self.ops = None if force_vmap else self._layer_ops(self.template)
            self.path = "vmap" if self.ops is None else "layers"
        self._aliases = None

    @property
    def aliases(self) -> list[nn.Module]:
        """Per-member modules whose tensors are views of the stacked ones (for in-place constraints and
        ``view``), built on first use."""
        if self._aliases is None:
            self._aliases = [self._alias(e) for e in range(self.size)]
        return self._aliases

    # state ---------------------------------------------------------------------------------
    def state(self) -> dict:
        return {**self.params, **self.buffers}

    def trainable(self) -> list[torch.Tensor]:
        return [p for p in self.params.values() if p.requires_grad]

    def _alias(self, e: int) -> nn.Module:
        m = copy.deepcopy(self.template)
        for mod_name, mod in m.named_modules():
            pre = f"{mod_name}." if mod_name else ""
            for n, p in list(mod._parameters.items()):
                if p is not None:
                    mod._parameters[n] = nn.Parameter(self.params[pre + n].detach()[e], requires_grad=p.requires_grad)
            for n, b in list(mod._buffers.items()):
                if b is not None:
                    mod._buffers[n] = self.buffers[pre + n][e]
        return m

    def view(self, e: int) -> nn.Module:
        """Member ``e`` as a module whose parameters, buffers and gradients are views of the stacked
        tensors (no copy): for probes that only read (``Probe.read_only``). It follows training: after
        the optimizer step it holds w_{t+1}; its gradients are this step's (set here, views)."""
        m = self.aliases[e]
        m.train(self.training)
        for n, p in m.named_parameters():
            g = self.params[n].grad
            p.grad = None if g is None else g[e]
        return m

    def member(self, e: int, grads: bool = False) -> nn.Module:
        """An independent copy of member ``e`` (weights, buffers and, if asked, gradients)."""
        return self.copy_into(e, copy.deepcopy(self.template), grads)

    @torch.no_grad()
    def copy_into(self, e: int, model: nn.Module, grads: bool = False) -> nn.Module:
        """Write member ``e``'s current weights and buffers (and gradients) into ``model``, in place."""
        model.train(self.training)
        for n, p in model.named_parameters():
            p.copy_(self.params[n][e])
            g = self.params[n].grad
            if grads:
                p.grad = g[e].clone() if g is not None else None
        for n, b in model.named_buffers():
            b.copy_(self.buffers[n][e])
        return model

    # forward -------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, shared: bool = False) -> torch.Tensor:
        """``x``: (E, B, ...) per-member inputs, or (B, ...) for all members if ``shared``."""
        if self.path == "members":
            return self._forward_members(x, shared)
        if self.ops is None:
            from torch.func import functional_call, vmap

            self.template.train(self.training)

            def fn(p, b, xx):
                return functional_call(self.template, (p, b), (xx,))
            return vmap(fn, in_dims=(0, 0, None if shared else 0), randomness="different")(
                self.params, self.buffers, x)
        if shared:
            x = x.unsqueeze(0).expand(self.size, *x.shape)
        for op in self.ops:
            x = op(x)
        return x

    def _forward_members(self, x: torch.Tensor, shared: bool) -> torch.Tensor:
        """Image models on the CPU: member by member, the template run on the member's tensors (views of
        the stacked ones, so gradients and BN's running statistics land in them) with its images in
        channels-last memory (oneDNN's fastest convolutions; no grouped convolution, no reorders). Noise
        layers draw from the member's generator, in the order a one-seed model draws."""
        from torch.func import functional_call

        cl = channels_last if x.dim() == (4 if shared else 5) else (lambda t: t)
        if shared:
            x = cl(x)
        self.runner.train(self.training)
        outs = []
        try:
            for e in range(self.size):
                for m in self._noise:
                    m.generator = self.generators[e]
                state = ({k: v[e] for k, v in self.params.items()}, {k: v[e] for k, v in self.buffers.items()})
                outs.append(functional_call(self.runner, state, (x if shared else cl(x[e]),)))
        finally:
            for m in self._noise:
                m.generator = None
        return torch.stack(outs)

    def _layer_ops(self, model: nn.Module):
        """One function per leaf module, in forward order; None if the model is not a plain Sequential."""
        ops = []
        for name, m in model.named_modules():
            if isinstance(m, nn.Sequential):
                continue
            if list(m.children()):
                return None
            op = self._op(name, m)
            if op is None:
                return None
            ops.append(op)
        return ops if isinstance(model, nn.Sequential) else None

    def _op(self, name: str, m: nn.Module):
        P, Bf, E = self.params, self.buffers, self.size
        key = (lambda n: f"{name}.{n}") if name else (lambda n: n)
        if isinstance(m, ELEMENTWISE):
            return m
        if isinstance(m, nn.Flatten):
            end = m.end_dim if m.end_dim < 0 else m.end_dim + 1
            return lambda x: x.flatten(m.start_dim + 1, end)
        if (k := window_max_kernel(m)) is not None:
            return lambda x: _unfold(WindowMax.apply(_fold(x), k), E)  # pools each channel: members stay apart
        if isinstance(m, POOLS):
            return lambda x: m(x.flatten(0, 1)).unflatten(0, x.shape[:2])
        if isinstance(m, nn.Linear):
            w, b = P[key("weight")], P.get(key("bias"))
            return (lambda x: torch.bmm(x, w.transpose(1, 2))) if b is None else \
                (lambda x: torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2)))
        if isinstance(m, (nn.Conv1d, nn.Conv2d)) and m.padding_mode == "zeros":
            conv = F.conv1d if isinstance(m, nn.Conv1d) else F.conv2d
            w, b = P[key("weight")], P.get(key("bias"))

            def conv_op(x):
                out = conv(_fold(x), w.flatten(0, 1), None if b is None else b.flatten(), m.stride, m.padding,
                           m.dilation, E * m.groups)
                return _unfold(out, E)
            return conv_op
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            w, b = P.get(key("weight")), P.get(key("bias"))
            rm, rv, nbt = Bf.get(key("running_mean")), Bf.get(key("running_var")), Bf.get(key("num_batches_tracked"))

            def bn_op(x):  # nn.BatchNorm's forward, with the members folded into the channels
                if self.fp32_norm:
                    x = x.float()
                factor = 0.0 if m.momentum is None else m.momentum
                if self.training and m.track_running_stats and nbt is not None:
                    nbt.add_(1)
                    factor = 1.0 / float(nbt[0]) if m.momentum is None else m.momentum
                use_batch = self.training or (rm is None and rv is None)
                track = not self.training or m.track_running_stats
                out = F.batch_norm(_fold(x), rm.view(-1) if track and rm is not None else None,
                                   rv.view(-1) if track and rv is not None else None,
                                   None if w is None else w.flatten(), None if b is None else b.flatten(),
                                   use_batch, factor, m.eps)
                return _unfold(out, E)
            return bn_op
        if isinstance(m, Noise):
            def noise_op(x):
                if self.fp32_norm:
                    x = x.float()
                if not self.training:
                    return x
                s, a = m.sample_members(x.shape[1:], x.device, x.dtype, self.generators)
                return s * x + a
            return noise_op
        if isinstance(m, BatchCenter):
            rm = Bf[key("running_mean")]

            def center_op(x):
                if self.fp32_norm:
                    x = x.float()
                shape = (E, 1, -1) + (1,) * (x.dim() - 3)
                if self.training:
                    # a member's mean as its own model reduces it: over contiguous (B, C, ...) (a BN
                    # before leaves the activations laid out member-inner, where the sums run in another order)
                    x = x.contiguous()
                    mean = x.mean(dim=[1] + list(range(3, x.dim())))
                    with torch.no_grad():
                        rm.lerp_(mean.detach(), m.momentum)
                else:
                    mean = rm
                return x - mean.view(shape)
            return center_op
        if isinstance(m, FixedAffine):  # a -> scale * a + shift with per-member (fixed) buffers
            scale, shift = Bf[key("scale")], Bf[key("shift")]

            def affine_op(x):
                shape = (E, 1, -1) + (1,) * (x.dim() - 3)
                return x * scale.view(shape) + shift.view(shape)
            return affine_op
        return None


def member_optimizer(ens: StackedModel, optimizer, model: nn.Module, e: int, spec: dict, lr: float, into=None):
    """An independent optimizer for a member copy ``model``, holding member ``e``'s slice of the stacked
    optimizer's state and its hyperparameters (``lr`` for this step). ``into``: an optimizer built
    earlier for the same ``model``, refreshed in place instead of building a new one."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = into if into is not None else build_optimizer(params, spec["optimizer"], spec["lr"])
    stacked = ens.trainable()
    opt.state.clear()
    for sp, mp in zip(stacked, params):
        st = optimizer.state.get(sp)
        if st:
            opt.state[mp] = {k: (v[e].clone() if torch.is_tensor(v) and v.shape == sp.shape else
                                 (v.clone() if torch.is_tensor(v) else copy.deepcopy(v))) for k, v in st.items()}
    for g, sg in zip(opt.param_groups, optimizer.param_groups):
        g.update({k: copy.deepcopy(v) for k, v in sg.items() if k != "params"})
        g["lr"] = lr
    return opt
