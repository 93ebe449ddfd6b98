"""S4 claims: one row per run (final accuracy, steps to target), stratified paired estimates, the claims.

numpy, pandas and ``normlab.stats`` are imported inside the functions (the Snakefile imports the study at
parse time)."""

from __future__ import annotations

from typing import NamedTuple

from .variants import NEEDS

LECTURE = "Lecture 5 ('apply BN before the activation'); Ioffe & Szegedy 2015"
CHANCE = 0.1  # accuracy of a diverged run (10 classes)


def run_table(metrics, summary, cfg: dict):
    """One row per run: final test accuracy (chance if diverged) and steps to the train-acc target."""
    import numpy as np
    import pandas as pd

    steps = cfg["train"]["steps"]
    tr = metrics[metrics.metric == "train_acc"]
    reached = tr[tr.value >= cfg["claims"]["acc_target"]].groupby(["variant", "seed"]).step.min()
    runs = summary.set_index(["variant", "seed"]).copy()
    runs["steps_to_target"] = reached.reindex(runs.index).fillna(steps + 1).astype(float)
    acc = runs.get("final_test_acc", pd.Series(np.nan, index=runs.index))
    runs["test_acc"] = acc.where(runs.status == "ok", CHANCE).fillna(CHANCE)
    return runs.reset_index()


def paired_groups(runs, norm_a: str, norm_b: str, col: str, cells) -> tuple[list, list]:
    """Per cell, the values of ``col`` for norm_a and norm_b on the seeds both have, in seed order."""
    ga, gb = [], []
    for act, lr in cells:
        sub = runs[(runs.act == act) & (runs.lr == lr)]
        a = sub[sub.norm == norm_a].set_index("seed")[col]
        b = sub[sub.norm == norm_b].set_index("seed")[col]
        both = a.index.intersection(b.index).sort_values()
        ga.append(a.loc[both].to_numpy(float))
        gb.append(b.loc[both].to_numpy(float))
    return ga, gb


def grid_mean_ci(groups_a, groups_b=None, *, resolution: float | None = None, **kw):
    """``stats.mean_ci`` of values read on a grid of spacing ``resolution`` (steps to target, read at the
    evaluations): each value carries its rounding error (variance resolution^2 / 12), so seeds that tie on the
    grid are data, not an exact value (``mean_ci``'s ``resolution=``; without that keyword in the installed
    ``normlab.stats`` the call runs as before)."""
    import inspect

    from ...stats import mean_ci

    if resolution and "resolution" in inspect.signature(mean_ci).parameters:
        kw["resolution"] = resolution
    return mean_ci(groups_a, groups_b, **kw)


def pooled(runs, norm_a: str, norm_b: str, col: str, cells, ci: float = 0.95, resolution: float | None = None):
    """Stratified paired estimate: mean over cells of the mean per-seed difference col(a) - col(b); ``resolution``:
    the grid the values are read on (``grid_mean_ci``)."""
    ga, gb = paired_groups(runs, norm_a, norm_b, col, cells)
    return grid_mean_ci(ga, gb, ci=ci, paired=True, resolution=resolution)


def net_text(cfg: dict, short: bool = False) -> str:
    from ..setup_text import model_text

    return model_text(cfg["model"], cfg["dataset"], short=short)


def setup_line(cfg: dict) -> str:
    """The setup the claims ran, against the papers' (claim texts, HEADLINES departures)."""
    m, o, t = cfg["model"], cfg["optimizer"], cfg["train"]
    mom = f" with momentum {o['momentum']:g}" if o.get("momentum") else ""
    if m.get("arch", "mlp") == "mlp":
        net, seeds = f"{m.get('arch', 'mlp')} depth {m.get('depth')} width {m.get('width')}", ""
    else:
        net, seeds = net_text(cfg), f", {cfg['seeds']} seeds"
    return (f"{cfg['dataset']}, {net}, "
            f"{o['name'].upper()}{mom} at constant lr, {t['steps']} steps of batch {t['batch_size']}{seeds}; "
            f"paper/benchmarks: ImageNet convnets")


def eval_grid(cfg: dict) -> int:
    """The spacing of the evaluations steps to target are read at (``train.eval_every``)."""
    return int(cfg["train"].get("eval_every", 1))


def smallest_effects(cfg: dict) -> dict:
    """Each claim's smallest effect of interest (``claims.effect_min``; for S4.b ``claims.speed_min`` x train.steps,
    never finer than the evaluation grid: a speed-up smaller than one evaluation interval cannot be seen)."""
    c = cfg["claims"]
    speed = max(c["speed_min"] * cfg["train"]["steps"], eval_grid(cfg))
    return {"S4.a": c["effect_min"], "S4.b": speed, "S4.c": c["effect_min"]}


def resolutions(cfg: dict) -> dict:
    """The grid each claim's values are read on (None: a continuous measure): S4.b's steps to target are read at
    the evaluations, every ``train.eval_every`` steps; its estimate is a difference of steps (linear scale), so
    the resolution is eval_every itself."""
    return {"S4.a": None, "S4.b": eval_grid(cfg), "S4.c": None}


def speed_why(cfg: dict) -> str:
    """S4.b's smallest effect of interest, and why that one."""
    c, steps, grid = cfg["claims"], cfg["train"]["steps"], eval_grid(cfg)
    sesoi = smallest_effects(cfg)["S4.b"]
    floored = c["speed_min"] * steps < grid
    return (f"smallest speed-up of interest {sesoi:g} steps ("
            + (f"'claims.speed_min' {c['speed_min']:g} of the {steps:,}-step budget is {c['speed_min'] * steps:g} steps, "
               f"raised to the evaluation grid" if floored else f"{sesoi / steps:.0%} of the {steps:,}-step budget")
            + f"; steps to target are read every {grid} steps, so one evaluation interval is the finest speed-up a run "
            "can show, and ties on that grid count as data with the grid's rounding error, not as exact values; the "
            "lecture gives no size and Ioffe & Szegedy's BN speed-ups are many-fold, so a tenth of the budget is a "
            "modest speed-up a practitioner would notice): it fails when the interval rules out a speed-up this large")


class Spec(NamedTuple):
    """One claim: ``column(a) - column(b)`` on the per-seed pairs, tested on ``side`` (above=/below=)."""

    cid: str
    a: str
    b: str
    column: str
    side: dict
    source: str
    metric: str
    text: str
    why: str  # its smallest effect of interest, and why that one


def claim_specs(cfg: dict) -> list[Spec]:
    """The specs of S4.a-c."""
    c, steps = cfg["claims"], cfg["train"]["steps"]
    target = f"{c['acc_target']:.0%} train accuracy"
    acc_why = (f"smallest effect of interest {c['effect_min']:g} test accuracy (the public benchmarks' smallest gap, "
               "GoogLeNet 1.1 points): it fails when the interval lies below it")
    return [
        Spec("S4.a", *NEEDS["S4.a"], "test_acc", dict(above=0.0), LECTURE, "test_acc(bn_pre) - test_acc(bn_post)",
             "BN before the activation gives higher final test accuracy than BN after", acc_why),
        Spec("S4.b", *NEEDS["S4.b"], "steps_to_target", dict(below=0.0), LECTURE,
             "steps_to_target(bn_pre) - steps_to_target(bn_post)",
             f"BN before reaches {target} in fewer steps than BN after (read every {eval_grid(cfg)} steps; never "
             f"reached = {steps + 1})", speed_why(cfg)),
        Spec("S4.c", *NEEDS["S4.c"], "test_acc", dict(above=0.0), "Ioffe & Szegedy 2015",
             "test_acc(bn_pre) - test_acc(none)",
             "BN before the activation gives higher final test accuracy than no BN", acc_why),
    ]


def pool_text(cid: str, cells) -> str:
    acts = sorted({a for a, _ in cells})
    lrs = ", ".join(f"{x:g}" for x in sorted({lr for _, lr in cells}))
    strata = (f"; strata: activation (each judged on its own as {cid}[<activation>]; 'mixed' when one holds "
              "and another fails)" if len(acts) > 1 else "")
    return (f"pooled over {len(cells)} activation x lr cells ({', '.join(acts)}; lr {lrs}) with equal weights, "
            f"per-seed differences{strata}")


def one_claim(runs, spec: Spec, cells, cfg) -> list[dict]:
    """The pooled headline row (with its activation strata) and the per-(activation, lr) cell rows of one claim.
    The cells are left out when each activation has one lr: its stratum row is then that cell."""
    from ...stats import claim_from

    ci, sesoi, res = cfg["claims"]["ci"], smallest_effects(cfg)[spec.cid], resolutions(cfg)[spec.cid]

    def estimate(some_cells):
        return pooled(runs, spec.a, spec.b, spec.column, some_cells, ci, res)

    acts = sorted({act for act, _ in cells})
    strata = ({act: [(estimate([x for x in cells if x[0] == act]), dict(sesoi=sesoi, **spec.side))] for act in acts}
              if len(acts) > 1 else None)
    head = f"{spec.text}, {pool_text(spec.cid, cells)} ({setup_line(cfg)}; diverged runs count as chance; {spec.why})"
    rows = [claim_from(spec.cid, head, spec.source, spec.metric, estimate(cells), kind="headline", sesoi=sesoi,
                       strata=strata, stratum="activation", **spec.side)]
    if strata and len(cells) == len(acts):
        return rows
    for act, lr in cells:
        rows.append(claim_from(f"{spec.cid}[{act}, lr={lr:g}]", f"{spec.text}, with {act} at lr={lr:g} (smallest "
                               f"effect of interest {sesoi:g})", spec.source, spec.metric, estimate([(act, lr)]),
                               kind="cell", sesoi=sesoi, **spec.side))
    return rows


def analyze(metrics, summary, cfg, extra=None):
    """S4.a-c, each pooled over the activation x lr cells with the activations as strata; a claim whose two
    variants the config does not hold is a ``not run`` row naming them."""
    import pandas as pd

    from ...stats import not_run

    runs = run_table(metrics, summary, cfg)
    cells = sorted({(r.act, r.lr) for r in runs.itertuples()})
    rows = []
    for spec in claim_specs(cfg):
        if spec.a in cfg["norms"] and spec.b in cfg["norms"]:
            rows.extend(one_claim(runs, spec, cells, cfg))
        else:
            rows.append(not_run(spec.cid, spec.text, spec.source, f"norms {spec.a} and {spec.b} (the config has "
                                f"{', '.join(cfg['norms'])})", metric=spec.metric))
    return pd.DataFrame(rows)
