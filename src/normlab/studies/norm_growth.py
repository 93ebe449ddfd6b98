"""S3: weight-norm growth and the implicit learning-rate decay of BN, measured and predicted.

Variants (config ``variants``: name -> optimizer, lr, labels, constraints, schedule, model overrides),
each over seeds, on a BN model whose trained weights are scale invariant (``model.scale_invariant``:
no bias before BN, BN affine frozen, output layer fixed; a variant may set ``model:
{scale_invariant: false}`` to train the output layer, for S3.f). The engine probe ``units``
(normlab/probes/units.py) records per-unit norms, gradients, effective rates, angles and the
Pythagorean residual for every BN-fed layer and the output layer.

The lecture's argument, and what the analysis computes from it. For a BN-fed unit w (gradient g,
gradient at unit norm G = ||w|| ||g||), scale invariance gives <w, g> = 0, so plain SGD obeys
    ||w_{k+1}||^2 = ||w_k||^2 + eta^2 ||g_k||^2 = ||w_k||^2 + eta^2 G_k^2 / ||w_k||^2        (S3.b)
hence ||w_{k+1}||^4 = ||w_k||^4 + 2 eta^2 G_k^2 + O(eta^4 G^4 / ||w||^4): ||w||^4 grows linearly
when G is steady, ||w_k||^2 = ||w_0||^2 sqrt(1 + k/k0), k0 = ||w_0||^4 / (2 eta^2 G^2) (S3.c).
Per layer we use s_k = sqrt(mean_j ||w_j,k||^4), for which the same law holds exactly with
G^2 = mean_j G_j^2, so no averaging of different units' k0 is needed. The effective rate
eta/||w||^2 then decays as 1/sqrt(1 + k/k0), and the angle turned per step, eta G/||w||^2, tends
to 1/sqrt(2k): independent of eta and G (the reference line of the effective-rate figure).

Weight decay lambda with heavy-ball momentum gamma (PyTorch: v <- gamma v + g + lambda w,
w <- w - eta v). Equilibrium, assuming g_k _|_ w_k and gradients at different steps uncorrelated
(noise-dominated), and w changing slowly over the momentum horizon 1/(1-gamma):
  * the decay part of v sums to lambda w / (1-gamma): each step shrinks ||w||^2 by a factor
    (1 - eta lambda/(1-gamma))^2, i.e. by 2 eta lambda ||w||^2 / (1-gamma) to first order;
  * the gradient part m_k = sum_i gamma^(k-i) g_i has E||m||^2 = ||g||^2 / (1-gamma^2), and since
    w_k already contains -eta g_i (1-gamma^(k-i))/(1-gamma) from each earlier g_i,
    E<w_k, m_k> = -eta ||g||^2 gamma / ((1-gamma)^2 (1+gamma)); so the growth per step
    -2 eta <w, m> + eta^2 ||m||^2 = eta^2 ||g||^2 / (1-gamma)^2 (the effective rate eta/(1-gamma));
  * balance: 2 eta lambda ||w||^2 / (1-gamma) = eta^2 G^2 / ((1-gamma)^2 ||w||^2), so
        ||w||^2 -> sqrt(eta / (2 lambda (1-gamma))) G,
    and the angle per step, eta ||m|| / ||w|| = eta G / (sqrt(1-gamma^2) ||w||^2), tends to
        sqrt(2 eta lambda / (1 + gamma)).
  gamma = 0 gives the lecture's sqrt(eta/(2 lambda)) G and sqrt(2 eta lambda) (exactly, without the
  first-order step: ||w||^4 = eta G^2 / (lambda (2 - eta lambda))). Measured over the last
  ``claims.window`` of training with G^2 measured in the same window (S3.d).

Claims (tolerances in ``claims``): S3.a invariances in float64 and S3.b[float64] (the job in
norm_growth_invariance.py); S3.b the step-wise recursion in the training runs (float32 precision
where it must hold, how far off with momentum / weight decay / Adam); S3.c the sqrt law (fitted k0
with scipy's curve_fit vs k0 predicted from measured G, late log-log slope vs 0.5, and the
recursion integrated with the measured G_k); S3.d the weight-decay equilibrium; S3.e unit-norm
projection keeps eta/||w||^2 = eta and the angular step from decaying; S3.f the output layer (not
scale invariant, so eta/||w||^2 is not its effective rate) is slowed less than the BN-fed layers:
its late/early angle per step is compared with theirs (and eta/||w_out||^2 is reported too).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..stats import bootstrap_mean_diff, claim, verdict_above, verdict_within

LECTURE = "Lecture 5 (implicit learning-rate decay); Arora, Li, Lyu 2019; van Laarhoven 2017"
KEYS = ["labels", "opt", "momentum", "weight_decay", "constraint", "schedule", "lr", "trained_out"]


# ---------------------------------------------------------------------------------------- variants

def variants(cfg: dict) -> dict:
    out = {}
    for name, v in cfg["variants"].items():
        opt = {"name": "sgd", **v.get("optimizer", {})}
        lr = v.get("lr", cfg["lr"])
        sched = v.get("schedule", {"name": "constant"})
        model = {**cfg["model"], **v.get("model", {})}
        cons = v.get("constraints", [])
        out[name] = {
            "keys": {"labels": v.get("labels", "real"), "opt": opt["name"], "momentum": opt.get("momentum", 0.0),
                     "weight_decay": opt.get("weight_decay", 0.0), "constraint": "+".join(cons) or "none",
                     "schedule": sched["name"], "lr": lr, "trained_out": not model.get("scale_invariant", False)},
            "model": model,
            "optimizer": opt,
            "lr": lr,
            "schedule": sched,
            "train": cfg["train"],
            "random_labels": v.get("labels", "real") == "random",
            "constraints": cons,
            "probes": [{"name": "units", "every": cfg["probe_every"], "track": cfg["track_units"]}],
        }
    return out


# ------------------------------------------------------------------------------------------ tables

def unit_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """Long ``units/<layer>/<stat>`` rows -> one row per (variant, seed, layer, step), a column per stat."""
    m = metrics[metrics.metric.str.startswith("units/")]
    parts = m.metric.str.split("/", n=2, expand=True)
    m = m.assign(layer=parts[1], stat=parts[2])
    t = m.pivot_table(index=["variant", "seed", "layer", "step"], columns="stat", values="value").reset_index()
    t.columns.name = None
    return t


def run_keys(summary: pd.DataFrame) -> pd.DataFrame:
    return summary.drop_duplicates("variant").set_index("variant")[[k for k in KEYS if k in summary]]


def _plain_sgd(k) -> bool:
    return k.opt == "sgd" and k.momentum == 0 and k.weight_decay == 0 and k.constraint == "none"


def law_fit(k: np.ndarray, s: np.ndarray, G2: np.ndarray, eta: float, late_from: float) -> dict:
    """Fit s_k = s_0 sqrt(1 + k/k0) (k0 only; s_0 measured) and compare with k0 from measured G.

    ``s`` is sqrt(mean_j ||w_j||^4) at the probed steps ``k``, ``G2`` mean_j G_j^2 there.
    Returns k0_fit, k0_pred (G^2 averaged over the run), the log-log slope of s over
    k >= late_from * K, and the ratio of the final s^2 to the integrated recursion
    s_0^2 + 2 eta^2 sum_k G_k^2 (trapezoid over the probed steps).
    """
    from scipy.optimize import curve_fit

    s0 = s[0]
    k0_pred = s0 ** 2 / (2 * eta ** 2 * np.mean(G2))
    (k0_fit,), _ = curve_fit(lambda kk, k0: s0 * np.sqrt(1 + kk / k0), k, s, p0=[k0_pred],
                             bounds=(1e-9, np.inf))
    late = (k >= late_from * k[-1]) & (k > 0)
    slope = np.polyfit(np.log(k[late]), np.log(s[late]), 1)[0]
    integ = s0 ** 2 + 2 * eta ** 2 * np.trapezoid(G2, k)
    return {"k0_fit": k0_fit, "k0_pred": k0_pred, "k0_ratio": k0_fit / k0_pred, "slope": slope,
            "integrated_ratio": np.sqrt(s[-1] ** 2 / integ) if integ > 0 else np.nan,
            "G2_drift": np.mean(G2[late]) / np.mean(G2[: max(len(G2) // 4, 1)])}


def law_table(units: pd.DataFrame, keys: pd.DataFrame, cfg: dict) -> pd.DataFrame:
    rows = []
    for (v, seed, layer), d in units[units.layer.str.startswith("bn")].groupby(["variant", "seed", "layer"]):
        k = keys.loc[v]
        if not (_plain_sgd(k) and k.schedule == "constant"):
            continue
        d = d.dropna(subset=["w4_mean", "G2_mean"]).sort_values("step")
        if len(d) < 4:
            continue
        r = law_fit(d.step.to_numpy(float), np.sqrt(d.w4_mean.to_numpy()), d.G2_mean.to_numpy(), float(k.lr),
                    cfg["claims"]["late_from"])
        rows.append({"variant": v, "seed": seed, "layer": layer, "labels": k.labels, "lr": k.lr, **r})
    return pd.DataFrame(rows)


def equilibrium_table(units: pd.DataFrame, keys: pd.DataFrame, cfg: dict) -> pd.DataFrame:
    """Per WD run and BN-fed layer: measured vs predicted norm and angle in the last window."""
    rows = []
    frac = cfg["claims"]["window"]
    for (v, seed, layer), d in units[units.layer.str.startswith("bn")].groupby(["variant", "seed", "layer"]):
        k = keys.loc[v]
        if not (k.opt == "sgd" and k.weight_decay > 0 and k.constraint == "none" and k.schedule == "constant"):
            continue
        d = d.sort_values("step")
        late = d[d.step >= (1 - frac) * d.step.max()]
        eta, lam, gam = float(k.lr), float(k.weight_decay), float(k.momentum)
        s_meas = np.sqrt(late.w4_mean).mean()
        s_pred = np.sqrt(eta * late.G2_mean.mean() / (2 * lam * (1 - gam)))
        a_meas = np.sqrt((late.angle_rms ** 2).mean())
        a_pred = np.sqrt(2 * eta * lam / (1 + gam))
        rows.append({"variant": v, "seed": seed, "layer": layer, "momentum": gam, "s_meas": s_meas, "s_pred": s_pred,
                     "norm_ratio": s_meas / s_pred, "angle_meas": a_meas, "angle_pred": a_pred,
                     "angle_ratio": a_meas / a_pred, "s_init": np.sqrt(d.w4_mean.iloc[0])})
    return pd.DataFrame(rows)


def decay_table(units: pd.DataFrame, cfg: dict) -> pd.DataFrame:
    """Per run and layer: effective rate at the end / at step 0, and late / early angle per step."""
    frac = cfg["claims"]["window"]
    rows = []
    for (v, seed, layer), d in units.groupby(["variant", "seed", "layer"]):
        d = d.sort_values("step")
        K = d.step.max()
        e = d.dropna(subset=["efflr_mean"])
        a = d.dropna(subset=["angle_rms"])
        early, late = a[a.step <= 0.1 * K], a[a.step >= (1 - frac) * K]
        rows.append({"variant": v, "seed": seed, "layer": layer,
                     "efflr_ratio": e.efflr_mean.iloc[-1] / e.efflr_mean.iloc[0],
                     "angle_ratio": late.angle_rms.mean() / early.angle_rms.mean() if len(early) else np.nan})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------- analysis



def _ci(values, c):
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return np.nan, np.nan, np.nan
    return bootstrap_mean_diff([v], n_boot=c["n_boot"], ci=c["ci"])


def _max_claim(cid, text, metric, value, thr, n, source=LECTURE):
    verdict = "inconclusive" if not np.isfinite(value) else ("holds" if value < thr else "fails")
    return claim(cid, text, source, metric, value, np.nan, np.nan, thr, verdict, n)


def invariance_claims(inv: pd.DataFrame, c: dict) -> list[dict]:
    rows = []
    src = "Lecture 5: BN(A W^T Gamma) = BN(A W^T); Euler's theorem (degree -1 gradient)"
    texts = {"bn_identity": "BN(A W^T Gamma) = BN(A W^T) for diagonal Gamma > 0",
             "loss_invariance": "J(gamma w) = J(w) for per-unit gamma > 0",
             "grad_homogeneity": "grad J(gamma w) = grad J(w) / gamma",
             "orthogonality": "<w_j, grad_j J> = 0 for every unit"}
    n = int(inv.seed.nunique())
    for check, text in texts.items():
        sub = inv[inv.check == check]
        for (model, layer), d in sub.groupby(["model", "layer"]):
            rows.append(_max_claim(f"S3.a[{check}, {model}, {layer}]", f"{text} (float64, {model}, layer {layer})",
                                   "max relative error over seeds", d.rel_error.max(), c["invariance_tol"], n, src))
        rows.append(_max_claim(f"S3.a[{check}]", f"{text} (float64, every BN-fed layer of every model)",
                               "max relative error", sub.rel_error.max(), c["invariance_tol"], n, src))
    for check, text in {"control_output_layer": "the output layer (not BN-fed) is NOT scale invariant",
                        "control_default_eps": "with PyTorch's bn_eps = 1e-5 the invariance is only approximate"}.items():
        d = inv[inv.check == check]
        if len(d):
            v = d.rel_error.min()
            rows.append(claim(f"S3.a[{check}]", f"Control: {text} (relative change of J above the tolerance)", src,
                              "min relative change of J", v, np.nan, np.nan, c["invariance_tol"],
                              "holds" if v > c["invariance_tol"] else "fails", n))
    py = inv[(inv.check == "pythagoras_rel_w") & (inv.variant == "sgd")]
    if len(py):
        rows.append(_max_claim("S3.b[float64]", "Plain SGD: ||w'||^2 = ||w||^2 + eta^2 ||g||^2 step by step, to float64 "
                               "precision (residual / ||w||^2)", "max |residual| / ||w||^2", py.rel_error.max(),
                               c["pythagoras_tol_float64"], n))
    for variant in ("sgd_momentum", "sgd_wd"):
        d = inv[(inv.check == "pythagoras_median") & (inv.variant == variant)]
        if len(d):
            v = d.rel_error.median()
            rows.append(claim(f"S3.b[float64, {variant}]", f"With {variant.replace('sgd_', '')} the plain-SGD recursion "
                              "does not hold (theory: it needs the update along the current gradient); median "
                              "|residual| / (eta^2 ||g||^2)", LECTURE, "median relative deviation", v, np.nan, np.nan,
                              c["broken_min"], "holds" if v > c["broken_min"] else "fails", n))
    return rows


def analyze(metrics, summary, cfg, extra=None):
    c = cfg["claims"]
    keys = run_keys(summary)
    units = unit_table(metrics)
    rows = []
    if extra and extra.get("invariance"):
        rows += invariance_claims(pd.read_parquet(extra["invariance"]), c)
    bn = units[units.layer.str.startswith("bn")]
    ok = set(summary[summary.status == "ok"].variant)

    # S3.b: the step-wise recursion in the float32 training runs
    for v in keys.index:
        k = keys.loc[v]
        d = bn[bn.variant == v]
        n = int(d.seed.nunique())
        if not len(d) or k.constraint != "none":
            continue
        if _plain_sgd(k):
            rows.append(_max_claim(f"S3.b[{v}]", f"Plain SGD ({v}): the Pythagorean recursion holds at every probed step "
                                   "to float32 precision (residual / ||w||^2)", "max |residual| / ||w||^2",
                                   d.pyth_rel_w_max.max(), c["pythagoras_tol_float32"], n))
        else:
            med = d.groupby("seed").pyth_rel_inc_med.median()
            val, lo, hi = _ci(med, c)
            rows.append(claim(f"S3.b[{v}]", f"{v}: the plain-SGD recursion is off (median |residual| / (eta^2 ||g||^2) "
                              f"above {c['broken_min']:g}), as theory says it must be", LECTURE,
                              "median relative deviation", val, lo, hi, c["broken_min"],
                              verdict_above(lo, hi, c["broken_min"]), n))

    # S3.c: the sqrt(1 + k/k0) law
    law = law_table(units[units.variant.isin(ok)], keys, cfg)
    tol = c["k0_tol"]
    for (v, labels), d in law.groupby(["variant", "labels"]) if len(law) else []:
        n = int(d.seed.nunique())
        per_seed = d.groupby("seed")
        val, lo, hi = _ci(np.log(per_seed.k0_ratio.apply(lambda x: np.exp(np.log(x).mean()))), c)
        rows.append(claim(f"S3.c[{v}, k0]", f"{labels} labels: fitted k0 agrees with k0 = ||w_0||^4 / (2 eta^2 G^2) from "
                          f"measured G within a factor {1 + tol:g} (log ratio, mean over BN-fed layers)", LECTURE,
                          "log(k0_fit / k0_pred)", val, lo, hi, np.log(1 + tol),
                          verdict_within(lo, hi, -np.log(1 + tol), np.log(1 + tol)), n))
        val, lo, hi = _ci(per_seed.slope.mean(), c)
        rows.append(claim(f"S3.c[{v}, slope]", f"{labels} labels: the late log-log slope of ||w||^2 vs k is 0.5 "
                          f"(+-{c['slope_tol']:g})", LECTURE, "d log ||w||^2 / d log k (late)", val, lo, hi, 0.5,
                          verdict_within(lo, hi, 0.5 - c["slope_tol"], 0.5 + c["slope_tol"]), n))
        val, lo, hi = _ci(per_seed.G2_drift.mean(), c)
        rows.append(claim(f"S3.c[{v}, G steady]", f"{labels} labels: G^2 at unit norm is steady (late / early within a "
                          f"factor {1 + tol:g}), the law's assumption", LECTURE, "mean G^2 late / early", val, lo, hi,
                          1.0, verdict_within(lo, hi, 1 / (1 + tol), 1 + tol), n))
        val, lo, hi = _ci(per_seed.integrated_ratio.mean(), c)
        rows.append(claim(f"S3.c[{v}, integrated]", f"{labels} labels: ||w_K||^2 equals the recursion integrated with the "
                          f"measured G_k, ||w_0||^4 + 2 eta^2 sum G_k^2 (within {c['integrated_tol']:.0%})", LECTURE,
                          "||w_K||^2 measured / predicted", val, lo, hi, 1.0,
                          verdict_within(lo, hi, 1 - c["integrated_tol"], 1 + c["integrated_tol"]), n))
        for layer, dl in d.groupby("layer"):
            val, lo, hi = _ci(np.log(dl.k0_ratio), c)
            rows.append(claim(f"S3.c[{v}, k0, {layer}]", f"{labels} labels, layer {layer}: fitted k0 "
                              f"{dl.k0_fit.mean():.3g} vs predicted {dl.k0_pred.mean():.3g}; slope {dl.slope.mean():.3f}",
                              LECTURE, "log(k0_fit / k0_pred)", val, lo, hi, np.log(1 + tol),
                              verdict_within(lo, hi, -np.log(1 + tol), np.log(1 + tol)), n))

    # S3.d: weight-decay equilibrium
    eq = equilibrium_table(units[units.variant.isin(ok)], keys, cfg)
    et = c["equilibrium_tol"]
    for v, d in eq.groupby("variant") if len(eq) else []:
        n, gam = int(d.seed.nunique()), d.momentum.iloc[0]
        for what, col, formula in [("norm", "norm_ratio", "sqrt(eta/(2 lambda (1-gamma))) G"),
                                   ("angle", "angle_ratio", "sqrt(2 eta lambda/(1+gamma))")]:
            val, lo, hi = _ci(d.groupby("seed")[col].mean(), c)
            rows.append(claim(f"S3.d[{v}, {what}]", f"{v} (momentum {gam:g}): the late {what} per BN-fed layer matches "
                              f"{formula} within {et:.0%}", "Lecture 5; van Laarhoven 2017; derivation in norm_growth.py",
                              f"{what} measured / predicted", val, lo, hi, 1.0, verdict_within(lo, hi, 1 - et, 1 + et), n))

    # S3.e / S3.f: effective-rate decay
    dec = decay_table(units[units.variant.isin(ok)], cfg)
    for v in keys.index:
        k = keys.loc[v]
        d = bn[bn.variant == v]
        if "unit_norm" not in k.constraint or not len(d):
            continue
        n = int(d.seed.nunique())
        dev = float(np.nanmax(np.abs(d[["efflr_q10", "efflr_q90", "efflr_mean"]].to_numpy() / float(k.lr) - 1)))
        rows.append(_max_claim(f"S3.e[{v}, efflr]", "Unit-norm projection: eta/||w_j||^2 = eta for every BN-fed unit at "
                               "every probed step", "max |efflr / eta - 1|", dev, c["unit_norm_tol"], n))
        ref = [r for r in keys.index if _plain_sgd(keys.loc[r]) and keys.loc[r].schedule == "constant"
               and keys.loc[r].labels == k.labels and keys.loc[r].trained_out == k.trained_out]
        if ref:
            a = dec[(dec.variant == v) & dec.layer.str.startswith("bn")].groupby("seed").angle_ratio.mean()
            b = dec[(dec.variant == ref[0]) & dec.layer.str.startswith("bn")].groupby("seed").angle_ratio.mean()
            val, lo, hi = bootstrap_mean_diff([a.to_numpy()], [b.to_numpy()], n_boot=c["n_boot"], ci=c["ci"])
            rows.append(claim(f"S3.e[{v}, angle]", f"Unit-norm projection keeps the angular step from decaying: late/early "
                              f"angle per step is higher than under plain SGD ({ref[0]})", LECTURE,
                              f"angle ratio({v}) - angle ratio({ref[0]})", val, lo, hi, 0.0,
                              verdict_above(lo, hi, 0.0), n))
    for v in keys.index:
        d = dec[dec.variant == v]
        if not keys.loc[v].trained_out or "out" not in set(d.layer):
            continue
        n = int(d.seed.nunique())
        out = d[d.layer == "out"].groupby("seed")
        bnl = d[d.layer.str.startswith("bn")].groupby("seed")
        val, lo, hi = bootstrap_mean_diff([out.angle_ratio.mean().to_numpy()], [bnl.angle_ratio.mean().to_numpy()],
                                          n_boot=c["n_boot"], ci=c["ci"])
        rows.append(claim(f"S3.f[{v}]", f"{v}: the output layer (no BN after it) is slowed less than the BN-fed layers: "
                          f"its late/early angle per step is higher (BN-fed mean {bnl.angle_ratio.mean().mean():.3g}, "
                          f"output {out.angle_ratio.mean().mean():.3g})", LECTURE,
                          "angle ratio(out) - angle ratio(BN-fed)", val, lo, hi, 0.0, verdict_above(lo, hi, 0.0), n))
        val, lo, hi = _ci(out.efflr_ratio.mean(), c)
        rows.append(claim(f"S3.f[{v}, efflr]", f"{v}: eta/||w||^2 of the output layer at the end is at least "
                          f"{c['output_ratio_min']:g} of its initial value (BN-fed: {bnl.efflr_ratio.mean().mean():.3g}); "
                          "note eta/||w||^2 is the effective rate only of a scale-invariant layer", LECTURE,
                          "efflr(end) / efflr(0), output layer", val, lo, hi, c["output_ratio_min"],
                          verdict_above(lo, hi, c["output_ratio_min"]), n))
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------- figures

def figures(metrics, summary, claims, cfg, fig_dir, extra=None):
    from . import norm_growth_figures

    return norm_growth_figures.make(metrics, summary, claims, cfg, fig_dir, extra)
