"""S3: weight-norm growth and the implicit learning-rate decay of BN, measured and predicted.

Variants (config ``variants``: name -> optimizer, lr, labels, constraints, schedule, model overrides,
steps), each over seeds, on a BN model whose trained weights are scale invariant (``model.scale_invariant``:
no bias before BN, BN affine frozen, output layer fixed; a variant may set ``model: {scale_invariant:
false}`` to train the output layer, for S3.f). Labels: ``real``, ``random`` (fixed random labels, which the
network memorizes) or ``fresh`` (drawn anew at every step from (seed, step): the data never repeats and
the gradient never vanishes, the regime where G is steady). The engine probe ``units``
(normlab/probes/units.py) records per-unit norms, gradients, effective rates, angles and the
Pythagorean residual for every BN-fed layer and the output layer.

The lecture's argument, and what the analysis computes from it. For a BN-fed unit w (gradient g,
gradient at unit norm G = ||w|| ||g||), scale invariance gives <w, g> = 0, so plain SGD obeys
    ||w_{k+1}||^2 = ||w_k||^2 + eta^2 ||g_k||^2 = ||w_k||^2 + eta^2 G_k^2 / ||w_k||^2        (S3.b)
hence ||w_{k+1}||^4 = ||w_k||^4 + 2 eta^2 G_k^2 + O(eta^4 G^4 / ||w||^4): ||w||^4 grows linearly
when G is steady, ||w_k||^2 = ||w_0||^2 sqrt(1 + k/k0), k0 = ||w_0||^4 / (2 eta^2 G^2) (S3.c).
Per layer we use s_k = sqrt(mean_j ||w_j,k||^4), for which the same law holds with
G^2 = mean_j G_j^2, so no averaging of different units' k0 is needed.

Where G is steady (S3.c). G^2 is averaged over windows of ``steady.window`` steps; the steady part of a
run is the longest tail [k_a, K] (k_a on a window boundary, K - k_a >= ``steady.min_steps``) whose window
means all lie within +-``steady.band`` of their median (``steady_window``). Only there is the law
fitted, re-based at k_a: s_k = s_a sqrt(1 + (k - k_a)/k0), k0 fitted (scipy curve_fit, s_a measured)
against k0 = s_a^2 / (2 eta^2 G^2) with G^2 the mean of the probes in [k_a, K] (``law_fit``). The shape
is tested by local slopes: d log s / d log k of the fitted curve against the measured one, per
segment of the window (not the asymptote 0.5: re-based, the local slope k / (2 (k0 + k - k_a)) is
not 0.5 anywhere in particular). A run without a steady tail (real or fixed random labels from step 0)
is where the law breaks: the analysis fits it from step 0 and reports the drift of G^2 that explains it.

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
  gamma = 0 gives the lecture's sqrt(eta/(2 lambda)) G and sqrt(2 eta lambda). Measured over the last
  ``claims.window`` of training with G^2 measured in the same window (S3.d).

Effective rates (S3.e, S3.f). The measured effective rate of a BN-fed layer is the rotation per step per
unit of gradient at unit norm, angle_rms / sqrt(mean_j G_j^2) (for SGD about eta / ||w||^2, measured
from the actual rotation, not from the norm); its late / early ratio (last ``claims.window`` of the run
against the first ``claims.early``) says how much it decayed. S3.e compares, seed by seed, the
projected run's ratio with plain SGD's over the same steps. S3.f: the output layer (trained, no BN
after it) is not scale invariant, so its effective rate is eta itself and the mechanism (norm growth)
is what can slow it: its eta/||w_out||^2 must not decay, while the BN-fed layers' does.

Claims: one row per claim id S3.a-f (the lecture's claims as stated; S3.a and S3.b, true by construction for
a correct implementation, are of kind ``identity``, the others ``headline``), ``cell`` rows for
detail, ``check`` rows for instrument checks and controls (identities, "this must not hold").
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ...stats import claim, claim_from, exact, mean_ci
from .. import Figure, SideJob

TITLE = "S3: Weight-norm growth and the implicit learning-rate decay of BN (Lecture 5; Arora, Li, Lyu 2019; " \
        "van Laarhoven 2017)"
CATEGORY = "S3 Norm growth"
FIGURES = [
    Figure("norm_growth.png", "norm growth"),
    Figure("g2_steady.png", "G^2 steadiness"),
    Figure("effective_lr.png", "effective learning rate"),
    Figure("wd_equilibrium.png", "weight-decay equilibrium"),
    Figure("unit_spread.png", "per-unit spread"),
    Figure("invariance.png", "invariance checks"),
]
PAPERS = [
    {"cite": "Arora, Li, Lyu. Theoretical analysis of auto rate-tuning by batch normalization. ICLR 2019",
     "url": "https://arxiv.org/abs/1812.03981"},
    {"cite": "van Laarhoven. L2 regularization versus batch and weight normalization. 2017",
     "url": "https://arxiv.org/abs/1706.05350"},
    {"cite": "Grosse. CSC 2541 Lecture 5: adaptive gradient methods, normalization and weight decay",
     "url": "https://www.cs.toronto.edu/~rgrosse/courses/csc2541_2021/"},
]
_SETUP = ("MNIST-1D (4,000 training signals) instead of the lecture's image nets; a 3-layer width-64 ReLU MLP with BN "
          "before the activation, bias-free BN-fed layers, BN affine frozen, bn_eps 1e-20 and a fixed (untrained) output "
          "layer, so every trained weight is scale invariant; batch 128; 5 seeds")
HEADLINES = {
    "S3.a": {"statement": "BN makes each unit's incoming weights scale invariant: BN(A W^T Gamma) = BN(A W^T), "
                          "J(gamma w) = J(w), grad J(gamma w) = grad J(w) / gamma, and w _|_ grad J(w)",
             "departures": _SETUP + "; checked in float64 on the MLP and a 1-D CNN at initialization, on one batch, "
                                    "every BN-fed layer, 2 seeds, relative error below 1e-8 (max over checks, layers, seeds); "
                                    "an identity (true by construction for a correct implementation)",
             "figures": ["invariance"], "kind": "identity"},
    "S3.b": {"statement": "plain SGD without weight decay: ||w_{k+1}||^2 = ||w_k||^2 + eta^2 ||grad J(w_k)||^2 exactly "
                          "(Pythagoras), so norms only grow",
             "departures": _SETUP + "; float64, 30 steps of SGD at eta 1 from initialization with real labels, 2 seeds; "
                                    "max |residual| / ||w||^2 below 1e-12 (float32 training runs as cells); an identity "
                                    "(true by construction for a correct implementation)",
             "figures": ["invariance"], "kind": "identity"},
    "S3.c": {"statement": "if G = ||grad J(w_hat)|| stays constant, ||w_k||^2 = ||w_0||^2 sqrt(1 + k/k0) with "
                          "k0 = ||w_0||^4 / (2 eta^2 G^2)",
             "departures": _SETUP + "; plain SGD at eta 1 for 6,000 steps with labels drawn afresh at every step (the "
                                    "steady-G regime; the lecture suggests random labels); fitted only where G^2 stays "
                                    "within +-10% of its window median (1,000-step windows), re-based at the window's "
                                    "start; k0 fitted / k0 predicted from G^2 measured every 20 steps, geometric mean "
                                    "over the 3 BN-fed layers per seed, within [1/1.1, 1.1]",
             "figures": ["norm_growth", "g2_steady"]},
    "S3.d": {"statement": "weight decay counteracts the growth: ||w||^2 -> sqrt(eta / (2 lambda)) G for SGD "
                          "(sqrt(eta / (2 lambda (1 - gamma))) G with momentum gamma, derived in the study module)",
             "departures": _SETUP + "; fresh random labels (steady G), lambda 5e-4, SGD eta 1 and SGD with momentum 0.9 "
                                    "at eta 0.1, 3,000 steps; measured over the last 25% of the run against the "
                                    "prediction from G^2 measured there; geometric mean over layers per seed, pooled "
                                    "over both optimizers, within a factor 1.2",
             "figures": ["wd_equilibrium"]},
    "S3.e": {"statement": "projecting each w_j to unit norm keeps the effective learning rate at eta (no implicit "
                          "decay)",
             "departures": _SETUP + "; fresh random labels, eta 1, 3,000 steps; effective rate measured as the rotation "
                                    "per step per unit of gradient at unit norm; its late/early ratio (last 25% vs first "
                                    "10% of steps) under projection over that of plain SGD over the same steps, per "
                                    "seed; holds if above 1.1",
             "figures": ["effective_lr"]},
    "S3.f": {"statement": "each unit has its own effective rate; the output layer (no BN after it) is not slowed by "
                          "the mechanism",
             "departures": _SETUP + "; here the output layer and BN's affine parameters are trained; fresh random labels, "
                                    "plain SGD eta 1, 3,000 steps; for the output layer (not scale invariant) the "
                                    "mechanism is norm growth, so the claim tested is that its eta/||w||^2 does not decay: "
                                    "end / start ratio above 1/1.1",
             "figures": ["unit_spread", "effective_lr"]},
}
LECTURE = "Lecture 5 (implicit learning-rate decay); Arora, Li, Lyu 2019; van Laarhoven 2017"
KEYS = ["labels", "opt", "momentum", "weight_decay", "constraint", "schedule", "lr", "trained_out", "steps"]
LABELS = ("real", "random", "fresh")


# ---------------------------------------------------------------------------------------- config

def _variant_model(cfg: dict, v: dict) -> dict:
    return {**cfg["model"], **v.get("model", {})}


def active_variants(cfg: dict) -> dict:
    """``variants`` without those set ``enabled: false`` (a config merged over the default cannot delete keys)."""
    return {name: v for name, v in cfg["variants"].items() if v.get("enabled", True)}


def check_config(cfg: dict) -> list[str]:
    """Cross-key checks (names relative to the study's section)."""
    out = []
    m = cfg["model"]
    if not m.get("scale_invariant", False) or m.get("norm") not in ("bn_pre", "bn_post"):
        out.append(f"'model.scale_invariant' {m.get('scale_invariant', False)} with 'model.norm' {m.get('norm')!r}: "
                   "the study needs scale_invariant true and norm bn_pre or bn_post (its claims assume BN-fed, "
                   "scale-invariant units)")
    if cfg["track_units"] > m.get("width", cfg["track_units"]):
        out.append(f"'track_units' {cfg['track_units']} must be at most 'model.width' {m.get('width')}")
    steps = cfg["train"]["steps"]
    st = cfg["steady"]
    if not active_variants(cfg):
        out.append("'variants': every variant has 'enabled' false")
    for name, v in active_variants(cfg).items():
        vm = _variant_model(cfg, v)
        if vm.get("norm") not in ("bn_pre", "bn_post"):
            out.append(f"'variants.{name}.model.norm' {vm.get('norm')!r} must be bn_pre or bn_post like 'model.norm': "
                       "the units probe needs BN-fed layers")
        vsteps = v.get("steps", steps)
        if cfg["probe_every"] > vsteps:
            out.append(f"'probe_every' {cfg['probe_every']} must be at most the steps of variant {name} "
                       f"('variants.{name}.steps' or 'train.steps': {vsteps})")
        if cfg["train"]["eval_every"] > vsteps:
            out.append(f"'train.eval_every' {cfg['train']['eval_every']} must be at most the steps of variant {name} "
                       f"('variants.{name}.steps' or 'train.steps': {vsteps})")
        if v.get("labels") == "fresh" and _is_plain(v) and vm.get("scale_invariant", False):
            if st["min_steps"] > vsteps:
                out.append(f"'steady.min_steps' {st['min_steps']} must be at most the steps of the steady-G variant "
                           f"{name} ('variants.{name}.steps' or 'train.steps': {vsteps})")
    if st["window"] > st["min_steps"]:
        out.append(f"'steady.window' {st['window']} must be at most 'steady.min_steps' {st['min_steps']}")
    if st["window"] < cfg["probe_every"]:
        out.append(f"'steady.window' {st['window']} must be at least 'probe_every' {cfg['probe_every']} (G^2 is "
                   "averaged over the probes in each window)")
    if cfg["seeds"] < 2:
        out.append(f"'seeds' {cfg['seeds']} must be at least 2: the intervals of 'claims' are over seeds")
    c = cfg["claims"]
    if c["early"] + c["window"] > 1:
        out.append(f"'claims.early' {c['early']} + 'claims.window' {c['window']} must be at most 1 (the early and "
                   "late parts of a run must not overlap)")
    return out


def _is_plain(v: dict) -> bool:
    opt = {"name": "sgd", **v.get("optimizer", {})}
    return (opt["name"] == "sgd" and not opt.get("momentum") and not opt.get("weight_decay")
            and not v.get("constraints") and v.get("schedule", {"name": "constant"})["name"] == "constant")


# ---------------------------------------------------------------------------------------- variants


def side_jobs(cfg: dict) -> dict:
    return {"invariance": SideJob("normlab.studies.norm_growth.invariance", "invariance.parquet", data=True,
                                  reads=("invariance", "model"),
                                  doc="S3: float64 checks of the scale-invariance identities and the "
                                      "Pythagorean recursion.")}


def variants(cfg: dict) -> dict:
    out = {}
    for name, v in active_variants(cfg).items():
        opt = {"name": "sgd", **v.get("optimizer", {})}
        lr = v.get("lr", cfg["lr"])
        sched = v.get("schedule", {"name": "constant"})
        model = _variant_model(cfg, v)
        cons = v.get("constraints", [])
        labels = v.get("labels", "real")
        train = {**cfg["train"], **({"steps": v["steps"]} if "steps" in v else {})}
        out[name] = {
            "keys": {"labels": labels, "opt": opt["name"], "momentum": opt.get("momentum", 0.0),
                     "weight_decay": opt.get("weight_decay", 0.0), "constraint": "+".join(cons) or "none",
                     "schedule": sched["name"], "lr": lr, "trained_out": not model.get("scale_invariant", False),
                     "steps": train["steps"]},
            "model": model,
            "optimizer": opt,
            "lr": lr,
            "schedule": sched,
            "train": train,
            "random_labels": {"real": False, "random": True, "fresh": "fresh"}[labels],
            "constraints": cons,
            "probes": [{"name": "units", "every": cfg["probe_every"], "track": cfg["track_units"]}],
        }
    return out


# ------------------------------------------------------------------------------------------ tables

_UNITS_CACHE: dict = {}


def unit_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """Long ``units/<layer>/<stat>`` rows -> one row per (variant, seed, layer, step), a column per stat.

    Adds ``efflr_meas`` = angle_rms / sqrt(G2_mean), the measured effective rate. Cached per metrics frame
    (analyze and figures both need it)."""
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


def run_keys(summary: pd.DataFrame) -> pd.DataFrame:
    k = summary.drop_duplicates("variant").set_index("variant")[[k for k in KEYS if k in summary]]
    return k


def _plain_sgd(k) -> bool:
    return k.opt == "sgd" and k.momentum == 0 and k.weight_decay == 0 and k.constraint == "none" \
        and k.schedule == "constant"


def window_means(k: np.ndarray, g2: np.ndarray, window: int, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean of ``g2`` over [a, a + window) for a = 0, window, ... < steps: (starts, means)."""
    starts = np.arange(0, steps, window)
    means = np.array([np.nanmean(g2[(k >= a) & (k < a + window)]) if ((k >= a) & (k < a + window)).any()
                      else np.nan for a in starts])
    return starts, means


def steady_window(k: np.ndarray, g2: np.ndarray, window: int, band: float, min_steps: int,
                  steps: int) -> float:
    """The earliest window boundary k_a from which every window mean of G^2 lies within +-band of the median
    of those window means, with steps - k_a >= min_steps; NaN if there is none."""
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


def local_slopes(k: np.ndarray, s: np.ndarray, n_seg: int) -> np.ndarray:
    """d log s / d log k per segment: OLS slope of log s on log k in n_seg equal parts of [k[0], k[-1]]."""
    edges = np.linspace(k[0], k[-1], n_seg + 1)
    out = []
    for a, b in zip(edges[:-1], edges[1:]):
        sel = (k >= a) & (k <= b) & (k > 0)
        out.append(np.polyfit(np.log(k[sel]), np.log(s[sel]), 1)[0] if sel.sum() >= 3 else np.nan)
    return np.array(out)


def law_fit(k: np.ndarray, s: np.ndarray, G2: np.ndarray, eta: float, k_a: float = 0.0, n_seg: int = 3) -> dict:
    """Fit s_k = s_a sqrt(1 + (k - k_a)/k0) over k >= k_a (k0 only; s_a measured at k_a) and compare with
    k0 = s_a^2 / (2 eta^2 mean(G^2 over k >= k_a)).

    ``s`` is sqrt(mean_j ||w_j||^4) at the probed steps ``k``, ``G2`` mean_j G_j^2 there. Returns k0_fit,
    k0_pred, their ratio, the local slopes (measured and of the fitted curve, per segment) and the largest
    slope misfit factor max_seg exp(|log(slope_meas / slope_fit)|).
    """
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


def law_table(units: pd.DataFrame, keys: pd.DataFrame, cfg: dict) -> pd.DataFrame:
    """Per plain-SGD run and BN-fed layer: the steady window of G^2, the law fitted there (``regime``
    'steady') and from step 0 (``regime`` 'from0'), and the drift of G^2 (last window / first window)."""
    st = cfg["steady"]
    n_seg = cfg["claims"]["slope_segments"]
    rows = []
    for (v, seed, layer), d in units[units.layer.str.startswith("bn")].groupby(["variant", "seed", "layer"]):
        k = keys.loc[v]
        if not _plain_sgd(k):
            continue
        d = d.dropna(subset=["w4_mean", "G2_mean"]).sort_values("step")
        if len(d) < 8:
            continue
        steps = int(k.steps) if "steps" in k else int(cfg["train"]["steps"])
        kk, s, g2 = d.step.to_numpy(float), np.sqrt(d.w4_mean.to_numpy()), d.G2_mean.to_numpy()
        _, means = window_means(kk, g2, st["window"], steps)
        drift = means[-1] / means[0]
        k_a = steady_window(kk, g2, st["window"], st["band"], st["min_steps"], steps)
        base = {"variant": v, "seed": seed, "layer": layer, "labels": k.labels, "lr": float(k.lr),
                "trained_out": bool(k.trained_out), "G2_drift": drift,
                "G2_drift_factor": max(drift, 1 / drift), "steady_from": k_a}
        rows.append({**base, "regime": "from0", **law_fit(kk, s, g2, float(k.lr), 0.0, n_seg)})
        if np.isfinite(k_a):
            _, mw = window_means(kk[kk >= k_a] - k_a, g2[kk >= k_a], st["window"], steps - int(k_a))
            rows.append({**base, "regime": "steady", "G2_band_dev": float(np.max(np.abs(mw / np.median(mw) - 1))),
                         **law_fit(kk, s, g2, float(k.lr), k_a, n_seg)})
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


def decay_table(units: pd.DataFrame, cfg: dict, until: dict | None = None) -> pd.DataFrame:
    """Per run and layer: late / early ratios (last ``claims.window`` vs first ``claims.early`` of the steps,
    or of the first ``until[variant]`` steps) of the measured effective rate (angle / G), of the angle per
    step and of eta/||w||^2."""
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
                     "efflr_end_ratio": d.efflr_mean.iloc[-1] / d.efflr_mean.iloc[0]})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------- analysis

def _geo(x) -> float:
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x) & (x > 0)]
    return float(np.exp(np.log(x).mean())) if len(x) else np.nan


def _per_seed(d: pd.DataFrame, col: str) -> np.ndarray:
    """One value per seed: the geometric mean of ``col`` over the seed's layers."""
    return d.groupby("seed")[col].apply(_geo).to_numpy(float)


def _exact_claim(cid, text, metric, value, n, *, below=None, above=None, kind="cell", source=LECTURE):
    """A deterministic row (an identity measured to float precision): exact estimate, compared with its threshold
    (NaN: inconclusive)."""
    side = {"below": below} if below is not None else {"above": above}
    return claim_from(cid, text, source, metric, exact(value, n), kind=kind, **side)


INV_SRC = "Lecture 5: BN(A W^T Gamma) = BN(A W^T); Euler's theorem (degree -1 gradient)"
INV_TEXTS = {"bn_identity": "BN(A W^T Gamma) = BN(A W^T) for diagonal Gamma > 0",
             "loss_invariance": "J(gamma w) = J(w) for per-unit gamma > 0",
             "grad_homogeneity": "grad J(gamma w) = grad J(w) / gamma",
             "orthogonality": "<w_j, grad_j J> = 0 for every unit"}


def invariance_claims(inv: pd.DataFrame, c: dict) -> list[dict]:
    rows = []
    n = int(inv.seed.nunique())
    tol = c["invariance_tol"]
    ident = inv[inv.check.isin(list(INV_TEXTS))]
    models = ", ".join(sorted(inv.model.unique()))
    rows.append(_exact_claim("S3.a", f"The four invariance identities ({'; '.join(INV_TEXTS.values())}) hold in float64 "
                             f"on every BN-fed layer of the models ({models}) at initialization: the largest relative "
                             f"error is below {tol:g} (an identity: true by construction for a correct implementation)",
                             "max relative error over checks, layers, seeds",
                             ident.rel_error.max(), n, below=tol, kind="identity", source=INV_SRC))
    for check, text in INV_TEXTS.items():
        for model, d in inv[inv.check == check].groupby("model"):
            rows.append(_exact_claim(f"S3.a[{check}, {model}]", f"{text} (float64, {model}, every BN-fed layer)",
                                     "max relative error over layers and seeds", d.rel_error.max(), n, below=tol,
                                     source=INV_SRC))
    for check, text in {"control_output_layer": "the output layer (not BN-fed) is NOT scale invariant",
                        "control_default_eps": "with PyTorch's bn_eps = 1e-5 the invariance is only approximate"}.items():
        d = inv[inv.check == check]
        if len(d):
            rows.append(_exact_claim(f"S3.a[{check}]", f"Control: {text} (relative change of J above {tol:g}: the "
                                     "instrument can see a broken invariance)", "min relative change of J",
                                     d.rel_error.min(), n, above=tol, kind="check", source=INV_SRC))
    py = inv[(inv.check == "pythagoras_rel_w") & (inv.variant == "sgd")]
    if len(py):
        rows.append(_exact_claim("S3.b", "Plain SGD: ||w'||^2 = ||w||^2 + eta^2 ||g||^2 step by step for every BN-fed "
                                 f"unit, to float64 precision (|residual| / ||w||^2 below {c['pythagoras_tol_float64']:g}; "
                                 f"{py.seed.nunique()} seeds x every layer x the job's steps; an identity: true by "
                                 "construction for a correct implementation)",
                                 "max |residual| / ||w||^2", py.rel_error.max(), n,
                                 below=c["pythagoras_tol_float64"], kind="identity"))
    for variant in ("sgd_momentum", "sgd_wd"):
        d = inv[(inv.check == "pythagoras_median") & (inv.variant == variant)]
        if len(d):
            rows.append(_exact_claim(f"S3.b[float64, {variant}]", f"Control: with {variant.replace('sgd_', '')} the "
                                     "plain-SGD recursion does not hold (it needs the update along the current "
                                     f"gradient alone): median |residual| / (eta^2 ||g||^2) above {c['broken_min']:g}",
                                     "median relative deviation", float(d.rel_error.median()), n,
                                     above=c["broken_min"], kind="check"))
    return rows


def _regime_text(labels: str) -> str:
    return {"fresh": "labels drawn afresh every step", "random": "fixed random labels (memorized)",
            "real": "real labels"}[labels]


def law_claims(law: pd.DataFrame, cfg: dict) -> list[dict]:
    c, st = cfg["claims"], cfg["steady"]
    ci, tol = c["ci"], c["k0_tol"]
    band = (1 / (1 + tol), 1 + tol)
    rows = []
    steady = law[law.regime == "steady"]
    fresh = steady[(steady.labels == "fresh") & ~steady.trained_out]
    n_series = int(((law.regime == "from0") & (law.labels == "fresh") & ~law.trained_out).sum())
    if len(fresh):
        ratios = _per_seed(fresh, "k0_ratio")
        e = mean_ci([ratios], ci=ci, log=True)
        rows.append(claim_from(
            "S3.c", f"Where G^2 is steady (fresh random labels; {len(fresh)} of {n_series} seed x layer series have a "
            f"steady tail, G^2 within +-{st['band']:.0%} of its median over {st['window']}-step windows, starting at "
            f"step {int(fresh.steady_from.min())}-{int(fresh.steady_from.max())}), the sqrt(1 + k/k0) law fitted there "
            f"(re-based at the tail's start) gives k0 within a factor {1 + tol:g} of k0 = ||w_a||^4 / (2 eta^2 G^2) "
            "predicted from the measured G (geometric mean over layers per seed; log-scale t interval over seeds)",
            LECTURE, "k0 fitted / k0 predicted", e, kind="headline", within=band))
        for layer, d in fresh.groupby("layer"):
            e = mean_ci([d.k0_ratio.to_numpy(float)], ci=ci, log=True)
            rows.append(claim_from(
                f"S3.c[k0, {layer}]", f"Fresh labels, layer {layer}, steady tail: k0 fitted {d.k0_fit.mean():.4g} vs "
                f"predicted {d.k0_pred.mean():.4g} (mean over seeds), ratio within a factor {1 + tol:g}",
                LECTURE, "k0 fitted / k0 predicted", e, within=band))
        e = mean_ci([_per_seed(fresh, "slope_misfit")], ci=ci, log=True)
        rows.append(claim_from(
            "S3.c[local slope]", f"Fresh labels, steady tail: the local slope d log||w||^2 / d log k of the fitted curve "
            f"matches the measured one in each of {c['slope_segments']} segments of the tail (largest misfit factor "
            f"exp|log(measured / fitted)| below {1 + c['slope_tol']:g}; last segment: measured "
            f"{fresh.slope_meas_last.mean():.3f}, fitted {fresh.slope_fit_last.mean():.3f})", LECTURE,
            "largest local-slope misfit factor", e, below=1 + c["slope_tol"]))
        rows.append(_exact_claim(
            "S3.c[G steady]", f"Fresh labels: in the steady tails G^2's {st['window']}-step window means stay within "
            f"+-{st['band']:.0%} of their median (the law's assumption; the tail is chosen by this test, so it is a "
            "check of the selection)", "max |window mean / median - 1|", float(fresh.G2_band_dev.max()),
            int(fresh.seed.nunique()), below=st["band"] + 1e-12, kind="check"))
    elif n_series:
        rows.append(claim("S3.c", f"No seed x layer series with fresh labels has a steady tail (G^2 within "
                          f"+-{st['band']:.0%} over at least {st['min_steps']} steps): the law cannot be tested here",
                          LECTURE, "k0 fitted / k0 predicted", np.nan, np.nan, np.nan, f"in [{band[0]:g}, {band[1]:g}]",
                          "inconclusive", 0, kind="headline"))
    # where the law breaks: from step 0 (real labels, fixed random labels, and the fresh-label run's transient)
    from0 = law[(law.regime == "from0") & ~law.trained_out]
    for (v, labels), d in from0.groupby(["variant", "labels"]):
        n = int(d.seed.nunique())
        drift = _per_seed(d, "G2_drift")
        e = mean_ci([np.maximum(drift, 1 / drift)], ci=ci, log=True)
        rows.append(claim_from(
            f"S3.c[break, {v}, G drift]", f"{v} ({_regime_text(labels)}), from step 0: G^2 is not steady: its last "
            f"{st['window']}-step window over its first differs by more than a factor {1 + st['band']:g} (mean "
            f"last/first {_geo(drift):.3g}); this is what breaks the law", LECTURE,
            "G^2 drift factor max(last/first, first/last)", e, kind="check", above=1 + st["band"]))
        e = mean_ci([_per_seed(d, "slope_misfit")], ci=ci, log=True)
        rows.append(claim_from(
            f"S3.c[break, {v}, local slope]", f"{v} ({_regime_text(labels)}), fitted from step 0: the law's shape misses "
            f"the measured growth: largest local-slope misfit factor above {1 + c['slope_tol']:g} (in the steady tail it "
            "is below)", LECTURE, "largest local-slope misfit factor", e, kind="check", above=1 + c["slope_tol"]))
        if labels == "fresh":
            continue  # the transient is short: k0 over the whole run is dominated by the steady tail
        r = _per_seed(d, "k0_ratio")
        e = mean_ci([np.maximum(r, 1 / r)], ci=ci, log=True)
        rows.append(claim_from(
            f"S3.c[break, {v}, k0]", f"{v} ({_regime_text(labels)}), from step 0: with G^2 averaged over the run the "
            f"predicted k0 misses the fitted one by more than a factor {1 + tol:g} (mean fitted/predicted "
            f"{_geo(r):.3g}, n={n})", LECTURE, "k0 misfit factor max(ratio, 1/ratio)", e, kind="check",
            above=1 + tol))
    return rows


def analyze(metrics, summary, cfg, extra=None):
    c = cfg["claims"]
    ci = c["ci"]
    keys = run_keys(summary)
    units = unit_table(metrics)
    rows = []
    if extra and extra.get("invariance"):
        rows += invariance_claims(pd.read_parquet(extra["invariance"]), c)
    bn = units[units.layer.str.startswith("bn")]
    ok = set(summary[summary.status == "ok"].variant)

    # S3.b in the float32 training runs: cells where it must hold; checks where it must not
    for v in keys.index:
        k = keys.loc[v]
        d = bn[bn.variant == v]
        n = int(d.seed.nunique())
        if not len(d) or k.constraint != "none":
            continue
        if _plain_sgd(k):
            rows.append(_exact_claim(f"S3.b[{v}]", f"Plain SGD ({v}, float32 training run, {_regime_text(k.labels)}): "
                                     "the Pythagorean recursion holds at every probed step to float32 precision "
                                     f"(|residual| / ||w||^2 below {c['pythagoras_tol_float32']:g})",
                                     "max |residual| / ||w||^2", float(d.pyth_rel_w_max.max()), n,
                                     below=c["pythagoras_tol_float32"]))
        else:
            med = d.groupby("seed").pyth_rel_inc_med.median().to_numpy(float)
            rows.append(claim_from(f"S3.b[{v}]", f"Control: {v} ({k.opt}, momentum {k.momentum:g}, weight decay "
                                   f"{k.weight_decay:g}): the plain-SGD recursion is off (median |residual| / "
                                   f"(eta^2 ||g||^2) above {c['broken_min']:g}), as theory says it must be", LECTURE,
                                   "median relative deviation", mean_ci([med], ci=ci, log=True), kind="check",
                                   above=c["broken_min"]))

    # S3.c: the sqrt(1 + k/k0) law where G is steady, and where it breaks
    law = law_table(units[units.variant.isin(ok)], keys, cfg)
    if len(law):
        rows += law_claims(law, cfg)

    # S3.d: weight-decay equilibrium
    eq = equilibrium_table(units[units.variant.isin(ok)], keys, cfg)
    et = c["equilibrium_tol"]
    band = (1 / (1 + et), 1 + et)
    if len(eq):
        groups = [_per_seed(d, "norm_ratio") for _, d in eq.groupby("variant")]
        vs = list(dict.fromkeys(eq.sort_values("variant").variant))
        rows.append(claim_from(
            "S3.d", f"Weight decay brings ||w||^2 (rms over units) of every BN-fed layer to the predicted equilibrium "
            f"sqrt(eta / (2 lambda (1 - gamma))) G, G measured in the same window (last {c['window']:.0%} of the "
            f"run), within a factor {1 + et:g}: measured / predicted, geometric mean over layers per seed, pooled over "
            f"{', '.join(vs)}", "Lecture 5; van Laarhoven 2017; momentum version derived in norm_growth.py",
            "||w||^2 measured / predicted", mean_ci(groups, ci=ci, log=True), kind="headline", within=band))
        for v, d in eq.groupby("variant"):
            gam = d.momentum.iloc[0]
            for what, col, formula in [("norm", "norm_ratio", "sqrt(eta/(2 lambda (1-gamma))) G"),
                                       ("angle", "angle_ratio", "sqrt(2 eta lambda/(1+gamma))")]:
                rows.append(claim_from(
                    f"S3.d[{v}, {what}]", f"{v} (momentum {gam:g}, {_regime_text(keys.loc[v].labels)}): the late "
                    f"{what} per BN-fed layer matches {formula} within a factor {1 + et:g}",
                    "Lecture 5; van Laarhoven 2017; derivation in norm_growth.py", f"{what} measured / predicted",
                    mean_ci([_per_seed(d, col)], ci=ci, log=True), within=band))

    # S3.e: unit-norm projection vs plain SGD over the same steps
    proj = [v for v in keys.index if "unit_norm" in keys.loc[v].constraint and v in ok]
    for v in proj:
        k = keys.loc[v]
        d = bn[bn.variant == v]
        n = int(d.seed.nunique())
        dev = float(np.nanmax(np.abs(d[["efflr_q10", "efflr_q90", "efflr_mean"]].to_numpy() / float(k.lr) - 1)))
        rows.append(_exact_claim(f"S3.e[{v}, eta/||w||^2]", "Unit-norm projection: eta/||w_j||^2 = eta for every BN-fed "
                                 "unit at every probed step (an identity of the projection)", "max |efflr / eta - 1|",
                                 dev, n, below=c["unit_norm_tol"], kind="check"))
        refs = [r for r in keys.index if r in ok and _plain_sgd(keys.loc[r]) and keys.loc[r].labels == k.labels
                and keys.loc[r].trained_out == k.trained_out and float(keys.loc[r].lr) == float(k.lr)]
        if not refs:
            continue
        ref = refs[0]
        K = int(bn[bn.variant == v].step.max())
        dec = decay_table(bn[bn.variant.isin([v, ref])], cfg, until={v: K, ref: K})
        a = dec[dec.variant == v].set_index(["seed", "layer"])
        b = dec[dec.variant == ref].set_index(["seed", "layer"])
        seeds = sorted(set(a.index.get_level_values(0)) & set(b.index.get_level_values(0)))
        ra = np.array([_geo(a.loc[s].efflr_meas_ratio) for s in seeds])
        rb = np.array([_geo(b.loc[s].efflr_meas_ratio) for s in seeds])
        gain = c["projection_gain_min"]
        rows.append(claim_from(
            "S3.e", f"Unit-norm projection ({v}) keeps the effective rate from decaying where plain SGD ({ref}) lets it "
            f"decay: the late/early ratio of the measured effective rate (rotation per step / G), first {K + 1} steps, "
            f"is higher under projection by more than a factor {gain:g} (paired by seed; projection "
            f"{_geo(ra):.3g}, plain SGD {_geo(rb):.3g})", LECTURE, "late/early effective rate, projected / plain",
            mean_ci([ra], [rb], ci=ci, paired=True, log=True), kind="headline", above=gain))
        tol = c["k0_tol"]
        rows.append(claim_from(
            f"S3.e[{v}, constant]", f"Under projection the measured effective rate (rotation per step / G) stays "
            f"constant: late/early within a factor {1 + tol:g} (near an identity: the rotation is atan(eta G))",
            LECTURE, "late/early effective rate", mean_ci([ra], ci=ci, log=True), kind="check",
            within=(1 / (1 + tol), 1 + tol)))
        rows.append(claim_from(
            f"S3.e[{ref}, decays]", f"Plain SGD ({ref}) over the same steps: the measured effective rate decays "
            f"(late/early below 1/{1 + tol:g})", LECTURE, "late/early effective rate", mean_ci([rb], ci=ci, log=True),
            below=1 / (1 + tol)))
        ang = np.array([_geo(a.loc[s].angle_ratio) for s in seeds])
        rows.append(claim_from(
            f"S3.e[{v}, angle]", "Under projection the angle turned per step (= atan(eta G)) need not stay constant: "
            "it follows G, which keeps drifting under projection. Reported: late/early angle per step (holds if within "
            f"a factor {1 + tol:g})", LECTURE, "late/early angle per step", mean_ci([ang], ci=ci, log=True),
            within=(1 / (1 + tol), 1 + tol)))

    # S3.f: the output layer's effective rate
    outs = [v for v in keys.index if keys.loc[v].trained_out and _plain_sgd(keys.loc[v]) and v in ok]
    outs.sort(key=lambda v: keys.loc[v].labels != "fresh")  # the steady-G regime first: the headline
    for i, v in enumerate(outs):
        dec = decay_table(units[units.variant == v], cfg)
        out = dec[dec.layer == "out"].set_index("seed").efflr_end_ratio
        bnl = dec[dec.layer.str.startswith("bn")]
        tol = c["output_tol"]
        rows.append(claim_from(
            "S3.f" if i == 0 else f"S3.f[{v}]",
            f"{v} ({_regime_text(keys.loc[v].labels)}; output layer and BN affine trained): the output layer "
            f"(no BN after it) is not slowed by norm growth: its eta/||w||^2 at the end is at least 1/{1 + tol:g} of "
            f"its start (output {_geo(out):.3g}; BN-fed layers {_geo(bnl.efflr_end_ratio):.3g})", LECTURE,
            "eta/||w_out||^2 end / start", mean_ci([out.to_numpy(float)], ci=ci, log=True),
            kind="headline" if i == 0 else "cell", above=1 / (1 + tol)))
        rows.append(claim_from(
            f"S3.f[{v}, BN-fed]", f"{v}: the BN-fed layers of the same run are slowed: eta/||w||^2 end / start below "
            f"1/{1 + tol:g} (geometric mean over layers per seed)", LECTURE, "eta/||w||^2 end / start, BN-fed",
            mean_ci([_per_seed(bnl, "efflr_end_ratio")], ci=ci, log=True), below=1 / (1 + tol)))
        ao = dec[dec.layer == "out"].set_index("seed").angle_ratio
        ab = bnl.groupby("seed").angle_ratio.apply(_geo)
        rows.append(claim_from(
            f"S3.f[{v}, angle]", f"{v}: the output layer's angle per step decays less than the BN-fed layers' "
            f"(late/early, paired by seed; output {_geo(ao):.3g}, BN-fed {_geo(ab):.3g}; smallest effect of interest "
            f"a ratio {1 + tol:g}). The output layer's angle "
            "also falls when its gradient shrinks or its norm grows to fit the labels, mechanisms other than BN's",
            LECTURE, "late/early angle per step, output / BN-fed",
            mean_ci([ao.sort_index().to_numpy(float)], [ab.sort_index().to_numpy(float)], ci=ci, paired=True,
                    log=True), above=1.0, sesoi=tol))
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------- figures

def figures(metrics, summary, claims, cfg, fig_dir, extra=None):
    from . import plots as norm_growth_figures

    keys = run_keys(summary)
    units = unit_table(metrics)
    ok = set(summary[summary.status == "ok"].variant)
    tables = {"keys": keys, "units": units,
              "law": law_table(units[units.variant.isin(ok)], keys, cfg),
              "equilibrium": equilibrium_table(units[units.variant.isin(ok)], keys, cfg),
              "plain": {v: _plain_sgd(keys.loc[v]) for v in keys.index}}
    return norm_growth_figures.make(tables, claims, cfg, fig_dir, extra)


def headlines(cfg: dict) -> dict:
    """``HEADLINES`` with the departures of the setup ``cfg`` (the study's resolved section) describes."""
    from ..setup_text import dataset_text, headlines_for, model_text, unit_word

    steps = ", ".join(f"{n} {v.get('steps', cfg['train']['steps']):,}" for n, v in active_variants(cfg).items())
    return headlines_for(HEADLINES, cfg, f"{dataset_text(cfg['dataset'])} instead of the lecture's image nets; a "
                                         f"scale-invariant {model_text(cfg['model'], cfg['dataset'])} (units: "
                                         f"{unit_word(cfg['model'])}); steps per variant: {steps}; {cfg['seeds']} seeds")
