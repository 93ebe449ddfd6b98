"""S1 figures: training curves (Fig. 2, Figs. 7-8), the lr sweep, activation histograms (Fig. 2), ICS (Fig. 3),
landscape (Fig. 4), the deep linear network (Fig. 5) and the claims.

numpy, pandas, matplotlib and seaborn are imported inside the functions (the Snakefile imports the study at
parse time); ``normlab.plotting.setup()`` is the one plotting set-up."""

from __future__ import annotations

from pathlib import Path

from .claims import CHANCE, run_table
from .variants import NORM_LABEL, hist_steps, n_weight_layers, net_entry, setup_text

SMOOTH = 10  # training curves: rolling mean over this many logged steps
PALETTE = {"none": "tab:blue", "bn_pre": "tab:red", "noisy_bn": "tab:green", "noise_only": "tab:purple"}
ICS_QUANTITIES = {"l2": "||G - G'||", "rel": "||G - G'||/||G||", "cos": "cos(G, G')"}


def _label(df):
    return df.assign(variant_label=df.norm.map(NORM_LABEL))


def figures(metrics, summary, claims, cfg, fig_dir, extra=None):
    from ...plotting import save_figure, setup
    from ..setup_text import is_default_setup, title_note

    plt, sns = setup()
    fig_dir = Path(fig_dir)
    written = []

    def save(fig, name):
        written.extend(save_figure(fig, fig_dir, name))

    note = "" if is_default_setup(cfg) else title_note(setup_text(cfg))  # what departs from the paper, in every title
    order = [n for n in NORM_LABEL if n in set(summary.norm)]
    for name, fig in _training_curves(metrics, summary, cfg, order, sns, note):
        save(fig, name)
    save(_lr_sweep(metrics, summary, cfg, order, plt, note), "lr_sweep")
    lr0 = _probe_lr(metrics, cfg)
    save(_activation_histograms(metrics, cfg, order, lr0, plt, sns, note), "activation_histograms")
    save(_ics_figure(metrics, cfg, order, lr0, plt, sns, note), "ics")
    ls = metrics[metrics.metric.str.startswith("landscape/")]
    save(_landscape_bands(ls[_close(ls.lr, lr0)], plt, f"lr={lr0:g}", note=note) if not ls.empty
         else _empty(plt, "no landscape data (see probes.norms)"), "landscape")
    if extra and "dln" in extra:
        import pandas as pd

        save(_dln_figure(pd.read_parquet(Path(extra["dln"]) / "metrics.parquet"), plt, cfg), "dln")
    else:
        save(_empty(plt, "no DLN data (extra 'dln')"), "dln")
    save(_claims_figure(claims, cfg, plt), "claims")
    return written


def _close(a, b):
    import numpy as np

    return np.isclose(a, b)


def _probe_lr(metrics, cfg: dict) -> float:
    """The rate the probe figures show: the first of ``claims.measure_lrs`` (or of ``lrs``) that was run."""
    import numpy as np

    lr0 = (cfg["claims"]["measure_lrs"] or cfg["lrs"])[0]
    if not np.isclose(metrics.lr, lr0).any():
        lr0 = float(metrics.lr.iloc[0]) if len(metrics) else lr0
    return lr0


def _training_curves(metrics, summary, cfg: dict, order, sns, note: str):
    """Fig. 2 (left, middle) and Figs. 7-8: (name, figure) of training accuracy, test accuracy and training loss.
    Training accuracy/loss as the paper plots them: train mode, the step's own batch (rolling mean over
    ``SMOOTH`` logged steps); test accuracy in eval mode."""
    from ..setup_text import title_y

    lr_list = sorted(set(summary.lr))
    hue_order = [NORM_LABEL[n] for n in order]
    palette = {NORM_LABEL[n]: PALETTE[n] for n in order}
    for metric, ylabel, what, name in [
            ("batch_acc", "training accuracy", "train mode, the step's batch, rolling mean", "train_accuracy"),
            ("test_acc", "test accuracy", "eval mode, BN running statistics as trained", "test_accuracy"),
            ("batch_loss", "training loss", "train mode, the step's batch, rolling mean", "train_loss")]:
        d = _label(metrics[metrics.metric == metric]).sort_values("step")
        if metric.startswith("batch_"):
            d = d.assign(value=d.groupby(["variant", "seed"]).value.transform(
                lambda v: v.rolling(SMOOTH, min_periods=1).mean()))
            d = d[d.step % (SMOOTH * cfg["train"]["log_every"] // 2 or 1) == 0]  # thin the points
        g = sns.relplot(data=d, x="step", y="value", hue="variant_label", hue_order=hue_order, palette=palette,
                        row="net", col="lr", col_order=lr_list, kind="line", errorbar=("pi", 100), height=2.6,
                        aspect=1.3, facet_kws={"margin_titles": True, "sharex": "row",
                                               "sharey": metric != "batch_loss"})
        g.set_axis_labels("step", ylabel)
        g.set_titles(row_template="{row_name}", col_template="lr={col_name}")
        if metric == "batch_loss":
            g.set(yscale="log")
        g._legend.set_title("")
        g.figure.suptitle(f"{ylabel.capitalize()} ({what}): mean over "
                          f"{int(summary.groupby('variant').seed.nunique().min())} seeds, band = min-max;\n"
                          "plain SGD; a diverged run's curve stops" + note, y=title_y(g.figure, 1.08, note))
        yield name, g.figure


def _lr_sweep(metrics, summary, cfg: dict, order, plt, note: str):
    """The lr sweep: where BN matters (train-mode training accuracy and noise-free test accuracy per rate)."""
    import matplotlib.ticker

    runs = run_table(summary, metrics, cfg["claims"]["tail"])
    lr_list = sorted(set(summary.lr))
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for norm in order:
        r = runs[runs.norm == norm]
        for ax, colname in zip(axes, ["train_acc", "test_acc_clean"]):
            m = r.groupby("lr")[colname].mean()
            ax.plot(m.index, m.to_numpy(), marker="o", color=PALETTE[norm], label=NORM_LABEL[norm])
            ax.scatter(r.lr, r[colname], color=PALETTE[norm], s=8, alpha=0.4)
    for ax, t in zip(axes, [f"training accuracy, train mode, last {cfg['claims']['tail']:.0%} of steps\n"
                            "(diverged = chance 0.1)", "test accuracy, BN statistics recomputed without noise\n"
                            "(diverged runs left out)"]):
        ax.set_xscale("log")
        ax.set_xticks(lr_list, [f"{v:g}" for v in lr_list])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_ylabel("accuracy")
        ax.set_xlabel("learning rate (plain SGD)")
        ax.set_title(t, fontsize=8)
        ax.axhline(CHANCE, color="k", lw=0.6, ls=":")
        for lr in cfg["claims"]["regime_lrs"]:
            ax.axvspan(lr / 1.15, lr * 1.15, color="0.9", zorder=0)
    axes[0].legend(fontsize=7)
    fig.suptitle("Learning-rate sweep (dots: seeds, line: mean; grey: the rates S1.a pools)" + note, fontsize=9)
    fig.tight_layout()
    return fig


def _activation_histograms(metrics, cfg: dict, order, lr0: float, plt, sns, note: str):
    """Fig. 2 (right): one unit's activation input, early vs late."""
    import numpy as np

    from ..setup_text import is_default_setup, title_y

    act = metrics[metrics.metric.str.startswith("unit_act/")]
    act = act[np.isclose(act.lr, lr0) & (act.seed == 0) & act.norm.isin(["none", "bn_pre", "noisy_bn"])]
    if act.empty:
        return _empty(plt, "no unit_activations data")
    first = act.groupby("net").step.transform("min")
    act = _label(act).assign(when=np.where(act.step == first, "early", "late"))
    g = sns.displot(data=act, x="value", hue="when", hue_order=["early", "late"], row="net", col="variant_label",
                    col_order=[NORM_LABEL[n] for n in ["none", "bn_pre", "noisy_bn"] if n in order],
                    kind="hist", stat="density", common_norm=False, element="step", bins=30, height=2.2,
                    aspect=1.3, facet_kws={"sharex": False, "sharey": False, "margin_titles": True})
    h = cfg["probes"]["histogram"]
    g.set_axis_labels(f"input of activation {h['layer']}, unit {h['unit']}", "density")
    g.set_titles(row_template="{row_name}", col_template="{col_name}")
    when = ", ".join(f"{n}: steps {', '.join(map(str, hist_steps(cfg, n)))}" for n in cfg["nets"])
    unit = "one unit" if is_default_setup(cfg) else "one unit (a conv channel: every sample and position)"
    g.figure.suptitle(f"Activation distribution of {unit}, early vs late (lr={lr0:g}, seed 0; {when})" + note,
                      y=title_y(g.figure, 1.03, note))
    return g.figure


def _ics_lrs(metrics, cfg: dict, lr0: float) -> list[float]:
    """The rates the ICS figure shows: those of ``claims.ics_lrs`` with ICS data (the paper's Fig. 3: 0.1 and
    0.01), else ``lr0``."""
    import numpy as np

    ics = metrics[metrics.metric.str.startswith("ics/")]
    shown = [lr for lr in cfg["claims"]["ics_lrs"] if np.isclose(ics.lr, lr).any()]
    return shown or [lr0]


def _ics_table(metrics, cfg: dict, lrs):
    """The ICS metrics at the rates ``lrs`` with their quantity and layer names (a panel row per net, layer and
    rate); the layers in words for the title."""
    import numpy as np

    ics = metrics[metrics.metric.str.startswith(("ics/l2/", "ics/rel/", "ics/cos/"))]
    ics = _label(ics[np.isclose(ics.lr.to_numpy()[:, None], np.asarray(lrs, float)[None, :]).any(1)])
    layer = ics.metric.str.split("/").str[2].astype(int)
    early = layer == layer.groupby(ics.net).transform("min")
    ics = ics.assign(quantity=ics.metric.str.split("/").str[1].map(ICS_QUANTITIES),
                     layer=np.where(early, "early layer", "late layer"))
    conv_names = _conv_layer_names(cfg)  # VGG nets: "conv layer k of N" (the paper's Fig. 3 names VGG layers)
    if conv_names:
        named = [conv_names.get((n, int(i))) for n, i in zip(ics.net, layer)]
        ics = ics.assign(layer=[nm or lab for nm, lab in zip(named, ics.layer)])
    ics = ics.assign(panel_row=ics.net + ", " + ics.layer + (", lr=" + ics.lr.map("{:g}".format) if len(lrs) > 1 else ""),
                     rate=[min(range(len(lrs)), key=lambda k, x=x: abs(lrs[k] - x)) for x in ics.lr])
    ics = ics.sort_values(["rate", "net", "layer", "step"], kind="stable")  # panel rows: rate by rate, as listed
    layers = "; ".join(f"{n}: weight layers {sorted(set(layer[ics.net == n]))}" for n in sorted(set(ics.net)))
    if conv_names:
        layers = ("; ".join(f"{n}: " + " and ".join(sorted({conv_names[(n, int(i))] for i in set(layer[ics.net == n])
                                                             if (n, int(i)) in conv_names}))
                            for n in sorted(set(ics.net)))
                  + " (counted from 1; the paper's Fig. 3 plots VGG layers 5 and 10 of 10, here scaled to the depth "
                  "used)")
    else:
        layers += ", 0-based"
    return ics, layers


def _ics_figure(metrics, cfg: dict, order, lr0: float, plt, sns, note: str):
    """Fig. 3: ICS over training, BN vs standard, two layers, at the rates of ``claims.ics_lrs`` run."""
    from ..setup_text import title_y

    if not metrics.metric.str.startswith(("ics/l2/", "ics/rel/", "ics/cos/")).any():
        return _empty(plt, "no ICS data (see probes.norms)")
    lrs = _ics_lrs(metrics, cfg, lr0)
    ics, layers = _ics_table(metrics, cfg, lrs)
    palette = {NORM_LABEL[n]: PALETTE[n] for n in order}
    g = sns.relplot(data=ics, x="step", y="value", hue="variant_label", palette=palette, row="panel_row",
                    col="quantity", col_order=list(ICS_QUANTITIES.values()), kind="line", errorbar=("pi", 100),
                    height=2.4, aspect=1.3, facet_kws={"sharex": True, "sharey": False, "margin_titles": True})
    for (_row, quantity), ax in g.axes_dict.items():
        if quantity.startswith("||"):
            ax.set_yscale("log")
    g.set_axis_labels("step", "")
    g.set_titles(row_template="{row_name}", col_template="{col_name}")
    g._legend.set_title("")
    g.figure.suptitle(f"Internal covariate shift (Def. 2.1) at lr={', '.join(f'{x:g}' for x in lrs)}\n({layers}; "
                      "mean over seeds, band = min-max)" + note, y=title_y(g.figure, 1.06, note))
    return g.figure


def _conv_layer_names(cfg: dict) -> dict:
    """{(net, 0-based weight layer): "conv layer k of N" / "read-out"} for the VGG nets (empty for others)."""
    from ..setup_text import n_conv_layers

    out = {}
    for n in cfg["nets"]:
        m = net_entry(cfg, n)["model"]
        convs, total = n_conv_layers(m), n_weight_layers(m)
        if m.get("arch") != "vgg" or convs is None:
            continue
        for i in cfg["probes"]["ics_layers"]:
            k = i % total
            out[(n, k)] = f"conv layer {k + 1} of {convs}" if k < convs else "read-out layer"
    return out


def _empty(plt, msg):
    fig, ax = plt.subplots(figsize=(4, 1.5))
    ax.text(0.5, 0.5, msg, ha="center", va="center")
    ax.set_axis_off()
    return fig


def _band(ax, d, lo_metric, hi_metric, color, label):
    import numpy as np

    lo = d[d.metric == lo_metric].groupby("step").value.mean()
    hi = d[d.metric == hi_metric].groupby("step").value.mean()
    lo, hi = lo.replace([np.inf, -np.inf], np.nan), hi.replace([np.inf, -np.inf], np.nan)
    if lo.empty or hi.empty:  # the probe did not record this band
        return
    ax.fill_between(lo.index, lo.to_numpy(), hi.reindex(lo.index).to_numpy(), color=color, alpha=0.35, label=label)
    ax.plot(lo.index, lo.to_numpy(), color=color, lw=0.8)
    ax.plot(hi.index, hi.reindex(lo.index).to_numpy(), color=color, lw=0.8)


def _landscape_bands(ls, plt, title_tag, nets=None, note=""):
    """Fig. 4: landscape bands (loss range, gradient predictiveness, effective beta), a row per net."""
    import numpy as np

    nets = sorted(set(ls.net)) if nets is None else nets
    fig, axes = plt.subplots(len(nets), 3, figsize=(11, 2.7 * len(nets)), squeeze=False)
    for r, net in enumerate(nets):
        d = ls[ls.net == net]
        for norm in ["none", "bn_pre"]:
            dn = d[d.norm == norm]
            if dn.empty:
                continue
            col, lab = PALETTE[norm], NORM_LABEL[norm]
            _band(axes[r, 0], dn, "landscape/loss_min", "landscape/loss_max", col, lab)
            _band(axes[r, 1], dn, "landscape/grad_diff_min", "landscape/grad_diff_max", col, lab)
            b = dn[dn.metric == "landscape/beta"].replace([np.inf], np.nan).groupby("step").value
            axes[r, 2].fill_between(b.min().index, b.min().to_numpy(), b.max().to_numpy(), color=col, alpha=0.3)
            axes[r, 2].plot(b.mean().index, b.mean().to_numpy(), color=col, label=lab)
        for ax, t in zip(axes[r], ["loss landscape (range over step sizes)", "gradient predictiveness "
                                   "(||grad change||)", "effective beta-smoothness"]):
            ax.set_yscale("log")
            ax.set_title(f"{net}: {t}", fontsize=8)
            ax.set_xlabel("step")
        axes[r, 0].legend(fontsize=7)
    fig.suptitle(f"Landscape along the update, step sizes a x (w_t+1 - w_t) ({title_tag}; bands: range over step sizes, "
                 "mean over seeds; "
                 "beta: mean, band over seeds)" + note, fontsize=9)
    fig.tight_layout()
    return fig


def _dln_panels(axes, d, norm):
    """One norm's lines in the DLN figure's six panels."""
    import numpy as np

    col, lab = PALETTE[norm], NORM_LABEL[norm]
    loss = d[d.metric == "train_loss"].groupby("step").value.mean()
    axes[0, 0].plot(loss.index, loss.to_numpy(), color=col, label=lab)
    for k, layer in enumerate(sorted({x.split("/")[2] for x in d.metric if x.startswith("ics/l2/")}, key=int)):
        ls_ = ["-", "--"][k % 2]
        for ax, q in [(axes[0, 1], "l2"), (axes[0, 2], "cos")]:
            s = d[d.metric == f"ics/{q}/{layer}"].groupby("step").value.mean()
            ax.plot(s.index, s.to_numpy(), color=col, ls=ls_, label=f"{lab}, layer {int(layer) + 1}")
    _band(axes[1, 0], d, "landscape/loss_min", "landscape/loss_max", col, lab)
    _band(axes[1, 1], d, "landscape/grad_diff_min", "landscape/grad_diff_max", col, lab)
    b = d[d.metric == "landscape/beta"].replace([np.inf], np.nan).groupby("step").value.mean()
    axes[1, 2].plot(b.index, b.to_numpy(), color=col, label=lab)


def _dln_figure(m, plt, cfg):
    """Fig. 5: the deep linear network's loss, ICS and landscape at its first rate."""
    import numpy as np

    m = m.replace({"norm": {"bn": "bn_pre"}})
    lr = cfg["dln"]["lrs"][0]
    if "lr" in m:
        m = m[np.isclose(m.lr, lr)]
    fig, axes = plt.subplots(2, 3, figsize=(11, 5.4))
    for norm in ["none", "bn_pre"]:
        _dln_panels(axes, m[m.norm == norm], norm)
    titles = ["training loss per sample", "||G - G'|| (ICS)", "cos(G, G')", "loss along the gradient (sum over samples)",
              "gradient predictiveness", "effective beta-smoothness"]
    for ax, t in zip(axes.flat, titles):
        ax.set_title(t, fontsize=9)
        ax.set_xlabel("step")
        if t != "cos(G, G')":
            ax.set_yscale("log")
    axes[0, 0].legend(fontsize=7)
    axes[0, 1].legend(fontsize=6)
    d = cfg["dln"]
    fig.suptitle(f"Deep linear network ({d['depth']} layers of {d['width']}x{d['width']}, {d['n_samples']} samples, "
                 f"full-batch GD, eta={lr:g}, {d['steps']} steps; mean over {d['seeds']} seeds; layers numbered from 1; "
                 f"other rates in claims.csv)", fontsize=9)
    fig.tight_layout()
    return fig


def _claims_figure(claims, cfg: dict, plt):
    """The headline claims, their strata, pooled parts and per-rate rows as a forest plot
    (``normlab.plotting.forest``); not the per-cell rows (one net at one rate: claims.csv)."""
    from ...plotting import forest, verdict_legend

    cell = claims.claim_id.str.match(r"S1\.[a-d]\[(" + "|".join([*cfg["nets"], "dln"]) + r") ")
    a = claims[~cell & ((claims.kind != "check") | (claims.claim_id == "S1.b"))]
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(a) + 1.2))
    forest(a, ax)
    verdict_legend(ax, set(a.verdict))
    ax.set_xlabel("claim metric (the interval each verdict was made from, at its adjusted level); black ticks = "
                  "threshold (both ends of an equivalence band); orange = smallest effect of interest", fontsize=7)
    ax.set_title("S1 headline claims, their strata, pooled parts and rates (colour = verdict);\n"
                 "metrics differ per row, see claims.csv",
                 fontsize=8)
    return fig
