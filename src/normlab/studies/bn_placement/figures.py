"""S4 figures: learning curves, final accuracy and steps to target per cell, the claims as a forest plot.

matplotlib and seaborn come from ``normlab.plotting.setup()`` inside the functions."""

from __future__ import annotations

from ...plotting import save_figure
from ...plotting import setup as plotting_setup
from .claims import net_text, run_table, smallest_effects

NORMS = ["none", "bn_pre", "bn_post"]
PALETTE = dict(zip(NORMS, ["tab:grey", "tab:blue", "tab:orange"]))
PANELS = [("S4.a", "test accuracy: bn_pre - bn_post"), ("S4.c", "test accuracy: bn_pre - none"),
          ("S4.b", "steps to target: bn_pre - bn_post")]


def setup_label(cfg: dict, summary) -> str:
    """The setup in a figure title."""
    t, m, o = cfg["train"], cfg["model"], cfg["optimizer"]
    net = f"MLP {m.get('depth')}x{m.get('width')}" if m.get("arch", "mlp") == "mlp" else net_text(cfg, short=True)
    return (f"{cfg['dataset']} {net}, {o['name'].upper()} momentum {o.get('momentum', 0):g}, "
            f"{t['steps']} steps, {summary.seed.nunique()} seeds")


def learning_curves(sns, metrics, order, setup, fig_dir):
    from ...stats import t_band

    curves = metrics[metrics.metric == "test_acc"]
    g = sns.relplot(data=curves, x="step", y="value", hue="norm", hue_order=order, palette=PALETTE, col="act",
                    row="lr", kind="line", errorbar=t_band(0.95), height=2.4, aspect=1.3,
                    facet_kws={"margin_titles": True})
    g.set_axis_labels("step", "test accuracy")
    g.figure.suptitle(f"Test accuracy over training (mean, 95% t interval over seeds; {setup})", y=1.02)
    return save_figure(g.figure, fig_dir, "learning_curves")


def final_accuracy(sns, runs, order, setup, fig_dir):
    from ...stats import t_band

    g = sns.catplot(data=runs, x="lr", y="test_acc", hue="norm", hue_order=order, palette=PALETTE, col="act",
                    kind="point", errorbar=t_band(0.95), dodge=0.3, height=2.8, aspect=1.0)
    g.set_axis_labels("learning rate", "final test accuracy")
    g.figure.suptitle(f"Final test accuracy per cell (mean, 95% t interval over seeds; diverged = chance; {setup})",
                      y=1.04)
    return save_figure(g.figure, fig_dir, "final_accuracy")


def steps_to_target(sns, runs, order, setup, cfg, fig_dir):
    from ...stats import t_band

    steps = cfg["train"]["steps"]
    g = sns.catplot(data=runs, x="lr", y="steps_to_target", hue="norm", hue_order=order, palette=PALETTE, col="act",
                    kind="bar", errorbar=t_band(0.95), height=2.8, aspect=1.0)
    g.set_axis_labels("learning rate", f"steps to {cfg['claims']['acc_target']:.0%} train acc")
    for ax in g.axes.flat:
        ax.axhline(steps, color="grey", ls=":", lw=1)
    g.figure.suptitle(f"Speed: steps to the train-accuracy target (dotted: budget, never reached = "
                      f"{steps + 1}; {setup})", y=1.04)
    return save_figure(g.figure, fig_dir, "steps_to_target")


def forest_panel(ax, claims, prefix: str, label: str, sesoi: float) -> None:
    """One claim's rows, pooled (diamond) first, then its strata and cells, as intervals coloured by verdict."""
    import pandas as pd

    from ...plotting import SESOI_COLOR, forest

    a = claims[(claims.claim_id == prefix) | claims.claim_id.str.startswith(f"{prefix}[")]
    a = pd.concat([a[a.kind == "headline"], a[a.kind != "headline"]])
    ax.set_title(f"{prefix}: {label}", fontsize=9)
    if (a.verdict == "not run").all():  # the config does not hold the two variants this claim compares
        ax.text(0.5, 0.5, str(a.basis.iloc[0]).replace(" (", "\n("), ha="center", va="center", fontsize=8,
                transform=ax.transAxes, style="italic")
        ax.set_xticks([])
        ax.set_yticks([])
        return
    forest(a, ax, labels=lambda r: "pooled" if r.kind == "headline" else r.claim_id[len(prefix) + 1:-1],
           ticks=False, lines={0: {}, sesoi: {"color": SESOI_COLOR, "ls": "--"}})
    ax.set_xlabel("difference (interval the verdict was made from)", fontsize=8)


def placement_difference(plt, claims, cfg, setup, fig_dir):
    from ...plotting import verdict_legend

    n = max(1, max(int(claims.claim_id.str.startswith(p).sum()) for p, _ in PANELS))
    fig, axes = plt.subplots(1, 3, figsize=(12, 0.3 * n + 1.8))
    sesoi = smallest_effects(cfg)
    for ax, (prefix, label) in zip(axes, PANELS):
        forest_panel(ax, claims, prefix, label, sesoi[prefix] * (1 if prefix != "S4.b" else -1))
    verdict_legend(axes[-1], verdicts=set(claims.verdict), loc="lower right")
    fig.suptitle(f"Placement claims pooled, per activation and per cell ({setup}); colour = verdict; bars: each "
                 "verdict's interval at its multiplicity-adjusted level; dashed orange: the smallest effect of "
                 "interest", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, fig_dir, "placement_difference")


def figures(metrics, summary, claims, cfg, fig_dir, extra=None):
    plt, sns = plotting_setup()
    order = [n for n in NORMS if n in set(summary.norm)]
    setup = setup_label(cfg, summary)
    runs = run_table(metrics, summary, cfg)
    return [*learning_curves(sns, metrics, order, setup, fig_dir), *final_accuracy(sns, runs, order, setup, fig_dir),
            *steps_to_target(sns, runs, order, setup, cfg, fig_dir), *placement_difference(plt, claims, cfg, setup, fig_dir)]
