"""Learning-rate schedules: ``build_schedule(spec, base_lr, optimizer_spec) -> lr(t)``.

A schedule is a function of the step t = 0, 1, ... returning the learning rate used for the
update from w_t to w_{t+1}. Register new ones in ``SCHEDULES`` as
``factory(spec, base_lr, optimizer_spec) -> callable``. A schedule may also carry
``init_optimizer_state(optimizer)``: the engine calls it once before step 0 (e.g. to set the
initial momentum buffer the exponential schedules need).

``exponential`` and ``texp`` (Li & Arora 2020) replace weight decay ``spec["weight_decay"]``
(lambda) with a growing rate, exactly, on a scale-invariant loss; the derivation is in
``normlab.studies.li_arora``. ``texp_practical`` is the paper's TEXP as practitioners run it: at
each milestone divide the rate by the decay factor and switch to the new phase's growth factor,
with no momentum correction and PyTorch's zero initial momentum buffer (close to, not exactly,
equivalent to step decay + weight decay). CLI: ``python -m normlab.schedules --lr 0.1 --weight-decay 5e-4
--momentum 0.9 --batch-size 128 --n-train 50000`` prints alpha and the per-epoch growth factor.
"""

from __future__ import annotations

import bisect
import math


def constant(spec, base_lr, opt):
    return lambda t: base_lr


def step(spec, base_lr, opt):
    """Divide the rate by ``factor`` at each of ``milestones`` (steps)."""
    milestones, factor = sorted(spec.get("milestones", [])), spec.get("factor", 10.0)
    return lambda t: base_lr / factor ** bisect.bisect_right(milestones, t)


def li_arora_alpha(lr: float, weight_decay: float, momentum: float) -> float:
    """The larger root alpha of x^2 - (1 + gamma - lambda*eta) x + gamma = 0 (gamma = 0: 1 - lambda*eta).

    Raises ValueError when there is no real root in (0, 1]: no exponential schedule is then equivalent.
    """
    b = 1.0 + momentum - lr * weight_decay
    disc = b * b - 4.0 * momentum
    if disc < 0 or b <= 0:
        raise ValueError(f"lr*weight_decay = {lr * weight_decay:g} is too large for momentum {momentum:g}: "
                         f"x^2 - (1 + gamma - lambda*eta) x + gamma = 0 has no real root in (0, 1] (needs "
                         f"lambda*eta <= (1 - sqrt(gamma))^2 = {(1 - math.sqrt(momentum)) ** 2:g})")
    return (b + math.sqrt(disc)) / 2.0


class ScaledSchedule:
    """The rates eta'_t under which SGD + momentum without weight decay retraces, on a scale-invariant
    loss, SGD + momentum + weight decay lambda under the rates ``base(t)``: w'_t = scale(t) * w_t.

    Recurrence (derivation in normlab.studies.li_arora): a_{-1} = alpha(eta_0), rho_t = eta_t / eta_{t-1}
    (rho_0 = 1), a_t = 1 + gamma*rho_t - lambda*eta_t - gamma*rho_t / a_{t-1}; c_0 = 1, c_{t+1} = c_t / a_t;
    eta'_t = eta_t c_t c_{t+1}. The initial momentum buffer is (a_{-1} - 1) / (eta_0 a_{-1}) * w_0.
    """

    def __init__(self, base, weight_decay: float, momentum: float):
        self.base, self.wd, self.momentum = base, weight_decay, momentum
        self.alpha0 = li_arora_alpha(base(0), weight_decay, momentum)
        self.buffer_coef = (self.alpha0 - 1.0) / (base(0) * self.alpha0)
        self._c, self._lr = [1.0], []
        self._a, self._eta = self.alpha0, base(0)

    def _extend(self, t: int) -> None:
        g, lam = self.momentum, self.wd
        while len(self._lr) <= t:
            k = len(self._lr)
            eta = self.base(k)
            rho = eta / self._eta
            a = 1.0 + g * rho - lam * eta - g * rho / self._a
            if a <= 0:
                raise ValueError(f"no equivalent schedule at step {k}: weight decay {lam:g} too large for rate {eta:g}")
            self._c.append(self._c[-1] / a)
            self._lr.append(eta * self._c[-2] * self._c[-1])
            self._a, self._eta = a, eta

    def __call__(self, t: int) -> float:
        self._extend(t)
        return self._lr[t]

    def scale(self, t: int) -> float:
        """c_t: the weights of this run are c_t times those of the weight-decay run after t updates."""
        self._extend(max(t - 1, 0))
        return self._c[t]

    def init_optimizer_state(self, optimizer) -> None:
        """Set the momentum buffer before step 0 to buffer_coef * w_0 (PyTorch then uses gamma*buf + g_0)."""
        for group in optimizer.param_groups:
            if group.get("momentum", 0.0) == 0:
                continue
            for p in group["params"]:
                optimizer.state[p]["momentum_buffer"] = self.buffer_coef * p.detach().clone()


class ExponentialSchedule(ScaledSchedule):
    """eta'_t = eta * alpha^(-2t-1), c_t = alpha^(-t): the closed form of ScaledSchedule for a constant rate."""

    def __init__(self, lr: float, weight_decay: float, momentum: float):
        super().__init__(lambda t: lr, weight_decay, momentum)
        self.lr, self.alpha = lr, self.alpha0

    def __call__(self, t: int) -> float:
        return self.lr * self.alpha ** (-2 * t - 1)

    def scale(self, t: int) -> float:
        return self.alpha ** (-t)


def _replaced_wd(spec, opt, name) -> tuple[float, float]:
    if "weight_decay" not in spec:
        raise ValueError(f"schedule {name!r} needs 'weight_decay': the weight decay it replaces")
    if opt.get("name", "sgd") != "sgd" or opt.get("nesterov", False):
        raise ValueError(f"schedule {name!r} is equivalent to weight decay only for SGD (heavy-ball momentum)")
    return float(spec["weight_decay"]), float(opt.get("momentum", 0.0))


def exponential(spec, base_lr, opt):
    """Li & Arora's exponential rate: replaces constant rate + weight decay ``spec["weight_decay"]``."""
    return ExponentialSchedule(base_lr, *_replaced_wd(spec, opt, "exponential"))


def texp(spec, base_lr, opt):
    """Tapered exponential: replaces ``step`` (same milestones, factor) + weight decay ``spec["weight_decay"]``."""
    return ScaledSchedule(step(spec, base_lr, opt), *_replaced_wd(spec, opt, "texp"))


class PracticalTEXP:
    """Li & Arora's tapered exponential schedule (TEXP), without the momentum correction.

    Phases k = 0, 1, ... of step decay (rate eta / C^k, milestones T_1 < T_2 < ...) have roots
    alpha_k = alpha(eta / C^k, lambda, gamma). Rates: eta'_0 = eta / alpha_0; inside phase k
    eta'_t = eta'_{t-1} alpha_k^-2; at a milestone T_k: eta'_T = eta'_{T-1} / (C alpha_{k-1} alpha_k)
    (divide by C, switch to the new phase's growth). No ``init_optimizer_state``: the momentum buffer
    starts at zero, as in plain PyTorch.
    """

    def __init__(self, lr: float, milestones, factor: float, weight_decay: float, momentum: float):
        self.milestones, self.factor = sorted(set(int(m) for m in milestones)), float(factor)
        self.alphas = [li_arora_alpha(lr / self.factor ** k, weight_decay, momentum)
                       for k in range(len(self.milestones) + 1)]
        self._log = [math.log(lr / self.alphas[0])]

    def phase(self, t: int) -> int:
        return bisect.bisect_right(self.milestones, t)

    def __call__(self, t: int) -> float:
        while len(self._log) <= t:
            k, u = self.phase(len(self._log)), len(self._log)
            if u in self.milestones:
                step_log = -math.log(self.factor * self.alphas[k - 1] * self.alphas[k])
            else:
                step_log = -2.0 * math.log(self.alphas[k])
            self._log.append(self._log[-1] + step_log)
        return math.exp(self._log[t])


def texp_practical(spec, base_lr, opt):
    """The paper's TEXP (no momentum correction, zero initial buffer): replaces ``step`` + weight decay."""
    wd, mom = _replaced_wd(spec, opt, "texp_practical")
    return PracticalTEXP(base_lr, spec.get("milestones", []), spec.get("factor", 10.0), wd, mom)


def growth_per_epoch(lr: float, weight_decay: float, momentum: float, steps_per_epoch: int) -> float:
    """The exponential schedule's rate growth over one epoch: alpha^(-2 * steps_per_epoch)."""
    return li_arora_alpha(lr, weight_decay, momentum) ** (-2 * steps_per_epoch)


SCHEDULES = {"constant": constant, "step": step, "exponential": exponential, "texp": texp,
             "texp_practical": texp_practical}


def build_schedule(spec: dict | None, base_lr: float, optimizer_spec: dict):
    spec = spec or {"name": "constant"}
    if spec["name"] not in SCHEDULES:
        raise ValueError(f"unknown schedule {spec['name']!r} (known: {', '.join(SCHEDULES)})")
    return SCHEDULES[spec["name"]](spec, base_lr, optimizer_spec)


def main(argv=None):
    import argparse

    ap = argparse.ArgumentParser(description="Li & Arora's alpha and the exponential schedule's growth per epoch")
    ap.add_argument("--lr", type=float, required=True)
    ap.add_argument("--weight-decay", type=float, required=True)
    ap.add_argument("--momentum", type=float, default=0.0)
    ap.add_argument("--batch-size", type=int, required=True)
    ap.add_argument("--n-train", type=int, required=True)
    a = ap.parse_args(argv)
    alpha = li_arora_alpha(a.lr, a.weight_decay, a.momentum)
    spe = math.ceil(a.n_train / a.batch_size)
    print(f"alpha = {alpha:.10f}; growth per step alpha^-2 = {alpha ** -2:.8f}; "
          f"{spe} steps per epoch (ceil({a.n_train}/{a.batch_size})); "
          f"growth per epoch = {growth_per_epoch(a.lr, a.weight_decay, a.momentum, spe):.3f}")


if __name__ == "__main__":
    main()
