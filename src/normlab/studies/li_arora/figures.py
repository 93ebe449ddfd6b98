"""S2's figures (``figures``), one function per figure.

Light at import: matplotlib, seaborn, numpy and pandas are imported inside the functions."""

from __future__ import annotations

from .claims import accuracy_net, exact_net, load_exact, norm_table, run_table
from .variants import milestone_steps, variants

LABELS = {"step_wd": "step decay + WD", "texp_practical": "TEXP (paper, no WD)", "texp": "exact TEXP (no WD)",
          "const_wd": "constant + WD", "exponential": "exponential (no WD)"}
ORDER = list(LABELS)
DASHES = {lab: (1, 0) if v.endswith("_wd") else ((4, 2) if v != "texp" else (1, 2)) for v, lab in LABELS.items()}
PAIR_NAMES = {"exp": "const+WD vs exponential", "texp": "step+WD vs exact TEXP",
              "exp_zero_buffer": "exponential, zero init. buffer"}


def _empty(plt, name: str, text: str) -> list:
    """A placeholder for a figure whose runs the config does not contain (every declared figure is written)."""
    fig, ax = plt.subplots(figsize=(4, 2))
    ax.text(0.5, 0.5, text, ha="center", va="center")
    ax.axis("off")
    return [(fig, name)]


def _line_style(hue_order: list[str]) -> dict:
    """Seaborn line arguments shared by the accuracy-run figures: one hue and dash per schedule, 95% t band."""
    from ...stats import t_band

    return {"hue": "schedule", "hue_order": hue_order, "style": "schedule", "style_order": hue_order,
            "dashes": {h: DASHES[h] for h in hue_order}, "errorbar": t_band(0.95)}


def exactness_figure(plt, sns, ex, cfg: dict, note: str) -> list:
    """S2.a: the float64 gaps between the two runs of each pair, per step."""
    tol = cfg["claims"]["gap_tol"]
    gaps = ex[ex.metric.isin(["weight_gap", "softmax_gap", "norm_ratio_err"]) & (ex.step > 0)
              & (ex.dtype == "float64")].copy()
    if not len(gaps):
        return _empty(plt, "exactness_gap", "no float64 exactness pair in this config")
    gaps["value"] = gaps.value.clip(lower=1e-17)
    pairs = [p for p in ["exp", "texp", "exp_zero_buffer"] if p in set(gaps.pair)]
    gaps["pair"] = gaps.pair.map(PAIR_NAMES)
    g = sns.relplot(data=gaps, x="step", y="value", hue="setting", col="metric",
                    col_order=["weight_gap", "softmax_gap", "norm_ratio_err"], row="pair",
                    row_order=[PAIR_NAMES[p] for p in pairs], kind="line", height=2.3, aspect=1.35, lw=0.9,
                    facet_kws={"margin_titles": True}, errorbar=None)
    g.set(yscale="log", ylim=(1e-17, 10))
    for ax in g.axes.flat:
        ax.axhline(tol, color="k", ls=":", lw=0.8)
    g.set_axis_labels("step", "gap (log)")
    g.figure.suptitle(f"S2.a: exactness in float64, gap between the two runs per step (dotted: {tol:g}; "
                      "values < 1e-17 drawn at 1e-17)" + note, y=1.02)
    return [(g.figure, "exactness_gap")]


def drift_figure(plt, sns, ex, cfg: dict, note: str) -> list:
    """S2.d: float32 pairs drift apart (one line per seed), float64 in grey."""
    level = cfg["claims"]["drift_level"]
    w = ex[(ex.metric == "weight_gap") & (ex.step > 0) & ex.pair.isin(["exp", "texp"])].copy()
    if not len(w):
        return _empty(plt, "drift", "no exp or texp exactness pair in this config")
    w["value"] = w.value.clip(lower=1e-17)
    w["pair"] = w.pair.map(PAIR_NAMES)
    settings = sorted(set(w.setting))
    fig, axes = plt.subplots(1, len(settings), figsize=(3.6 * len(settings), 3.2), sharey=True, squeeze=False)
    for ax, setting in zip(axes[0], settings):
        sub = w[w.setting == setting]
        for pair, m in sub[sub.dtype == "float64"].groupby("pair"):
            ax.plot(m.step, m.value, color="grey", lw=0.8, ls="--" if "TEXP" in pair else "-")
        f32 = sub[sub.dtype == "float32"]
        if len(f32):
            sns.lineplot(data=f32, x="step", y="value", hue="pair", units="seed", estimator=None, lw=0.8, ax=ax,
                         legend=ax is axes[0][0])
        ax.axhline(level, color="k", ls=":", lw=0.8)
        ax.set(yscale="log", ylim=(1e-17, 3), title=setting, ylabel="weight gap (log)")
    fig.suptitle(f"S2.d: float32 pairs drift apart (one line per seed; grey: float64; dotted: {level:g})" + note, y=1.02)
    return [(fig, "drift")]


def schedules_figure(plt, sns, cfg: dict, note: str) -> list:
    """The learning-rate schedules of the accuracy runs."""
    import numpy as np
    import pandas as pd

    from ...schedules import build_schedule

    specs = variants(cfg)
    steps = np.arange(cfg["train"]["steps"])
    lr = pd.concat([pd.DataFrame({"step": steps, "schedule": LABELS[v],
                                  "value": [build_schedule(s["schedule"], s["lr"], s["optimizer"])(int(t)) for t in steps]})
                    for v, s in specs.items()], ignore_index=True)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.4), squeeze=False, layout="constrained")
    groups = [("S2.b: step decay + WD and its TEXPs", ["step_wd", "texp_practical", "texp"]),
              (f"S2.c: constant + WD (lambda {cfg['growth']['weight_decay']:g}) and exponential",
               ["const_wd", "exponential"])]
    for ax, (title, names) in zip(axes[0], groups):
        ho = [LABELS[v] for v in names if v in specs]
        if not ho:
            ax.set_visible(False)
            continue
        sns.lineplot(data=lr[lr.schedule.isin(ho)], x="step", y="value", hue="schedule", hue_order=ho, style="schedule",
                     style_order=ho, dashes={h: DASHES[h] for h in ho}, ax=ax)
        ax.set(yscale="log", ylabel="learning rate eta_t (log)", title=title)
        sns.move_legend(ax, "best", fontsize=7, title=None)
        if names[0] == "step_wd":
            for m in milestone_steps(cfg["step_decay"]["milestones"], cfg["train"]["steps"]):
                ax.axvline(m, color="grey", ls=":", lw=0.8)
    fig.suptitle("Learning-rate schedules of the accuracy runs (dotted: step-decay milestones)" + note)
    return [(fig, "lr_schedules")]


def _growth_panel(ax, e, cfg: dict) -> None:
    """Exponential run: ||w||^2 against eta per seed, slopes 1 and 0.5 over the second half."""
    import matplotlib
    import numpy as np

    for _, g in e.groupby("seed"):
        ax.plot(g.lr, g.w2, color="C3", lw=0.8, alpha=0.7)
    s2 = e[e.step >= cfg["train"]["steps"] / 2]
    x0, y0 = s2.lr.min(), s2[s2.lr == s2.lr.min()].w2.mean()
    xs = np.array([s2.lr.min(), s2.lr.max()])
    ax.plot(xs, y0 * xs / x0, "k--", lw=1, label="slope 1 (||w||^2 ~ eta)")
    ax.plot(xs, y0 * (xs / x0) ** 0.5, "k:", lw=1, label="slope 0.5")
    ax.axvline(s2.lr.min(), color="grey", lw=0.6)
    ax.legend(fontsize=7)
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set(xscale="log", yscale="log", xlabel="eta_t (log)", ylabel="||w_t||^2 (log)",
           title="Exponential: ||w||^2 vs eta (per seed; fit right of grey)")


def norms_figure(plt, sns, nt, cfg: dict, note: str) -> list:
    """S2.c: weight norms, ||w||^2 / eta and the exponential run's ||w||^2 against eta."""
    hue_order = [LABELS[v] for v in ORDER if v in set(nt.variant)]
    line = _line_style(hue_order)
    fig, axes = plt.subplots(1, 3, figsize=(16, 3.8), layout="constrained")
    sns.lineplot(data=nt, x="step", y="norm", ax=axes[0], **line)
    axes[0].set(yscale="log", ylabel="||w_t|| (trained layers, log)", title="Weight norm")
    sns.move_legend(axes[0], "upper left", fontsize=7, title=None)
    sns.lineplot(data=nt, x="step", y="w2_over_lr", ax=axes[1], legend=False, **line)
    axes[1].set(yscale="log", ylabel="||w_t||^2 / eta_t (log)", title="||w_t||^2 / eta_t")
    e = nt[nt.variant == "exponential"]
    if len(e):
        _growth_panel(axes[2], e, cfg)
    fig.suptitle("Norms over training (mean, 95% t interval over seeds; constant/exponential use the larger "
                 "growth.weight_decay)" + note)
    return [(fig, "norms")]


def accuracy_figure(plt, sns, metrics, summary, hue_order: list[str], note: str) -> list:
    """S2.b, S2.c: test accuracy over training and at the end."""
    from ...stats import t_band

    curves = metrics[metrics.metric == "test_acc"].assign(schedule=lambda d: d.variant.map(LABELS))
    runs = run_table(summary).assign(schedule=lambda d: d.variant.map(LABELS))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4), gridspec_kw={"width_ratios": [2, 1]})
    sns.lineplot(data=curves, x="step", y="value", ax=axes[0], **_line_style(hue_order))
    axes[0].set(ylabel="test accuracy", ylim=(0.5, 1.0),
                title="Test accuracy over training (mean, 95% t interval over seeds; from 0.5)")
    sns.pointplot(data=runs, x="schedule", y="test_acc", order=hue_order, hue="schedule", hue_order=hue_order,
                  errorbar=t_band(0.95), ax=axes[1], legend=False)
    axes[1].set(xlabel="", ylabel="final test accuracy",
                title=f"Final ({runs.groupby('variant').seed.nunique().min()} seeds; 95% t interval, unpaired;\n"
                      "the claims use per-seed paired differences)")
    axes[1].tick_params(axis="x", rotation=30)
    if note:
        fig.suptitle(note.strip(), fontsize=9)
        fig.tight_layout()
    return [(fig, "test_accuracy")]


def figures(metrics, summary, claims, cfg, fig_dir, extra=None):
    from ...plotting import save_figure, setup
    from ..setup_text import is_default_setup, title_note

    plt, sns = setup()
    # Other setups than the default's: what was run, under every figure (the default's captions say it)
    ex_note = "" if is_default_setup(cfg) else title_note(f"({exact_net(cfg)}, {cfg['exactness']['steps']} steps)")
    note = "" if is_default_setup(cfg) else title_note(f"({accuracy_net(cfg)}, {cfg['train']['steps']} steps of "
                                                       f"batch {cfg['train']['batch_size']}, {cfg['seeds']} seeds)")
    ex = load_exact(extra)
    nt = norm_table(metrics, cfg).assign(schedule=lambda d: d.variant.map(LABELS))
    hue_order = [LABELS[v] for v in ORDER if v in set(nt.variant)]
    made = (exactness_figure(plt, sns, ex, cfg, ex_note) + drift_figure(plt, sns, ex, cfg, ex_note)
            + schedules_figure(plt, sns, cfg, note) + norms_figure(plt, sns, nt, cfg, note)
            + accuracy_figure(plt, sns, metrics, summary, hue_order, note))
    return [p for fig, name in made for p in save_figure(fig, fig_dir, name)]
