"""S1: Santurkar et al. (2018), "How does batch normalization help optimization?"

Grid: network (``nets``: names of ``models`` entries, each a model and optional own ``steps``) x normalization (none | bn_pre | noisy_bn | noise_only)
x learning rate, each over seeds. Variants whose norm is in ``probes.norms`` carry the engine's
``ics`` and ``landscape`` probes; every variant carries ``unit_activations`` (Fig. 2 histograms).
The deep linear network (DLN) runs as its own job (``santurkar_dln``) and comes in as ``extra['dln']``.

Claims (thresholds in the config's ``claims``; a diverged run counts as chance accuracy):
- S1.a noisy BN's final train accuracy is within ``acc_gap`` of BN's (pooled over cells, and per
  cell); S1.a[... > none]: BN and noisy BN beat no BN by more than ``beat_margin``.
- S1.b the same noise without BN stops training: noise_only's final train accuracy < ``stop_acc``
  (pooled over the ``measure_lrs``, where the noise-free standard net trains; per cell as details).
- S1.c BN does not reduce ICS: log10 ||G - G'|| of BN minus that of no BN (geometric means over
  probe steps) above log10(``ics_ratio_min``); S1.c[cos]: cos(G, G') lower with BN (difference below
  ``cos_margin``). Pooled over the ICS layers, nets and ``measure_lrs``; per cell and DLN rows as details.
- S1.d BN makes the landscape smoother: log10 of loss range, gradient predictiveness (max grad
  change) and effective beta, BN minus no BN, below 0 (pooled over measures, nets, ``measure_lrs``).
Intervals: percentile bootstrap over seeds (stratified over cells/measures when pooled).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..plotting import save_figure
from ..stats import bootstrap_mean_diff, claim, verdict_above, verdict_below

PAPER = "Santurkar et al. 2018"
EARLY_FRAC = 0.2  # S1.d[early]: the first fifth of training ("two orders of magnitude early on")
NORM_LABEL = {"none": "standard", "bn_pre": "BN", "noisy_bn": "noisy BN", "noise_only": "standard + noise"}
MEASURES = {"loss_range": "loss range", "grad_diff_max": "gradient predictiveness (max ||grad change||)",
            "beta": "effective beta-smoothness"}


def net_entry(cfg: dict, net: str) -> dict:
    if net not in cfg["models"]:
        raise ValueError(f"studies.santurkar.nets: {net!r} is not a key of studies.santurkar.models "
                         f"(known: {', '.join(cfg['models'])})")
    return cfg["models"][net]


def net_train(cfg: dict, net: str) -> dict:
    """The training loop settings of one net: ``train`` with the net's own ``steps`` if it has one."""
    entry = net_entry(cfg, net)
    return {**cfg["train"], **({"steps": entry["steps"]} if "steps" in entry else {})}


def hist_steps(cfg: dict, net: str) -> list[int]:
    steps = net_train(cfg, net)["steps"]
    return sorted({min(int(round(f * steps)), steps - 1) for f in cfg["probes"]["histogram"]["at"]})


def variants(cfg: dict) -> dict:
    p = cfg["probes"]
    h = p["histogram"]
    out = {}
    for net in cfg["nets"]:
        model = net_entry(cfg, net)["model"]
        for norm in cfg["norms"]:
            for lr in cfg["lrs"]:
                probes = [{"name": "unit_activations", "every": 1, "at": hist_steps(cfg, net), "layer": h["layer"],
                           "unit": h["unit"], "max_values": h["max_values"]}]
                if norm in p["norms"]:
                    probes += [{"name": "ics", "every": p["every"], "layers": p["ics_layers"]},
                               {"name": "landscape", "every": p["every"], **p["landscape"]}]
                out[f"{net}-{norm}-lr{lr:g}"] = {
                    "keys": {"net": net, "norm": norm, "lr": lr},
                    "model": {**model, "act": cfg["act"], "norm": norm, "noise": cfg["noise"]},
                    "optimizer": cfg["optimizer"],
                    "lr": lr,
                    "schedule": {"name": "constant"},
                    "train": net_train(cfg, net),
                    "probes": probes,
                }
    return out


# ---------------------------------------------------------------------------------------------
# Tables


def run_table(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per run: final train/test accuracy (chance if diverged)."""
    runs = summary.copy()
    for col in ("final_train_acc", "final_test_acc"):
        acc = runs.get(col, pd.Series(np.nan, index=runs.index))
        runs[col.removeprefix("final_")] = acc.where(runs.status == "ok", 0.1).fillna(0.1)
    return runs


def _log10_mean(v: pd.Series) -> float:
    """Geometric mean on a log10 scale over the finite, positive values (nan if none)."""
    v = v[np.isfinite(v) & (v > 0)]
    return float(np.log10(v).mean()) if len(v) else np.nan


def probe_table(metrics: pd.DataFrame, keys=("net", "norm", "lr", "seed")) -> pd.DataFrame:
    """One row per (run, measure): ICS (log10 l2, mean cos per layer) and log10 landscape measures."""
    rows = []
    m = metrics[metrics.metric.str.startswith(("ics/", "landscape/"))]
    for k, g in m.groupby(list(keys)):
        base = dict(zip(keys, k))
        for metric, s in g.groupby("metric").value:
            parts = metric.split("/")
            if parts[0] == "ics" and parts[1] == "l2":
                rows.append({**base, "measure": f"ics_l2/{parts[2]}", "value": _log10_mean(s)})
            elif parts[0] == "ics" and parts[1] == "cos":
                s = s[np.isfinite(s)]
                rows.append({**base, "measure": f"ics_cos/{parts[2]}", "value": float(s.mean()) if len(s) else np.nan})
            elif parts[0] == "landscape" and parts[1] in MEASURES:
                rows.append({**base, "measure": parts[1], "value": _log10_mean(s),
                             "n_inf": int(np.isinf(s).sum())})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# Claims


def _lr_tag(lr):
    return f"lr={lr:g}"


def analyze(metrics, summary, cfg, extra=None):
    c = cfg["claims"]
    kw = dict(n_boot=c["n_boot"], ci=c["ci"])
    runs = run_table(summary)
    n_seeds = int(runs.groupby("variant").seed.nunique().min())
    norms = set(runs.norm)
    cells = sorted({(r.net, r.lr) for r in runs.itertuples()})
    rows = []

    def acc(norm, cell_list, col="train_acc"):
        return [runs[(runs.norm == norm) & (runs.net == n) & np.isclose(runs.lr, lr)][col].to_numpy()
                for n, lr in cell_list]

    scopes = [("pooled", cells)] + [(f"{n} {_lr_tag(lr)}", [(n, lr)]) for n, lr in cells]
    # S1.a: noisy BN ~ BN; both beat the standard net.
    if {"bn_pre", "noisy_bn"} <= norms:
        for tag, cl in scopes:
            v, lo, hi = bootstrap_mean_diff(acc("noisy_bn", cl), acc("bn_pre", cl), **kw)
            cid = "S1.a" if tag == "pooled" else f"S1.a[{tag}: noisy_bn vs bn]"
            rows.append(claim(cid, f"Noisy BN's final train accuracy is within {c['acc_gap']:.0%} of BN's ({tag})",
                              PAPER + ", Fig. 2", "train_acc(noisy_bn) - train_acc(bn)", v, lo, hi,
                              -c["acc_gap"], verdict_above(lo, hi, -c["acc_gap"]), n_seeds))
    for better in ("bn_pre", "noisy_bn"):
        if {better, "none"} <= norms:
            for tag, cl in scopes:
                v, lo, hi = bootstrap_mean_diff(acc(better, cl), acc("none", cl), **kw)
                rows.append(claim(f"S1.a[{tag}: {better} > none]",
                                  f"{NORM_LABEL[better]} beats the standard net's final train accuracy by more than "
                                  f"{c['beat_margin']:.0%} ({tag})", PAPER + ", Fig. 2",
                                  f"train_acc({better}) - train_acc(none)", v, lo, hi, c["beat_margin"],
                                  verdict_above(lo, hi, c["beat_margin"]), n_seeds))
    # S1.b: noise without BN stops training, pooled over the measure_lrs (where the standard net trains).
    measured = [(n, lr) for n, lr in cells if np.isclose(lr, c["measure_lrs"] or [lr]).any()]
    if "noise_only" in norms and measured:
        for tag, cl in [("pooled over measure_lrs", measured)] + scopes[1:]:
            v, lo, hi = bootstrap_mean_diff(acc("noise_only", cl), **kw)
            rows.append(claim("S1.b" if tag.startswith("pooled") else f"S1.b[{tag}]",
                              f"The same noise without BN stops training: final train accuracy below "
                              f"{c['stop_acc']:.0%} ({tag})", PAPER + ", Sec. 2.2",
                              "train_acc(noise_only)", v, lo, hi, c["stop_acc"],
                              verdict_below(lo, hi, c["stop_acc"]), n_seeds))
    # S1.c / S1.d from the probes.
    pt = probe_table(metrics)
    dln = _dln_table(extra)
    rows += _probe_claims(pt, dln, cfg, n_seeds)
    # The paper stresses the gap early in training: the same pooled S1.d test on the first EARLY_FRAC of steps.
    if len(metrics) and "net" in metrics:
        limit = metrics.net.map({n: EARLY_FRAC * net_train(cfg, n)["steps"] for n in cfg["nets"]})
        early = [r for r in _probe_claims(probe_table(metrics[metrics.step <= limit]), None, cfg, n_seeds)
                 if r["claim_id"] == "S1.d"]
        for r in early:
            r.update(claim_id="S1.d[early]", claim=r["claim"] + f", first {EARLY_FRAC:.0%} of training")
        rows += early
    return pd.DataFrame(rows)


def _dln_table(extra):
    if not extra or "dln" not in extra:
        return None
    m = pd.read_parquet(Path(extra["dln"]) / "metrics.parquet")
    return probe_table(m.assign(net="dln", lr=0.0), keys=("net", "norm", "lr", "seed"))


def _probe_claims(pt, dln, cfg, n_seeds):
    c = cfg["claims"]
    kw = dict(n_boot=c["n_boot"], ci=c["ci"])
    rows = []
    if pt.empty or not {"none", "bn_pre"} <= set(pt.norm):
        return rows
    measure_lrs = c["measure_lrs"] or sorted(set(pt.lr))
    pt = pt.assign(measured=np.isclose(pt.lr.to_numpy()[:, None], np.array(measure_lrs)[None, :]).any(1))

    def groups(tab, norm, measure_re, where):
        sub = tab[tab.measure.str.fullmatch(measure_re) & where(tab)]
        out = []
        for _, g in sub.groupby(["net", "lr", "measure"]):
            a = g[g.norm == norm].value.dropna().to_numpy()
            out.append(a)
        return out

    def pair(tab, measure_re, where):
        """Per (net, lr, measure) stratum: BN values and none values, strata where both exist."""
        a, b = groups(tab, "bn_pre", measure_re, where), groups(tab, "none", measure_re, where)
        keep = [(x, y) for x, y in zip(a, b) if len(x) and len(y)]
        return [x for x, _ in keep], [y for _, y in keep]

    def add(cid, text, metric, tab, measure_re, where, threshold, verdict_fn, n, source):
        a, b = pair(tab, measure_re, where)
        if not a:
            return
        v, lo, hi = bootstrap_mean_diff(a, b, **kw)
        rows.append(claim(cid, text, source, metric, v, lo, hi, threshold, verdict_fn(lo, hi, threshold), n))

    ics_thr = float(np.log10(c["ics_ratio_min"]))
    where_measured = lambda t: t.measured
    add("S1.c", f"BN does not reduce ICS: ||G - G'|| with BN is at least {c['ics_ratio_min']:g}x that without "
        f"(geometric means; layers {cfg['probes']['ics_layers']}, lr in {measure_lrs}, pooled)",
        "log10 ||G-G'||(bn) - log10 ||G-G'||(none)", pt, r"ics_l2/\d+", where_measured, ics_thr, verdict_above,
        n_seeds, PAPER + ", Fig. 3")
    add("S1.c[cos]", f"cos(G, G') is lower with BN than without (difference below {c['cos_margin']:g}; pooled)",
        "cos(G,G')(bn) - cos(G,G')(none)", pt, r"ics_cos/\d+", where_measured, c["cos_margin"], verdict_below,
        n_seeds, PAPER + ", Fig. 3")
    add("S1.d", "BN makes the landscape smoother: loss range, gradient predictiveness and effective beta are "
        "lower with BN (log10 ratio below 0; pooled over the three measures)",
        "log10 measure(bn) - log10 measure(none)", pt, "|".join(MEASURES), where_measured, 0.0, verdict_below,
        n_seeds, PAPER + ", Fig. 4")
    for mname, label in MEASURES.items():
        add(f"S1.d[{mname}]", f"{label} is lower with BN (pooled over nets, lr in {measure_lrs})",
            f"log10 {mname}(bn) - log10 {mname}(none)", pt, mname, where_measured, 0.0, verdict_below, n_seeds,
            PAPER + ", Fig. 4")
    layers = sorted({m.split("/")[1] for m in pt.measure if m.startswith("ics_l2/")}, key=int)
    for (net, lr), _ in pt.groupby(["net", "lr"]):
        cell = lambda t, net=net, lr=lr: (t.net == net) & np.isclose(t.lr, lr)
        tag = f"{net} {_lr_tag(lr)}"
        for layer in layers:
            add(f"S1.c[{tag} layer {layer}]", f"||G - G'|| of weight layer {layer} (0-based) with BN at least {c['ics_ratio_min']:g}x "
                f"that without ({tag})", "log10 ||G-G'||(bn) - log10 ||G-G'||(none)", pt, f"ics_l2/{layer}", cell,
                ics_thr, verdict_above, n_seeds, PAPER + ", Fig. 3")
            add(f"S1.c[{tag} layer {layer} cos]", f"cos(G, G') of weight layer {layer} (0-based) lower with BN ({tag})",
                "cos(G,G')(bn) - cos(G,G')(none)", pt, f"ics_cos/{layer}", cell, c["cos_margin"], verdict_below,
                n_seeds, PAPER + ", Fig. 3")
        for mname in MEASURES:
            add(f"S1.d[{tag} {mname}]", f"{MEASURES[mname]} lower with BN ({tag})",
                f"log10 {mname}(bn) - log10 {mname}(none)", pt, mname, cell, 0.0, verdict_below, n_seeds,
                PAPER + ", Fig. 4")
    if dln is not None and not dln.empty:
        dln = dln.replace({"norm": {"bn": "bn_pre"}})
        n_dln = int(dln.groupby("norm").seed.nunique().min())
        everywhere = lambda t: np.ones(len(t), bool)
        for layer in sorted({m.split("/")[1] for m in dln.measure if m.startswith("ics_l2/")}, key=int):
            add(f"S1.c[dln layer {layer}]", f"DLN: ||G - G'|| of weight layer {layer} (0-based) with BN at least "
                f"{c['ics_ratio_min']:g}x that without", "log10 ||G-G'||(bn) - log10 ||G-G'||(none)", dln,
                f"ics_l2/{layer}", everywhere, ics_thr, verdict_above, n_dln, PAPER + ", Fig. 5 (DLN)")
            add(f"S1.c[dln layer {layer} cos]", f"DLN: cos(G, G') of weight layer {layer} (0-based) lower with BN",
                "cos(G,G')(bn) - cos(G,G')(none)", dln, f"ics_cos/{layer}", everywhere, c["cos_margin"],
                verdict_below, n_dln, PAPER + ", Fig. 5 (DLN)")
        for mname in MEASURES:
            add(f"S1.d[dln {mname}]", f"DLN: {MEASURES[mname]} lower with BN",
                f"log10 {mname}(bn) - log10 {mname}(none)", dln, mname, everywhere, 0.0, verdict_below, n_dln,
                PAPER + ", App. (DLN landscape)")
    return rows


# ---------------------------------------------------------------------------------------------
# Figures

PALETTE = {"none": "tab:blue", "bn_pre": "tab:red", "noisy_bn": "tab:green", "noise_only": "tab:purple"}


def _label(df):
    return df.assign(variant_label=df.norm.map(NORM_LABEL))


def figures(metrics, summary, claims, cfg, fig_dir, extra=None):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="paper")
    fig_dir = Path(fig_dir)
    written = []
    order = [n for n in NORM_LABEL if n in set(summary.norm)]
    hue_order = [NORM_LABEL[n] for n in order]
    palette = {NORM_LABEL[n]: PALETTE[n] for n in order}

    def save(fig, name):
        written.extend(save_figure(fig, fig_dir, name))

    # Fig. 2 (left, middle) and Figs. 7-8: accuracy and loss curves of every variant.
    for metric, ylabel, name in [("train_acc", "training accuracy", "train_accuracy"),
                                 ("test_acc", "test accuracy", "test_accuracy"),
                                 ("train_loss", "training loss", "train_loss")]:
        d = _label(metrics[metrics.metric == metric])
        g = sns.relplot(data=d, x="step", y="value", hue="variant_label", hue_order=hue_order, palette=palette,
                        row="net", col="lr", kind="line", errorbar=("pi", 100), height=2.4, aspect=1.4,
                        facet_kws={"margin_titles": True, "sharex": "row", "sharey": metric != "train_loss"})
        g.set_axis_labels("step", ylabel)
        g.set_titles(row_template="{row_name}", col_template="lr={col_name}")
        if metric == "train_loss":
            g.set(yscale="log")
        g._legend.set_title("")
        g.figure.suptitle(f"{ylabel.capitalize()} (mean over seeds, band = min-max)", y=1.02)
        save(g.figure, name)

    # Fig. 2 (right): one unit's activation input, early vs late.
    act = metrics[metrics.metric.str.startswith("unit_act/")]
    lr0 = (cfg["claims"]["measure_lrs"] or cfg["lrs"])[0]
    act = act[np.isclose(act.lr, lr0) & (act.seed == 0) & act.norm.isin(["none", "bn_pre", "noisy_bn"])]
    if not act.empty:
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
        g.figure.suptitle(f"Activation distribution of one unit, early vs late (lr={lr0:g}, seed 0; {when})", y=1.03)
        save(g.figure, "activation_histograms")
    else:
        save(_empty(plt, "no unit_activations data"), "activation_histograms")

    # Fig. 3: ICS over training, BN vs standard, two layers.
    ics = metrics[metrics.metric.str.startswith(("ics/l2/", "ics/cos/"))]
    if not ics.empty:
        ics = _label(ics[np.isclose(ics.lr, lr0)])
        layer = ics.metric.str.split("/").str[2].astype(int)
        early = layer == layer.groupby(ics.net).transform("min")
        ics = ics.assign(quantity=ics.metric.str.split("/").str[1].map({"l2": "||G - G'||", "cos": "cos(G, G')"}),
                         layer=np.where(early, "early layer", "late layer"))
        ics = ics.assign(panel=ics.quantity + ", " + ics.layer)
        layers = "; ".join(f"{n}: weight layers {sorted(set(layer[ics.net == n]))}" for n in sorted(set(ics.net)))
        g = sns.relplot(data=ics, x="step", y="value", hue="variant_label", palette=palette, row="net",
                        col="panel", col_order=[f"{q}, {w} layer" for w in ("early", "late")
                                                for q in ("||G - G'||", "cos(G, G')")], kind="line", errorbar=("pi", 100), height=2.3, aspect=1.2,
                        facet_kws={"sharex": "row", "sharey": False, "margin_titles": True})
        for (_net, panel), ax in g.axes_dict.items():
            if panel.startswith("||"):
                ax.set_yscale("log")
        g.set_axis_labels("step", "")
        g.set_titles(row_template="{row_name}", col_template="{col_name}")
        g._legend.set_title("")
        g.figure.suptitle(f"Internal covariate shift (Def. 2.1) at lr={lr0:g} ({layers}, 0-based): mean over "
                          "seeds, band = min-max", y=1.03)
        save(g.figure, "ics")
    else:
        save(_empty(plt, "no ICS data (see probes.norms)"), "ics")

    # Fig. 4: landscape bands (loss range, gradient predictiveness, effective beta).
    ls = metrics[metrics.metric.str.startswith("landscape/")]
    if not ls.empty:
        fig = _landscape_bands(ls[np.isclose(ls.lr, lr0)], plt, f"lr={lr0:g}")
        save(fig, "landscape")
    else:
        save(_empty(plt, "no landscape data (see probes.norms)"), "landscape")

    # DLN: loss, ICS, landscape.
    if extra and "dln" in extra:
        m = pd.read_parquet(Path(extra["dln"]) / "metrics.parquet")
        fig = _dln_figure(m, plt, sns, cfg)
        save(fig, "dln")
    else:
        save(_empty(plt, "no DLN data (extra 'dln')"), "dln")

    # Claims at a glance.
    fig = _claims_figure(claims, plt)
    save(fig, "claims")
    return written


def _empty(plt, msg):
    fig, ax = plt.subplots(figsize=(4, 1.5))
    ax.text(0.5, 0.5, msg, ha="center", va="center")
    ax.set_axis_off()
    return fig


def _band(ax, d, lo_metric, hi_metric, color, label):
    lo = d[d.metric == lo_metric].groupby("step").value.mean()
    hi = d[d.metric == hi_metric].groupby("step").value.mean()
    lo, hi = lo.replace([np.inf, -np.inf], np.nan), hi.replace([np.inf, -np.inf], np.nan)
    ax.fill_between(lo.index, lo.to_numpy(), hi.reindex(lo.index).to_numpy(), color=color, alpha=0.35, label=label)
    ax.plot(lo.index, lo.to_numpy(), color=color, lw=0.8)
    ax.plot(hi.index, hi.reindex(lo.index).to_numpy(), color=color, lw=0.8)


def _landscape_bands(ls, plt, title_tag, nets=None):
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
    fig.suptitle(f"Landscape along the gradient ({title_tag}; bands: range over step sizes, mean over seeds; "
                 "beta: mean, band over seeds)", fontsize=9)
    fig.tight_layout()
    return fig


def _dln_figure(m, plt, sns, cfg):
    m = m.replace({"norm": {"bn": "bn_pre"}})
    fig, axes = plt.subplots(2, 3, figsize=(11, 5.4))
    for norm in ["none", "bn_pre"]:
        d = m[m.norm == norm]
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
                 f"full-batch GD, eta={d['lr']:g}; mean over {d['seeds']} seeds; layers numbered from 1)", fontsize=9)
    fig.tight_layout()
    return fig


def _claims_figure(claims, plt):
    a = claims[~claims.claim_id.str.contains(r"\[.* lr=", regex=True)].copy()
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(a) + 1.2))
    colors = {"holds": "tab:green", "fails": "tab:red", "inconclusive": "tab:grey"}
    for i, r in enumerate(a.itertuples()):
        ax.errorbar(r.value, i, xerr=[[max(r.value - r.ci_low, 0)], [max(r.ci_high - r.value, 0)]], fmt="o",
                    color=colors[r.verdict])
        ax.plot([r.threshold], [i], marker="|", color="k", ms=10)
    ax.set_yticks(range(len(a)), [r.claim_id for r in a.itertuples()], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("claim metric (95% bootstrap CI); black tick = threshold")
    ax.set_title("S1 claims (green holds, red fails, grey inconclusive); metrics differ per row, see claims.csv",
                 fontsize=8)
    return fig

