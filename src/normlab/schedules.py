"""Learning-rate schedules: ``build_schedule(spec, base_lr, optimizer_spec) -> lr(t)``.

A schedule is a function of the step t = 0, 1, ... returning the learning rate used for the
update from w_t to w_{t+1}. Register new ones in ``SCHEDULES`` as
``factory(spec, base_lr, optimizer_spec) -> callable``.
"""

from __future__ import annotations

import bisect


def constant(spec, base_lr, opt):
    return lambda t: base_lr


def step(spec, base_lr, opt):
    """Divide the rate by ``factor`` at each of ``milestones`` (steps)."""
    milestones, factor = sorted(spec.get("milestones", [])), spec.get("factor", 10.0)
    return lambda t: base_lr / factor ** bisect.bisect_right(milestones, t)


SCHEDULES = {"constant": constant, "step": step}


def build_schedule(spec: dict | None, base_lr: float, optimizer_spec: dict):
    spec = spec or {"name": "constant"}
    if spec["name"] not in SCHEDULES:
        raise ValueError(f"unknown schedule {spec['name']!r} (known: {', '.join(SCHEDULES)})")
    return SCHEDULES[spec["name"]](spec, base_lr, optimizer_spec)
