"""S2's variants (the accuracy runs: one training job per schedule, over seeds) and the cross-key checks of its
config section. Which claims a config can test (``NEEDS``, ``missing``): any subset of the schedules and of
the exactness dtypes and pairs runs; a claim whose runs are absent is reported ``not run``.

Light at import: the Snakefile imports it at parse time."""

from __future__ import annotations

# What each headline claim needs: schedules of the accuracy runs, and (dtype, pair) of the exactness job.
NEEDS = {"S2.a": {"exactness": [("float64", "exp")]},
         "S2.b": {"schedules": ["step_wd", "texp_practical"]},
         "S2.c": {"schedules": ["const_wd", "exponential"]},
         "S2.d": {"exactness": [("float32", "exp")]}}


def missing(cfg: dict, need: dict) -> list[str]:
    """What of ``need`` (a value of ``NEEDS``) the config lacks, in words ("schedule texp_practical", "exactness
    dtype float32"); empty when the claim can run."""
    ex = cfg["exactness"]
    out = [f"schedule {s}" for s in need.get("schedules", []) if s not in cfg["schedules"]]
    for dtype, pair in need.get("exactness", []):
        out += [f"exactness dtype {dtype}"] if dtype not in ex["dtypes"] else []
        out += [f"exactness pair {pair}"] if pair not in ex["pairs"] else []
    return out


def milestone_steps(fractions, steps: int) -> list[int]:
    """Milestones given as fractions of the run, as step numbers (each >= 1, distinct)."""
    return sorted({max(1, round(f * steps)) for f in fractions})


def _alpha_problem(lr, wd, mom, key) -> list[str]:
    from ...schedules import li_arora_alpha

    try:
        li_arora_alpha(lr, wd, mom)
    except ValueError as e:
        return [f"'{key}' with 'lr'/'momentum': {e}"]
    return []


def _alpha_problems(cfg: dict) -> list[str]:
    p = _alpha_problem(cfg["lr"], cfg["weight_decay"], cfg["momentum"], "weight_decay")
    p += _alpha_problem(cfg["lr"], cfg["growth"]["weight_decay"], cfg["momentum"], "growth.weight_decay")
    for i, s in enumerate(cfg["exactness"]["settings"]):
        p += _alpha_problem(s["lr"], s["weight_decay"], s["momentum"], f"exactness.settings[{i}]")
    return p


def _step_problems(cfg: dict) -> list[str]:
    p = []
    steps, ex = cfg["train"]["steps"], cfg["exactness"]
    ms = cfg["step_decay"]["milestones"]
    if any(b <= a for a, b in zip(ms, ms[1:])) or not all(0 < f < 1 for f in ms):
        p.append(f"'step_decay.milestones' {ms} must be strictly increasing fractions in (0, 1) of 'train.steps'")
    elif len(milestone_steps(ms, steps)) < len(ms):
        p.append(f"'step_decay.milestones' {ms} fall on the same step for 'train.steps' {steps}")
    for key, val, lim_key, lim in (("train.eval_every", cfg["train"].get("eval_every", 1), "train.steps", steps),
                                   ("norm_every", cfg["norm_every"], "train.steps", steps),
                                   ("exactness.log_every", ex["log_every"], "exactness.steps", ex["steps"])):
        if val > lim:
            p.append(f"'{key}' {val} must be at most '{lim_key}' {lim}")
    return p


def check_config(cfg: dict) -> list[str]:
    """Cross-key checks (messages name both keys, relative to studies.li_arora). Refused: keys that contradict
    each other, and a config where no claim of S2.a-d could run."""
    p = []
    ex = cfg["exactness"]
    for key, m in (("model", cfg["model"]), ("exactness.model", ex["model"])):
        if not (m.get("scale_invariant") and m.get("norm") == "bn_pre"):
            p.append(f"'{key}.scale_invariant' must be true with '{key}.norm' bn_pre (the theorem needs a "
                     f"scale-invariant loss); got {m.get('scale_invariant')!r}, {m.get('norm')!r}")
    p += _step_problems(cfg)
    if "float32" in ex["dtypes"] and "exp" not in ex["pairs"]:
        p.append(f"'exactness.dtypes' {ex['dtypes']} runs float32, which runs the exp pair only, but "
                 f"'exactness.pairs' {ex['pairs']} lacks 'exp'")
    if all(missing(cfg, need) for need in NEEDS.values()):
        lacks = "; ".join(f"{cid} needs {', '.join(missing(cfg, need))}" for cid, need in NEEDS.items())
        p.append(f"'schedules' {cfg['schedules']} with 'exactness.dtypes' {ex['dtypes']} and 'exactness.pairs' "
                 f"{ex['pairs']}: no claim could run ({lacks})")
    return p + _alpha_problems(cfg)


def variants(cfg: dict) -> dict:
    from ...config import ConfigError

    problems = _alpha_problem(cfg["lr"], cfg["weight_decay"], cfg["momentum"], "weight_decay")
    for i, s in enumerate(cfg["exactness"]["settings"]):
        problems += _alpha_problem(s["lr"], s["weight_decay"], s["momentum"], f"exactness.settings[{i}]")
    if problems:
        raise ConfigError(f"studies.li_arora: {problems[0]}")
    lam, mom, steps = cfg["weight_decay"], cfg["momentum"], cfg["train"]["steps"]
    lam_g = cfg["growth"]["weight_decay"]
    step = {"milestones": milestone_steps(cfg["step_decay"]["milestones"], steps), "factor": cfg["step_decay"]["factor"]}

    def opt(wd):
        return {"name": "sgd", "momentum": mom, "weight_decay": wd}

    defs = {
        "step_wd": (opt(lam), {"name": "step", **step}),
        "texp_practical": (opt(0.0), {"name": "texp_practical", **step, "weight_decay": lam}),
        "texp": (opt(0.0), {"name": "texp", **step, "weight_decay": lam}),
        "const_wd": (opt(lam_g), {"name": "constant"}),
        "exponential": (opt(0.0), {"name": "exponential", "weight_decay": lam_g}),
    }
    return {name: {"keys": {"schedule": name},
                   "model": cfg["model"], "optimizer": defs[name][0], "lr": cfg["lr"], "schedule": defs[name][1],
                   "train": cfg["train"], "probes": [{"name": "weight_norms", "every": cfg["norm_every"]}]}
            for name in cfg["schedules"]}


def claim_variants(cfg: dict) -> dict[str, list[str]]:
    """{headline claim id: the variants (keys of ``variants(cfg)``) whose runs its estimate reads}: S2.b step_wd and
    texp_practical, S2.c const_wd and exponential; S2.d reads the float32 exactness job only (a side job: no
    variant); a claim the config cannot run (``missing``) reads none. S2.a is an identity (the float64 exactness
    job), left out."""
    vs = variants(cfg)
    return {cid: [] if missing(cfg, need) else [s for s in need.get("schedules", []) if s in vs]
            for cid, need in NEEDS.items() if cid != "S2.a"}
