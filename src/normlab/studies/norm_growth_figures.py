"""Figures of the norm-growth study (S3); each is one function of the tidy tables in norm_growth.py."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..plotting import save_figure
from .norm_growth import _plain_sgd, equilibrium_table, law_table, run_keys, unit_table

FIGURES = ["norm_growth", "effective_lr", "wd_equilibrium", "unit_spread", "invariance"]


def make(metrics, summary, claims, cfg, fig_dir, extra=None):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="paper")
    keys = run_keys(summary)
    units = unit_table(metrics)
    written = []

    def save(fig, name):
        written.extend(save_figure(fig, fig_dir, name))

    def empty(name, text):
        fig, ax = plt.subplots(figsize=(4, 2))
        ax.text(0.5, 0.5, text, ha="center", va="center")
        ax.axis("off")
        save(fig, name)

    bn_layers = sorted(l for l in units.layer.unique() if l.startswith("bn"))

    # 1. norm growth with the fitted and predicted sqrt(1 + k/k0) curves
    law = law_table(units, keys, cfg)
    if len(law):
        vs = list(dict.fromkeys(law.sort_values("labels", ascending=False).variant))
        fig, axes = plt.subplots(len(vs), len(bn_layers), figsize=(3.1 * len(bn_layers), 2.7 * len(vs)),
                                 squeeze=False, sharex=True)
        for i, v in enumerate(vs):
            for j, layer in enumerate(bn_layers):
                ax = axes[i, j]
                d = units[(units.variant == v) & (units.layer == layer)].dropna(subset=["w4_mean"])
                d = d.assign(s=np.sqrt(d.w4_mean))
                mean = d.groupby("step").s.mean()
                k = mean.index.to_numpy(float)
                ax.plot(k[1:], mean.to_numpy()[1:], color="k", lw=1.8, label="measured (mean over seeds)")
                for _, dd in d.groupby("seed"):
                    ax.plot(dd.step.iloc[1:], dd.s.iloc[1:], color="grey", lw=0.5, alpha=0.6)
                f = law[(law.variant == v) & (law.layer == layer)]
                s0 = mean.iloc[0]
                for col, style, lab in [("k0_fit", "--", "fit"), ("k0_pred", ":", "predicted from G")]:
                    k0 = f[col].mean()
                    ax.plot(k[1:], s0 * np.sqrt(1 + k[1:] / k0), style, lw=1.6, label=f"{lab}: k0={k0:.3g}")
                ax.set_xscale("log")
                ax.set_yscale("log")
                ax.set_title(f"{v} ({keys.loc[v].labels} labels), {layer}\nslope(late) = {f.slope.mean():.2f}",
                             fontsize=8)
                ax.legend(fontsize=6, loc="upper left")
                if j == 0:
                    ax.set_ylabel("||w||^2 (rms over units)")
                if i == len(vs) - 1:
                    ax.set_xlabel("step k")
        fig.suptitle("Norm growth of BN-fed units: ||w_k||^2 = ||w_0||^2 sqrt(1 + k/k0), fitted vs predicted k0", y=1.01)
        fig.tight_layout()
        save(fig, "norm_growth")
    else:
        empty("norm_growth", "no plain-SGD variant")

    # 2. effective learning rate and angular step per optimizer (implicit schedules)
    bn = units[units.layer.str.startswith("bn")].dropna(subset=["efflr_mean"])
    first = bn.groupby(["variant", "seed", "layer"]).efflr_mean.transform("first")
    bn = bn.assign(efflr_rel=bn.efflr_mean / first)
    ang = units[units.layer.str.startswith("bn")].dropna(subset=["angle_rms"])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    pal = dict(zip(keys.index, sns.color_palette("tab10", len(keys))))
    for v in keys.index:
        e = bn[(bn.variant == v) & (bn.step > 0)].groupby("step").efflr_rel.mean()
        a = ang[(ang.variant == v) & (ang.step > 0)].groupby("step").angle_rms.mean()
        lab = f"{v}"
        axes[0].plot(e.index, e.to_numpy(), color=pal[v], label=lab)
        axes[1].plot(a.index, a.rolling(5, min_periods=1).mean().to_numpy(), color=pal[v], label=lab)
    kk = np.unique(np.geomspace(max(cfg["probe_every"], 1), cfg["train"]["steps"], 50).round())
    axes[0].plot(kk, np.sqrt(kk[0] / kk), "k--", lw=1, label="1/sqrt(k) reference")
    axes[1].plot(kk, 1 / np.sqrt(2 * kk), "k--", lw=1, label="1/sqrt(2k): plain-SGD limit")
    axes[0].set(xscale="log", yscale="log", xlabel="step k", ylabel="eta_k / ||w_k||^2, relative to step 0",
                title="Effective learning rate (mean over BN-fed units, layers, seeds)")
    axes[1].set(xscale="log", yscale="log", xlabel="step k", ylabel="angle turned per step (rad, rms over units)",
                title="Angular update per step")
    for ax in axes:
        ax.legend(fontsize=7)
    fig.suptitle("Different optimizers, different implicit schedules", y=1.02)
    fig.tight_layout()
    save(fig, "effective_lr")

    # 3. weight-decay equilibrium
    eq = equilibrium_table(units, keys, cfg)
    if len(eq):
        vs = list(dict.fromkeys(eq.variant))
        fig, axes = plt.subplots(2, len(vs), figsize=(4.2 * len(vs), 6), squeeze=False)
        for j, v in enumerate(vs):
            k = keys.loc[v]
            eta, lam, gam = float(k.lr), float(k.weight_decay), float(k.momentum)
            d = units[(units.variant == v) & units.layer.str.startswith("bn")]
            for layer, dl in d.groupby("layer"):
                m = dl.groupby("step")[["w4_mean", "G2_mean", "angle_rms"]].mean()
                c = axes[0, j].plot(m.index, np.sqrt(m.w4_mean), label=f"{layer} measured")[0].get_color()
                pred = np.sqrt(eta * m.G2_mean.rolling(20, min_periods=1).mean() / (2 * lam * (1 - gam)))
                axes[0, j].plot(m.index, pred, ":", color=c, label=f"{layer} predicted from G")
                axes[1, j].plot(m.index, m.angle_rms.rolling(10, min_periods=1).mean(), color=c, label=layer)
            axes[1, j].axhline(np.sqrt(2 * eta * lam / (1 + gam)), color="k", ls="--",
                               label="sqrt(2 eta lambda / (1+gamma))")
            axes[0, j].set(title=f"{v}: eta={eta:g}, lambda={lam:g}, gamma={gam:g}", ylabel="||w||^2 (rms over units)",
                           xlabel="step")
            axes[1, j].set(ylabel="angle per step (rad)", xlabel="step", yscale="log")
            axes[0, j].legend(fontsize=6)
            axes[1, j].legend(fontsize=6)
        fig.suptitle("Weight decay: norm equilibrium sqrt(eta/(2 lambda (1-gamma))) G and angular update", y=1.01)
        fig.tight_layout()
        save(fig, "wd_equilibrium")
    else:
        empty("wd_equilibrium", "no weight-decay variant")

    # 4. per-unit spread of the effective rate, BN-fed layers vs output layer
    spread_vs = [v for v in keys.index if keys.loc[v].trained_out and _plain_sgd(keys.loc[v])] or \
                [v for v in keys.index if _plain_sgd(keys.loc[v])][:1]
    if spread_vs:
        v = spread_vs[0]
        d = units[(units.variant == v) & (units.seed == units[units.variant == v].seed.min())]
        layers = sorted(d.layer.unique(), key=lambda l: (l == "out", l))
        fig, axes = plt.subplots(1, len(layers), figsize=(3.1 * len(layers), 3), sharey=True, squeeze=False)
        for ax, layer in zip(axes[0], layers):
            dl = d[(d.layer == layer) & (d.step > 0)].dropna(subset=["efflr_q50"])
            ax.fill_between(dl.step, dl.efflr_q10, dl.efflr_q90, alpha=0.3, label="units 10-90%")
            ax.plot(dl.step, dl.efflr_q50, label="median unit")
            lr = float(keys.loc[v].lr)
            for col in [c for c in dl.columns if c.startswith("unit") and c.endswith("_w2")]:
                ax.plot(dl.step, lr / dl[col], lw=0.6, alpha=0.8)
            ax.set(xscale="log", yscale="log", title=f"{layer}" + (" (no BN after it)" if layer == "out" else ""),
                   xlabel="step")
        axes[0, 0].set_ylabel("eta / ||w_j||^2 per unit")
        axes[0, 0].legend(fontsize=6)
        fig.suptitle(f"Each unit its own effective rate ({v}, seed 0; thin lines: single units)", y=1.03)
        fig.tight_layout()
        save(fig, "unit_spread")
    else:
        empty("unit_spread", "no plain-SGD variant")

    # 5. invariance checks (float64)
    if extra and extra.get("invariance"):
        inv = pd.read_parquet(extra["invariance"])
        inv = inv[~inv.check.isin(["pythagoras_max", "pythagoras_median"])].copy()
        inv["what"] = inv.check + " / " + inv.variant
        inv["rel_error"] = inv.rel_error.clip(lower=1e-18)
        fig, ax = plt.subplots(figsize=(8, 0.35 * inv.what.nunique() + 1.5))
        sns.stripplot(data=inv, y="what", x="rel_error", hue="model", dodge=True, ax=ax, size=5)
        ax.axvline(cfg["claims"]["invariance_tol"], color="r", ls="--", lw=1, label="tolerance 1e-8")
        ax.set(xscale="log", xlabel="relative error (float64; each dot a layer x seed)", ylabel="")
        ax.set_title("Invariance checks (must be tiny) and controls (must not be)", fontsize=9)
        ax.legend(fontsize=7)
        save(fig, "invariance")
    else:
        empty("invariance", "no invariance job output")
    return written
