"""S5: the ICS conditioning hypothesis (the lecture's suggested class project), tested.

Variants: a shifted_mlp (models/shifted.py) per condition (activation, added shift c, explicit
centering of the hidden activations or not) x normalization (none | bn_pre: BN before every
nonlinearity, hence "before the next nonlinearity" for every hidden activation but the last),
each over seeds, all trained with the same optimizer and learning rate. The ``curvature`` probe
(normlab.probes.curvature) measures, on a fixed batch at init and along training, the top
eigenvalues of chosen layers' Gauss-Newton blocks, K-FAC's factors, nu = ||m||^2 + 1 and the
prediction nu * lambda_i(S), and the top Hessian eigenvalues of the whole network.
Two exactness jobs (normlab.studies.ics_checks) add the invariance trajectories and the
batch-centering gradient identity.

Claims (ids S5.a..d; details in brackets):
- S5.a uncentered inputs (no BN, no centering, nu >= nu_min) give outlier eigenvalues that match
  the prediction: measured / predicted top-``n_compare`` GGN-block eigenvalues (geometric mean)
  within [1/(1+tol), 1+tol]; their eigenvectors lie in m_bar (x) R^M (overlap >= overlap_min);
- S5.b explicit centering removes them: lambda_1(uncentered) / lambda_1(centered) >= min_reduction
  (same seed = same initial weights), and centering speeds up training (final train loss);
  Across shifts, lambda_1 follows the prediction (log-log slope on nu*lambda_1(S) near 1);
- S5.c with BN before the next nonlinearity the shift is harmless: shift + scale give the same
  trajectory to float precision (controls: per-unit rescaling departs); the hidden blocks feeding
  BN lack the outliers K-FAC predicts from their uncentered inputs (slope < growth_max; ratio at
  the largest nu < 1/(1+tol)); the shift slows training less;
- S5.d batch centering: dL/dW = S_bar^T A~ to float precision, while the direct path alone
  (batch mean detached) gives S_bar^T A.
Intervals: percentile bootstrap over seeds (stratified by variant when pooled).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from ..plotting import save_figure
from ..stats import bootstrap_mean_diff, claim, verdict_above, verdict_below, verdict_within

LECTURE = "Lecture 5 (Grosse), 'ICS conditioning hypothesis'; K-FAC (Martens & Grosse 2015)"
LECTURE_BN = "Lecture 5 (Grosse), 'A Wrinkle': BN in the next layer before its nonlinearity"
LECTURE_BC = "Lecture 5 (Grosse), batch centering: W_bar = S_bar^T A~ (statistics path)"


def cond_label(act: str, shift: float, center: bool) -> str:
    return f"{act} s={shift:g}" + (" centered" if center else "")


def check(cfg: dict) -> None:
    """What the schema cannot say: indices that must fit the model (ConfigError names the key)."""
    from ..config import ConfigError

    n_layers = cfg["model"]["depth"] + 1
    for i, layer in enumerate(cfg["curvature"]["layers"]):
        if not -n_layers <= layer < n_layers:
            raise ConfigError(f"'studies.ics_conditioning.curvature.layers[{i}]': {layer} is not a weight-layer index "
                              f"of a depth-{cfg['model']['depth']} shifted_mlp ({-n_layers}..{n_layers - 1})")
    inv = cfg["invariance"]
    if inv["layer"] >= inv["depth"]:
        raise ConfigError(f"'studies.ics_conditioning.invariance.layer': {inv['layer']} must be below invariance.depth "
                          f"= {inv['depth']} (a BN-normalized layer must follow the transformed activations)")


def variants(cfg: dict) -> dict:
    check(cfg)
    out = {}
    m, cv = cfg["model"], cfg["curvature"]
    probe = {"name": "curvature", "every": cv["every"], "layers": cv["layers"], "k": cv["k"],
             "n_samples": cv["n_samples"], "kinds": cv["kinds"], "network": bool(cv["network_kinds"]),
             "k_network": cv["k_network"], "tol": cv["tol"]}
    if cv["network_kinds"]:
        probe["network_kinds"] = cv["network_kinds"]
    for norm in cfg["norms"]:
        for c in cfg["conditions"]:
            act, shift, center = c["act"], float(c.get("shift", 0.0)), bool(c.get("center", False))
            if center and norm not in cfg["center_norms"]:
                continue
            name = f"{norm}-{act}-s{shift:g}" + ("-centered" if center else "")
            out[name] = {
                "keys": {"norm": norm, "act": act, "shift": shift, "center": center,
                         "condition": cond_label(act, shift, center)},
                "model": {"arch": "shifted_mlp", "depth": m["depth"], "width": m["width"], "bn_eps": m["bn_eps"],
                          "norm": norm, "act": act, "shift": shift, "center_acts": center},
                "optimizer": cfg["optimizer"],
                "lr": cfg["lr"],
                "schedule": {"name": "constant"},
                "train": cfg["train"],
                "probes": [probe],
            }
    return out


# tables ------------------------------------------------------------------------------------------

def curvature_tables(metrics: pd.DataFrame):
    """(eig, layer_stats): eig has one row per (variant, seed, step, layer, j) with columns
    ggn, hessian, kfac_pred, kfac, overlap; layer_stats per (variant, seed, step, layer): nu, m_norm2, a_top."""
    cm = metrics[metrics.metric.str.startswith("curv/")].copy()
    keys = [c for c in ["variant", "seed", "norm", "act", "shift", "center", "condition"] if c in cm]
    parts = cm.metric.str.split("/")
    cm["layer"] = parts.str[1]
    cm["depth"] = parts.str.len()
    e = cm[cm.depth == 4].copy()
    e["quantity"] = parts[cm.depth == 4].str[2] + "_" + parts[cm.depth == 4].str[3].str.extract(r"^([a-z]+)")[0]
    e["j"] = parts[cm.depth == 4].str[3].str.extract(r"(\d+)$")[0].astype(int)
    e["quantity"] = e["quantity"].str.replace("_eig", "").str.replace("ggn_overlap", "overlap")
    eig = e.pivot_table(index=keys + ["step", "layer", "j"], columns="quantity", values="value").reset_index()
    s = cm[cm.depth == 3].copy()
    s["quantity"] = parts[cm.depth == 3].str[2]
    stats = s.pivot_table(index=keys + ["step", "layer"], columns="quantity", values="value").reset_index()
    eig.columns.name = stats.columns.name = None
    return eig, stats


def ratio_table(eig, stats, n_compare: int) -> pd.DataFrame:
    """Per (variant, seed, step, layer): geometric mean of ggn_j / kfac_pred_j (j <= n_compare),
    lambda_1 of the GGN block, the prediction, nu and the mean eigenvector overlap."""
    e = eig[(eig.layer != "net") & (eig.j <= n_compare)].copy()
    if "kfac_pred" not in e or "ggn" not in e:
        return pd.DataFrame()
    e["log_ratio"] = np.log(e["ggn"] / e["kfac_pred"])
    keys = [c for c in ["variant", "seed", "norm", "act", "shift", "center", "condition", "step", "layer"] if c in e]
    agg = {"log_ratio": "mean"}
    if "overlap" in e:
        agg["overlap"] = "mean"
    r = e.groupby(keys).agg(agg).reset_index()
    top = eig[(eig.layer != "net") & (eig.j == 1)].set_index(keys)
    r = r.set_index(keys)
    r["ratio"] = np.exp(r.pop("log_ratio"))
    r["ggn1"] = top["ggn"]
    r["pred1"] = top.get("kfac_pred")
    r = r.join(stats.set_index(keys)[["nu"]])
    return r.reset_index()


def run_table(metrics: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    """One row per run: final train loss (chance-level log(10) if diverged)."""
    runs = summary.copy()
    loss = runs.get("final_train_loss", pd.Series(np.nan, index=runs.index))
    runs["train_loss"] = loss.where(runs.status == "ok", np.log(10)).fillna(np.log(10))
    return runs


def growth_slopes(sub: pd.DataFrame, nu_min: float) -> list:
    """Per activation with >= 2 uncentered conditions at nu >= nu_min: per-seed least-squares slopes of
    log lambda_1(G) on log nu*lambda_1(S) across those conditions (one array per activation)."""
    sub = sub[~sub.center.astype(bool) & (sub.nu >= nu_min)].dropna(subset=["ggn1", "pred1"])
    out = []
    for _, ga in sub.groupby("act"):
        if ga.condition.nunique() < 2:
            continue
        sl = [np.polyfit(np.log(g.pred1), np.log(g.ggn1), 1)[0] for _, g in ga.groupby("seed") if g.condition.nunique() >= 2]
        if sl:
            out.append(np.array(sl))
    return out




def _layer_name(layer: str, n_layers: int) -> str:
    i = int(layer[1:])
    return f"read-out L{i}" if i == n_layers - 1 else f"hidden L{i}"


# claims --------------------------------------------------------------------------------------------

def analyze(metrics, summary, cfg, extra=None):
    extra = extra or {}
    c = cfg["claims"]
    kw = dict(n_boot=c["n_boot"], ci=c["ci"])
    tol, nc = c["tol"], c["n_compare"]
    n_layers = cfg["model"]["depth"] + 1
    n_seeds = int(summary.groupby("variant").seed.nunique().min()) if len(summary) else 0
    rows = []
    eig, stats = curvature_tables(metrics)
    rt = ratio_table(eig, stats, nc)
    steps = sorted(rt.step.unique()) if len(rt) else []
    layers = sorted(rt.layer.unique(), key=lambda s: int(s[1:])) if len(rt) else []

    def by_variant(df, col):
        return [g[col].to_numpy() for _, g in df.groupby("variant")]

    # S5.a: the prediction, for uncentered inputs without BN
    for step in steps[:1] + steps[-1:] if len(steps) > 1 else steps:
        when = "at init" if step == 0 else f"at step {step}"
        for layer in layers:
            sub = rt[(rt.step == step) & (rt.layer == layer) & (rt.norm == "none") & ~rt.center & (rt.nu >= c["nu_min"])]
            lname = _layer_name(layer, n_layers)
            text = (f"Uncentered inputs (no BN, nu >= {c['nu_min']:g}) give the {lname} GGN block top-{nc} eigenvalues "
                    f"nu*lambda_i(S) within a factor 1+{tol:g}, {when}")
            if sub.empty:
                rows.append(claim(f"S5.a[{lname}, {when}]", text + " (no run reached nu_min)", LECTURE,
                                  "geo-mean lambda_i(G_ll) / (nu lambda_i(S))", np.nan, np.nan, np.nan, 1.0,
                                  "inconclusive", n_seeds))
                continue
            v, lo, hi = bootstrap_mean_diff(by_variant(sub, "ratio"), **kw)
            rows.append(claim(f"S5.a[{lname}, {when}]", text + f" (variants: {', '.join(sorted(sub.condition.unique()))})",
                              LECTURE, "geo-mean lambda_i(G_ll) / (nu lambda_i(S))", v, lo, hi, 1.0,
                              verdict_within(lo, hi, 1 / (1 + tol), 1 + tol), n_seeds))
            if step == 0 and "overlap" in sub:
                v, lo, hi = bootstrap_mean_diff(by_variant(sub, "overlap"), **kw)
                rows.append(claim(f"S5.a[eigvec, {lname}]", f"The top-{nc} GGN eigenvectors of the {lname} block lie in "
                                  f"m_bar (x) R^M (mean squared overlap >= {c['overlap_min']:g}), at init", LECTURE,
                                  "mean ||U m_bar||^2 / (||m_bar||^2 ||U||^2)", v, lo, hi, c["overlap_min"],
                                  verdict_above(lo, hi, c["overlap_min"]), n_seeds))
            for cond, g in sub.groupby("condition"):
                v, lo, hi = bootstrap_mean_diff([g.ratio.to_numpy()], **kw)
                tag = cond if step == 0 else f"{cond}, {when}"
                rows.append(claim(f"S5.a[{lname}, {tag}]", f"{cond}: measured / predicted top-{nc} eigenvalues of the "
                                  f"{lname} GGN block {when} (nu = {g.nu.mean():.1f})", LECTURE,
                                  "geo-mean lambda_i(G_ll) / (nu lambda_i(S))", v, lo, hi, 1.0,
                                  verdict_within(lo, hi, 1 / (1 + tol), 1 + tol), len(g)))
        if step == 0:
            for layer in layers:
                lname = _layer_name(layer, n_layers)
                sl = growth_slopes(rt[(rt.step == 0) & (rt.layer == layer) & (rt.norm == "none")], c["nu_min"])
                if sl:
                    v, lo, hi = bootstrap_mean_diff(sl, **kw)
                    rows.append(claim(f"S5.a[growth, {lname}]", f"Across shifts (no BN, nu >= {c['nu_min']:g}), lambda_1 of the "
                                      f"{lname} GGN block grows as the prediction nu*lambda_1(S) does: log-log slope within "
                                      f"[1/(1+{tol:g}), 1+{tol:g}], at init", LECTURE,
                                      "slope of log lambda_1(G_ll) on log nu*lambda_1(S)", v, lo, hi, 1.0,
                                      verdict_within(lo, hi, 1 / (1 + tol), 1 + tol), n_seeds))

    # S5.b: explicit centering removes the outliers (and speeds up training)
    runs = run_table(metrics, summary)
    init = rt[rt.step == 0] if len(rt) else rt
    for norm in [n for n in cfg["norms"] if n in cfg["center_norms"]]:
        for cond in cfg["conditions"]:
            if not cond.get("center", False):
                continue
            act, shift = cond["act"], float(cond.get("shift", 0.0))
            unc, cen = cond_label(act, shift, False), cond_label(act, shift, True)
            for layer in layers:
                a = init[(init.norm == norm) & (init.condition == unc) & (init.layer == layer)].set_index("seed")
                b = init[(init.norm == norm) & (init.condition == cen) & (init.layer == layer)].set_index("seed")
                both = a.index.intersection(b.index)
                if len(both) == 0:
                    continue
                red = (a.loc[both, "ggn1"] / b.loc[both, "ggn1"]).to_numpy()
                v, lo, hi = bootstrap_mean_diff([red], **kw)
                lname = _layer_name(layer, n_layers)
                rows.append(claim(f"S5.b[{lname}, {unc}, {norm}]", f"Centering the activations of {unc} (norm {norm}) divides "
                                  f"lambda_1 of the {lname} GGN block by >= {c['min_reduction']:g} at init "
                                  f"(nu: {a.loc[both, 'nu'].mean():.1f} -> {b.loc[both, 'nu'].mean():.1f})", LECTURE,
                                  "lambda_1(uncentered) / lambda_1(centered)", v, lo, hi, c["min_reduction"],
                                  verdict_above(lo, hi, c["min_reduction"]), len(both)))
            ga = runs[(runs.norm == norm) & (runs.condition == unc)].train_loss.to_numpy()
            gb = runs[(runs.norm == norm) & (runs.condition == cen)].train_loss.to_numpy()
            if len(ga) and len(gb):
                v, lo, hi = bootstrap_mean_diff([ga], [gb], **kw)
                rows.append(claim(f"S5.b[speed, {unc}, {norm}]", f"Centering {unc} (norm {norm}) lowers the final train loss "
                                  f"after {cfg['train']['steps']} steps", LECTURE, "train_loss(uncentered) - train_loss(centered)",
                                  v, lo, hi, 0.0, verdict_above(lo, hi, 0.0), min(len(ga), len(gb))))

    # S5.c: BN before the next nonlinearity makes the shift harmless
    if "invariance" in extra:
        inv = pd.read_parquet(extra["invariance"])
        mx = inv[inv.metric.isin(["loss_gap", "logit_gap"])].groupby(["run", "metric"]).value.max()
        scale = inv[(inv.run == "base") & (inv.metric == "logit_scale")].value.max()
        ic = cfg["invariance"]
        setup = (f"a -> {ic['scale']:g} a + m (m ~ {ic['shift_mean']:g} + {ic['shift_std']:g} N(0,1) per unit) after hidden "
                 f"layer {ic['layer']}, {ic['steps']} SGD steps, {ic['dtype']}")
        for run, text, thr, verdict in [
            ("shift_scale", f"With BN before the next nonlinearity, shifting and scaling the previous activations ({setup}; "
             f"BN eps scaled by s^2) gives the same trajectory: max |d logits| on the probe batch <= {c['invariance_tol']:g} "
             f"(logits up to {scale:.3g})", c["invariance_tol"], "le"),
            ("shift_scale_eps_fixed", f"Same, BN eps left unscaled: eps alone moves the trajectory by at most "
             f"{c['eps_tol']:g} in the logits", c["eps_tol"], "le"),
            ("per_unit", f"Control: a per-unit rescaling a -> D a (D in [1/{ic['per_unit_range']:g}, "
             f"{ic['per_unit_range']:g}]) is no invariance: max |d logits| >= {c['control_min']:g}", c["control_min"], "ge"),
            ("per_unit_matched", "Control: per-unit rescaling with the next weights set to W D^-1 (same initial function) "
             f"still departs: max |d logits| >= {c['control_min']:g}", c["control_min"], "ge"),
        ]:
            if (run, "logit_gap") not in mx:
                continue
            v = float(mx[(run, "logit_gap")])
            ok = v <= thr if verdict == "le" else v >= thr
            rows.append(claim(f"S5.c[{run}]", text + f" (max |d loss| = {mx[(run, 'loss_gap')]:.3g})", LECTURE_BN,
                              "max |logits - logits_base| over the trajectory", v, v, v, thr, "holds" if ok else "fails", 1))
    for layer in layers:
        if int(layer[1:]) >= n_layers - 1:
            continue  # the read-out is not followed by BN
        sub = init[(init.norm == "bn_pre") & (init.layer == layer) & ~init.center & (init.nu >= c["nu_min"])]
        if sub.empty:
            continue
        lname = _layer_name(layer, n_layers)
        sl = growth_slopes(sub, c["nu_min"])
        if sl:
            v, lo, hi = bootstrap_mean_diff(sl, **kw)
            rows.append(claim(f"S5.c[curvature, {lname}]", f"With BN after the {lname} (before the nonlinearity), its top GGN "
                              "eigenvalue does not follow the outlier K-FAC predicts from its uncentered input: across shifts "
                              f"(nu >= {c['nu_min']:g}) the log-log slope on nu*lambda_1(S) is below {c['growth_max']:g}, at init",
                              LECTURE_BN, "slope of log lambda_1(G_ll) on log nu*lambda_1(S)", v, lo, hi, c["growth_max"],
                              verdict_below(lo, hi, c["growth_max"]), n_seeds))
        far = sub[sub.condition == sub.groupby("condition").nu.mean().idxmax()]
        v, lo, hi = bootstrap_mean_diff([far.ratio.to_numpy()], **kw)
        cond = far.condition.iloc[0]
        rows.append(claim(f"S5.c[curvature, {lname}, {cond}]", f"With BN after the {lname}, {cond} (nu = {far.nu.mean():.1f}): "
                          f"measured / predicted top-{nc} eigenvalues < 1/(1+{tol:g}) at init (the predicted outliers are absent)",
                          LECTURE_BN, "geo-mean lambda_i(G_ll) / (nu lambda_i(S))", v, lo, hi, 1 / (1 + tol),
                          verdict_below(lo, hi, 1 / (1 + tol)), len(far)))
    tanh_shifts = sorted(float(x.get("shift", 0.0)) for x in cfg["conditions"] if x["act"] == "tanh" and not x.get("center"))
    if {"none", "bn_pre"} <= set(cfg["norms"]) and len(tanh_shifts) >= 2:
        lo_s, hi_s = tanh_shifts[0], tanh_shifts[-1]

        def cost(norm):
            a = runs[(runs.norm == norm) & (runs.condition == cond_label("tanh", hi_s, False))].set_index("seed").train_loss
            b = runs[(runs.norm == norm) & (runs.condition == cond_label("tanh", lo_s, False))].set_index("seed").train_loss
            return (a - b).dropna().to_numpy()

        ca, cb = cost("none"), cost("bn_pre")
        if len(ca) and len(cb):
            v, lo, hi = bootstrap_mean_diff([ca], [cb], **kw)
            rows.append(claim("S5.c[speed]", f"The shift s={hi_s:g} (vs s={lo_s:g}) raises the final train loss of tanh nets "
                              "more without BN than with BN before the nonlinearity", LECTURE_BN,
                              "[loss(s_max) - loss(s_min)]_none - [same]_bn_pre", v, lo, hi, 0.0,
                              verdict_above(lo, hi, 0.0), min(len(ca), len(cb))))

    # S5.d: the batch-centering gradient identity
    if "centering" in extra:
        cen = pd.DataFrame(json.loads(open(extra["centering"]).read())["rows"])
        n = int(cen.batch.nunique())
        v = float(cen.err_centered.max())
        rows.append(claim("S5.d[identity]", "With batch centering, dL/dW = S_bar^T A~ (centered activations): max relative "
                          f"error over layers and batches <= {c['identity_tol']:g}", LECTURE_BC,
                          "max ||dW - S_bar^T A~|| / ||dW||", v, v, v, c["identity_tol"],
                          "holds" if v <= c["identity_tol"] else "fails", n))
        v = float(cen.err_detached_plain.max())
        rows.append(claim("S5.d[direct path]", "With the batch mean detached (direct path only), dL/dW = S_bar^T A (uncentered) "
                          f"to relative error <= {c['identity_tol']:g}", LECTURE_BC, "max ||dW_detached - S_bar^T A|| / ||dW_detached||",
                          v, v, v, c["identity_tol"], "holds" if v <= c["identity_tol"] else "fails", n))
        big = cen[cen.m_norm2 >= 1.0]
        v = float(big.err_plain.min()) if len(big) else np.nan
        rows.append(claim("S5.d[statistics path]", "The statistics path is what centers A: for uncentered inputs "
                          f"(||m||^2 >= 1), the full gradient differs from S_bar^T A by >= {c['control_min']:g} (relative)",
                          LECTURE_BC, "min ||dW - S_bar^T A|| / ||dW||", v, v, v, c["control_min"],
                          "holds" if v >= c["control_min"] else ("fails" if np.isfinite(v) else "inconclusive"), n))
    return pd.DataFrame(rows)


# figures -------------------------------------------------------------------------------------------

def figures(metrics, summary, claims, cfg, fig_dir, extra=None):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="paper")
    extra = extra or {}
    written = []
    c = cfg["claims"]
    n_layers = cfg["model"]["depth"] + 1

    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    def tidy_log(ax, axes="xy"):
        """Log axes with ticks at 1, 2, 5 x 10^k in plain numbers (no crowded minor labels)."""
        for name in axes:
            a = ax.xaxis if name == "x" else ax.yaxis
            lo, hi = sorted(a.get_view_interval())
            wide = lo > 0 and np.log10(hi / lo) > 2.5
            a.set_major_locator(LogLocator(base=10, subs=(1.0,) if wide else (1.0, 2.0, 5.0), numticks=12))
            a.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            a.set_minor_formatter(NullFormatter())

    def save(fig, name):
        written.extend(save_figure(fig, fig_dir, name))

    eig, stats = curvature_tables(metrics)
    rt = ratio_table(eig, stats, c["n_compare"])
    layers = sorted(rt.layer.unique(), key=lambda s: int(s[1:])) if len(rt) else []
    norms = [n for n in ["none", "bn_pre"] if n in set(summary.norm)]

    # 1. measured vs predicted top eigenvalues against nu
    e0 = eig[(eig.step == 0) & (eig.layer != "net") & (eig.j <= 3)].merge(
        stats[stats.step == 0][["variant", "seed", "layer", "nu"]], on=["variant", "seed", "layer"])
    e0 = e0[~e0.center.astype(bool)]
    fig, axes = plt.subplots(2, max(len(layers) * len(norms), 1), figsize=(3.2 * max(len(layers) * len(norms), 1), 5.6),
                             squeeze=False, sharex=False)
    col = 0
    markers = {"tanh": "o", "logistic": "s", "relu": "^", "identity": "D"}
    for layer in layers:
        for norm in norms:
            ax, axr = axes[0, col], axes[1, col]
            sub = e0[(e0.layer == layer) & (e0.norm == norm)]
            g = sub.groupby(["condition", "act", "j"]).agg(nu=("nu", "mean"), ggn=("ggn", "mean"),
                                                           pred=("kfac_pred", "mean")).reset_index()
            for j, gj in g.groupby("j"):
                colr = f"C{j - 1}"
                for act, ga in gj.groupby("act"):
                    ax.scatter(ga.nu, ga.ggn, color=colr, marker=markers.get(act, "o"), s=28,
                               label=f"measured lambda_{j}" if act == "tanh" else None)
                    ax.scatter(ga.nu, ga.pred, facecolors="none", edgecolors=colr, marker=markers.get(act, "o"), s=70,
                               lw=1.2, label=f"nu lambda_{j}(S)" if act == "tanh" else None)
            ax.set_xscale("log")
            ax.set_yscale("log")
            tidy_log(ax)
            ax.set_title(f"{_layer_name(layer, n_layers)}, {norm}", fontsize=9)
            ax.set_xlabel("nu = ||m||^2 + 1")
            r = rt[(rt.step == 0) & (rt.layer == layer) & (rt.norm == norm) & ~rt.center.astype(bool)]
            rr = r.groupby(["condition", "act"]).agg(nu=("nu", "mean"), ratio=("ratio", "mean")).reset_index()
            for act, ga in rr.groupby("act"):
                axr.scatter(ga.nu, ga.ratio, marker=markers.get(act, "o"), color="k", label=act)
            axr.axhspan(1 / (1 + c["tol"]), 1 + c["tol"], color="tab:green", alpha=0.15)
            axr.axhline(1, color="k", lw=0.7)
            axr.axvline(c["nu_min"], color="grey", ls=":", lw=1)
            axr.set_xscale("log")
            axr.set_yscale("log")
            tidy_log(axr)
            axr.set_xlabel("nu")
            if col == 0:
                ax.set_ylabel("top GGN-block eigenvalues")
                axr.set_ylabel(f"measured / predicted (top {c['n_compare']})")
                axr.legend(fontsize=7)
            col += 1
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.0, 0.93), fontsize=7)
    fig.suptitle("S5.a: outlier eigenvalues vs nu at init (filled: measured; open: K-FAC prediction nu*lambda_i(S); "
                 "circles tanh, squares logistic; green band: tolerance)", fontsize=9, y=1.01)
    fig.tight_layout()
    save(fig, "eig_vs_nu")

    # 2. spectra with and without centering (at init, mean over seeds)
    pairs = [(cond_label(x["act"], float(x.get("shift", 0.0)), False), cond_label(x["act"], float(x.get("shift", 0.0)), True))
             for x in cfg["conditions"] if x.get("center")]
    e_init = eig[(eig.step == 0) & (eig.norm == "none")]
    panels = [(layer, "ggn") for layer in layers] + ([("net", "hessian")] if "hessian" in e_init and
                                                      (e_init.layer == "net").any() else [])
    if pairs and panels:
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
                name = "whole-network Hessian" if layer == "net" else f"{_layer_name(layer, n_layers)} GGN block"
                ax.set_title(f"{name}\n{unc} vs centered", fontsize=8)
                if k == 0:
                    ax.set_ylabel("eigenvalue (mean over seeds)")
                ax.legend(fontsize=6)
        fig.suptitle("S5.b: top eigenvalues at init with and without explicit centering (no BN)", fontsize=9, y=1.01)
        fig.tight_layout()
        save(fig, "spectra_centering")

    # 3. the invariance trajectories
    if "invariance" in extra:
        inv = pd.read_parquet(extra["invariance"])
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.4))
        styles = {"base": ("k", "-", 2.5), "shift_scale": ("tab:orange", "--", 1.2),
                  "shift_scale_eps_fixed": ("tab:green", ":", 1.2), "per_unit": ("tab:red", "-", 0.8),
                  "per_unit_matched": ("tab:purple", "-", 0.8)}
        for run, (colr, ls, lw) in styles.items():
            s = inv[(inv.run == run) & (inv.metric == "loss")]
            a1.plot(s.step, s.value, color=colr, ls=ls, lw=lw, label=run)
            g = inv[(inv.run == run) & (inv.metric == "logit_gap")]
            if len(g):
                a2.plot(g.step, g.value.clip(lower=1e-17), color=colr, ls=ls if ls != "-" else "-", lw=max(lw, 1.2),
                        marker=".", ms=3, label=run)
        a1.set_xlabel("step")
        a1.set_ylabel("batch loss")
        a1.legend(fontsize=7)
        a1.set_title("loss per step (base and shift+scale coincide)", fontsize=9)
        a2.set_yscale("log")
        a2.yaxis.set_minor_formatter(NullFormatter())
        a2.axhline(c["invariance_tol"], color="grey", ls=":", lw=1)
        a2.set_xlabel("step")
        a2.set_ylabel("max |logits - logits_base| (probe batch)")
        a2.set_title("gap to the base trajectory", fontsize=9)
        a2.legend(fontsize=7)
        fig.suptitle(f"S5.c: BN before the next nonlinearity, activations a -> {cfg['invariance']['scale']:g} a + m "
                     f"({cfg['invariance']['dtype']}); controls: per-unit rescaling", fontsize=9, y=1.02)
        fig.tight_layout()
        save(fig, "invariance")

    # 4. training curves
    tr = metrics[metrics.metric == "train_loss"]
    if len(tr):
        order = sorted(tr.condition.unique())
        g = sns.relplot(data=tr, x="step", y="value", hue="condition", hue_order=order, col="norm", col_order=norms,
                        kind="line", errorbar=("ci", 95), height=3.0, aspect=1.2)
        g.set(yscale="log")
        for ax in g.axes.flat:
            tidy_log(ax, "y")
        g.set_axis_labels("step", "train loss")
        g.figure.suptitle(f"Training curves (SGD lr={cfg['lr']:g}; mean, 95% CI over seeds)", y=1.03)
        save(g.figure, "training_curves")

    # 5. top eigenvalue along training
    top = eig[(eig.j == 1)].copy()
    if len(top):
        top["value"] = top["ggn"].where(top.layer != "net", top.get("hessian"))
        top["panel"] = [("whole-network Hessian" if lay == "net" else f"{_layer_name(lay, n_layers)} GGN") for lay in top.layer]
        porder = [p for p in [*(f"{_layer_name(lay, n_layers)} GGN" for lay in layers), "whole-network Hessian"]
                  if p in set(top.panel)]
        g = sns.relplot(data=top, x="step", y="value", hue="condition", hue_order=sorted(top.condition.unique()),
                        col="panel", col_order=porder, row="norm", row_order=norms, kind="line", marker="o",
                        estimator="median", errorbar=("pi", 100), height=2.6, aspect=1.2,
                        facet_kws={"margin_titles": True})
        g.set(yscale="log")
        for ax in g.axes.flat:
            tidy_log(ax, "y")
        g.set_axis_labels("step", "top eigenvalue")
        g.figure.suptitle("Top curvature eigenvalue along training (fixed curvature batch; median and range over seeds)",
                          y=1.03)
        save(g.figure, "curvature_over_training")
    return written
