"""Per-unit probe ``units``: the quantities of the implicit learning-rate decay argument.

For every BN-fed unit j (``models.bn_fed_layers``: layers named ``bn0``, ``bn1``, ...) and for
the output layer (``out``, not scale invariant: the control) it measures, vectorized per layer
over the rows w_j of the weight matrix (conv filters are flattened):

before the update (``before_step``, gradient g_j = dJ/dw_j of this step's batch):
- ``w2_*``: ||w_j||^2 (mean and quantiles over units), ``w4_mean``: mean_j ||w_j||^4 (the
  quantity that grows linearly in k under the lecture's law, see studies/norm_growth/);
- ``g2_mean``: mean_j ||g_j||^2; ``G2_mean``/``G_q*``: the gradient at unit norm,
  G_j = ||grad J(w_hat_j)|| = ||w_j|| ||g_j|| (Euler: degree -1 homogeneity);
- ``efflr_*``: the effective learning rate eta / ||w_j||^2;
- ``cos_wg_max``: max_j |cos(w_j, g_j)| (0 for a scale-invariant unit);
- ``unit<i>_w2``: ||w_j||^2 of the first ``track`` units (for spaghetti plots);

after the update (``after_step``, same step; w_j' = the new weights, after any constraint):
- ``angle_mean``/``angle_rms``/``angle_q*``: the angle between w_j and w_j' (the step on the sphere);
- ``dw2_mean``: mean_j (||w_j'||^2 - ||w_j||^2); ``inc_mean``: mean_j eta^2 ||g_j||^2;
- ``pyth_rel_w_max``: max_j |r_j| / ||w_j||^2 and ``pyth_rel_inc_med``/``_max``: |r_j| / (eta^2 ||g_j||^2),
  with r_j = ||w_j'||^2 - ||w_j||^2 - eta^2 ||g_j||^2 the residual of the Pythagorean recursion;
- ``relupd_rms`` (with ``relative=True``): sqrt(mean_j ||w_j' - w_j||^2 / ||w_j||^2), the relative update size per
  step, an effective learning rate measured the same way for every layer, scale invariant or not (for a BN-fed
  unit under plain SGD it is eta ||g_j|| / ||w_j|| = eta G_j / ||w_j||^2, about the angle).

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
    """Angle between a_j and b_j along the last dimension, accurate for tiny angles
    (2 atan2(|u-v|, |u+v|)); 0 for two zero rows."""
    u = a / a.norm(dim=-1, keepdim=True).clamp_min(1e-300)
    v = b / b.norm(dim=-1, keepdim=True).clamp_min(1e-300)
    return 2 * torch.atan2((u - v).norm(dim=-1), (u + v).norm(dim=-1))


def _slots(keys: list, names: list) -> tuple[dict, list]:
    """({member: {}}, [(that member's metrics dict, packed index, metric prefix)] per (member, layer)):
    the layers of all members are packed member-major."""
    res = {e: {} for e in keys}
    return res, [(res[e], k * len(names) + j, f"units/{name}") for k, e in enumerate(keys) for j, name in enumerate(names)]


def _pack(mats: list[torch.Tensor], rows: int, cols: int) -> torch.Tensor:
    """(L, rows, cols) float64: matrix i in the top-left corner of slice i, zeros elsewhere (zero
    rows and columns change no sum, norm or dot product)."""
    out = torch.zeros(len(mats), rows, cols, dtype=torch.float64, device=mats[0].device)
    for i, m in enumerate(mats):
        out[i, :m.shape[0], :m.shape[1]] = m
    return out


def _nanquantiles(x: torch.Tensor, n: torch.Tensor, qs=QUANTILES) -> torch.Tensor:
    """torch.nanquantile(x, qs, dim=-1) (linear interpolation) for x whose last dimension holds, in
    slice i, n[i] values followed by NaN padding: one sort for every statistic and layer.
    x: (S, L, rows), n: (L,) -> (Q, S, L)."""
    xs = x.sort(dim=-1).values  # NaN last
    q = torch.tensor(qs, dtype=x.dtype, device=x.device).unsqueeze(1)  # (Q, 1)
    rank = q * (n.to(x.dtype) - 1)  # (Q, L)
    lo = rank.floor()
    w = (rank - lo).expand(x.shape[0], -1, -1).transpose(0, 1)  # (Q, S, L)
    lo_i = lo.long().unsqueeze(0).expand(x.shape[0], -1, -1).permute(2, 0, 1)  # (L, S, Q)
    hi_i = rank.ceil().long().unsqueeze(0).expand(x.shape[0], -1, -1).permute(2, 0, 1)
    xl = xs.transpose(0, 1)  # (L, S, rows)
    below = xl.gather(-1, lo_i).permute(2, 1, 0)  # (Q, S, L)
    above = xl.gather(-1, hi_i).permute(2, 1, 0)
    return torch.lerp(below, above, w)


@register("units")
class Units(Probe):
    """Per-unit norms, gradients, effective rates, angular updates, Pythagorean residuals.

    All layers (of all members, ``before_members``) at once: their weight matrices (rows = units) are
    packed into one zero-padded (L, units, fan-in) float64 tensor, padded units are NaN in the
    per-unit statistics, and every statistic is one batched op over the layers (nanmean, nanmedian,
    quantiles from one sort); one read-back per group of metrics. Values equal those of the per-layer
    formulas (up to summation order).
    """

    read_only = True  # reads weights and grads only

    def __init__(self, every: int, track: int = 4, relative: bool = False):
        super().__init__(every, track=track, relative=relative)
        self.track = track
        self.relative = relative
        self._before: dict = {}
        self._step = None
        self._layers: dict = {}

    def _unit_layers(self, model):
        if id(model) not in self._layers:  # the engine hands the same model objects at every call
            self._layers[id(model)] = (model, unit_layers(model))
        return self._layers[id(model)][1]

    def before_step(self, ctx):
        return self.before_members({0: ctx})[0]

    def after_step(self, ctx):
        return self.after_members({0: ctx}).get(0, {})

    def before_members(self, ctxs: dict) -> dict:
        """{member: metrics} for the contexts {member: ctx} of one step (same lr): one pass for all."""
        keys = list(ctxs)
        lr = ctxs[keys[0]].lr
        per = [self._unit_layers(ctxs[e].model) for e in keys]  # [(name, layer)] per member
        names = [n for n, _ in per[0]]
        ws = [m.weight.detach().flatten(1) for layers in per for _, m in layers]
        gs = [m.weight.grad for layers in per for _, m in layers]
        has_g = [g is not None for g in gs]
        n_u = [w.shape[0] for w in ws]
        rows, cols = max(n_u), max(w.shape[1] for w in ws)
        W = _pack(ws, rows, cols)
        valid = torch.arange(rows, device=W.device) < torch.tensor(n_u, device=W.device).unsqueeze(1)  # (L, rows)
        nan = torch.tensor(float("nan"), dtype=torch.float64, device=W.device)
        w2 = (W * W).sum(-1)
        w2n = torch.where(valid, w2, nan)
        eff = lr / w2n
        stats = [w2n, w2n * w2n, eff]  # means: w2, w4, efflr
        qs = [w2n, eff]  # quantiles: w2, efflr
        if any(has_g):
            G = _pack([g.detach().flatten(1) if g is not None else w.new_zeros(w.shape) for g, w in zip(gs, ws)],
                      rows, cols)
            g2 = (G * G).sum(-1)
            G2 = w2 * g2
            cos = ((W * G).sum(-1) / G2.sqrt().clamp_min(1e-300)).abs()  # 0 on padded units
            g2n, G2n = torch.where(valid, g2, nan), torch.where(valid, G2, nan)
            stats += [g2n, G2n]
            qs.append(G2n.sqrt())
            cosmax = cos.amax(-1).tolist()
        else:
            g2 = None
        means = torch.nanmean(torch.stack(stats), -1).tolist()  # (stat, L)
        n_t = torch.tensor(n_u, device=W.device)
        quant = _nanquantiles(torch.stack(qs), n_t).tolist()  # (q, stat, L)
        track = w2[:, :self.track].tolist()
        res, slots = _slots(keys, names)
        for out, i, p in slots:
            out.update({f"{p}/w2_mean": means[0][i], f"{p}/w4_mean": means[1][i], f"{p}/efflr_mean": means[2][i]})
            for jq, q in enumerate(QUANTILES):
                out[f"{p}/w2_q{int(q * 100)}"] = quant[jq][0][i]
            for jq, q in enumerate(QUANTILES):
                out[f"{p}/efflr_q{int(q * 100)}"] = quant[jq][1][i]
            for u in range(min(self.track, n_u[i])):
                out[f"{p}/unit{u}_w2"] = track[i][u]
            if has_g[i]:
                out.update({f"{p}/g2_mean": means[3][i], f"{p}/G2_mean": means[4][i], f"{p}/cos_wg_max": cosmax[i]})
                for jq, q in enumerate(QUANTILES):
                    out[f"{p}/G_q{int(q * 100)}"] = quant[jq][2][i]
        self._before = {"keys": keys, "names": names, "W": W, "w2": w2, "g2": g2, "has_g": has_g,
                        "valid": valid, "shape": (rows, cols), "n": n_t}
        self._step = ctxs[keys[0]].step
        return res

    def after_members(self, ctxs: dict) -> dict:
        """{member: metrics} right after the update, for the members ``before_members`` saw."""
        keys = list(ctxs)
        b = self._before
        if not keys or self._step != ctxs[keys[0]].step or b["keys"] != keys:
            return {}  # before_members did not run on these members at this step (cannot happen in the engine)
        lr = ctxs[keys[0]].lr
        names, W0, w2, g2, has_g, valid = b["names"], b["W"], b["w2"], b["g2"], b["has_g"], b["valid"]
        W1 = _pack([m.weight.detach().flatten(1) for e in keys for _, m in self._unit_layers(ctxs[e].model)],
                   *b["shape"])
        nan = torch.tensor(float("nan"), dtype=torch.float64, device=W1.device)
        D = W1 - W0
        dw2 = 2 * (W0 * D).sum(-1) + (D * D).sum(-1)
        ang = torch.where(valid, _angle(W0, W1), nan)
        stats = [ang, ang * ang, torch.where(valid, dw2, nan)]
        ninf = torch.tensor(float("-inf"), dtype=torch.float64, device=W1.device)
        if g2 is not None:
            inc = lr ** 2 * g2
            r = (dw2 - inc).abs()
            rel_inc = torch.where(valid, r / inc.clamp_min(1e-300), nan)
            stats.append(torch.where(valid, inc, nan))
            maxes = torch.stack([torch.where(valid, r / w2, ninf), torch.where(valid, rel_inc, ninf)]).amax(-1).tolist()
            med = torch.nanmedian(rel_inc, -1).values.tolist()
        if self.relative:
            stats.append(torch.where(valid, (D * D).sum(-1) / w2.clamp_min(1e-300), nan))
        means = torch.nanmean(torch.stack(stats), -1).tolist()
        quant = _nanquantiles(ang.unsqueeze(0), b["n"])[:, 0].tolist()
        res, slots = _slots(keys, names)
        for out, i, p in slots:
            out.update({f"{p}/angle_mean": means[0][i], f"{p}/angle_rms": means[1][i] ** 0.5,
                        f"{p}/dw2_mean": means[2][i]})
            if self.relative:
                out[f"{p}/relupd_rms"] = means[-1][i] ** 0.5
            for jq, q in enumerate(QUANTILES):
                out[f"{p}/angle_q{int(q * 100)}"] = quant[jq][i]
            if has_g[i]:
                out.update({f"{p}/inc_mean": means[3][i], f"{p}/pyth_rel_w_max": maxes[0][i],
                            f"{p}/pyth_rel_inc_med": med[i], f"{p}/pyth_rel_inc_max": maxes[1][i]})
        self._before, self._step = {}, None
        return res
