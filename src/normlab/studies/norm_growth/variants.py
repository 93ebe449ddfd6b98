"""S3's variants (one training job per variant, over seeds) and the cross-key checks of its config section.

Light at import: the Snakefile imports it at parse time."""

from __future__ import annotations

LABELS = ("real", "random", "fresh")


def variant_model(cfg: dict, v: dict) -> dict:
    """The variant's model: the study's ``model`` with the variant's overrides."""
    return {**cfg["model"], **v.get("model", {})}


def active_variants(cfg: dict) -> dict:
    """``variants`` without those set ``enabled: false`` (a config merged over the default cannot delete keys)."""
    return {name: v for name, v in cfg["variants"].items() if v.get("enabled", True)}


def is_plain(v: dict) -> bool:
    """A variant's config says plain SGD: no momentum, weight decay, constraint or schedule."""
    opt = {"name": "sgd", **v.get("optimizer", {})}
    return (opt["name"] == "sgd" and not opt.get("momentum") and not opt.get("weight_decay")
            and not v.get("constraints") and v.get("schedule", {"name": "constant"})["name"] == "constant")


def _model_problems(cfg: dict) -> list[str]:
    out = []
    m = cfg["model"]
    if not m.get("scale_invariant", False) or m.get("norm") not in ("bn_pre", "bn_post"):
        out.append(f"'model.scale_invariant' {m.get('scale_invariant', False)} with 'model.norm' {m.get('norm')!r}: "
                   "the study needs scale_invariant true and norm bn_pre or bn_post (its claims assume BN-fed, "
                   "scale-invariant units)")
    if cfg["track_units"] > m.get("width", cfg["track_units"]):
        out.append(f"'track_units' {cfg['track_units']} must be at most 'model.width' {m.get('width')}")
    return out


def _variant_problems(cfg: dict, name: str, v: dict) -> list[str]:
    out = []
    vm = variant_model(cfg, v)
    if vm.get("norm") not in ("bn_pre", "bn_post"):
        out.append(f"'variants.{name}.model.norm' {vm.get('norm')!r} must be bn_pre or bn_post like 'model.norm': "
                   "the units probe needs BN-fed layers")
    vsteps = v.get("steps", cfg["train"]["steps"])
    where = f"('variants.{name}.steps' or 'train.steps': {vsteps})"
    if cfg["probe_every"] > vsteps:
        out.append(f"'probe_every' {cfg['probe_every']} must be at most the steps of variant {name} {where}")
    if cfg["train"]["eval_every"] > vsteps:
        out.append(f"'train.eval_every' {cfg['train']['eval_every']} must be at most the steps of variant {name} "
                   f"{where}")
    steady = v.get("labels") == "fresh" and is_plain(v) and vm.get("scale_invariant", False)
    if steady and cfg["steady"]["min_steps"] > vsteps:
        out.append(f"'steady.min_steps' {cfg['steady']['min_steps']} must be at most the steps of the steady-G "
                   f"variant {name} {where}")
    return out


def _window_problems(cfg: dict) -> list[str]:
    out = []
    st = cfg["steady"]
    if st["window"] > st["min_steps"]:
        out.append(f"'steady.window' {st['window']} must be at most 'steady.min_steps' {st['min_steps']}")
    if st["window"] < cfg["probe_every"]:
        out.append(f"'steady.window' {st['window']} must be at least 'probe_every' {cfg['probe_every']} (G^2 is "
                   "averaged over the probes in each window)")
    if cfg["seeds"] < 2:
        out.append(f"'seeds' {cfg['seeds']} must be at least 2: the intervals of 'claims' are over seeds")
    c = cfg["claims"]
    if c["early"] + c["window"] > 1:
        out.append(f"'claims.early' {c['early']} + 'claims.window' {c['window']} must be at most 1 (the early and "
                   "late parts of a run must not overlap)")
    return out


def check_config(cfg: dict) -> list[str]:
    """Cross-key checks (names relative to the study's section). Any subset of the variants is accepted: a
    claim whose variants are absent is reported ``not run`` (``claims.needs``); refused are keys that
    contradict each other and a config with no variant (the invariance job alone tests S3.a-b, but the
    study trains at least one variant)."""
    out = _model_problems(cfg)
    active = active_variants(cfg)
    if not active:
        out.append("'variants': every variant has 'enabled' false")
    for name, v in active.items():
        out += _variant_problems(cfg, name, v)
    return out + _window_problems(cfg)


def variants(cfg: dict) -> dict:
    out = {}
    for name, v in active_variants(cfg).items():
        opt = {"name": "sgd", **v.get("optimizer", {})}
        lr = v.get("lr", cfg["lr"])
        sched = v.get("schedule", {"name": "constant"})
        model = variant_model(cfg, v)
        cons = v.get("constraints", [])
        labels = v.get("labels", "real")
        train = {**cfg["train"], **({"steps": v["steps"]} if "steps" in v else {})}
        out[name] = {
            "keys": {"labels": labels, "opt": opt["name"], "momentum": opt.get("momentum", 0.0),
                     "weight_decay": opt.get("weight_decay", 0.0), "constraint": "+".join(cons) or "none",
                     "schedule": sched["name"], "lr": lr, "trained_out": not model.get("scale_invariant", False),
                     "steps": train["steps"]},
            "model": model,
            "optimizer": opt,
            "lr": lr,
            "schedule": sched,
            "train": train,
            "random_labels": {"real": False, "random": True, "fresh": "fresh"}[labels],
            "constraints": cons,
            # the relative update size of every layer where the output layer is trained (S3.f); the other runs keep
            # the probe's default metrics (and their run folders)
            "probes": [{"name": "units", "every": cfg["probe_every"], "track": cfg["track_units"],
                        **({"relative": True} if not model.get("scale_invariant", False) else {})}],
        }
    return out


def _plain(k: dict) -> bool:
    """A variant's keys say plain SGD (as ``claims.plain_sgd`` reads them from the runs)."""
    return (k["opt"] == "sgd" and k["momentum"] == 0 and k["weight_decay"] == 0 and k["constraint"] == "none"
            and k["schedule"] == "constant")


def claim_variants(cfg: dict) -> dict[str, list[str]]:
    """{headline claim id: the variants (keys of ``variants(cfg)``) whose runs its estimate reads}, chosen from the
    variants' keys as ``claims.analyze`` chooses them from the runs':

    - S3.c: the plain-SGD variants on fresh labels with the output layer fixed (``sgd_fresh``): the law is fitted
      where their G^2 is steady;
    - S3.d: the SGD variants with weight decay, no constraint, constant rate (``sgd_wd``, ``sgd_momentum_wd``);
    - S3.e: the first unit-norm variant (by name) that has a plain-SGD reference with its labels, output layer and
      lr, and that reference (``unit_norm``, ``sgd_fresh``);
    - S3.f: the first plain-SGD variant (by name) that trains the output layer on real labels
      (``sgd_trained_out_real``); the other output-training runs are cells.

    S3.a and S3.b are identities (the invariance job), left out. A claim without its variants reads none."""
    keys = {name: v["keys"] for name, v in sorted(variants(cfg).items())}
    unit = [n for n, k in keys.items() if "unit_norm" in k["constraint"]]
    refs = [(v, r) for v in unit for r, k in keys.items()
            if _plain(k) and all(k[x] == keys[v][x] for x in ("labels", "trained_out")) and float(k["lr"]) == float(keys[v]["lr"])]
    outs = [n for n, k in keys.items() if k["trained_out"] and _plain(k) and k["labels"] == "real"]
    return {
        "S3.c": [n for n, k in keys.items() if _plain(k) and k["labels"] == "fresh" and not k["trained_out"]],
        "S3.d": [n for n, k in keys.items() if k["opt"] == "sgd" and k["weight_decay"] > 0
                 and k["constraint"] == "none" and k["schedule"] == "constant"],
        "S3.e": list(refs[0]) if refs else [],
        "S3.f": outs[:1],
    }
