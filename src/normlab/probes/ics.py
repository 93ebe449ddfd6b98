"""Internal covariate shift (Santurkar et al. 2018, Definition 2.1) and unit-activation probes.

``ics`` (before the step): for each chosen weight layer i (index in ``models.weight_layers``
order; negative counts from the end), G = d loss / d W_i on the step's batch at w_t, and
G' = the same gradient on the same batch after every parameter *before* layer i (in module
order, BN parameters included) has moved to its step t+1 value, computed by stepping the run's
own optimizer on the step's gradient (plus the run's weight constraints). Layer i and all later
layers stay at w_t. Both gradients are taken in training mode with the same random stream (so
noisy BN draws the same noise for G and G'). Metrics, per layer i:
``ics/l2/<i>`` = ||G - G'||_2, ``ics/cos/<i>`` = cos(G, G'), ``ics/rel/<i>`` = ||G - G'|| / ||G||,
``ics/grad_norm/<i>`` = ||G||.

``bn_clean_eval`` (after the update of the steps listed in ``at``; usually the last step): test and
training accuracy of the net with its BN statistics recomputed without noise. Every ``Noise``
layer is switched off (identity), every BN layer's running statistics are reset and recomputed as
the plain average over the training set in batches of ``batch_size`` (training-mode forward passes,
no gradient, weights untouched), then the net is evaluated in eval mode. Metrics:
``bn_clean/test_acc``, ``bn_clean/test_loss``, ``bn_clean/train_acc``, ``bn_clean/train_loss``.
For noisy BN this removes the noise that the running statistics absorbed during training (the
noise is not part of the model at evaluation in Santurkar et al.'s Algorithm 1); for BN it gives
precise population statistics; a net without BN is evaluated unchanged (noise off).

``unit_activations`` (before the step, at the listed steps ``at``): the values that enter the
``layer``-th activation function (after BN / noise) for unit ``unit`` on the step's batch, as
``unit_act/<k>`` (k = sample, or sample x position for convolutions; at most ``max_values``).
Used for the activation histograms of Santurkar et al.'s Fig. 2.

The engine restores model, optimizer and RNG after each call (see ``normlab.probes``).
"""

from __future__ import annotations

import copy

import torch

from . import Probe, register

GRAD_SEED = 20_180_529  # fixed stream for the probe's forward passes (noisy BN's noise)


def loss_and_grads(model, loss_fn, x, y, params, seed: int = GRAD_SEED):
    """Training-mode loss on (x, y) and its gradient w.r.t. ``params``, under a fixed random stream."""
    devices = [x.device] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        model.train()
        loss = loss_fn(model(x), y)
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    grads = [torch.zeros_like(p) if g is None else g.detach() for p, g in zip(params, grads)]
    return loss.detach(), grads


class StackedPoints:
    """Training-mode loss and gradients of one model at k weight settings ("points"), each under the
    fixed stream of ``loss_and_grads``. In one pass where the stacked layer path knows the model: k
    stacked copies (``normlab.ensemble.StackedModel``, built once per model object and refreshed in
    place), each drawing that stream from its own generator; each point's loss is then bitwise the one
    ``loss_and_grads`` gives for the model at those weights, its gradients equal to rounding. Otherwise
    point by point with ``loss_and_grads`` on the model itself (its weights put back afterwards)."""

    def __init__(self):
        self._stack = (None, None)

    @property
    def stacked_model(self):
        """The StackedModel of the last call (None: that model is evaluated point by point)."""
        return self._stack[1]

    def point_by_point(self, model) -> None:
        """Evaluate ``model`` point by point from now on (the reference path)."""
        self._stack = (model, None)

    def __call__(self, model, loss_fn, x, y, values: dict, grad_names: list, seed: int = GRAD_SEED):
        """``values``: {parameter name: (k, *shape) tensor} for the parameters that differ between the
        points (the others as in ``model``) -> (losses (k,), [gradient (k, *shape) per grad_names])."""
        k = len(next(iter(values.values())))
        if self._stack[0] is not model or (self._stack[1] is not None and self._stack[1].size != k):
            from ..ensemble import StackedModel

            dev = next(model.parameters()).device
            ens = StackedModel([copy.deepcopy(model) for _ in range(k)], [torch.Generator(dev) for _ in range(k)],
                               conv_path="grouped")  # the layer path: each point's loss bitwise the model's
            self._stack = (model, ens if ens.path == "layers" else None)
        ens = self._stack[1]
        if ens is None:
            return self._one_by_one(model, loss_fn, x, y, values, grad_names, seed)
        with torch.no_grad():
            for n, p in model.named_parameters():
                ens.params[n].copy_(values[n] if n in values else p.detach().expand_as(ens.params[n]))
            for n, b in model.named_buffers():
                ens.buffers[n].copy_(b.expand_as(ens.buffers[n]))
        for g in ens.generators:
            g.manual_seed(seed)
        ens.training = True
        z = ens.forward(x, shared=True)
        losses = torch.stack([loss_fn(z[j], y) for j in range(k)])
        grads = torch.autograd.grad(losses.sum(), [ens.params[n] for n in grad_names], allow_unused=True)
        grads = [torch.zeros_like(ens.params[n]) if g is None else g.detach() for n, g in zip(grad_names, grads)]
        return losses.detach(), grads

    @staticmethod
    def _one_by_one(model, loss_fn, x, y, values, grad_names, seed):
        params = dict(model.named_parameters())
        saved = {n: params[n].detach().clone() for n in values}
        losses, grads = [], []
        for j in range(len(next(iter(values.values())))):
            with torch.no_grad():
                for n, v in values.items():
                    params[n].copy_(v[j])
            loss, g = loss_and_grads(model, loss_fn, x, y, [params[n] for n in grad_names], seed)
            losses.append(loss)
            grads.append(g)
        with torch.no_grad():
            for n, w in saved.items():
                params[n].copy_(w)
        return torch.stack(losses), [torch.stack(gs) for gs in zip(*grads)]


def params_before(model, layer) -> list[torch.nn.Parameter]:
    """Parameters of the modules that come before ``layer`` in module (forward) order."""
    out = []
    for m in model.modules():
        if m is layer:
            return out
        out += [p for p in m.parameters(recurse=False)]
    raise ValueError("layer is not a module of the model")


def flat(ts) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in ts])


def next_weights(ctx, params) -> list[torch.Tensor]:
    """w_{t+1} of ``params``: the run's own optimizer stepped on the step's gradient (already in
    .grad), then the run's weight constraints; the weights and the optimizer's state (e.g. momentum)
    are put back, so the probe changes nothing. The actual update is w_{t+1} - w_t."""
    from ..optim import CONSTRAINTS

    w_t = [p.detach().clone() for p in params]
    opt = ctx.optimizer
    state = {q: {k: (v.clone() if torch.is_tensor(v) else copy.deepcopy(v)) for k, v in st.items()}
             for q, st in opt.state.items()}
    groups = [{k: copy.deepcopy(v) for k, v in g.items() if k != "params"} for g in opt.param_groups]
    opt.step()
    for c in ctx.spec.get("constraints", []):
        CONSTRAINTS[c](ctx.model)
    opt.state.clear()  # the state as it was (what load_state_dict of a saved state_dict gives, without its cost)
    opt.state.update(state)
    for g, saved in zip(opt.param_groups, groups):
        g.update(saved)
    w_next = [p.detach().clone() for p in params]
    with torch.no_grad():
        for p, w in zip(params, w_t):
            p.copy_(w)
    return w_next


@register("ics")
class ICS(Probe):
    """||G - G'|| and cos(G, G') of chosen layers (params: ``layers``, default [1, -2])."""

    def __init__(self, every: int, **params):
        super().__init__(every, **params)
        self.stacked = StackedPoints()  # G and every G' in one stacked pass

    def before_step(self, ctx):
        from ..models import weight_layers

        model = ctx.model
        wl = weight_layers(model)
        idx = sorted({i % len(wl) for i in self.params.get("layers", [1, -2])})
        params = [p for p in model.parameters()]
        w_t = [p.detach().clone() for p in params]
        w_next = {id(p): w for p, w in zip(params, next_weights(ctx, params))}
        targets = [wl[i].weight for i in idx]
        # point 0: w_t; point 1 + j: every parameter before layer idx[j] at w_{t+1}, the rest at w_t
        names = {id(p): n for n, p in model.named_parameters()}
        moved = [{id(p) for p in params_before(model, wl[i])} for i in idx]
        values = {names[id(p)]: torch.stack([w] + [w_next[id(p)] if id(p) in mv else w for mv in moved])
                  for p, w in zip(params, w_t)}
        _, grads = self.stacked(model, ctx.loss_fn, ctx.x, ctx.y, values, [names[id(t)] for t in targets])
        G, G2 = [g[0] for g in grads], [g[1 + j] for j, g in enumerate(grads)]
        out = {}
        for i, g, g2 in zip(idx, G, G2):
            g, g2 = g.double(), g2.double()
            gn, diff = g.norm().item(), (g - g2).norm().item()
            denom = gn * g2.norm().item()
            out[f"ics/l2/{i}"] = diff
            out[f"ics/cos/{i}"] = (g * g2).sum().item() / denom if denom > 0 else float("nan")
            out[f"ics/rel/{i}"] = diff / gn if gn > 0 else float("nan")
            out[f"ics/grad_norm/{i}"] = gn
        return out


@register("bn_clean_eval")
class BNCleanEval(Probe):
    """Accuracy with noise-free BN statistics recomputed over the training set (params: at, batch_size)."""

    def due(self, step: int) -> bool:
        return step in set(self.params.get("at", []))

    def after_step(self, ctx):
        from ..models.layers import Noise

        model, data = ctx.model, ctx.data
        bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        noises = [m for m in model.modules() if isinstance(m, Noise)]
        momenta = [m.momentum for m in bns]
        bs = int(self.params.get("batch_size", 128))
        try:
            model.train()
            for m in noises:
                m.eval()  # Noise is the identity outside training mode
            for m in bns:
                m.reset_running_stats()
                m.momentum = None  # cumulative average: every batch counts the same
            with torch.no_grad():
                for i in range(0, len(data.x_train) - bs + 1, bs):
                    model(data.x_train[i:i + bs])
            model.eval()
            out = {}
            for split, (x, y) in {"train": (data.x_train, data.y_train), "test": (data.x_test, data.y_test)}.items():
                with torch.no_grad():
                    logits = torch.cat([model(x[i:i + 4096]) for i in range(0, len(x), 4096)])
                out[f"bn_clean/{split}_loss"] = float(ctx.loss_fn(logits, y))
                out[f"bn_clean/{split}_acc"] = float((logits.argmax(1) == y).double().mean())
        finally:
            for m, mom in zip(bns, momenta):
                m.momentum = mom
            model.train()
        return out


ACT_TYPES = (torch.nn.ReLU, torch.nn.Tanh, torch.nn.Sigmoid)


@register("unit_activations")
class UnitActivations(Probe):
    """Inputs of one unit's activation function at steps ``at`` (params: at, layer, unit, max_values)."""

    def due(self, step: int) -> bool:
        return step in set(self.params.get("at", []))

    def before_step(self, ctx):
        acts = [m for m in ctx.model.modules() if isinstance(m, ACT_TYPES)]
        if not acts:
            raise ValueError("unit_activations: the model has no activation function")
        layer = acts[self.params.get("layer", 0) % len(acts)]
        unit, cap = self.params.get("unit", 0), self.params.get("max_values", 512)
        seen = {}
        h = layer.register_forward_pre_hook(lambda m, inp: seen.setdefault("x", inp[0].detach()))
        try:
            with torch.no_grad():
                ctx.model.train()
                ctx.model(ctx.x)
        finally:
            h.remove()
        v = seen["x"][:, unit].reshape(-1)
        if len(v) > cap:
            v = v[torch.linspace(0, len(v) - 1, cap).long()]
        return {f"unit_act/{k}": float(a) for k, a in enumerate(v.tolist())}
