"""S5's figures, one function each; ``figures`` draws them all. matplotlib/seaborn come from
``normlab.plotting.setup()`` inside the functions (light at import)."""

from __future__ import annotations

from ...plotting import save_figure
from .claims import curvature_tables, layer_name, layers_of, ratio_table, s5e_data, share_ci, split_sweep
from .variants import needs, sweep_step
from .variants import pairs as center_pairs

MARKERS = {"tanh": "o", "logistic": "s", "relu": "^", "identity": "D"}


def tidy_log(ax, axes="xy"):
    """Log axes with ticks at 1, 2, 5 x 10^k in plain numbers (no crowded minor labels)."""
    import numpy as np
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    for name in axes:
        a = ax.xaxis if name == "x" else ax.yaxis
        lo, hi = sorted(a.get_view_interval())
        wide = lo > 0 and np.log10(hi / lo) > 2.5
        a.set_major_locator(LogLocator(base=10, subs=(1.0,) if wide else (1.0, 2.0, 5.0), numticks=12))
        a.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        a.set_minor_formatter(NullFormatter())


def figures(metrics, summary, claims, cfg, fig_dir, extra=None):
    """Every declared figure; one the config cannot draw (its variants absent) says what it needs."""
    from ...plotting import setup

    setup()
    extra = extra or {}
    written = []

    def save(fig, name, missing):
        written.extend(save_figure(fig if fig is not None else placeholder(name, missing), fig_dir, name))

    mm, ms, _, _ = split_sweep(metrics, summary)
    eig, stats = curvature_tables(mm)
    rt = ratio_table(eig, stats, cfg["claims"]["n_compare"])
    setup_line = (f"{cfg['dataset']}, MLP {cfg['model']['depth']}x{cfg['model']['width']}, SGD lr {cfg['lr']:g}, "
                  f"{cfg['train']['steps']} steps, {ms.seed.nunique() if len(ms) else 0} seeds; "
                  "no paper ran this")
    norms = [n for n in ["none", "bn_pre"] if n in set(ms.norm)]
    need = needs(cfg)
    save(eig_vs_nu(eig, stats, rt, cfg, norms, setup_line), "eig_vs_nu", "curvature probes")
    save(spectra_centering(eig, rt, cfg, setup_line), "spectra_centering", need["S5.b"] or "curvature probes")
    save(invariance(extra["invariance"], cfg) if "invariance" in extra else None, "invariance", "the invariance job")
    save(training_curves(mm, norms, setup_line), "training_curves", "runs")
    save(curvature_over_training(eig, rt, cfg, norms, setup_line), "curvature_over_training", "curvature probes")
    data = None if need["S5.e[common lr]"] else s5e_data(metrics, summary, cfg)
    save(bn_advantage_share(mm, claims, cfg, data) if data else None, "bn_advantage_share", need["S5.e[common lr]"])
    save(lr_sweep(data, cfg) if data and "sweep" in data else None, "lr_sweep", need["S5.e"])
    return written


def placeholder(name: str, missing: str):
    """A figure that says it is not drawn for this config and what it needs."""
    from ...plotting import setup

    plt, _ = setup()
    fig, ax = plt.subplots(figsize=(6, 2))
    ax.axis("off")
    ax.text(0.5, 0.5, f"{name}: not drawn for this config\n(needs {missing})", ha="center", va="center", fontsize=10,
            wrap=True)
    return fig


# 1. measured vs predicted top eigenvalues against nu ------------------------------------------------

def _eig_panel(ax, sub):
    g = sub.groupby(["condition", "act", "j"]).agg(nu=("nu", "mean"), ggn=("ggn", "mean"),
                                                   pred=("kfac_pred", "mean")).reset_index()
    for j, gj in g.groupby("j"):
        colr = f"C{j - 1}"
        for act, ga in gj.groupby("act"):
            ax.scatter(ga.nu, ga.ggn, color=colr, marker=MARKERS.get(act, "o"), s=28,
                       label=f"measured lambda_{j}" if act == "tanh" else None)
            ax.scatter(ga.nu, ga.pred, facecolors="none", edgecolors=colr, marker=MARKERS.get(act, "o"), s=70,
                       lw=1.2, label=f"nu lambda_{j}(S)" if act == "tanh" else None)
    ax.set_xscale("log")
    ax.set_yscale("log")
    tidy_log(ax)
    ax.set_xlabel("nu = ||m||^2 + 1")


def _ratio_panel(axr, r, c):
    rr = r.groupby(["condition", "act"]).agg(nu=("nu", "mean"), ratio=("ratio", "mean")).reset_index()
    for act, ga in rr.groupby("act"):
        axr.scatter(ga.nu, ga.ratio, marker=MARKERS.get(act, "o"), color="k", label=act)
    axr.axhspan(1 / (1 + c["tol"]), 1 + c["tol"], color="tab:green", alpha=0.15)
    axr.axhline(1, color="k", lw=0.7)
    axr.axvline(c["nu_min"], color="grey", ls=":", lw=1)
    axr.set_xscale("log")
    axr.set_yscale("log")
    tidy_log(axr)
    axr.set_xlabel("nu")


def eig_vs_nu(eig, stats, rt, cfg, norms, setup_line):
    from ...plotting import setup

    plt, _ = setup()
    c, n_layers, layers = cfg["claims"], cfg["model"]["depth"] + 1, layers_of(rt)
    e0 = eig[(eig.step == 0) & (eig.layer != "net") & (eig.j <= 3)].merge(
        stats[stats.step == 0][["variant", "seed", "layer", "nu"]], on=["variant", "seed", "layer"])
    e0 = e0[~e0.center.astype(bool)]
    ncol = max(len(layers) * len(norms), 1)
    fig, axes = plt.subplots(2, ncol, figsize=(3.2 * ncol, 5.6), squeeze=False, sharex=False)
    panels = [(layer, norm) for layer in layers for norm in norms]
    for col, (layer, norm) in enumerate(panels):
        ax, axr = axes[0, col], axes[1, col]
        _eig_panel(ax, e0[(e0.layer == layer) & (e0.norm == norm)])
        ax.set_title(f"{layer_name(layer, n_layers)}, {norm}", fontsize=9)
        _ratio_panel(axr, rt[(rt.step == 0) & (rt.layer == layer) & (rt.norm == norm) & ~rt.center.astype(bool)], c)
        if col == 0:
            ax.set_ylabel("top GGN-block eigenvalues")
            axr.set_ylabel(f"measured / predicted (top {c['n_compare']})")
            axr.legend(fontsize=7)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.0, 0.93), fontsize=7)
    fig.suptitle("S5.a: outlier eigenvalues vs nu at init (filled: measured; open: K-FAC prediction nu*lambda_i(S); "
                 "circles tanh, squares logistic; green band: tolerance)\n" + setup_line, fontsize=9, y=1.03)
    fig.tight_layout()
    return fig


# 2. spectra with and without centering (at init, mean over seeds) ----------------------------------

def spectra_centering(eig, rt, cfg, setup_line):
    from ...plotting import setup

    plt, _ = setup()
    n_layers, pairs = cfg["model"]["depth"] + 1, center_pairs(cfg)
    e_init = eig[(eig.step == 0) & (eig.norm == "none")]
    panels = [(layer, "ggn") for layer in layers_of(rt)] + ([("net", "hessian")] if "hessian" in e_init and
                                                            (e_init.layer == "net").any() else [])
    if not (pairs and panels):
        return None
    fig, axes = plt.subplots(len(pairs), len(panels), figsize=(3.3 * len(panels), 2.7 * len(pairs)), squeeze=False)
    for i, (unc, cen) in enumerate(pairs):
        for k, (layer, kind) in enumerate(panels):
            ax = axes[i, k]
            for cond, style in [(unc, "-o"), (cen, "-s")]:
                sub = e_init[(e_init.condition == cond) & (e_init.layer == layer)].groupby("j")[kind].mean()
                if len(sub):
                    ax.plot(sub.index, sub.values, style, ms=3, label=cond)
                if cond == unc and layer != "net" and "kfac_pred" in e_init:
                    p = e_init[(e_init.condition == cond) & (e_init.layer == layer)].groupby("j").kfac_pred.mean()
                    ax.plot(p.index, p.values, ":", color="k", lw=1, label="nu lambda_i(S)")
            ax.set_yscale("log")
            tidy_log(ax, "y")
            ax.xaxis.get_major_locator().set_params(integer=True)
            ax.set_xlabel("eigenvalue index i")
            name = "whole-network Hessian" if layer == "net" else f"{layer_name(layer, n_layers)} GGN block"
            ax.set_title(f"{name}\n{unc} vs centered", fontsize=8)
            if k == 0:
                ax.set_ylabel("eigenvalue (mean over seeds)")
            ax.legend(fontsize=6)
    fig.suptitle(f"S5.b: top eigenvalues at init with and without explicit centering (no BN)\n{setup_line}", fontsize=9,
                 y=1.03)
    fig.tight_layout()
    return fig


# 3. the invariance trajectories ----------------------------------------------------------------------

INV_STYLES = {"base": ("k", "-", 2.5), "shift_scale": ("tab:orange", "--", 1.2),
              "shift_scale_eps_fixed": ("tab:green", ":", 1.2), "per_unit": ("tab:red", "-", 0.8),
              "per_unit_matched": ("tab:purple", "-", 0.8)}


def invariance(path, cfg):
    import pandas as pd
    from matplotlib.ticker import NullFormatter

    from ...plotting import setup

    plt, _ = setup()
    inv = pd.read_parquet(path)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.4))
    for run, (colr, ls, lw) in INV_STYLES.items():
        s = inv[(inv.run == run) & (inv.metric == "loss")]
        a1.plot(s.step, s.value, color=colr, ls=ls, lw=lw, label=run)
        g = inv[(inv.run == run) & (inv.metric == "logit_gap")]
        if len(g):
            a2.plot(g.step, g.value.clip(lower=1e-17), color=colr, ls=ls, lw=max(lw, 1.2), marker=".", ms=3, label=run)
    a1.set_xlabel("step")
    a1.set_ylabel("batch loss")
    a1.legend(fontsize=7)
    a1.set_title("loss per step (base and shift+scale coincide)", fontsize=9)
    a2.set_yscale("log")
    a2.yaxis.set_minor_formatter(NullFormatter())
    a2.axhline(cfg["claims"]["invariance_tol"], color="grey", ls=":", lw=1)
    a2.set_xlabel("step")
    a2.set_ylabel("max |logits - logits_base| (probe batch)")
    a2.set_title("gap to the base trajectory", fontsize=9)
    a2.legend(fontsize=7)
    fig.suptitle(f"S5.c: BN before the next nonlinearity, activations a -> {cfg['invariance']['scale']:g} a + m "
                 f"({cfg['invariance']['dtype']}); controls: per-unit rescaling", fontsize=9, y=1.02)
    fig.tight_layout()
    return fig


# 4. training curves; 5. the top eigenvalue along training ------------------------------------------

def training_curves(metrics, norms, setup_line):
    from ...plotting import setup
    from ...stats import t_band

    _, sns = setup()
    tr = metrics[metrics.metric == "train_loss"]
    if not len(tr):
        return None
    g = sns.relplot(data=tr, x="step", y="value", hue="condition", hue_order=sorted(tr.condition.unique()), col="norm",
                    col_order=norms, kind="line", errorbar=t_band(0.95), height=3.0, aspect=1.2)
    g.set(yscale="log")
    for ax in g.axes.flat:
        tidy_log(ax, "y")
    g.set_axis_labels("step", "train loss")
    g.figure.suptitle(f"Training curves (mean, 95% t interval over seeds; {setup_line})", y=1.03)
    return g.figure


def curvature_over_training(eig, rt, cfg, norms, setup_line):
    from ...plotting import setup

    _, sns = setup()
    n_layers = cfg["model"]["depth"] + 1
    top = eig[(eig.j == 1)].copy()
    if not len(top):
        return None
    top["value"] = top["ggn"].where(top.layer != "net", top.get("hessian"))
    top["panel"] = [("whole-network Hessian" if lay == "net" else f"{layer_name(lay, n_layers)} GGN") for lay in top.layer]
    porder = [p for p in [*(f"{layer_name(lay, n_layers)} GGN" for lay in layers_of(rt)), "whole-network Hessian"]
              if p in set(top.panel)]
    g = sns.relplot(data=top, x="step", y="value", hue="condition", hue_order=sorted(top.condition.unique()),
                    col="panel", col_order=porder, row="norm", row_order=norms, kind="line", marker="o",
                    estimator="median", errorbar=("pi", 100), height=2.6, aspect=1.2, facet_kws={"margin_titles": True})
    g.set(yscale="log")
    for ax in g.axes.flat:
        tidy_log(ax, "y")
    g.set_axis_labels("step", "top eigenvalue")
    g.figure.suptitle("Top curvature eigenvalue along training (fixed curvature batch; median and range over seeds)\n"
                      + setup_line, y=1.05)
    return g.figure


# 6. S5.e: how much of BN's speed advantage does centering without BN recover? ------------------------

SHARE_STYLES = [("none", False, "no BN, uncentered", "tab:red"), ("none", True, "no BN, centered", "tab:green"),
                ("bn_pre", False, "BN before each nonlinearity", "tab:blue")]


def _share_curves(ax, tr, unc, cen, step):
    from ...plotting import setup
    from ...stats import t_band

    _, sns = setup()
    for norm, centered, label, colr in SHARE_STYLES:
        d = tr[(tr.norm == norm) & (tr.condition == (cen if centered else unc))]
        if len(d):
            sns.lineplot(data=d, x="step", y="value", ax=ax, color=colr, label=label, errorbar=t_band(0.95))
    ax.axvline(step, color="grey", ls=":", lw=1)
    ax.set_yscale("log")
    tidy_log(ax, "y")
    ax.set_title(f"{unc} (centered twin: explicit centering)", fontsize=8)
    ax.set_xlabel("step")
    ax.set_ylabel("train loss")
    ax.legend(fontsize=6)


def _forest_rows(claims, data):
    """The S5.e rows to draw, each with the (num, den) groups its share comes from: the headline and its
    condition strata (at the chosen rates), then the common-rate cell and its conditions."""
    import pandas as pd

    groups = {}
    for key, prefix in [("best", "S5.e"), ("common", "S5.e[common lr")]:
        if key not in data:
            continue
        labels, num, den = data[key]
        groups["S5.e" if key == "best" else "S5.e[common lr]"] = (num, den)
        sep = "[" if key == "best" else ", "
        for lab, a, b in zip(labels, num, den):
            groups[f"{prefix}{sep}{lab}]"] = ([a], [b])
    rows = claims[claims.claim_id.isin(list(groups))]
    rows = pd.concat([rows[rows.kind == "headline"], rows[rows.kind != "headline"]])
    return rows, groups


def _share_forest(ax, claims, cfg, data):
    """Each S5.e row's share with its Fieller interval at the level its verdict was made at (ci_level), drawn by
    the shared forest plot (the stratum rows' own columns hold the contrast, so every share is recomputed)."""
    import numpy as np

    from ...plotting import forest, verdict_legend

    rows, groups = _forest_rows(claims, data)
    rows = rows.copy()
    for i, r in rows.iterrows():
        f = share_ci(*groups[r.claim_id], r.ci_level if np.isfinite(r.ci_level) else 0.9)
        rows.loc[i, ["value", "ci_low", "ci_high"]] = f["value"], f["low"], f["high"]
    thr = cfg["claims"]["share_min"]
    rows["threshold"], rows["fail_margin"] = f"> {thr:g}", np.nan
    forest(rows, ax, labels=lambda r: "best lr, pooled" if r.kind == "headline" else r.claim_id[4:],
           lines=[0, (1, {"ls": "--"})], xlim=(-0.5, 1.5))
    verdict_legend(ax, set(rows.verdict), fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_xlabel("share of BN's advantage recovered", fontsize=8)
    ax.set_title("(L_unc - L_cen) / (L_unc - L_BN), Fieller interval at the verdict's level\n0: none, 1: all; "
                 "tick: threshold; colour: verdict", fontsize=8)


def bn_advantage_share(metrics, claims, cfg, data):
    from ...plotting import setup

    plt, _ = setup()
    pairs = center_pairs(cfg)
    tr = metrics[metrics.metric == "train_loss"]
    step = cfg["claims"].get("speed_step") or cfg["train"]["steps"]
    fig, axes = plt.subplots(1, len(pairs) + 1, figsize=(3.4 * (len(pairs) + 1), 3.2), squeeze=False)
    axes = axes[0]
    for ax, (unc, cen) in zip(axes, pairs):
        _share_curves(ax, tr, unc, cen, step)
    _share_forest(axes[-1], claims, cfg, data)
    fig.suptitle(f"S5.e: does explicit centering without BN recover BN's training speed? ({cfg['dataset']}, "
                 f"{cfg['model']['depth']}x{cfg['model']['width']} MLP; curves: SGD lr {cfg['lr']:g}, mean, 95% t "
                 "interval over seeds; right: at each variant's best lr (S5.e) and at the common lr)", fontsize=9,
                 y=1.03)
    fig.tight_layout()
    return fig


# 7. the learning-rate sweep of S5.e ------------------------------------------------------------------

def lr_sweep(data, cfg):
    """Per condition: each variant's loss at the sweep step against the rate (seed mean and seeds); the
    chosen rate ringed."""
    from ...plotting import setup

    plt, _ = setup()
    table, chosen, pairs = data["sweep"], data["chosen"], center_pairs(cfg)
    sel = cfg["lr_sweep"]["select"]
    fig, axes = plt.subplots(1, len(pairs), figsize=(3.8 * len(pairs), 3.2), squeeze=False)
    for ax, (unc, cen) in zip(axes[0], pairs):
        for (norm, cond), (label, colr) in {("none", unc): ("no BN, uncentered", "tab:red"),
                                            ("none", cen): ("no BN, centered", "tab:green"),
                                            ("bn_pre", unc): ("BN before each nonlinearity", "tab:blue")}.items():
            d = table[(table.norm == norm) & (table.condition == cond)]
            if not len(d):
                continue
            m = d.groupby("lr").select_loss.mean()
            ax.plot(m.index, m.values, "-o", color=colr, ms=4, label=label)
            ax.scatter(d.lr, d.select_loss, color=colr, s=8, alpha=0.4)
            best = chosen.get((norm, cond))
            if best is not None:
                ax.scatter([best], [m.loc[best]], s=140, facecolors="none", edgecolors=colr, lw=1.5)
        ax.axvline(cfg["lr"], color="grey", ls=":", lw=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        tidy_log(ax)
        ax.set_title(f"{unc} (centered twin: explicit centering)", fontsize=8)
        ax.set_xlabel("learning rate (dotted: the common lr)")
        ax.set_ylabel(f"{sel.replace('_', ' ')} at step {sweep_step(cfg)}")
        ax.legend(fontsize=6)
    fig.suptitle(f"S5.e: learning-rate sweep ({cfg['dataset']}, {cfg['model']['depth']}x{cfg['model']['width']} MLP, "
                 f"{cfg['optimizer']['name'].upper()}; line: seed mean, dots: seeds; ring: the rate chosen for the variant, the "
                 "lowest seed mean)", fontsize=9, y=1.03)
    fig.tight_layout()
    return fig
