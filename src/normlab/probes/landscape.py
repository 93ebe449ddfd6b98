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

Cost: w_t and the n grid points are one forward and backward pass of n + 1 stacked copies of the
model (``ics.StackedPoints``): each point's loss is bitwise the one of the model alone, its gradient
equal to rounding (models the stacked layer path does not know: point by point).
"""

from __future__ import annotations

import math

import torch

from . import Probe, register
from .ics import StackedPoints, flat, next_weights


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

    def __init__(self, every: int, **params):
        super().__init__(every, **params)
        self.stacked = StackedPoints()  # w_t and the grid points in one stacked pass

    def before_step(self, ctx):
        model = ctx.model
        params = [p for p in model.parameters() if p.requires_grad]
        grid = step_grid(self.params.get("scales", (0.5, 4.0)), self.params.get("n", 8),
                         self.params.get("spacing", "linear"))
        w0 = [p.detach().clone() for p in params]
        step = [w1 - w for w1, w in zip(next_weights(ctx, params), w0)]  # the actual update d
        step_norm = flat(step).double().norm().item()
        # w_t (point 0) and w_t + a d for a in the grid, in one stacked pass
        names = {id(p): n for n, p in model.named_parameters()}
        values = {names[id(p)]: torch.stack([w] + [w + a * d for a in grid]) for p, w, d in zip(params, w0, step)}
        all_losses, grads = self.stacked(model, ctx.loss_fn, ctx.x, ctx.y, values, [names[id(p)] for p in params])
        G = torch.cat([g.reshape(g.shape[0], -1) for g in grads], 1).double()
        gnorm = G[0].norm().item()
        diffs = (G[1:] - G[0]).norm(dim=1).tolist()
        loss0, losses = all_losses[0], all_losses[1:].tolist()
        betas = [diff / (a * step_norm) if a * step_norm > 0 else float("nan") for a, diff in zip(grid, diffs)]

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
