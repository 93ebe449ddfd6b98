"""S3's figures (``figures``), one function per figure, drawn from the tables of ``claims.study_tables``.

Light at import: matplotlib, seaborn, numpy and pandas are imported inside the functions."""

from __future__ import annotations

from dataclasses import dataclass, field

LABEL_TEXT = {"fresh": "fresh random labels", "random": "fixed random labels", "real": "real labels"}


@dataclass
class Canvas:
    """What every figure needs: the plotting modules, the unit words, the setup note, the files written."""

    plt: object
    sns: object
    fig_dir: object
    note: str = ""
    U: str = "unit"
    Us: str = "units"
    chans: list | None = None
    written: list = field(default_factory=list)

    def save(self, fig, name: str) -> None:
        from ...plotting import save_figure

        self.written.extend(save_figure(fig, self.fig_dir, name))

    def empty(self, name: str, text: str) -> None:
        fig, ax = self.plt.subplots(figsize=(4, 2))
        ax.text(0.5, 0.5, text, ha="center", va="center")
        ax.axis("off")
        self.save(fig, name)

    def lname(self, layer: str) -> str:
        """bn<i> on a VGG: which conv layer it is and its channels (the units of the per-unit probe)."""
        if self.chans and layer.startswith("bn") and int(layer[2:]) < len(self.chans):
            i = int(layer[2:])
            return f"{layer} (conv {i + 1}/{len(self.chans)}, {self.chans[i]} ch)"
        return layer


def _canvas(cfg: dict, fig_dir) -> Canvas:
    """Conv nets: a unit is an output channel, w_j its filter (all input channels x 3 x 3); other setups than the
    default's say what was run under every figure."""
    from ...plotting import setup
    from ..setup_text import CONV_ARCHS, dataset_text, is_default_setup, model_text, title_note

    plt, sns = setup()
    m = cfg["model"]
    conv = m.get("arch", "mlp") in CONV_ARCHS
    note = "" if is_default_setup(cfg) else title_note(
        f"{dataset_text(cfg['dataset'])}, scale-invariant {model_text(m, cfg['dataset'])}"
        + ("; a unit = an output channel, w_j = its conv filter" if conv else "") + f"; {cfg['seeds']} seeds")
    words = ("channel", "channels") if conv else ("unit", "units")
    return Canvas(plt, sns, fig_dir, note, *words, chans=m.get("channels") if conv and m.get("arch") == "vgg" else None)


def law_variants(law) -> list[str]:
    """The plain-SGD runs of the law figures, fresh labels first."""
    if not len(law):
        return []
    d = law[~law.trained_out].drop_duplicates("variant")
    order = {"fresh": 0, "real": 1, "random": 2}
    return list(d.assign(o=d.labels.map(order)).sort_values(["o", "variant"]).variant)


def _law_panel(ax, units, law, v: str, layer: str) -> str:
    """One run x layer of the norm-growth figure: measured s_k per seed, the fitted and predicted laws."""
    import numpy as np

    d = units[(units.variant == v) & (units.layer == layer)].dropna(subset=["w4_mean"])
    fits = law[(law.variant == v) & (law.layer == layer)]
    regime = "steady" if (fits.regime == "steady").any() else "from0"
    fits = fits[fits.regime == regime]
    for n, (seed, dd) in enumerate(d.groupby("seed")):
        dd = dd.sort_values("step")
        ax.plot(dd.step, np.sqrt(dd.w4_mean), color="0.35", lw=0.9, label="measured (one line per seed)" if n == 0 else None)
        f = fits[fits.seed == seed]
        if not len(f):
            continue
        f = f.iloc[0]
        kk = dd.step.to_numpy(float)
        kk = kk[kk >= f.k_a]
        ax.plot(kk, f.s_a * np.sqrt(1 + (kk - f.k_a) / f.k0_fit), "--", color="tab:blue", lw=1.2,
                label="fit s_a sqrt(1 + (k - k_a)/k0)" if n == 0 else None)
        ax.plot(kk, f.s_a * np.sqrt(1 + (kk - f.k_a) / f.k0_pred), ":", color="tab:orange", lw=1.6,
                label="predicted: k0 from measured G" if n == 0 else None)
    if regime == "steady":
        ax.axvspan(fits.k_a.min(), d.step.max(), color="tab:green", alpha=0.08, label="steady-G tail (earliest start)")
    ratio = np.exp(np.log(fits.k0_ratio).mean()) if len(fits) else np.nan
    where = "steady tail" if regime == "steady" else "from step 0: G not steady"
    return f"{where}; k0 fit/pred = {ratio:.3f}"


def norm_growth_figure(cv: Canvas, t: dict, vs: list[str], bn_layers: list[str]) -> None:
    """1. Norm growth with the law fitted where G is steady (or from step 0 where it never is)."""
    keys, units, law = t["keys"], t["units"], t["law"]
    fig, axes = cv.plt.subplots(len(vs), len(bn_layers), figsize=(3.3 * len(bn_layers), 2.9 * len(vs)), squeeze=False)
    for i, v in enumerate(vs):
        for j, layer in enumerate(bn_layers):
            ax = axes[i, j]
            what = _law_panel(ax, units, law, v, layer)
            ax.set_title(f"{v} ({LABEL_TEXT.get(keys.loc[v].labels, '')}),{chr(10) if cv.chans else ' '}"
                         f"{cv.lname(layer)}\n{what}", fontsize=8)
            if i == 0 and j == 0:
                ax.legend(fontsize=6, loc="upper left")
            if j == 0:
                ax.set_ylabel(f"||w||^2 (rms over {cv.Us})")
            ax.set_xlabel("step k")
    fig.suptitle(f"Norm growth of BN-fed {cv.Us} under plain SGD: the sqrt(1 + k/k0) law, fitted and predicted from G"
                 + cv.note, y=1.01)
    fig.tight_layout()
    cv.save(fig, "norm_growth")


def _g2_panel(ax, cv: Canvas, units, law, st: dict, v: str, layer: str) -> None:
    import numpy as np

    W = st["window"]
    d = units[(units.variant == v) & (units.layer == layer)].dropna(subset=["G2_mean"])
    pal = cv.sns.color_palette("tab10", d.seed.nunique())
    for c, (seed, dd) in zip(pal, d.groupby("seed")):
        w = dd.assign(win=(dd.step // W) * W).groupby("win").G2_mean.mean()
        ax.plot(w.index + W / 2, w.to_numpy(), "o-", color=c, ms=3, lw=1, label=f"seed {seed}")
        f = law[(law.variant == v) & (law.layer == layer) & (law.seed == seed) & (law.regime == "steady")]
        if len(f):
            ka = f.k_a.iloc[0]
            med = np.median(w[w.index >= ka])
            ax.fill_between([ka, w.index.max() + W], med * (1 - st["band"]), med * (1 + st["band"]), color=c,
                            alpha=0.12, lw=0)


def g2_figure(cv: Canvas, t: dict, vs: list[str], bn_layers: list[str], st: dict) -> None:
    """2. G^2 per window with the band of the steady tail."""
    fig, axes = cv.plt.subplots(len(vs), len(bn_layers), figsize=(3.3 * len(bn_layers), 2.6 * len(vs)), squeeze=False,
                                sharex="row")
    for i, v in enumerate(vs):
        for j, layer in enumerate(bn_layers):
            ax = axes[i, j]
            _g2_panel(ax, cv, t["units"], t["law"], st, v, layer)
            ax.set_yscale("log")
            ax.set_title(f"{v}, {cv.lname(layer)}", fontsize=8)
            if j == 0:
                ax.set_ylabel("G^2 (window mean)")
            if i == len(vs) - 1:
                ax.set_xlabel("step k")
            if i == 0 and j == 0:
                ax.legend(fontsize=6, loc="upper right", ncol=2)
    fig.suptitle(f"Gradient at unit norm, G^2 = mean_j ||w_j||^2 ||g_j||^2, per {st['window']}-step window; shaded: "
                 f"+-{st['band']:.0%} of the median over the steady tail (only where there is one)" + cv.note, y=1.01,
                 fontsize=9)
    fig.tight_layout()
    cv.save(fig, "g2_steady")


def effective_lr_figure(cv: Canvas, t: dict, cfg: dict) -> None:
    """3. The implicit schedules: eta/||w||^2, the measured effective rate, the angle per step."""
    import numpy as np

    keys, units = t["keys"], t["units"]
    bn = units[units.layer.str.startswith("bn") & (units.step > 0)]
    first = units[units.layer.str.startswith("bn")].sort_values("step").groupby(["variant", "seed", "layer"])
    base = first[["efflr_mean", "efflr_meas"]].first() if "efflr_meas" in units else None
    fig, axes = cv.plt.subplots(1, 3, figsize=(15, 4.2))
    pal = dict(zip(keys.index, cv.sns.color_palette("tab10", len(keys))))
    for v in keys.index:
        d = bn[bn.variant == v]
        if not len(d) or base is None:
            continue
        d = d.merge(base.loc[v].reset_index(), on=["seed", "layer"], suffixes=("", "_0"))
        e = (d.efflr_mean / d.efflr_mean_0).groupby(d.step).mean()
        m = (d.efflr_meas / d.efflr_meas_0).groupby(d.step).mean().rolling(5, min_periods=1).mean()
        a = d.groupby("step").angle_rms.mean().rolling(5, min_periods=1).mean()
        lab = f"{v} ({keys.loc[v].labels})"
        for ax, s in zip(axes, (e, m, a)):
            ax.plot(s.index, s.to_numpy(), color=pal[v], label=lab)
    kk = np.unique(np.geomspace(max(cfg["probe_every"], 1), int(units.step.max()), 50).round())
    axes[0].plot(kk, np.sqrt(kk[0] / kk), "k--", lw=1, label="1/sqrt(k) reference")
    axes[2].plot(kk, 1 / np.sqrt(2 * kk), "k--", lw=1, label="1/sqrt(2k): plain-SGD limit")
    axes[0].set(xscale="log", yscale="log", xlabel="step k", ylabel="relative to step 0",
                title=f"eta_k / ||w_k||^2 (mean over BN-fed {cv.Us}, layers, seeds)")
    axes[1].set(xscale="log", yscale="log", xlabel="step k", ylabel="relative to step 0",
                title="Measured effective rate: angle per step / G")
    axes[2].set(xscale="log", yscale="log", xlabel="step k", ylabel=f"rad (rms over {cv.Us})",
                title="Angle turned per step")
    axes[0].legend(fontsize=6)
    fig.suptitle("Different optimizers, different implicit schedules (BN-fed layers; curves smoothed over 5 probes)"
                 + cv.note, y=1.02)
    fig.tight_layout()
    cv.save(fig, "effective_lr")


def _wd_column(axes, cv: Canvas, t: dict, cfg: dict, v: str) -> None:
    """One weight-decay run: norm against the equilibrium predicted from G, and the angle per step."""
    import numpy as np

    k = t["keys"].loc[v]
    units = t["units"]
    eta, lam, gam = float(k.lr), float(k.weight_decay), float(k.momentum)
    d = units[(units.variant == v) & units.layer.str.startswith("bn")]
    for layer, dl in d.groupby("layer"):
        m = dl.groupby("step")[["w4_mean", "G2_mean", "angle_rms"]].mean()
        c = axes[0].plot(m.index, np.sqrt(m.w4_mean), label=f"{layer} measured")[0].get_color()
        pred = np.sqrt(eta * m.G2_mean.rolling(20, min_periods=1).mean() / (2 * lam * (1 - gam)))
        axes[0].plot(m.index, pred, ":", color=c, label=f"{layer} predicted from G")
        axes[1].plot(m.index, m.angle_rms.rolling(10, min_periods=1).mean(), color=c, label=layer)
    K = d.step.max()
    for ax in axes:
        ax.axvspan((1 - cfg["claims"]["window"]) * K, K, color="tab:green", alpha=0.08)
    axes[1].axhline(np.sqrt(2 * eta * lam / (1 + gam)), color="k", ls="--", label="sqrt(2 eta lambda / (1+gamma))")
    axes[0].set(title=f"{v} ({k.labels} labels)\neta={eta:g}, lambda={lam:g}, gamma={gam:g}",
                ylabel=f"||w||^2 (rms over {cv.Us})", xlabel="step")
    axes[1].set(ylabel="angle per step (rad)", xlabel="step", yscale="log")
    axes[0].legend(fontsize=6)
    axes[1].legend(fontsize=6)


def wd_figure(cv: Canvas, t: dict, cfg: dict) -> None:
    """4. The weight-decay equilibrium."""
    wvs = list(dict.fromkeys(t["equilibrium"].variant))
    fig, axes = cv.plt.subplots(2, len(wvs), figsize=(5.4 * len(wvs), 6.5), squeeze=False)
    for j, v in enumerate(wvs):
        _wd_column(axes[:, j], cv, t, cfg, v)
    fig.suptitle("Weight decay: norm equilibrium sqrt(eta/(2 lambda (1-gamma))) G and angular update\n"
                 "(mean over seeds; shaded: the window the claims use)" + cv.note, y=1.02)
    fig.tight_layout()
    cv.save(fig, "wd_equilibrium")


def spread_variant(keys, plain: dict):
    """The run of the per-unit spread figure: one that trains the output layer (real labels first, the regime of
    S3.f's headline), else the first plain-SGD run; None if there is none."""
    vs = sorted([v for v in keys.index if keys.loc[v].trained_out and plain[v]],
                key=lambda v: keys.loc[v].labels != "real") or [v for v in keys.index if plain[v]][:1]
    return vs[0] if vs else None


def spread_figure(cv: Canvas, t: dict, v: str) -> None:
    """5. Per-unit spread of the effective rate, BN-fed layers vs the output layer, one run, one seed."""
    from ..setup_text import title_y

    keys, units = t["keys"], t["units"]
    d = units[(units.variant == v) & (units.seed == units[units.variant == v].seed.min())]
    layers = sorted(d.layer.unique(), key=lambda x: (x == "out", x))
    rel = "relupd_rms" in units and units[units.variant == v].relupd_rms.notna().any()
    fig, axes = cv.plt.subplots(1, len(layers) + rel, figsize=(3.2 * (len(layers) + rel), 3.2), squeeze=False)
    lr = float(keys.loc[v].lr)
    for ax in axes[0, 1:len(layers)]:
        ax.sharey(axes[0, 0])
    for ax, layer in zip(axes[0], layers):
        dl = d[(d.layer == layer) & (d.step > 0)].dropna(subset=["efflr_q50"])
        ax.fill_between(dl.step, dl.efflr_q10, dl.efflr_q90, alpha=0.3, label=f"{cv.Us} 10-90%")
        ax.plot(dl.step, dl.efflr_q50, label=f"median {cv.U}")
        for col in [c for c in dl.columns if c.startswith("unit") and c.endswith("_w2")]:
            ax.plot(dl.step, lr / dl[col], lw=0.6, alpha=0.8)
        ax.set(xscale="log", yscale="log", xlabel="step",
               title=f"{cv.lname(layer)}" + (" (no BN after it)" if layer == "out" else " (BN-fed)"))
    axes[0, 0].set_ylabel(f"eta / ||w_j||^2 per {cv.U}")
    axes[0, 0].legend(fontsize=6)
    if rel:  # S3.f's measure, the same for every layer: the relative update size per step
        ax, r = axes[0, -1], units[(units.variant == v) & (units.step > 0)]
        for layer in layers:
            m = r[r.layer == layer].groupby("step").relupd_rms.mean().rolling(5, min_periods=1).mean()
            ax.plot(m.index, m.to_numpy(), lw=2 if layer == "out" else 1, label=cv.lname(layer))
        ax.set(xscale="log", yscale="log", xlabel="step", ylabel="||w' - w|| / ||w|| per step",
               title="relative update size (S3.f)")
        ax.legend(fontsize=6)
    fig.suptitle(f"Each {cv.U} its own eta/||w_j||^2 ({v}, {keys.loc[v].labels} labels, seed 0; thin lines: "
                 f"single {cv.Us})" + cv.note, y=title_y(fig, 1.03, cv.note))
    fig.tight_layout()
    cv.save(fig, "unit_spread")


def invariance_figure(cv: Canvas, path, cfg: dict) -> None:
    """6. The float64 invariance checks of the side job."""
    import pandas as pd

    inv = pd.read_parquet(path)
    inv = inv[~inv.check.isin(["pythagoras_max", "pythagoras_median"])].copy()
    inv["what"] = inv.check + " / " + inv.variant
    inv["rel_error"] = inv.rel_error.clip(lower=1e-18)
    fig, ax = cv.plt.subplots(figsize=(8, 0.35 * inv.what.nunique() + 1.5))
    cv.sns.stripplot(data=inv, y="what", x="rel_error", hue="model", dodge=True, ax=ax, size=5)
    tol = cfg["claims"]["invariance_tol"]
    ax.axvline(tol, color="r", ls="--", lw=1, label=f"tolerance {tol:g}")
    ax.set(xscale="log", xlabel="relative error (float64; each dot a layer x seed)", ylabel="")
    ax.set_title("Invariance checks (must be tiny) and controls (must not be)" + cv.note, fontsize=9)
    ax.legend(fontsize=7)
    cv.save(fig, "invariance")


def figures(metrics, summary, claims, cfg, fig_dir, extra=None):
    from .claims import study_tables

    t = study_tables(metrics, summary, cfg)
    cv = _canvas(cfg, fig_dir)
    vs = law_variants(t["law"])
    bn_layers = sorted(x for x in t["units"].layer.unique() if x.startswith("bn"))
    if vs:
        norm_growth_figure(cv, t, vs, bn_layers)
        g2_figure(cv, t, vs, bn_layers, cfg["steady"])
    else:
        cv.empty("norm_growth", "no plain-SGD variant")
        cv.empty("g2_steady", "no plain-SGD variant")
    effective_lr_figure(cv, t, cfg)
    if len(t["equilibrium"]):
        wd_figure(cv, t, cfg)
    else:
        cv.empty("wd_equilibrium", "no weight-decay variant")
    v = spread_variant(t["keys"], t["plain"])
    if v is not None:
        spread_figure(cv, t, v)
    else:
        cv.empty("unit_spread", "no plain-SGD variant")
    if extra and extra.get("invariance"):
        invariance_figure(cv, extra["invariance"], cfg)
    else:
        cv.empty("invariance", "no invariance job output")
    return cv.written
