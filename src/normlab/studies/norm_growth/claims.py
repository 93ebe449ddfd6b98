"""S3's analysis: tables made from the per-unit probe (``unit_table``, ``law_table``, ``equilibrium_table``,
``decay_table``) and the claims S3.a-f (``analyze``). The derivations are in the package docstring.

Light at import (the Snakefile imports the study at parse time): numpy, pandas, scipy and ``normlab.stats``
are imported inside the functions."""

from __future__ import annotations

KEYS = ["labels", "opt", "momentum", "weight_decay", "constraint", "schedule", "lr", "trained_out", "steps"]
LECTURE = "Lecture 5 (implicit learning-rate decay); Arora, Li, Lyu 2019; van Laarhoven 2017"
WD_SOURCE = "Lecture 5; van Laarhoven 2017; momentum version derived in normlab.studies.norm_growth"
# What each empirical headline needs among the variants (a config without it reports the claim ``not run``).
NEEDS = {"S3.c": "a plain-SGD variant with labels fresh and the output layer fixed (sgd_fresh)",
         "S3.d": "a variant of SGD with weight decay (sgd_wd or sgd_momentum_wd)",
         "S3.e": "a variant with constraint unit_norm and a plain-SGD variant with its labels, output layer and lr "
                 "(unit_norm and sgd_fresh)",
         "S3.f": "a plain-SGD variant that trains the output layer on real labels (model.scale_invariant false, "
                 "labels real: sgd_trained_out_real)"}
STATEMENTS = {"S3.c": "Where G is steady, ||w_k||^2 = ||w_0||^2 sqrt(1 + k/k0) with k0 = ||w_0||^4 / (2 eta^2 G^2)",
              "S3.d": "Weight decay brings ||w||^2 to the equilibrium sqrt(eta / (2 lambda (1 - gamma))) G",
              "S3.e": "Unit-norm projection keeps the effective rate from decaying",
              "S3.f": "The output layer (no BN after it) is not slowed by norm growth, on real labels"}
INV_SRC = "Lecture 5: BN(A W^T Gamma) = BN(A W^T); Euler's theorem (degree -1 gradient)"
INV_TEXTS = {"bn_identity": "BN(A W^T Gamma) = BN(A W^T) for diagonal Gamma > 0",
             "loss_invariance": "J(gamma w) = J(w) for per-unit gamma > 0",
             "grad_homogeneity": "grad J(gamma w) = grad J(w) / gamma",
             "orthogonality": "<w_j, grad_j J> = 0 for every unit"}


# ------------------------------------------------------------------------------------------ tables

_UNITS_CACHE: dict = {}


def unit_table(metrics):
    """Long ``units/<layer>/<stat>`` rows -> one row per (variant, seed, layer, step), a column per stat.

    Adds ``efflr_meas`` = angle_rms / sqrt(G2_mean), the measured effective rate. Cached per metrics frame
    (analyze and figures both need it)."""
    import numpy as np

    key = (id(metrics), len(metrics))
    if key in _UNITS_CACHE:
        return _UNITS_CACHE[key]
    names = [x for x in metrics.metric.unique() if x.startswith("units/")]
    m = metrics.loc[metrics.metric.isin(names), ["variant", "seed", "step", "metric", "value"]]
    split = {x: x.split("/", 2)[1:] for x in names}
    m = m.assign(layer=m.metric.map({x: v[0] for x, v in split.items()}),
                 stat=m.metric.map({x: v[1] for x, v in split.items()}))
    t = m.drop(columns="metric").drop_duplicates(["variant", "seed", "layer", "step", "stat"], keep="last")
    t = t.set_index(["variant", "seed", "layer", "step", "stat"]).value.unstack("stat").reset_index()
    t.columns.name = None
    if "angle_rms" in t and "G2_mean" in t:
        t["efflr_meas"] = t.angle_rms / np.sqrt(t.G2_mean)
    _UNITS_CACHE.clear()
    _UNITS_CACHE[key] = t
    return t


def run_keys(summary):
    """One row per variant: its keys (labels, optimizer, ...), indexed by variant."""
    return summary.drop_duplicates("variant").set_index("variant")[[k for k in KEYS if k in summary]]


def plain_sgd(k) -> bool:
    """A variant's keys say plain SGD: no momentum, weight decay, constraint or schedule."""
    return k.opt == "sgd" and k.momentum == 0 and k.weight_decay == 0 and k.constraint == "none" \
        and k.schedule == "constant"


def window_means(k, g2, window: int, steps: int):
    """Mean of ``g2`` over [a, a + window) for a = 0, window, ... < steps: (starts, means)."""
    import numpy as np

    starts = np.arange(0, steps, window)
    means = np.array([np.nanmean(g2[(k >= a) & (k < a + window)]) if ((k >= a) & (k < a + window)).any()
                      else np.nan for a in starts])
    return starts, means


def steady_window(k, g2, window: int, band: float, min_steps: int, steps: int) -> float:
    """The earliest window boundary k_a from which every window mean of G^2 lies within +-band of the median
    of those window means, with steps - k_a >= min_steps; NaN if there is none."""
    import numpy as np

    starts, means = window_means(k, g2, window, steps)
    for i, a in enumerate(starts):
        if steps - a < min_steps:
            break
        m = means[i:]
        if not np.isfinite(m).all():
            continue
        if np.all(np.abs(m / np.median(m) - 1) <= band):
            return float(a)
    return np.nan


def local_slopes(k, s, n_seg: int):
    """d log s / d log k per segment: OLS slope of log s on log k in n_seg equal parts of [k[0], k[-1]]."""
    import numpy as np

    edges = np.linspace(k[0], k[-1], n_seg + 1)
    out = []
    for a, b in zip(edges[:-1], edges[1:]):
        sel = (k >= a) & (k <= b) & (k > 0)
        out.append(np.polyfit(np.log(k[sel]), np.log(s[sel]), 1)[0] if sel.sum() >= 3 else np.nan)
    return np.array(out)


def law_fit(k, s, G2, eta: float, k_a: float = 0.0, n_seg: int = 3) -> dict:
    """Fit s_k = s_a sqrt(1 + (k - k_a)/k0) over k >= k_a (k0 only; s_a measured at k_a) and compare with
    k0 = s_a^2 / (2 eta^2 mean(G^2 over k >= k_a)).

    ``s`` is sqrt(mean_j ||w_j||^4) at the probed steps ``k``, ``G2`` mean_j G_j^2 there. Returns k0_fit,
    k0_pred, their ratio, the local slopes (measured and of the fitted curve, per segment) and the largest
    slope misfit factor max_seg exp(|log(slope_meas / slope_fit)|).
    """
    import numpy as np
    from scipy.optimize import curve_fit

    sel = k >= k_a
    k, s, G2 = k[sel], s[sel], G2[sel]
    s_a = s[0]
    kk = k - k[0]
    k0_pred = s_a ** 2 / (2 * eta ** 2 * np.mean(G2))
    (k0_fit,), _ = curve_fit(lambda x, k0: s_a * np.sqrt(1 + x / k0), kk, s, p0=[k0_pred], bounds=(1e-9, np.inf))
    s_fit = s_a * np.sqrt(1 + kk / k0_fit)
    sm, sf = local_slopes(k, s, n_seg), local_slopes(k, s_fit, n_seg)
    with np.errstate(divide="ignore", invalid="ignore"):
        mis = np.exp(np.abs(np.log(sm / sf)))
    return {"k_a": float(k[0]), "s_a": s_a, "k0_fit": k0_fit, "k0_pred": k0_pred, "k0_ratio": k0_fit / k0_pred,
            "slope_meas_last": sm[-1], "slope_fit_last": sf[-1],
            "slope_misfit": float(np.nanmax(mis)) if np.isfinite(mis).any() else np.nan}


def _law_rows(d, k, cfg: dict, base: dict) -> list[dict]:
    """The law fitted from step 0 and, where G^2 has a steady tail, from the tail's start (one series)."""
    import numpy as np

    st = cfg["steady"]
    n_seg = cfg["claims"]["slope_segments"]
    steps = int(k.steps) if "steps" in k else int(cfg["train"]["steps"])
    kk, s, g2 = d.step.to_numpy(float), np.sqrt(d.w4_mean.to_numpy()), d.G2_mean.to_numpy()
    _, means = window_means(kk, g2, st["window"], steps)
    drift = means[-1] / means[0]
    k_a = steady_window(kk, g2, st["window"], st["band"], st["min_steps"], steps)
    base = {**base, "labels": k.labels, "lr": float(k.lr), "trained_out": bool(k.trained_out), "G2_drift": drift,
            "G2_drift_factor": max(drift, 1 / drift), "steady_from": k_a}
    rows = [{**base, "regime": "from0", **law_fit(kk, s, g2, float(k.lr), 0.0, n_seg)}]
    if np.isfinite(k_a):
        _, mw = window_means(kk[kk >= k_a] - k_a, g2[kk >= k_a], st["window"], steps - int(k_a))
        rows.append({**base, "regime": "steady", "G2_band_dev": float(np.max(np.abs(mw / np.median(mw) - 1))),
                     **law_fit(kk, s, g2, float(k.lr), k_a, n_seg)})
    return rows


def law_table(units, keys, cfg: dict):
    """Per plain-SGD run and BN-fed layer: the steady window of G^2, the law fitted there (``regime``
    'steady') and from step 0 (``regime`` 'from0'), and the drift of G^2 (last window / first window)."""
    import pandas as pd

    rows = []
    for (v, seed, layer), d in units[units.layer.str.startswith("bn")].groupby(["variant", "seed", "layer"]):
        k = keys.loc[v]
        if not plain_sgd(k):
            continue
        d = d.dropna(subset=["w4_mean", "G2_mean"]).sort_values("step")
        if len(d) >= 8:
            rows += _law_rows(d, k, cfg, {"variant": v, "seed": seed, "layer": layer})
    return pd.DataFrame(rows)


def equilibrium_table(units, keys, cfg: dict):
    """Per WD run and BN-fed layer: measured vs predicted norm and angle in the last window."""
    import numpy as np
    import pandas as pd

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


def decay_table(units, cfg: dict, until: dict | None = None):
    """Per run and layer: late / early ratios (last ``claims.window`` vs first ``claims.early`` of the steps,
    or of the first ``until[variant]`` steps) of the measured effective rate (angle / G), of the angle per
    step, of eta/||w||^2 and of the relative update size per step (``relupd_rms``, where the probe has it)."""
    import numpy as np
    import pandas as pd

    c = cfg["claims"]
    rows = []
    for (v, seed, layer), d in units.groupby(["variant", "seed", "layer"]):
        d = d.sort_values("step")
        K = (until or {}).get(v, d.step.max())
        d = d[d.step <= K]
        early, late = d[d.step <= c["early"] * K], d[d.step >= (1 - c["window"]) * K]

        def ratio(col):
            if col not in d or late[col].isna().all() or early[col].isna().all():
                return np.nan
            return late[col].mean() / early[col].mean()

        rows.append({"variant": v, "seed": seed, "layer": layer, "efflr_meas_ratio": ratio("efflr_meas"),
                     "angle_ratio": ratio("angle_rms"), "efflr_ratio": ratio("efflr_mean"),
                     "relupd_ratio": ratio("relupd_rms"),
                     "efflr_end_ratio": d.efflr_mean.iloc[-1] / d.efflr_mean.iloc[0]})
    return pd.DataFrame(rows)


def study_tables(metrics, summary, cfg: dict) -> dict:
    """The tables ``figures`` draws: keys, units, law, equilibrium, and which variants are plain SGD."""
    keys = run_keys(summary)
    units = unit_table(metrics)
    ok = set(summary[summary.status == "ok"].variant)
    return {"keys": keys, "units": units,
            "law": law_table(units[units.variant.isin(ok)], keys, cfg),
            "equilibrium": equilibrium_table(units[units.variant.isin(ok)], keys, cfg),
            "plain": {v: plain_sgd(keys.loc[v]) for v in keys.index}}


# ------------------------------------------------------------------------------------------ helpers

def geo(x) -> float:
    """Geometric mean of the finite positive values of ``x`` (NaN if none)."""
    import numpy as np

    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x) & (x > 0)]
    return float(np.exp(np.log(x).mean())) if len(x) else np.nan


def per_seed(d, col: str):
    """One value per seed: the geometric mean of ``col`` over the seed's layers."""
    return d.groupby("seed")[col].apply(geo).to_numpy(float)


def exact_claim(cid, text, metric, value, n, *, below=None, above=None, kind="cell", source=LECTURE):
    """A deterministic row (an identity measured to float precision): exact estimate, compared with its threshold
    (NaN: inconclusive)."""
    from ...stats import claim_from, exact

    side = {"below": below} if below is not None else {"above": above}
    return claim_from(cid, text, source, metric, exact(value, n), kind=kind, **side)


def not_run_claim(cid: str) -> dict:
    """The row of an empirical headline whose variants the config does not contain."""
    from ...stats import not_run

    return not_run(cid, STATEMENTS[cid], LECTURE, NEEDS[cid])


def regime_text(labels: str) -> str:
    return {"fresh": "labels drawn afresh every step", "random": "fixed random labels (memorized)",
            "real": "real labels"}[labels]


# ------------------------------------------------------------------------------------ S3.a, S3.b

def invariance_claims(inv, c: dict) -> list[dict]:
    """S3.a (the invariance identities) and S3.b (the Pythagorean recursion) in float64, from the side job."""
    rows = []
    n = int(inv.seed.nunique())
    tol = c["invariance_tol"]
    ident = inv[inv.check.isin(list(INV_TEXTS))]
    models = ", ".join(sorted(inv.model.unique()))
    rows.append(exact_claim("S3.a", f"The four invariance identities ({'; '.join(INV_TEXTS.values())}) hold in float64 "
                            f"on every BN-fed layer of the models ({models}) at initialization: the largest relative "
                            f"error is below {tol:g} (an identity: true by construction for a correct implementation)",
                            "max relative error over checks, layers, seeds",
                            ident.rel_error.max(), n, below=tol, kind="identity", source=INV_SRC))
    for check, text in INV_TEXTS.items():
        for model, d in inv[inv.check == check].groupby("model"):
            rows.append(exact_claim(f"S3.a[{check}, {model}]", f"{text} (float64, {model}, every BN-fed layer)",
                                    "max relative error over layers and seeds", d.rel_error.max(), n, below=tol,
                                    source=INV_SRC))
    for check, text in {"control_output_layer": "the output layer (not BN-fed) is NOT scale invariant",
                        "control_default_eps": "with PyTorch's bn_eps = 1e-5 the invariance is only approximate"}.items():
        d = inv[inv.check == check]
        if len(d):
            rows.append(exact_claim(f"S3.a[{check}]", f"Control: {text} (relative change of J above {tol:g}: the "
                                    "instrument can see a broken invariance)", "min relative change of J",
                                    d.rel_error.min(), n, above=tol, kind="check", source=INV_SRC))
    return rows + _pythagoras_float64(inv, c, n)


def _pythagoras_float64(inv, c: dict, n: int) -> list[dict]:
    rows = []
    py = inv[(inv.check == "pythagoras_rel_w") & (inv.variant == "sgd")]
    if len(py):
        rows.append(exact_claim("S3.b", "Plain SGD: ||w'||^2 = ||w||^2 + eta^2 ||g||^2 step by step for every BN-fed "
                                f"unit, to float64 precision (|residual| / ||w||^2 below {c['pythagoras_tol_float64']:g}; "
                                f"{py.seed.nunique()} seeds x every layer x the job's steps; an identity: true by "
                                "construction for a correct implementation)",
                                "max |residual| / ||w||^2", py.rel_error.max(), n,
                                below=c["pythagoras_tol_float64"], kind="identity"))
    for variant in ("sgd_momentum", "sgd_wd"):
        d = inv[(inv.check == "pythagoras_median") & (inv.variant == variant)]
        if len(d):
            rows.append(exact_claim(f"S3.b[float64, {variant}]", f"Control: with {variant.replace('sgd_', '')} the "
                                    "plain-SGD recursion does not hold (it needs the update along the current "
                                    f"gradient alone): median |residual| / (eta^2 ||g||^2) above {c['broken_min']:g}",
                                    "median relative deviation", float(d.rel_error.median()), n,
                                    above=c["broken_min"], kind="check"))
    return rows


def pythagoras_float32(bn, keys, c: dict) -> list[dict]:
    """S3.b in the float32 training runs: cells where it must hold (plain SGD); checks where it must not."""
    from ...stats import claim_from, mean_ci

    rows = []
    for v in keys.index:
        k = keys.loc[v]
        d = bn[bn.variant == v]
        n = int(d.seed.nunique())
        if not len(d) or k.constraint != "none":
            continue
        if plain_sgd(k):
            rows.append(exact_claim(f"S3.b[{v}]", f"Plain SGD ({v}, float32 training run, {regime_text(k.labels)}): "
                                    "the Pythagorean recursion holds at every probed step to float32 precision "
                                    f"(|residual| / ||w||^2 below {c['pythagoras_tol_float32']:g})",
                                    "max |residual| / ||w||^2", float(d.pyth_rel_w_max.max()), n,
                                    below=c["pythagoras_tol_float32"]))
        else:
            med = d.groupby("seed").pyth_rel_inc_med.median().to_numpy(float)
            rows.append(claim_from(f"S3.b[{v}]", f"Control: {v} ({k.opt}, momentum {k.momentum:g}, weight decay "
                                   f"{k.weight_decay:g}): the plain-SGD recursion is off (median |residual| / "
                                   f"(eta^2 ||g||^2) above {c['broken_min']:g}), as theory says it must be", LECTURE,
                                   "median relative deviation", mean_ci([med], ci=c["ci"], log=True), kind="check",
                                   above=c["broken_min"]))
    return rows


# ------------------------------------------------------------------------------------------- S3.c

def _steady_claims(law, cfg: dict) -> list[dict]:
    """S3.c where G^2 is steady (fresh labels): k0 fitted vs predicted, per layer, local slopes, the selection."""
    import numpy as np

    from ...stats import claim, claim_from, mean_ci

    c, st = cfg["claims"], cfg["steady"]
    ci, tol = c["ci"], c["k0_tol"]
    band = (1 / (1 + tol), 1 + tol)
    steady = law[law.regime == "steady"]
    fresh = steady[(steady.labels == "fresh") & ~steady.trained_out]
    n_series = int(((law.regime == "from0") & (law.labels == "fresh") & ~law.trained_out).sum())
    if not n_series:
        return [not_run_claim("S3.c")]
    if not len(fresh):
        return [claim("S3.c", f"No seed x layer series with fresh labels has a steady tail (G^2 within "
                      f"+-{st['band']:.0%} over at least {st['min_steps']} steps): the law cannot be tested here",
                      LECTURE, "k0 fitted / k0 predicted", np.nan, np.nan, np.nan, f"in [{band[0]:g}, {band[1]:g}]",
                      "inconclusive", 0, kind="headline")]
    rows = [claim_from(
        "S3.c", f"Where G^2 is steady (fresh random labels; {len(fresh)} of {n_series} seed x layer series have a "
        f"steady tail, G^2 within +-{st['band']:.0%} of its median over {st['window']}-step windows, starting at "
        f"step {int(fresh.steady_from.min())}-{int(fresh.steady_from.max())}), the sqrt(1 + k/k0) law fitted there "
        f"(re-based at the tail's start) gives k0 within a factor {1 + tol:g} of k0 = ||w_a||^4 / (2 eta^2 G^2) "
        "predicted from the measured G (geometric mean over layers per seed; log-scale t interval over seeds; each "
        "layer judged as a stratum)", LECTURE, "k0 fitted / k0 predicted",
        mean_ci([per_seed(fresh, "k0_ratio")], ci=ci, log=True), kind="headline", within=band,
        strata={layer: [(mean_ci([d.k0_ratio.to_numpy(float)], ci=ci, log=True), dict(within=band))]
                for layer, d in fresh.groupby("layer")}, stratum="layer")]
    e = mean_ci([per_seed(fresh, "slope_misfit")], ci=ci, log=True)
    rows.append(claim_from(
        "S3.c[local slope]", f"Fresh labels, steady tail: the local slope d log||w||^2 / d log k of the fitted curve "
        f"matches the measured one in each of {c['slope_segments']} segments of the tail (largest misfit factor "
        f"exp|log(measured / fitted)| below {1 + c['slope_tol']:g}; last segment: measured "
        f"{fresh.slope_meas_last.mean():.3f}, fitted {fresh.slope_fit_last.mean():.3f})", LECTURE,
        "largest local-slope misfit factor", e, below=1 + c["slope_tol"]))
    rows.append(exact_claim(
        "S3.c[G steady]", f"Fresh labels: in the steady tails G^2's {st['window']}-step window means stay within "
        f"+-{st['band']:.0%} of their median (the law's assumption; the tail is chosen by this test, so it is a "
        "check of the selection)", "max |window mean / median - 1|", float(fresh.G2_band_dev.max()),
        int(fresh.seed.nunique()), below=st["band"] + 1e-12, kind="check"))
    return rows


def _break_claims(law, cfg: dict) -> list[dict]:
    """Where the law breaks: fitted from step 0 (real labels, fixed random labels, the fresh run's transient)."""
    import numpy as np

    from ...stats import claim_from, mean_ci

    c, st = cfg["claims"], cfg["steady"]
    ci, tol = c["ci"], c["k0_tol"]
    rows = []
    from0 = law[(law.regime == "from0") & ~law.trained_out]
    for (v, labels), d in from0.groupby(["variant", "labels"]):
        n = int(d.seed.nunique())
        drift = per_seed(d, "G2_drift")
        rows.append(claim_from(
            f"S3.c[break, {v}, G drift]", f"{v} ({regime_text(labels)}), from step 0: G^2 is not steady: its last "
            f"{st['window']}-step window over its first differs by more than a factor {1 + st['band']:g} (mean "
            f"last/first {geo(drift):.3g}); this is what breaks the law", LECTURE,
            "G^2 drift factor max(last/first, first/last)", mean_ci([np.maximum(drift, 1 / drift)], ci=ci, log=True),
            kind="check", above=1 + st["band"]))
        rows.append(claim_from(
            f"S3.c[break, {v}, local slope]", f"{v} ({regime_text(labels)}), fitted from step 0: the law's shape misses "
            f"the measured growth: largest local-slope misfit factor above {1 + c['slope_tol']:g} (in the steady tail it "
            "is below)", LECTURE, "largest local-slope misfit factor", mean_ci([per_seed(d, "slope_misfit")], ci=ci,
                                                                                 log=True),
            kind="check", above=1 + c["slope_tol"]))
        if labels == "fresh":
            continue  # the transient is short: k0 over the whole run is dominated by the steady tail
        r = per_seed(d, "k0_ratio")
        rows.append(claim_from(
            f"S3.c[break, {v}, k0]", f"{v} ({regime_text(labels)}), from step 0: with G^2 averaged over the run the "
            f"predicted k0 misses the fitted one by more than a factor {1 + tol:g} (mean fitted/predicted "
            f"{geo(r):.3g}, n={n})", LECTURE, "k0 misfit factor max(ratio, 1/ratio)",
            mean_ci([np.maximum(r, 1 / r)], ci=ci, log=True), kind="check", above=1 + tol))
    return rows


def law_claims(law, cfg: dict) -> list[dict]:
    """S3.c: the sqrt(1 + k/k0) law where G is steady, and where it breaks."""
    return _steady_claims(law, cfg) + _break_claims(law, cfg)


# ------------------------------------------------------------------------------------------- S3.d

def equilibrium_claims(eq, keys, cfg: dict) -> list[dict]:
    """S3.d: weight decay brings the norm (and the angle per step) to the predicted equilibrium."""
    from ...stats import claim_from, mean_ci

    c = cfg["claims"]
    ci, et = c["ci"], c["equilibrium_tol"]
    band = (1 / (1 + et), 1 + et)
    groups = [per_seed(d, "norm_ratio") for _, d in eq.groupby("variant")]
    vs = list(dict.fromkeys(eq.sort_values("variant").variant))
    rows = [claim_from(
        "S3.d", f"Weight decay brings ||w||^2 (rms over units) of every BN-fed layer to the predicted equilibrium "
        f"sqrt(eta / (2 lambda (1 - gamma))) G, G measured in the same window (last {c['window']:.0%} of the "
        f"run), within a factor {1 + et:g}: measured / predicted, geometric mean over layers per seed, pooled over "
        f"{', '.join(vs)} (each optimizer judged as a stratum)", WD_SOURCE, "||w||^2 measured / predicted",
        mean_ci(groups, ci=ci, log=True), kind="headline", within=band,
        strata={v: [(mean_ci([per_seed(d, "norm_ratio")], ci=ci, log=True), dict(within=band))]
                for v, d in eq.groupby("variant")}, stratum="optimizer")]
    for v, d in eq.groupby("variant"):
        rows.append(claim_from(
            f"S3.d[{v}, angle]", f"{v} (momentum {d.momentum.iloc[0]:g}, {regime_text(keys.loc[v].labels)}): the late "
            f"angle per step per BN-fed layer matches sqrt(2 eta lambda/(1+gamma)) within a factor {1 + et:g}",
            WD_SOURCE, "angle measured / predicted", mean_ci([per_seed(d, "angle_ratio")], ci=ci, log=True),
            within=band))
    return rows


# ------------------------------------------------------------------------------------------- S3.e

def _projection_reference(keys, ok: set, v: str):
    """The plain-SGD run to compare the projected run ``v`` with: same labels, output layer and rate."""
    k = keys.loc[v]
    refs = [r for r in keys.index if r in ok and plain_sgd(keys.loc[r]) and keys.loc[r].labels == k.labels
            and keys.loc[r].trained_out == k.trained_out and float(keys.loc[r].lr) == float(k.lr)]
    return refs[0] if refs else None


def _projection_rows(bn, keys, cfg: dict, v: str, ref: str, headline: bool) -> list[dict]:
    """S3.e for one projected run against its plain-SGD reference over the same steps."""
    import numpy as np

    from ...stats import claim_from, mean_ci

    c = cfg["claims"]
    ci = c["ci"]
    K = int(bn[bn.variant == v].step.max())
    dec = decay_table(bn[bn.variant.isin([v, ref])], cfg, until={v: K, ref: K})
    a = dec[dec.variant == v].set_index(["seed", "layer"])
    b = dec[dec.variant == ref].set_index(["seed", "layer"])
    seeds = sorted(set(a.index.get_level_values(0)) & set(b.index.get_level_values(0)))
    ra = np.array([geo(a.loc[s].efflr_meas_ratio) for s in seeds])
    rb = np.array([geo(b.loc[s].efflr_meas_ratio) for s in seeds])
    gain, tol = c["projection_gain_min"], c["k0_tol"]
    band = (1 / (1 + tol), 1 + tol)
    ang = np.array([geo(a.loc[s].angle_ratio) for s in seeds])
    return [
        claim_from(
            "S3.e" if headline else f"S3.e[{v}]", f"Unit-norm projection ({v}) keeps the effective rate from decaying where plain SGD ({ref}) lets it "
            f"decay: the late/early ratio of the measured effective rate (rotation per step / G), first {K + 1} steps, "
            f"is higher under projection by more than a factor {gain:g} (paired by seed; projection "
            f"{geo(ra):.3g}, plain SGD {geo(rb):.3g})", LECTURE, "late/early effective rate, projected / plain",
            mean_ci([ra], [rb], ci=ci, paired=True, log=True), kind="headline" if headline else "cell", above=gain),
        claim_from(
            f"S3.e[{v}, constant]", f"Under projection the measured effective rate (rotation per step / G) stays "
            f"constant: late/early within a factor {1 + tol:g} (near an identity: the rotation is atan(eta G))",
            LECTURE, "late/early effective rate", mean_ci([ra], ci=ci, log=True), kind="check", within=band),
        claim_from(
            f"S3.e[{ref}, decays]", f"Plain SGD ({ref}) over the same steps: the measured effective rate decays "
            f"(late/early below 1/{1 + tol:g})", LECTURE, "late/early effective rate", mean_ci([rb], ci=ci, log=True),
            below=1 / (1 + tol)),
        claim_from(
            f"S3.e[{v}, angle]", "Under projection the angle turned per step (= atan(eta G)) need not stay constant: "
            "it follows G, which keeps drifting under projection. Reported: late/early angle per step (holds if within "
            f"a factor {1 + tol:g})", LECTURE, "late/early angle per step", mean_ci([ang], ci=ci, log=True),
            within=band)]


def projection_claims(bn, keys, ok: set, cfg: dict) -> list[dict]:
    """S3.e: unit-norm projection vs plain SGD over the same steps (and the projection's identity check)."""
    import numpy as np

    c = cfg["claims"]
    rows, headline = [], False
    for v in [v for v in keys.index if "unit_norm" in keys.loc[v].constraint and v in ok]:
        d = bn[bn.variant == v]
        dev = float(np.nanmax(np.abs(d[["efflr_q10", "efflr_q90", "efflr_mean"]].to_numpy() / float(keys.loc[v].lr)
                                     - 1)))
        rows.append(exact_claim(f"S3.e[{v}, eta/||w||^2]", "Unit-norm projection: eta/||w_j||^2 = eta for every BN-fed "
                                "unit at every probed step (an identity of the projection)", "max |efflr / eta - 1|",
                                dev, int(d.seed.nunique()), below=c["unit_norm_tol"], kind="check"))
        ref = _projection_reference(keys, ok, v)
        if ref is not None:
            rows += _projection_rows(bn, keys, cfg, v, ref, not headline)
            headline = True
    return rows if headline else [not_run_claim("S3.e")] + rows


# ------------------------------------------------------------------------------------------- S3.f

REGIME_NOTE = {"real": "real labels, the lecture's regime: the read-out has labels to fit",
               "fresh": "fresh random labels, the kindest regime: the read-out has nothing to learn, so nothing drives "
                        "its norm up",
               "random": "fixed random labels, memorized: the read-out's norm grows to fit them"}


def _output_rows(units, keys, cfg: dict, v: str, headline: bool) -> list[dict]:
    """S3.f for one run that trains the output layer: its effective rate against the BN-fed layers', measured the
    same way for every layer: the relative update size per step ||dw|| / ||w|| (rms over units; ``relupd_rms``),
    late / early."""
    from ...stats import claim_from, mean_ci

    c = cfg["claims"]
    ci, tol = c["ci"], c["output_tol"]
    dec = decay_table(units[units.variant == v], cfg)
    out = dec[dec.layer == "out"].set_index("seed").sort_index()
    bnl = dec[dec.layer.str.startswith("bn")]
    ro, rb = out.relupd_ratio, bnl.groupby("seed").relupd_ratio.apply(geo).reindex(out.index)
    ao, ab = out.angle_ratio, bnl.groupby("seed").angle_ratio.apply(geo).reindex(out.index)
    labels = keys.loc[v].labels
    role = ("scored on real labels; the fresh-label run is a cell" if headline else
            "a cell: the headline is scored on real labels")
    window = (f"late / early: mean over the last {c['window']:.0%} of the steps over the first {c['early']:.0%}")
    measure = ("the effective rate measured the same way for every layer, scale invariant or not: the relative "
               "update size per step ||w' - w|| / ||w|| (rms over units; for a BN-fed unit under plain SGD it is "
               "eta G / ||w||^2, the lecture's effective rate; eta / ||w||^2 alone is an effective rate only for a "
               "scale-invariant layer, which the output layer is not)")
    return [
        claim_from(
            "S3.f" if headline else f"S3.f[{v}]",
            f"{v} ({REGIME_NOTE.get(labels, regime_text(labels))}; output layer and BN affine trained; {role}): "
            f"the output layer (no BN after it) is not slowed like the BN-fed layers: {measure}; its {window} is "
            f"higher than the BN-fed layers' in the same run (ratio output / BN-fed, paired by seed, geometric mean "
            f"over the BN-fed layers; output {geo(ro):.3g}, BN-fed {geo(rb):.3g}); smallest effect of interest a "
            f"ratio {1 + tol:g}: it fails when the interval lies below it. The output layer's rate also falls when "
            "its gradient shrinks as the labels are fitted, which the BN-fed layers share", LECTURE,
            "late/early relative update size, output / BN-fed",
            mean_ci([ro.to_numpy(float)], [rb.to_numpy(float)], ci=ci, paired=True, log=True),
            kind="headline" if headline else "cell", above=1.0, sesoi=tol),
        claim_from(
            f"S3.f[{v}, output]", f"{v}: the output layer's relative update size per step is not slowed at all: "
            f"{window} at least 1/{1 + tol:g} (the literal reading of 'not slowed')", LECTURE,
            "late/early relative update size, output", mean_ci([ro.to_numpy(float)], ci=ci, log=True),
            above=1 / (1 + tol)),
        claim_from(
            f"S3.f[{v}, BN-fed]", f"{v}: the BN-fed layers of the same run are slowed: relative update size per step, "
            f"{window} below 1/{1 + tol:g} (geometric mean over layers per seed)", LECTURE,
            "late/early relative update size, BN-fed", mean_ci([rb.to_numpy(float)], ci=ci, log=True),
            below=1 / (1 + tol)),
        claim_from(
            f"S3.f[{v}, eta/||w||^2]", f"{v}: the output layer's eta/||w||^2 at the end is at least 1/{1 + tol:g} of "
            "its start, i.e. its norm does not grow (the measure of earlier versions of S3.f; for the output layer, "
            "not scale invariant, it is no effective rate: it reports the read-out's norm growth, whatever drives it)",
            LECTURE, "eta/||w_out||^2 end / start", mean_ci([out.efflr_end_ratio.to_numpy(float)], ci=ci, log=True),
            above=1 / (1 + tol)),
        claim_from(
            f"S3.f[{v}, angle]", f"{v}: the output layer's angle per step decays less than the BN-fed layers' "
            f"(late/early, paired by seed; output {geo(ao):.3g}, BN-fed {geo(ab):.3g}; smallest effect of interest "
            f"a ratio {1 + tol:g}); the angle leaves out the output layer's radial change", LECTURE,
            "late/early angle per step, output / BN-fed",
            mean_ci([ao.to_numpy(float)], [ab.to_numpy(float)], ci=ci, paired=True, log=True), above=1.0,
            sesoi=tol)]


def output_claims(units, keys, ok: set, cfg: dict) -> list[dict]:
    """S3.f: the output layer's effective rate, per plain-SGD run that trains it. The headline is the first run on
    real labels (the lecture's regime); runs on fresh or fixed random labels are cells. Without a real-label run
    the headline is ``not run``."""
    order = {"real": 0, "fresh": 1, "random": 2}
    outs = sorted([v for v in keys.index if keys.loc[v].trained_out and plain_sgd(keys.loc[v]) and v in ok],
                  key=lambda v: order.get(keys.loc[v].labels, 3))
    head = outs[0] if outs and keys.loc[outs[0]].labels == "real" else None
    rows = [] if head else [not_run_claim("S3.f")]
    return rows + [row for v in outs for row in _output_rows(units, keys, cfg, v, v == head)]


# ------------------------------------------------------------------------------------------ analyze

def analyze(metrics, summary, cfg, extra=None):
    import pandas as pd

    c = cfg["claims"]
    keys = run_keys(summary)
    units = unit_table(metrics)
    rows = []
    if extra and extra.get("invariance"):
        rows += invariance_claims(pd.read_parquet(extra["invariance"]), c)
    bn = units[units.layer.str.startswith("bn")]
    ok = set(summary[summary.status == "ok"].variant)
    rows += pythagoras_float32(bn, keys, c)
    law = law_table(units[units.variant.isin(ok)], keys, cfg)
    rows += law_claims(law, cfg) if len(law) else [not_run_claim("S3.c")]
    eq = equilibrium_table(units[units.variant.isin(ok)], keys, cfg)
    rows += equilibrium_claims(eq, keys, cfg) if len(eq) else [not_run_claim("S3.d")]
    rows += projection_claims(bn, keys, ok, cfg)
    rows += output_claims(units, keys, ok, cfg)
    return pd.DataFrame(rows)
