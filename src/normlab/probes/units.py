"""Per-unit probe ``units``: the quantities of the implicit learning-rate decay argument.

For every BN-fed unit j (``models.bn_fed_layers``: layers named ``bn0``, ``bn1``, ...) and for
the output layer (``out``, not scale invariant: the control) it measures, vectorized per layer
over the rows w_j of the weight matrix (conv filters are flattened):

before the update (``before_step``, gradient g_j = dJ/dw_j of this step's batch):
- ``w2_*``: ||w_j||^2 (mean and quantiles over units), ``w4_mean``: mean_j ||w_j||^4 (the
  quantity that grows linearly in k under the lecture's law, see studies/norm_growth.py);
- ``g2_mean``: mean_j ||g_j||^2; ``G2_mean``/``G_q*``: the gradient at unit norm,
  G_j = ||grad J(w_hat_j)|| = ||w_j|| ||g_j|| (Euler: degree -1 homogeneity);
- ``efflr_*``: the effective learning rate eta / ||w_j||^2;
- ``cos_wg_max``: max_j |cos(w_j, g_j)| (0 for a scale-invariant unit);
- ``unit<i>_w2``: ||w_j||^2 of the first ``track`` units (for spaghetti plots);

after the update (``after_step``, same step; w_j' = the new weights, after any constraint):
- ``angle_mean``/``angle_rms``/``angle_q*``: the angle between w_j and w_j' (the step on the sphere);
- ``dw2_mean``: mean_j (||w_j'||^2 - ||w_j||^2); ``inc_mean``: mean_j eta^2 ||g_j||^2;
- ``pyth_rel_w_max``: max_j |r_j| / ||w_j||^2 and ``pyth_rel_inc_med``/``_max``: |r_j| / (eta^2 ||g_j||^2),
  with r_j = ||w_j'||^2 - ||w_j||^2 - eta^2 ||g_j||^2 the residual of the Pythagorean recursion.

Everything is computed in float64 from the (possibly float32) weights; r_j is computed as
2 <w_j, d_j> + ||d_j||^2 - eta^2 ||g_j||^2 with d_j = w_j' - w_j, which avoids cancelling two
large norms. Cost per call: a few vector reductions per layer (no extra forward/backward).
"""

from __future__ import annotations

import torch

from . import Probe, register

QUANTILES = (0.1, 0.5, 0.9)


def unit_layers(model) -> list[tuple[str, torch.nn.Module]]:
    """[(name, layer)]: the BN-fed layers as bn0, bn1, ... and the last weight layer as ``out``."""
    from ..models import bn_fed_layers, weight_layers

    bn = bn_fed_layers(model)
    layers = [(f"bn{i}", m) for i, m in enumerate(bn)]
    last = weight_layers(model)[-1]
    if all(last is not m for m in bn):
        layers.append(("out", last))
    return layers


def _angle(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise angle between a_j and b_j, accurate for tiny angles (2 atan2(|u-v|, |u+v|))."""
    u = a / a.norm(dim=1, keepdim=True).clamp_min(1e-300)
    v = b / b.norm(dim=1, keepdim=True).clamp_min(1e-300)
    return 2 * torch.atan2((u - v).norm(dim=1), (u + v).norm(dim=1))


def _q(prefix: str, x: torch.Tensor) -> dict:
    qs = torch.quantile(x, torch.tensor(QUANTILES, dtype=x.dtype, device=x.device)).tolist()
    return {f"{prefix}_q{int(q * 100)}": v for q, v in zip(QUANTILES, qs)}


@register("units")
class Units(Probe):
    """Per-unit norms, gradients, effective rates, angular updates, Pythagorean residuals."""

    def __init__(self, every: int, track: int = 4):
        super().__init__(every, track=track)
        self.track = track
        self._before: dict = {}
        self._step = None

    def before_step(self, ctx):
        out, self._before = {}, {}
        for name, layer in unit_layers(ctx.model):
            p = f"units/{name}"
            w = layer.weight.detach().flatten(1).to(torch.float64)
            w2 = (w * w).sum(1)
            eff = ctx.lr / w2
            out.update({f"{p}/w2_mean": w2.mean(), f"{p}/w4_mean": (w2 * w2).mean(), f"{p}/efflr_mean": eff.mean()})
            out.update(_q(f"{p}/w2", w2))
            out.update(_q(f"{p}/efflr", eff))
            for i in range(min(self.track, len(w2))):
                out[f"{p}/unit{i}_w2"] = w2[i]
            g = layer.weight.grad
            if g is None:
                self._before[name] = (w.clone(), w2, None)
                continue
            g = g.detach().flatten(1).to(torch.float64)
            g2 = (g * g).sum(1)
            G2 = w2 * g2
            cos = (w * g).sum(1) / (w2 * g2).sqrt().clamp_min(1e-300)
            out.update({f"{p}/g2_mean": g2.mean(), f"{p}/G2_mean": G2.mean(), f"{p}/cos_wg_max": cos.abs().max()})
            out.update(_q(f"{p}/G", G2.sqrt()))
            self._before[name] = (w.clone(), w2, g2)
        self._step = ctx.step
        return {k: float(v) for k, v in out.items()}

    def after_step(self, ctx):
        if self._step != ctx.step:  # before_step did not run at this step (cannot happen in the engine)
            return {}
        out = {}
        for name, layer in unit_layers(ctx.model):
            p = f"units/{name}"
            w0, w2, g2 = self._before[name]
            w1 = layer.weight.detach().flatten(1).to(torch.float64)
            d = w1 - w0
            dw2 = 2 * (w0 * d).sum(1) + (d * d).sum(1)
            ang = _angle(w0, w1)
            out.update({f"{p}/angle_mean": ang.mean(), f"{p}/angle_rms": (ang * ang).mean().sqrt(),
                        f"{p}/dw2_mean": dw2.mean()})
            out.update(_q(f"{p}/angle", ang))
            if g2 is not None:
                inc = ctx.lr ** 2 * g2
                r = (dw2 - inc).abs()
                rel_inc = r / inc.clamp_min(1e-300)
                out.update({f"{p}/inc_mean": inc.mean(), f"{p}/pyth_rel_w_max": (r / w2).max(),
                            f"{p}/pyth_rel_inc_med": rel_inc.median(), f"{p}/pyth_rel_inc_max": rel_inc.max()})
        self._before, self._step = {}, None
        return {k: float(v) for k, v in out.items()}
