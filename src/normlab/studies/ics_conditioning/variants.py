"""S5's training jobs: one shifted_mlp per condition x normalization (each over seeds), and the config's
cross-key checks. Light at import (no numpy/pandas/torch): the Snakefile imports it at parse time."""

from __future__ import annotations


def cond_label(act: str, shift: float, center: bool) -> str:
    return f"{act} s={shift:g}" + (" centered" if center else "")


def _cond(c: dict) -> tuple[str, float, bool]:
    return c["act"], float(c.get("shift", 0.0)), bool(c.get("center", False))


def pairs(cfg: dict) -> list[tuple[str, str]]:
    """(uncentered label, centered label) of every centered condition that has its uncentered twin."""
    uncentered = {(a, s) for a, s, cen in map(_cond, cfg["conditions"]) if not cen}
    return [(cond_label(a, s, False), cond_label(a, s, True)) for a, s, cen in map(_cond, cfg["conditions"])
            if cen and (a, s) in uncentered]


def sweep_step(cfg: dict) -> int:
    """The step at which the lr sweep and the headline S5.e read the train loss of every rate."""
    return cfg["lr_sweep"].get("steps") or cfg["claims"].get("speed_step") or cfg["train"]["steps"]


def sweep_lrs(cfg: dict) -> list[float]:
    """The rates swept besides ``lr`` (whose runs are the main runs)."""
    return sorted({float(x) for x in cfg["lr_sweep"]["lrs"]} - {float(cfg["lr"])})


def needs(cfg: dict) -> dict[str, str]:
    """{claim: what the config lacks for it ('' when it can run)}; the analysis reports a claim that lacks
    something as ``not run`` (stats.not_run). S5.c and S5.d (side jobs) always run."""
    norms, cen_norms = set(cfg["norms"]), set(cfg["center_norms"])
    has_unc = any(not _cond(c)[2] for c in cfg["conditions"])
    twin = "a centered condition with its uncentered twin in 'conditions'"
    a = "" if "none" in norms and has_unc else "norm none in 'norms' and an uncentered condition"
    miss_b = [w for w, ok in [("norm none in 'norms' and 'center_norms'", "none" in norms and "none" in cen_norms),
                              (twin, bool(pairs(cfg)))] if not ok]
    miss_e = [w for w, ok in [("norms none and bn_pre in 'norms'", {"none", "bn_pre"} <= norms),
                              ("none in 'center_norms'", "none" in cen_norms), (twin, bool(pairs(cfg)))] if not ok]
    e = " and ".join(miss_e)
    sweep = "rates to sweep in 'lr_sweep.lrs' (besides 'lr')" if not sweep_lrs(cfg) else ""
    return {"S5.a": a, "S5.b": " and ".join(miss_b), "S5.e[common lr]": e,
            "S5.e": " and ".join(x for x in [e, sweep] if x)}


def _sweep_checks(cfg: dict) -> list[str]:
    sw, tr = cfg["lr_sweep"], cfg["train"]
    if not sweep_lrs(cfg):
        return []
    step = sweep_step(cfg)
    src = "'lr_sweep.steps'" if sw.get("steps") else "'claims.speed_step'" if cfg["claims"].get("speed_step") \
        else "'train.steps'"
    out = []
    if step > tr["steps"]:
        out.append(f"{src} {step} must be at most 'train.steps' {tr['steps']} (the main runs at 'lr' are in the sweep)")
    if step % tr["eval_every"]:
        out.append(f"{src} {step} must be a multiple of 'train.eval_every' {tr['eval_every']} (the sweep reads every "
                   "rate's train loss at the same evaluation)")
    return out


def _step_checks(cfg: dict) -> list[str]:
    out = []
    steps = cfg["train"]["steps"]
    if cfg["train"]["eval_every"] > steps:
        out.append(f"'train.eval_every' {cfg['train']['eval_every']} must be at most 'train.steps' {steps}")
    if cfg["curvature"]["every"] > steps:
        out.append(f"'curvature.every' {cfg['curvature']['every']} must be at most 'train.steps' {steps} "
                   "(the probe would run at init only)")
    sp = cfg["claims"].get("speed_step")
    if sp is not None and sp > steps:
        out.append(f"'claims.speed_step' {sp} must be at most 'train.steps' {steps}")
    if sp is not None and sp < cfg["train"]["eval_every"]:
        out.append(f"'claims.speed_step' {sp} must be at least 'train.eval_every' {cfg['train']['eval_every']} "
                   "(train loss is read at evaluations)")
    return out


def check_config(cfg: dict) -> list[str]:
    """Cross-key checks (names relative to the study's section); config.validate calls this. Only keys that
    contradict each other are refused: a subset of norms or conditions runs, and the claims it cannot test are
    reported as not run (``needs``). No config leaves every claim out: S5.c and S5.d (side jobs) always run."""
    out = []
    depth = cfg["model"]["depth"]
    n_layers = depth + 1
    for i, layer in enumerate(cfg["curvature"]["layers"]):
        if not -n_layers <= layer < n_layers:
            out.append(f"'curvature.layers[{i}]' {layer} is not a weight-layer index of the depth-{depth} model of "
                       f"'model.depth' (allowed {-n_layers}..{n_layers - 1})")
    bad = [n for n in cfg["center_norms"] if n not in cfg["norms"]]
    if bad:
        out.append(f"'center_norms' {cfg['center_norms']} must be among 'norms' {cfg['norms']}")
    out += _step_checks(cfg)
    inv = cfg["invariance"]
    if inv["layer"] >= inv["depth"]:
        out.append(f"'invariance.layer' {inv['layer']} must be below 'invariance.depth' {inv['depth']} (a BN-normalized "
                   "layer must follow the transformed activations)")
    if inv["probe_every"] > inv["steps"]:
        out.append(f"'invariance.probe_every' {inv['probe_every']} must be at most 'invariance.steps' {inv['steps']}")
    out += _sweep_checks(cfg)
    return out


def check(cfg: dict) -> None:
    """Raise ConfigError on the first cross-key problem (for callers outside config.validate)."""
    from ...config import ConfigError

    problems = check_config(cfg)
    if problems:
        raise ConfigError(f"studies.ics_conditioning: {problems[0]}")


def probe_spec(cfg: dict) -> dict:
    """The curvature probe every main variant carries."""
    cv = cfg["curvature"]
    probe = {"name": "curvature", "every": cv["every"], "layers": cv["layers"], "k": cv["k"],
             "n_samples": cv["n_samples"], "kinds": cv["kinds"], "network": bool(cv["network_kinds"]),
             "k_network": cv["k_network"], "tol": cv["tol"]}
    if cv["network_kinds"]:
        probe["network_kinds"] = cv["network_kinds"]
    return probe


def _spec(cfg: dict, norm: str, act: str, shift: float, center: bool) -> dict:
    m = cfg["model"]
    return {
        "keys": {"norm": norm, "act": act, "shift": shift, "center": center,
                 "condition": cond_label(act, shift, center)},
        "model": {"arch": "shifted_mlp", "depth": m["depth"], "width": m["width"], "bn_eps": m["bn_eps"],
                  "norm": norm, "act": act, "shift": shift, "center_acts": center},
        "optimizer": cfg["optimizer"],
        "lr": cfg["lr"],
        "schedule": {"name": "constant"},
        "train": cfg["train"],
        "probes": [probe_spec(cfg)],
    }


def _name(norm: str, act: str, shift: float, center: bool) -> str:
    return f"{norm}-{act}-s{shift:g}" + ("-centered" if center else "")


def s5e_variants(cfg: dict) -> list[tuple[str, str, float, bool]]:
    """(norm, act, shift, center) of the three variants S5.e compares per centered condition with a twin."""
    if needs(cfg)["S5.e[common lr]"]:
        return []
    out = []
    for a, s, cen in map(_cond, cfg["conditions"]):
        if cen and (cond_label(a, s, False), cond_label(a, s, True)) in pairs(cfg):
            out += [("none", a, s, False), ("none", a, s, True), ("bn_pre", a, s, False)]
    return out


def sweep_spec(cfg: dict, norm: str, act: str, shift: float, center: bool, lr: float) -> dict:
    """A sweep run: the main variant at another rate, for ``sweep_step`` steps, without the curvature probe."""
    spec = _spec(cfg, norm, act, shift, center)
    spec["keys"]["sweep_lr"] = lr
    spec.update(lr=lr, train={**cfg["train"], "steps": sweep_step(cfg)}, probes=[])
    return spec


def variants(cfg: dict) -> dict:
    check(cfg)
    out = {}
    for norm in cfg["norms"]:
        for c in cfg["conditions"]:
            act, shift, center = _cond(c)
            if center and norm not in cfg["center_norms"]:
                continue
            out[_name(norm, act, shift, center)] = _spec(cfg, norm, act, shift, center)
    for v in dict.fromkeys(s5e_variants(cfg)):
        for lr in sweep_lrs(cfg):
            out[f"{_name(*v)}-lr{lr:g}"] = sweep_spec(cfg, *v, lr)
    return out


def claim_variants(cfg: dict) -> dict[str, list[str]]:
    """{headline claim id: the variants (keys of ``variants(cfg)``) whose runs its estimate reads}:

    - S5.a: the main runs without BN or centering (every uncentered condition at norm none; the analysis keeps the
      strata whose nu reaches ``claims.nu_min``, a filter on the measured data: a condition with centred activations
      such as tanh at shift 0 is declared and then left out there);
    - S5.b: the main runs without BN of every centered condition and its uncentered twin;
    - S5.e: the three variants it compares per centered condition with a twin (uncentered and centered without
      BN, uncentered with BN), at ``lr`` and at every rate of the sweep (the choice of rate reads them all).

    S5.c and S5.d are identities (side jobs), left out. A claim the config cannot run (``needs``) reads none."""
    vs = variants(cfg)
    main = {n: v["keys"] for n, v in vs.items() if "sweep_lr" not in v["keys"]}
    need = needs(cfg)
    twins = {x for pair in pairs(cfg) for x in pair}
    s5e = {(n, cond_label(a, s, c)) for n, a, s, c in s5e_variants(cfg)}
    return {
        "S5.a": [] if need["S5.a"] else [n for n, k in main.items() if k["norm"] == "none" and not k["center"]],
        "S5.b": [] if need["S5.b"] else [n for n, k in main.items() if k["norm"] == "none" and k["condition"] in twins],
        "S5.e": [] if need["S5.e"] else [n for n, v in vs.items() if (v["keys"]["norm"], v["keys"]["condition"]) in s5e],
    }
