"""S4 variants: the normalization x activation x learning-rate grid, and the config's cross-key checks."""

from __future__ import annotations

# The normalizations each claim compares; a claim whose pair is not in 'norms' is reported as not run.
NEEDS = {"S4.a": ("bn_pre", "bn_post"), "S4.b": ("bn_pre", "bn_post"), "S4.c": ("bn_pre", "none")}


def check_config(cfg: dict) -> list[str]:
    """Cross-key checks (names relative to the study's section): refused only when keys contradict each other
    or no claim could run (a subset of the norms that leaves some claims out is fine: those are ``not run``)."""
    out = []
    if not any(a in cfg["norms"] and b in cfg["norms"] for a, b in NEEDS.values()):
        out.append(f"'norms' {cfg['norms']}: no claim of S4 could run (S4.a and S4.b compare bn_pre with bn_post, "
                   "S4.c bn_pre with none): add bn_pre and bn_post or none")
    tr = cfg["train"]
    if tr.get("eval_every", 1) > tr.get("steps", 1):
        out.append(f"'train.eval_every' {tr['eval_every']} must be at most 'train.steps' {tr['steps']} "
                   "(steps to 'claims.acc_target' are read at evaluations)")
    if cfg["seeds"] < 2:
        out.append(f"'seeds' {cfg['seeds']} must be at least 2: the intervals of 'claims' come from per-seed "
                   "differences")
    return out


def variants(cfg: dict) -> dict:
    """One variant per (normalization, activation, lr): ``<norm>-<act>-lr<lr>``, all seeds batched."""
    out = {}
    for norm in cfg["norms"]:
        for act in cfg["activations"]:
            for lr in cfg["lrs"]:
                out[f"{norm}-{act}-lr{lr:g}"] = {
                    "keys": {"norm": norm, "act": act, "lr": lr},
                    "model": {**cfg["model"], "norm": norm, "act": act},
                    "optimizer": cfg["optimizer"],
                    "lr": lr,
                    "schedule": {"name": "constant"},
                    "train": cfg["train"],
                    "probes": [],
                }
    return out


def claim_variants(cfg: dict) -> dict[str, list[str]]:
    """{headline claim id: the variants (keys of ``variants(cfg)``) whose runs its estimate reads}: S4.a and S4.b read
    bn_pre and bn_post, S4.c bn_pre and none, at every activation x lr cell (the pooled estimate and its activation
    strata); a claim whose pair of norms the config lacks (``not run``) reads none."""
    vs = variants(cfg)
    return {cid: [name for name, v in vs.items() if v["keys"]["norm"] in pair]
            if all(n in cfg["norms"] for n in pair) else [] for cid, pair in NEEDS.items()}
