"""Loss-landscape smoothness along the gradient (Santurkar et al. 2018, Section 3.2).

``landscape`` (before the step): with d = w_{t+1} - w_t, the update the run's own optimizer is
about to make (all trainable parameters; the optimizer's state is put back afterwards), evaluate
the same batch's loss L and gradient at w_t + a d for a on a grid of ``n`` points spanning
``scales`` = [a_min, a_max] (``spacing`` linear or log). Step sizes are thus multiples of the step
actually taken: with plain SGD d = -eta g (g the batch gradient), so a d = -(a eta) g, the paper's
"step sizes [0.5, 4] x eta along the gradient"; under momentum or weight decay it stays the real
update direction and length. Metrics:

- ``landscape/loss`` L(w_t); ``landscape/loss_min``, ``landscape/loss_max``, ``landscape/loss_range``
  over the grid (the loss band of their Fig. 4a);
- ``landscape/grad_diff_min``, ``landscape/grad_diff_max``: min and max over the grid of
  ||grad L(w_t - s g) - grad L(w_t)||_2 ("gradient predictiveness", Fig. 4b);
- ``landscape/beta``: max over the grid of ||grad change|| / ||weight change|| = ... / (a ||d||)
  ("effective beta-smoothness", Fig. 4c); ``landscape/grad_norm`` ||g||; ``landscape/step_norm``
  ||d|| (the length of the actual update).

All passes run in training mode under one fixed random stream (a fixed noise draw for noisy BN),
so every point is evaluated on the same loss function. A non-finite loss or gradient somewhere on the
grid (overflow) makes the band's metrics +inf. The engine restores model, optimizer and RNG after the call.
"""

from __future__ import annotations

import math

import torch

from . import Probe, register
from .ics import flat, loss_and_grads, next_weights


def step_grid(scales=(0.5, 4.0), n: int = 8, spacing: str = "linear") -> list[float]:
    lo, hi = scales
    if n == 1:
        return [lo]
    if spacing == "log":
        return [math.exp(math.log(lo) + k * (math.log(hi) - math.log(lo)) / (n - 1)) for k in range(n)]
    if spacing == "linear":
        return [lo + k * (hi - lo) / (n - 1) for k in range(n)]
    raise ValueError(f"landscape spacing must be 'linear' or 'log', got {spacing!r}")


@register("landscape")
class Landscape(Probe):
    """Loss range, gradient predictiveness and effective beta along the gradient (params: scales, n, spacing)."""

    def before_step(self, ctx):
        model = ctx.model
        params = [p for p in model.parameters() if p.requires_grad]
        grid = step_grid(self.params.get("scales", (0.5, 4.0)), self.params.get("n", 8),
                         self.params.get("spacing", "linear"))
        w0 = [p.detach().clone() for p in params]
        step = [w1 - w for w1, w in zip(next_weights(ctx, params), w0)]  # the actual update d
        step_norm = flat(step).double().norm().item()
        loss0, g0 = loss_and_grads(model, ctx.loss_fn, ctx.x, ctx.y, params)
        g0_flat = flat(g0).double()
        gnorm = g0_flat.norm().item()
        losses, diffs, betas = [], [], []
        for a in grid:
            with torch.no_grad():
                for p, w, d in zip(params, w0, step):
                    p.copy_(w + a * d)
            loss, g = loss_and_grads(model, ctx.loss_fn, ctx.x, ctx.y, params)
            diff = (flat(g).double() - g0_flat).norm().item()
            losses.append(loss.item())
            diffs.append(diff)
            betas.append(diff / (a * step_norm) if a * step_norm > 0 else float("nan"))
        with torch.no_grad():
            for p, w in zip(params, w0):
                p.copy_(w)

        def worst(vals, f):  # a non-finite point (overflow) makes the band infinite
            return f(vals) if all(math.isfinite(v) for v in vals) else float("inf")

        lmin, lmax = worst(losses, min), worst(losses, max)
        return {
            "landscape/loss": loss0.item(),
            "landscape/loss_min": lmin,
            "landscape/loss_max": lmax,
            "landscape/loss_range": lmax - lmin if math.isfinite(lmax) and math.isfinite(lmin) else float("inf"),
            "landscape/grad_diff_min": worst(diffs, min),
            "landscape/grad_diff_max": worst(diffs, max),
            "landscape/beta": worst(betas, max),
            "landscape/grad_norm": gnorm,
            "landscape/step_norm": step_norm,
        }
