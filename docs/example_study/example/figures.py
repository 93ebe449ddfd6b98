"""EX figures: the training loss of each variant over steps."""

from __future__ import annotations

from ...plotting import save_figure, setup


def figures(metrics, summary, claims, cfg, fig_dir, extra=None):
    _, sns = setup()
    m = metrics[metrics.metric == "train_loss"]
    g = sns.relplot(data=m, x="step", y="value", hue="variant", kind="line", errorbar=("pi", 100), height=3)
    g.set(ylabel="training loss", title="EX: training loss, band = min-max over seeds")
    return save_figure(g.figure, fig_dir, "loss")
