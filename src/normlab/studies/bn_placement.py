"""S4: BN before vs after the activation.

Grid: normalization (none | bn_pre | bn_post) x activation x learning rate, each over seeds.
Claims (each per (activation, lr) cell and pooled over cells):
- S4.a BN before the activation reaches a higher final test accuracy than BN after (the lecture);
- S4.b BN before reaches the train-accuracy target in fewer steps than BN after;
- S4.c BN (the better placement of the cell) beats no BN in final test accuracy.
A diverged run counts as chance accuracy (1 / n_classes) and as never reaching the target
(steps = total steps + 1). Intervals: percentile bootstrap over seeds (stratified by cell when pooled).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..plotting import save_figure
from ..stats import bootstrap_mean_diff, claim, verdict_above, verdict_below

LECTURE = "Lecture 5 ('apply BN before the activation'); Ioffe & Szegedy 2015"


def variants(cfg: dict) -> dict:
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


def run_table(metrics: pd.DataFrame, summary: pd.DataFrame, cfg: dict) -> pd.DataFrame:
    """One row per run: final test accuracy (chance if diverged) and steps to the train-acc target."""
    steps = cfg["train"]["steps"]
    chance = 0.1
    tr = metrics[metrics.metric == "train_acc"]
    reached = tr[tr.value >= cfg["claims"]["acc_target"]].groupby(["variant", "seed"]).step.min()
    runs = summary.set_index(["variant", "seed"]).copy()
    runs["steps_to_target"] = reached.reindex(runs.index).fillna(steps + 1).astype(float)
    acc = runs.get("final_test_acc", pd.Series(np.nan, index=runs.index))
    runs["test_acc"] = acc.where(runs.status == "ok", chance).fillna(chance)
    return runs.reset_index()


def analyze(metrics, summary, cfg, extra=None):
    runs = run_table(metrics, summary, cfg)
    c = cfg["claims"]
    kw = dict(n_boot=c["n_boot"], ci=c["ci"])
    cells = sorted({(r.act, r.lr) for r in runs.itertuples()})

    def groups(norm, col, cell_list):
        return [runs[(runs.norm == norm) & (runs.act == a) & (runs.lr == lr)][col].to_numpy() for a, lr in cell_list]

    def best_bn(cell_list):
        """Per cell, the placement with the higher mean test accuracy."""
        out = []
        for a, lr in cell_list:
            sub = runs[(runs.act == a) & (runs.lr == lr) & runs.norm.isin(["bn_pre", "bn_post"])]
            best = sub.groupby("norm").test_acc.mean().idxmax()
            out.append(sub[sub.norm == best].test_acc.to_numpy())
        return out

    rows = []
    scopes = [(f"[{a}, lr={lr:g}]", [(a, lr)]) for a, lr in cells] + [("[pooled]", cells)]
    n_seeds = int(runs.groupby("variant").seed.nunique().min())
    norms = set(runs.norm)
    for tag, cl in scopes:
        where = "pooled over all cells" if tag == "[pooled]" else f"with {cl[0][0]} at lr={cl[0][1]:g}"
        if {"bn_pre", "bn_post"} <= norms:
            v, lo, hi = bootstrap_mean_diff(groups("bn_pre", "test_acc", cl), groups("bn_post", "test_acc", cl), **kw)
            rows.append(claim(f"S4.a{tag}", f"BN before the activation gives higher final test accuracy than BN after, {where}",
                              LECTURE, "test_acc(bn_pre) - test_acc(bn_post)", v, lo, hi, 0.0, verdict_above(lo, hi, 0.0), n_seeds))
            v, lo, hi = bootstrap_mean_diff(groups("bn_pre", "steps_to_target", cl), groups("bn_post", "steps_to_target", cl), **kw)
            rows.append(claim(f"S4.b{tag}", f"BN before reaches {c['acc_target']:.0%} train accuracy in fewer steps than BN after, {where}",
                              LECTURE, "steps_to_target(bn_pre) - steps_to_target(bn_post)", v, lo, hi, 0.0,
                              verdict_below(lo, hi, 0.0), n_seeds))
        if "none" in norms and norms & {"bn_pre", "bn_post"}:
            v, lo, hi = bootstrap_mean_diff(best_bn(cl), groups("none", "test_acc", cl), **kw)
            rows.append(claim(f"S4.c{tag}", f"BN (the better placement) gives higher final test accuracy than no BN, {where}",
                              "Ioffe & Szegedy 2015", "test_acc(best BN) - test_acc(none)", v, lo, hi, 0.0,
                              verdict_above(lo, hi, 0.0), n_seeds))
    return pd.DataFrame(rows)


def figures(metrics, summary, claims, cfg, fig_dir, extra=None):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="paper")
    order = [n for n in ["none", "bn_pre", "bn_post"] if n in set(summary.norm)]
    written = []

    def save(fig, name):
        written.extend(save_figure(fig, fig_dir, name))

    curves = metrics[metrics.metric.isin(["test_acc", "train_acc"])]
    g = sns.relplot(data=curves[curves.metric == "test_acc"], x="step", y="value", hue="norm", hue_order=order,
                    col="act", row="lr", kind="line", errorbar=("ci", 95), height=2.4, aspect=1.3,
                    facet_kws={"margin_titles": True})
    g.set_axis_labels("step", "test accuracy")
    g.figure.suptitle("Test accuracy over training (mean and 95% CI over seeds)", y=1.02)
    save(g.figure, "learning_curves")

    runs = run_table(metrics, summary, cfg)
    g = sns.catplot(data=runs, x="lr", y="test_acc", hue="norm", hue_order=order, col="act", kind="point",
                    errorbar=("ci", 95), dodge=0.3, height=2.8, aspect=1.0)
    g.set_axis_labels("learning rate", "final test accuracy")
    g.figure.suptitle("Final test accuracy per cell (mean, 95% CI over seeds; diverged = chance)", y=1.03)
    save(g.figure, "final_accuracy")

    g = sns.catplot(data=runs, x="lr", y="steps_to_target", hue="norm", hue_order=order, col="act", kind="bar",
                    errorbar=("ci", 95), height=2.8, aspect=1.0)
    g.set_axis_labels("learning rate", f"steps to {cfg['claims']['acc_target']:.0%} train acc")
    for ax in g.axes.flat:
        ax.axhline(cfg["train"]["steps"], color="grey", ls=":", lw=1)
    g.figure.suptitle("Speed: steps to the train-accuracy target (dotted: never reached)", y=1.03)
    save(g.figure, "steps_to_target")

    a = claims[claims.claim_id.str.startswith(("S4.a", "S4.c"))].copy()
    fig, ax = plt.subplots(figsize=(6, 0.28 * len(a) + 1))
    colors = {"holds": "tab:green", "fails": "tab:red", "inconclusive": "tab:grey"}
    for i, r in enumerate(a.itertuples()):
        ax.errorbar(r.value, i, xerr=[[r.value - r.ci_low], [r.ci_high - r.value]], fmt="o", color=colors[r.verdict])
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(range(len(a)), [f"{r.claim_id}" for r in a.itertuples()], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("difference in final test accuracy (95% bootstrap CI)")
    ax.set_title("S4.a: bn_pre - bn_post;  S4.c: best BN - none  (green holds, red fails, grey inconclusive)", fontsize=8)
    save(fig, "placement_difference")
    return written
