"""S4: BN before vs after the activation.

Grid: normalization (none | bn_pre | bn_post) x activation x learning rate, each over seeds.
Claims (one ``headline`` row per claim id, pooled over the activation x lr cells; one ``cell`` row
per cell):

- S4.a BN before the activation reaches a higher final test accuracy than BN after (the lecture);
- S4.b BN before reaches the train-accuracy target in fewer steps than BN after;
- S4.c BN (before the activation, Ioffe & Szegedy's placement) beats no BN in final test accuracy.

Each claim is directional with a smallest effect of interest (``claims.effect_min`` in test accuracy,
``claims.speed_min`` of the step budget for S4.b): it holds when its interval clears 0 in the claimed
direction and fails when it rules out an effect that large (``normlab.stats``).

Estimates: per-seed differences (seed k of one variant against seed k of the other: same batch
order, and the same initial weights wherever the two models draw the same random numbers),
averaged within a cell, then averaged over cells with equal weights (``stats.mean_ci`` with one
stratum per cell, ``paired=True``); Student t interval with Welch-Satterthwaite degrees of freedom.
Pairing is valid whether or not the seeds' runs are correlated: each seed's difference is one
independent draw. S4.c compares bn_pre, fixed in advance, not the better placement of each cell
(choosing the winner on the same data biases the difference upwards).

A diverged run counts as chance accuracy (1 / n_classes) and as never reaching the target
(steps = total steps + 1, a censored value: S4.b's mean difference is then a difference of
censored means, stated in the claim).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ...plotting import save_figure
from ...stats import claim_from, mean_ci, t_band
from .. import Figure

TITLE = "S4: BN before or after the activation (Ioffe & Szegedy 2015; Lecture 5; public benchmarks)"
CATEGORY = "S4 BN placement"
FIGURES = [
    Figure("learning_curves.png", "learning curves"),
    Figure("final_accuracy.png", "final accuracy"),
    Figure("steps_to_target.png", "steps to target"),
    Figure("placement_difference.png", "placement difference"),
]
PAPERS = [
    {"cite": "Ioffe, Szegedy. Batch normalization: accelerating deep network training by reducing internal covariate "
             "shift. ICML 2015", "url": "https://arxiv.org/abs/1502.03167"},
    {"cite": "Mishkin. caffenet-benchmark: BatchNorm before/after ReLU on ImageNet-2012 at 128 px (CaffeNet, GoogLeNet)",
     "url": "https://github.com/ducha-aiki/caffenet-benchmark/blob/master/batchnorm.md"},
]
_DEPARTURES = ("MNIST-1D (4,000 training signals) instead of ImageNet; 4-layer width-128 MLPs instead of the "
               "CaffeNet / GoogLeNet convnets; SGD with momentum 0.9 at constant lr 0.02, 0.1 and 0.5, 1,000 steps of "
               "batch 128, no augmentation; ReLU, tanh and logistic units; 5 seeds; pooled over the 9 activation x lr "
               "cells with equal weights, per-seed differences")
HEADLINES = {
    "S4.a": {"statement": "BN before the nonlinearity works better than after it (Ioffe & Szegedy 2015: Wu + b is "
                          "'more Gaussian'; the lecture: 'it generally works better to apply BN before the activation "
                          "function'). Evidence against: CaffeNet on ImageNet at 128 px, top-1 0.499 with BN after ReLU "
                          "vs 0.474 before; a course project found 'after' better with ReLU only",
             "departures": _DEPARTURES + "; metric: final test accuracy",
             "figures": ["placement_difference", "final_accuracy", "learning_curves"]},
    "S4.b": {"statement": "BN before the nonlinearity trains faster than BN after it (the lecture's placement advice, "
                          "read as speed of training; Ioffe & Szegedy 2015 report BN's speed-up with BN before)",
             "departures": _DEPARTURES + "; metric: steps to 80% train accuracy (evaluated every 100 steps; a run "
                                         "that never reaches it counts as 1,001)",
             "figures": ["placement_difference", "steps_to_target"]},
    "S4.c": {"statement": "BN helps: BN before the nonlinearity gives higher accuracy than no BN (Ioffe & Szegedy 2015). "
                          "Evidence against: GoogLeNet on ImageNet at 128 px, top-1 0.619 without BN vs 0.607 before "
                          "and 0.596 after",
             "departures": _DEPARTURES + "; metric: final test accuracy, bn_pre minus none",
             "figures": ["placement_difference", "final_accuracy"]},
}
LECTURE = "Lecture 5 ('apply BN before the activation'); Ioffe & Szegedy 2015"
REQUIRED_NORMS = ("none", "bn_pre", "bn_post")


def check_config(cfg: dict) -> list[str]:
    """Cross-key checks (names relative to the study's section)."""
    out = []
    missing = [n for n in REQUIRED_NORMS if n not in cfg["norms"]]
    if missing:
        out.append(f"'norms' {cfg['norms']} must contain {', '.join(missing)}: the claims (S4.a-c) compare "
                   "bn_pre with bn_post and with none")
    tr = cfg["train"]
    if tr.get("eval_every", 1) > tr.get("steps", 1):
        out.append(f"'train.eval_every' {tr['eval_every']} must be at most 'train.steps' {tr['steps']} "
                   "(steps to 'claims.acc_target' are read at evaluations)")
    if cfg["seeds"] < 2:
        out.append(f"'seeds' {cfg['seeds']} must be at least 2: the intervals of 'claims' come from per-seed "
                   "differences")
    return out


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


def paired_groups(runs: pd.DataFrame, norm_a: str, norm_b: str, col: str, cells) -> tuple[list, list]:
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


def pooled(runs: pd.DataFrame, norm_a: str, norm_b: str, col: str, cells, ci: float = 0.95):
    """Stratified paired estimate: mean over cells of the mean per-seed difference col(a) - col(b)."""
    ga, gb = paired_groups(runs, norm_a, norm_b, col, cells)
    return mean_ci(ga, gb, ci=ci, paired=True)


def _setup(cfg: dict) -> str:
    m, o, t = cfg["model"], cfg["optimizer"], cfg["train"]
    mom = f" with momentum {o['momentum']:g}" if o.get("momentum") else ""
    if m.get("arch", "mlp") == "mlp":
        net, seeds = f"{m.get('arch', 'mlp')} depth {m.get('depth')} width {m.get('width')}", ""
    else:
        net, seeds = _net(cfg), f", {cfg['seeds']} seeds"
    return (f"{cfg['dataset']}, {net}, "
            f"{o['name'].upper()}{mom} at constant lr, {t['steps']} steps of batch {t['batch_size']}{seeds}; "
            f"paper/benchmarks: ImageNet convnets")


def _net(cfg: dict, short: bool = False) -> str:
    from ..setup_text import model_text

    return model_text(cfg["model"], cfg["dataset"], short=short)


def smallest_effects(cfg: dict) -> dict:
    """Each claim's smallest effect of interest (``claims.effect_min``, ``claims.speed_min`` x train.steps)."""
    c = cfg["claims"]
    return {"S4.a": c["effect_min"], "S4.b": c["speed_min"] * cfg["train"]["steps"], "S4.c": c["effect_min"]}


def analyze(metrics, summary, cfg, extra=None):
    runs = run_table(metrics, summary, cfg)
    c = cfg["claims"]
    ci = c["ci"]
    cells = sorted({(r.act, r.lr) for r in runs.itertuples()})
    setup = _setup(cfg)
    pool = (f"pooled over {len(cells)} activation x lr cells ({', '.join(sorted({a for a, _ in cells}))}; lr "
            f"{', '.join(f'{x:g}' for x in sorted({lr for _, lr in cells}))}) with equal weights, per-seed differences")
    target = f"{c['acc_target']:.0%} train accuracy"
    sesoi = smallest_effects(cfg)
    acc_why = (f"smallest effect of interest {c['effect_min']:g} test accuracy (the public benchmarks' smallest gap, "
               "GoogLeNet 1.1 points): it fails when the interval lies below it")
    speed_why = (f"smallest speed-up of interest {sesoi['S4.b']:g} steps ({c['speed_min']:.0%} of the "
                 f"{cfg['train']['steps']:,}-step budget): it fails when the interval rules out a speed-up this large")
    specs = [
        ("S4.a", "bn_pre", "bn_post", "test_acc", dict(above=0.0), LECTURE,
         "test_acc(bn_pre) - test_acc(bn_post)",
         "BN before the activation gives higher final test accuracy than BN after", acc_why),
        ("S4.b", "bn_pre", "bn_post", "steps_to_target", dict(below=0.0), LECTURE,
         "steps_to_target(bn_pre) - steps_to_target(bn_post)",
         f"BN before reaches {target} in fewer steps than BN after (never reached = {cfg['train']['steps'] + 1})",
         speed_why),
        ("S4.c", "bn_pre", "none", "test_acc", dict(above=0.0), "Ioffe & Szegedy 2015",
         "test_acc(bn_pre) - test_acc(none)",
         "BN before the activation gives higher final test accuracy than no BN", acc_why),
    ]
    rows = []
    for cid, a, b, col, side, source, metric, text, why in specs:
        est = pooled(runs, a, b, col, cells, ci)
        rows.append(claim_from(cid, f"{text}, {pool} ({setup}; diverged runs count as chance; {why})", source, metric,
                               est, kind="headline", sesoi=sesoi[cid], **side))
        for act, lr in cells:
            est = pooled(runs, a, b, col, [(act, lr)], ci)
            rows.append(claim_from(f"{cid}[{act}, lr={lr:g}]", f"{text}, with {act} at lr={lr:g} (smallest effect of "
                                   f"interest {sesoi[cid]:g})", source, metric, est, kind="cell", sesoi=sesoi[cid],
                                   **side))
    return pd.DataFrame(rows)


def figures(metrics, summary, claims, cfg, fig_dir, extra=None):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="paper")
    order = [n for n in ["none", "bn_pre", "bn_post"] if n in set(summary.norm)]
    palette = dict(zip(["none", "bn_pre", "bn_post"], ["tab:grey", "tab:blue", "tab:orange"]))
    written = []
    t = cfg["train"]
    net = (f"MLP {cfg['model'].get('depth')}x{cfg['model'].get('width')}" if cfg["model"].get("arch", "mlp") == "mlp"
           else _net(cfg, short=True))
    setup = (f"{cfg['dataset']} {net}, "
             f"{cfg['optimizer']['name'].upper()} momentum {cfg['optimizer'].get('momentum', 0):g}, "
             f"{t['steps']} steps, {summary.seed.nunique()} seeds")

    def save(fig, name):
        written.extend(save_figure(fig, fig_dir, name))

    curves = metrics[metrics.metric.isin(["test_acc", "train_acc"])]
    g = sns.relplot(data=curves[curves.metric == "test_acc"], x="step", y="value", hue="norm", hue_order=order,
                    palette=palette, col="act", row="lr", kind="line", errorbar=t_band(0.95), height=2.4, aspect=1.3,
                    facet_kws={"margin_titles": True})
    g.set_axis_labels("step", "test accuracy")
    g.figure.suptitle(f"Test accuracy over training (mean, 95% t interval over seeds; {setup})", y=1.02)
    save(g.figure, "learning_curves")

    runs = run_table(metrics, summary, cfg)
    g = sns.catplot(data=runs, x="lr", y="test_acc", hue="norm", hue_order=order, palette=palette, col="act",
                    kind="point", errorbar=t_band(0.95), dodge=0.3, height=2.8, aspect=1.0)
    g.set_axis_labels("learning rate", "final test accuracy")
    g.figure.suptitle(f"Final test accuracy per cell (mean, 95% t interval over seeds; diverged = chance; {setup})", y=1.04)
    save(g.figure, "final_accuracy")

    g = sns.catplot(data=runs, x="lr", y="steps_to_target", hue="norm", hue_order=order, palette=palette, col="act",
                    kind="bar", errorbar=t_band(0.95), height=2.8, aspect=1.0)
    g.set_axis_labels("learning rate", f"steps to {cfg['claims']['acc_target']:.0%} train acc")
    for ax in g.axes.flat:
        ax.axhline(t["steps"], color="grey", ls=":", lw=1)
    g.figure.suptitle(f"Speed: steps to the train-accuracy target (dotted: budget, never reached = "
                      f"{t['steps'] + 1}; {setup})", y=1.04)
    save(g.figure, "steps_to_target")

    colors = {"holds": "tab:green", "fails": "tab:red", "inconclusive": "tab:grey"}
    panels = [("S4.a", "test accuracy: bn_pre - bn_post"), ("S4.c", "test accuracy: bn_pre - none"),
              ("S4.b", "steps to target: bn_pre - bn_post")]
    n = max(1, max(int(claims.claim_id.str.startswith(p).sum()) for p, _ in panels))
    fig, axes = plt.subplots(1, 3, figsize=(12, 0.3 * n + 1.6), sharey=True)
    for ax, (prefix, label) in zip(axes, panels):
        a = claims[claims.claim_id.str.startswith(prefix)]
        a = pd.concat([a[a.kind == "headline"], a[a.kind != "headline"]])
        for i, r in enumerate(a.itertuples()):
            head = r.kind == "headline"
            ax.errorbar(r.value, i, xerr=[[r.value - r.ci_low], [r.ci_high - r.value]], fmt="D" if head else "o",
                        ms=7 if head else 4, color=colors.get(r.verdict, "k"), elinewidth=2 if head else 1)
        ax.axvline(0, color="k", lw=0.8)
        sesoi = smallest_effects(cfg)[prefix] * (1 if prefix != "S4.b" else -1)
        ax.axvline(sesoi, color="tab:purple", lw=0.8, ls="--")  # the smallest effect of interest
        labels = ["pooled" if r.kind == "headline" else r.claim_id[len(prefix) + 1:-1] for r in a.itertuples()]
        ax.set_yticks(range(len(a)), labels, fontsize=7)
        ax.set_title(f"{prefix}: {label}", fontsize=9)
        ax.set_xlabel("difference (interval the verdict was made from)", fontsize=8)
    axes[0].invert_yaxis()
    fig.suptitle(f"Placement claims per cell and pooled ({setup}); colour = verdict (green holds, red fails, grey "
                 "inconclusive); bars: each verdict's interval at its multiplicity-adjusted level; dashed purple: the "
                 "smallest effect of interest", fontsize=9)
    fig.tight_layout()
    save(fig, "placement_difference")
    return written


def headlines(cfg: dict) -> dict:
    """``HEADLINES`` with the departures of the setup ``cfg`` (the study's resolved section) describes."""
    from ..setup_text import headlines_for

    return headlines_for(HEADLINES, cfg, _setup(cfg))
