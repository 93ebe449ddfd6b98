"""S5: the ICS conditioning hypothesis (the lecture's suggested class project), tested.

Variants: a shifted_mlp (models/shifted.py) per condition (activation, added shift c, explicit
centering of the hidden activations or not) x normalization (none | bn_pre: BN before every
nonlinearity, hence "before the next nonlinearity" for every hidden activation but the last),
each over seeds, all trained with the same optimizer and learning rate. The ``curvature`` probe
(normlab.probes.curvature) measures, on a fixed batch at init and along training, the top
eigenvalues of chosen layers' Gauss-Newton blocks, K-FAC's factors, nu = ||m||^2 + 1 and the
prediction nu * lambda_i(S), and the top Hessian eigenvalues of the whole network.
Two exactness jobs (normlab.studies.ics_conditioning.checks) add the invariance trajectories and the
batch-centering gradient identity.

Claims: one row per id S5.a..e, of kind ``headline`` (S5.a, S5.b, S5.e: empirical) or ``identity`` (S5.c,
S5.d: true by construction for a correct implementation, counted apart), ``cell`` rows for detail,
``check`` rows for the instrument controls (S5.a[init] among them).

- S5.a uncentered inputs (no BN, no centering, nu >= nu_min) give outlier eigenvalues that match
  the prediction at a trained point (the last curvature probe at or before ``trained_step``):
  measured / predicted top-``n_compare`` GGN-block eigenvalues (geometric mean per seed), pooled over
  the (variant, layer) strata on the log scale, within [1/(1+tol), 1+tol]. At init, where K-FAC's
  factorization is nearly exact, the same test is the check S5.a[init]. Cells: per condition and layer, at init and at the last probe; eigenvector
  overlap with m_bar (x) R^M; growth of lambda_1 with nu.
- S5.b explicit centering removes them: lambda_1(uncentered) / lambda_1(centered) >= min_reduction
  at init (same seed = same initial weights: per-seed ratios), pooled on the log scale.
- S5.c (identity) with BN before the next nonlinearity the shift is harmless: shift + scale of the previous
  activations give the same trajectory, max logit gap <= invariance_tol in float64 (an identity in
  real arithmetic; the measurement can fail: BN after the nonlinearity, an unscaled epsilon or a
  per-unit scale break it, and the ``check`` rows show the instrument sees those departures).
  Cells: curvature of the BN-followed blocks, the shift's training cost with and without BN.
- S5.d (identity) batch centering: dL/dW = S_bar^T A~ to float64 precision (can fail: with the statistics path
  cut, the same formula misses by O(1), a ``check`` row).
- S5.e (added here; the lecture's open question itself): the share of BN's training-speed advantage
  (train loss at ``speed_step``, uncentered no-BN net minus BN net) that explicit centering without
  BN recovers, (L_U - L_C) / (L_U - L_B), pooled over the conditions that have a centered twin,
  seeds paired across the three variants. Interval: Fieller's, i.e. the set of shares theta whose
  paired t test of the linear contrast (L_U - L_C) - theta (L_U - L_B) does not reject. It is exact
  for normal per-seed differences, needs no ratio of noisy per-seed numbers, and is unbounded (so
  the verdict inconclusive) when BN's advantage itself is not clearly non-zero.
Intervals: Student t over seeds (``normlab.stats.mean_ci``); verdicts from ``normlab.stats.finalize`` (one
multiplicity rule per family, the interval each verdict was made from).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from ...plotting import save_figure
from ...stats import claim, claim_all, claim_from, exact, make_part, mean_ci, t_band
from .. import Figure, SideJob

TITLE = "S5: the ICS conditioning hypothesis (Lecture 5's class project: do BN's gains come from removing outlier eigenvalues?)"
CATEGORY = "S5 ICS conditioning"
FIGURES = [
    Figure("eig_vs_nu.png", "eigenvalues vs nu"),
    Figure("spectra_centering.png", "spectra with and without centering"),
    Figure("invariance.png", "invariance trajectories"),
    Figure("training_curves.png", "training curves"),
    Figure("curvature_over_training.png", "curvature along training"),
    Figure("bn_advantage_share.png", "share of BN's speed advantage recovered by centering"),
]
PAPERS = [
    {"cite": "Grosse. CSC 2541 Neural Net Training Dynamics, Lecture 5: adaptive gradient methods, normalization and "
             "weight decay. University of Toronto, 2021", "url": "https://www.cs.toronto.edu/~rgrosse/courses/csc2541_2021/"},
    {"cite": "Martens, Grosse. Optimizing neural networks with Kronecker-factored approximate curvature. ICML 2015",
     "url": "https://arxiv.org/abs/1503.05671"},
    {"cite": "Ioffe, Szegedy. Batch normalization: accelerating deep network training by reducing internal covariate "
             "shift. ICML 2015", "url": "https://arxiv.org/abs/1502.03167"},
]
_SETUP = ("no paper ran this (the lecture's class project); our setup: MNIST-1D, a 3-hidden-layer width-64 MLP whose "
          "hidden activations (tanh + shift 0, 0.5, 1, 2; logistic) are optionally batch-centered, SGD momentum 0.9 at "
          "lr 0.05, 1,000 steps of batch 128, 3 seeds")
HEADLINES = {
    "S5.a": {"statement": "Uncentered activations (mean m) give K-FAC's factor A an outlier eigenvalue, so a layer's "
                          "Gauss-Newton block has up to M large eigenvalues nu*lambda_i(S), nu = ||m||^2 + 1, with "
                          "eigenvectors m (x) v",
             "departures": _SETUP + "; measured at a trained point (step 500 of 1,000, the last curvature probe) on a fixed "
                                    "256-sample batch in float64 (Lanczos on exact GGN products), hidden and read-out "
                                    "layers, inputs with nu >= 10, top 5 eigenvalues within a factor 1.1; at init, where "
                                    "K-FAC's factorization is nearly exact, the same test is a check (S5.a[init])",
             "figures": ["eig_vs_nu", "curvature_over_training"]},
    "S5.b": {"statement": "Centering the activations removes the outlier eigenvalues",
             "departures": _SETUP + "; explicit batch centering of every hidden activation; top eigenvalue of the "
                                    "hidden and read-out GGN blocks at init, same initial weights with and without "
                                    "centering",
             "figures": ["spectra_centering"]},
    "S5.c": {"statement": "With BN in the next layer, before its nonlinearity, the network is invariant to shifting and "
                          "rescaling the previous activations, so training trajectories are identical and the outlier "
                          "eigenvalues do no harm",
             "departures": _SETUP + "; trajectory test: a 2-hidden-layer width-32 tanh MLP with BN before each "
                                    "nonlinearity, 300 SGD steps in float64, activations a -> 3a + m, BN epsilon "
                                    "scaled by 9; an identity (true by construction for a correct implementation: a "
                                    "wrong one fails it), counted apart from the empirical claims",
             "figures": ["invariance"], "kind": "identity"},
    "S5.d": {"statement": "With batch centering the weight gradient is S_bar^T A~ (centered activations) instead of "
                          "S_bar^T A: the statistics path is responsible",
             "departures": _SETUP + "; checked by autograd in float64 on 5 batches of a 2-hidden-layer width-32 tanh "
                                    "MLP (shift 2); an identity (true by construction for a correct implementation: a "
                                    "wrong one fails it), counted apart from the empirical claims",
             "figures": [], "kind": "identity"},
    "S5.e": {"statement": "(Added: the open question itself.) If BN helps by removing the outlier eigenvalues (the "
                          "ICS conditioning hypothesis), explicit centering without BN, which removes them too (S5.b), "
                          "should recover much of BN's training-speed advantage over the uncentered network",
             "departures": _SETUP + "; speed = train loss after 1,000 steps; share = (uncentered - centered) / "
                                    "(uncentered - BN), pooled over tanh + 2 and logistic, seeds paired; holds if the "
                                    "share exceeds 0.5",
             "figures": ["bn_advantage_share", "training_curves"]},
}
LECTURE = "Lecture 5 (Grosse), 'ICS conditioning hypothesis'; K-FAC (Martens & Grosse 2015)"
LECTURE_BN = "Lecture 5 (Grosse), 'A Wrinkle': BN in the next layer before its nonlinearity"
LECTURE_BC = "Lecture 5 (Grosse), batch centering: W_bar = S_bar^T A~ (statistics path)"
LECTURE_Q = "Lecture 5 (Grosse): 'the ICS conditioning hypothesis could still be correct ... good class project'"


def cond_label(act: str, shift: float, center: bool) -> str:
    return f"{act} s={shift:g}" + (" centered" if center else "")


def check_config(cfg: dict) -> list[str]:
    """Cross-key checks (names relative to the study's section); config.validate calls this."""
    out = []
    depth = cfg["model"]["depth"]
    n_layers = depth + 1
    for i, layer in enumerate(cfg["curvature"]["layers"]):
        if not -n_layers <= layer < n_layers:
            out.append(f"'curvature.layers[{i}]' {layer} is not a weight-layer index of the depth-{depth} model of "
                       f"'model.depth' (allowed {-n_layers}..{n_layers - 1})")
    bad = [n for n in cfg["center_norms"] if n not in cfg["norms"]]
    if bad:
        out.append(f"'center_norms' {cfg['center_norms']} must be among 'norms' {cfg['norms']}")
    steps = cfg["train"]["steps"]
    if cfg["train"]["eval_every"] > steps:
        out.append(f"'train.eval_every' {cfg['train']['eval_every']} must be at most 'train.steps' {steps}")
    if cfg["curvature"]["every"] > steps:
        out.append(f"'curvature.every' {cfg['curvature']['every']} must be at most 'train.steps' {steps} "
                   "(the probe would run at init only)")
    sp = cfg["claims"].get("speed_step")
    if sp is not None and sp > steps:
        out.append(f"'claims.speed_step' {sp} must be at most 'train.steps' {steps}")
    if sp is not None and sp < cfg["train"]["eval_every"]:
        out.append(f"'claims.speed_step' {sp} must be at least 'train.eval_every' {cfg['train']['eval_every']} "
                   "(train loss is read at evaluations)")
    inv = cfg["invariance"]
    if inv["layer"] >= inv["depth"]:
        out.append(f"'invariance.layer' {inv['layer']} must be below 'invariance.depth' {inv['depth']} (a BN-normalized "
                   "layer must follow the transformed activations)")
    if inv["probe_every"] > inv["steps"]:
        out.append(f"'invariance.probe_every' {inv['probe_every']} must be at most 'invariance.steps' {inv['steps']}")
    uncentered = {(c["act"], float(c.get("shift", 0.0))) for c in cfg["conditions"] if not c.get("center", False)}
    for i, c in enumerate(cfg["conditions"]):
        if c.get("center", False) and (c["act"], float(c.get("shift", 0.0))) not in uncentered:
            out.append(f"'conditions[{i}]' (act {c['act']}, shift {float(c.get('shift', 0.0)):g}) is centered but "
                       "'conditions' has no uncentered twin with the same act and shift to compare it with")
    if any(c.get("center", False) for c in cfg["conditions"]) and "none" not in cfg["center_norms"]:
        out.append(f"'conditions' has centered entries but 'center_norms' {cfg['center_norms']} lacks none: "
                   "S5.b and S5.e compare centering without BN")
    return out


def check(cfg: dict) -> None:
    """Raise ConfigError on the first cross-key problem (for callers outside config.validate)."""
    from ...config import ConfigError

    problems = check_config(cfg)
    if problems:
        raise ConfigError(f"studies.ics_conditioning: {problems[0]}")


def side_jobs(cfg: dict) -> dict:
    return {
        "invariance": SideJob("normlab.studies.ics_conditioning.checks", "checks/invariance.parquet",
                              args=("invariance",), data=True, reads=("invariance",),
                              doc="S5: float64 check that BN makes the trajectory invariant to input shifts."),
        "centering": SideJob("normlab.studies.ics_conditioning.checks", "checks/centering.json",
                             args=("centering",), data=True, reads=("centering_check",),
                             doc="S5: float64 check of the batch-centering identity."),
    }


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

def _setup(cfg: dict) -> str:
    m, o, t = cfg["model"], cfg["optimizer"], cfg["train"]
    mom = f" momentum {o['momentum']:g}" if o.get("momentum") else ""
    from ..setup_text import IMAGE_DATASETS

    flat = (" on the flattened images (the curvature probes and checks are written for an MLP's per-unit "
            f"activations), {cfg['seeds']} seeds") if cfg["dataset"] in IMAGE_DATASETS else ""
    return (f"{cfg['dataset']}, shifted MLP {m['depth']} hidden x {m['width']}{flat}, {o['name'].upper()}{mom} lr "
            f"{cfg['lr']:g}, {t['steps']} steps of batch {t['batch_size']}; no paper ran this (the lecture's class project)")


def _nan_row(cid, text, source, metric, threshold, n, kind="headline"):
    return claim(cid, text, source, metric, math.nan, math.nan, math.nan, threshold, "inconclusive", n, kind=kind)


def speed_table(metrics: pd.DataFrame, summary: pd.DataFrame, cfg: dict) -> pd.DataFrame:
    """One row per run: ``speed_loss`` = train loss at the last evaluation at or before ``claims.speed_step``
    (default the end of training); chance level log(10) for a run that diverged before it."""
    step = cfg["claims"].get("speed_step") or cfg["train"]["steps"]
    runs = summary.set_index(["variant", "seed"]).copy()
    tl = metrics[(metrics.metric == "train_loss") & (metrics.step <= step)].sort_values("step")
    last = tl.groupby(["variant", "seed"]).value.last()
    loss = last.reindex(runs.index)
    div = runs.get("diverged_step", pd.Series(np.nan, index=runs.index)).astype(float)
    bad = (runs.status != "ok") & (div.isna() | (div <= step))
    runs["speed_loss"] = loss.where(~bad & np.isfinite(loss), np.log(10)).fillna(np.log(10))
    runs["speed_step"] = step
    return runs.reset_index()


def share_ci(num_groups, den_groups, ci: float = 0.95) -> dict:
    """Ratio of stratified means of paired per-seed quantities, with Fieller's interval.

    ``num_groups[k]``, ``den_groups[k]``: per-seed values (same seeds, same order) of the numerator and
    denominator in stratum k. The share theta = mean_k mean(num_k) / mean_k mean(den_k). Interval: every
    theta for which the one-sample t test of the per-seed contrast num - theta * den (stratified as in
    ``mean_ci``) does not reject at level 1 - ci, i.e. the roots of
    (A - theta B)^2 = t^2 (Vaa - 2 theta Vab + theta^2 Vbb). Bounded only when B is significantly non-zero
    (B^2 > t^2 Vbb); otherwise the interval is NaN (unbounded). Degrees of freedom: Welch-Satterthwaite of
    the contrast at the point estimate. Returns value, low, high, df, n, den (the denominator's Estimate).
    """
    from scipy import stats as st

    num = [np.asarray(a, float) for a in num_groups]
    den = [np.asarray(b, float) for b in den_groups]
    ok = [np.isfinite(a) & np.isfinite(b) for a, b in zip(num, den)]
    num, den = [a[k] for a, k in zip(num, ok)], [b[k] for b, k in zip(den, ok)]
    n = max((len(a) for a in num), default=0)
    nan = dict(value=math.nan, low=math.nan, high=math.nan, df=math.nan, n=n, den=mean_ci(den, ci=ci) if den else None)
    if not num or min(len(a) for a in num) < 2:
        return nan
    K = len(num)
    A = float(np.mean([a.mean() for a in num]))
    B = float(np.mean([b.mean() for b in den]))
    vaa = sum(a.var(ddof=1) / len(a) for a in num) / K**2
    vbb = sum(b.var(ddof=1) / len(b) for b in den) / K**2
    vab = sum(np.cov(a, b, ddof=1)[0, 1] / len(a) for a, b in zip(num, den)) / K**2
    theta = A / B if B != 0 else math.nan
    contrast = mean_ci([a - (theta if np.isfinite(theta) else 0.0) * b for a, b in zip(num, den)], ci=ci)
    df = contrast.df if np.isfinite(contrast.df) else sum(len(a) - 1 for a in num)
    t = float(st.t.ppf(0.5 + ci / 2, df))
    qa, qb, qc = B * B - t * t * vbb, A * B - t * t * vab, A * A - t * t * vaa
    out = dict(nan, value=theta, df=df)
    if qa > 0:
        disc = max(qb * qb - qa * qc, 0.0)
        out.update(low=(qb - math.sqrt(disc)) / qa, high=(qb + math.sqrt(disc)) / qa)
    return out


def share_claim(cid, text, source, metric, num_groups, den_groups, thr, ci, kind):
    """A claim 'share > thr' from ``share_ci``, tested as the contrast num - thr * den above 0 (a threshold
    claim: it fails when the contrast is below 0) with BN's advantage den > 0 as a gate (it must be
    significant for any verdict). The interval shown is Fieller's at the level the verdict was made at."""
    s = share_ci(num_groups, den_groups, ci)
    if not num_groups or not np.isfinite(s["value"]):
        return _nan_row(cid, text + " (no runs to compare)", source, metric, f"> {thr:g}", s["n"], kind)
    con = mean_ci([np.asarray(a, float) - thr * np.asarray(b, float) for a, b in zip(num_groups, den_groups)], ci=ci)
    den = mean_ci(den_groups, ci=ci)
    parts = [make_part(con, above=0.0, label=f"the contrast (L_U - L_C) - {thr:g} (L_U - L_B)"),
             make_part(den, above=0.0, label="BN's advantage L_U - L_B", gate=True)]

    def fieller(level):
        f = share_ci(num_groups, den_groups, level)
        return f["value"], f["low"], f["high"]

    row = claim_all(cid, text + f" (BN's advantage {den.value:.3g} [{den.low:.3g}, {den.high:.3g}] in train loss)",
                    source, metric, parts, kind=kind, display=fieller)
    row.update(threshold=f"> {thr:g}", sesoi=thr)
    return row


def _paired(df: pd.DataFrame, col: str, *selectors) -> list[np.ndarray]:
    """Per selector (a boolean mask), the values of ``col`` indexed by seed, restricted to the common seeds."""
    series = [df[m].set_index("seed")[col] for m in selectors]
    common = series[0].index
    for s in series[1:]:
        common = common.intersection(s.index)
    common = common.sort_values()
    return [s.loc[common].to_numpy(float) for s in series]


def analyze(metrics, summary, cfg, extra=None):
    extra = extra or {}
    c = cfg["claims"]
    ci = c["ci"]
    tol, nc = c["tol"], c["n_compare"]
    band = (1 / (1 + tol), 1 + tol)
    n_layers = cfg["model"]["depth"] + 1
    n_seeds = int(summary.groupby("variant").seed.nunique().min()) if len(summary) else 0
    setup = _setup(cfg)
    rows = []
    eig, stats = curvature_tables(metrics)
    rt = ratio_table(eig, stats, nc)
    if len(rt):
        rt["center"] = rt.center.astype(bool)
    steps = sorted(rt.step.unique()) if len(rt) else []
    layers = sorted(rt.layer.unique(), key=lambda s: int(s[1:])) if len(rt) else []
    init = rt[rt.step == 0] if len(rt) else rt
    ratio_metric = "geo-mean lambda_i(G_ll) / (nu lambda_i(S)), top n_compare"

    # S5.a: the prediction, for uncentered inputs without BN ----------------------------------------
    def unc_none(df):
        return df[(df.norm == "none") & ~df.center & (df.nu >= c["nu_min"])]

    # the trained point: the last curvature probe at or before claims.trained_step (default: the last probe)
    want = c.get("trained_step")
    later = [st_ for st_ in steps if st_ > 0 and (want is None or st_ <= want)]
    trained = later[-1] if later else None
    strata = "variant x layer strata"

    def s5a_groups(sub_):
        """Per (variant, layer) stratum, the per-seed ratios; strata with fewer than 2 seeds (a seed whose nu fell
        below nu_min in training) are left out, so the pooled interval exists."""
        gs = [g.ratio.to_numpy() for _, g in sub_.groupby(["variant", "layer"])] if len(sub_) else []
        return [g for g in gs if np.isfinite(g).sum() >= 2], len(gs)

    def s5a_text(when, used, total):
        left = f" ({total - used} with fewer than 2 seeds at nu >= {c['nu_min']:g} left out)" if total > used else ""
        return (f"Uncentered inputs (no BN, no centering, nu >= {c['nu_min']:g}) give outlier eigenvalues matching "
                f"K-FAC's prediction: the top {nc} eigenvalues of the GGN blocks of layers {', '.join(layers)} equal "
                f"nu*lambda_i(S) within a factor 1+{tol:g}, {when} (geometric mean over seeds, pooled over "
                f"{used} {strata}{left}; {setup}; curvature on a fixed {cfg['curvature']['n_samples']}-sample batch in "
                "float64)")

    groups, total = s5a_groups(unc_none(rt[rt.step == trained]) if trained is not None else rt.iloc[0:0])
    text = s5a_text(f"at a trained point (step {trained}, the last curvature probe; at init, where K-FAC's "
                    "factorization is nearly exact, the match is the check S5.a[init])", len(groups), total)
    if groups:
        est = mean_ci(groups, ci=ci, log=True)
        rows.append(claim_from("S5.a", text, LECTURE, ratio_metric, est, kind="headline", within=band))
    else:
        rows.append(_nan_row("S5.a", text + " (no curvature probe after init reached nu_min)", LECTURE, ratio_metric,
                             f"in [{band[0]:g}, {band[1]:g}]", n_seeds))
    groups, total = s5a_groups(unc_none(init) if len(init) else init)
    text = s5a_text("at init (nearly exact there: a check of the probe and of the prediction, not the claim)",
                    len(groups), total)
    if groups:
        est = mean_ci(groups, ci=ci, log=True)
        rows.append(claim_from("S5.a[init]", text, LECTURE, ratio_metric, est, kind="check", within=band))
    else:
        rows.append(_nan_row("S5.a[init]", text + " (no run reached nu_min)", LECTURE, ratio_metric,
                             f"in [{band[0]:g}, {band[1]:g}]", n_seeds, kind="check"))
    for step in steps[:1] + steps[-1:] if len(steps) > 1 else steps:
        when = "at init" if step == 0 else f"at step {step}"
        for layer in layers:
            lname = _layer_name(layer, n_layers)
            s_ = unc_none(rt[(rt.step == step) & (rt.layer == layer)])
            for cond, g in s_.groupby("condition"):
                est = mean_ci([g.ratio.to_numpy()], ci=ci, log=True)
                rows.append(claim_from(f"S5.a[{lname}, {cond}, {when}]", f"{cond}, no BN: measured / predicted top-{nc} "
                                       f"eigenvalues of the {lname} GGN block {when} (nu = {g.nu.mean():.1f})", LECTURE,
                                       ratio_metric, est, within=band))
            if step == 0 and "overlap" in s_ and len(s_):
                est = mean_ci([g.overlap.to_numpy() for _, g in s_.groupby("variant")], ci=ci)
                rows.append(claim_from(f"S5.a[eigvec, {lname}]", f"The top-{nc} GGN eigenvectors of the {lname} block "
                                       f"lie in m_bar (x) R^M (mean squared overlap >= {c['overlap_min']:g}), at init, "
                                       "no BN, nu >= nu_min", LECTURE, "mean ||U m_bar||^2 / (||m_bar||^2 ||U||^2)", est,
                                       above=c["overlap_min"]))
            if step == 0:
                sl = growth_slopes(rt[(rt.step == 0) & (rt.layer == layer) & (rt.norm == "none")], c["nu_min"])
                if sl:
                    est = mean_ci(sl, ci=ci)
                    rows.append(claim_from(f"S5.a[growth, {lname}]", f"Across shifts (no BN, nu >= {c['nu_min']:g}), "
                                           f"lambda_1 of the {lname} GGN block grows as the prediction nu*lambda_1(S) "
                                           "does: log-log slope near 1, at init", LECTURE,
                                           "slope of log lambda_1(G_ll) on log nu*lambda_1(S)", est, within=band))

    # S5.b: explicit centering removes the outliers ---------------------------------------------------
    pairs = []  # (uncentered label, centered label) for the conditions that have a centered twin
    for cond in cfg["conditions"]:
        if cond.get("center", False):
            act, shift = cond["act"], float(cond.get("shift", 0.0))
            pairs.append((cond_label(act, shift, False), cond_label(act, shift, True)))
    red_groups, red_labels = [], []
    for unc, cen in pairs:
        for layer in layers:
            base = init[(init.norm == "none") & (init.layer == layer)]
            a, b = _paired(base, "ggn1", base.condition == unc, base.condition == cen)
            if len(a) == 0:
                continue
            red_groups.append(a / b)
            red_labels.append((unc, layer))
            lname = _layer_name(layer, n_layers)
            nus = _paired(base, "nu", base.condition == unc, base.condition == cen)
            rows.append(claim_from(f"S5.b[{lname}, {unc}]", f"Centering the activations of {unc} (no BN) divides lambda_1 "
                                   f"of the {lname} GGN block by >= {c['min_reduction']:g} at init (nu: "
                                   f"{nus[0].mean():.1f} -> {nus[1].mean():.1f}; same initial weights)", LECTURE,
                                   "lambda_1(uncentered) / lambda_1(centered)", mean_ci([a / b], ci=ci, log=True),
                                   above=c["min_reduction"]))
    text = (f"Explicit centering of the hidden activations removes the outliers: lambda_1 of the GGN blocks of layers "
            f"{', '.join(layers)} shrinks by a factor >= {c['min_reduction']:g} at init (per-seed ratios, same initial "
            f"weights; geometric mean pooled over {len(red_groups)} condition x layer strata: "
            f"{', '.join(sorted({u for u, _ in red_labels}))}; {setup})")
    metric = "lambda_1(uncentered) / lambda_1(centered)"
    if red_groups:
        rows.append(claim_from("S5.b", text, LECTURE, metric, mean_ci(red_groups, ci=ci, log=True), kind="headline",
                               above=c["min_reduction"]))
    else:
        rows.append(_nan_row("S5.b", text + " (no centered twin measured)", LECTURE, metric,
                             f"> {c['min_reduction']:g}", n_seeds))

    # S5.c: BN before the next nonlinearity makes the shift harmless ---------------------------------
    runs = speed_table(metrics, summary, cfg)
    ic = cfg["invariance"]
    inv_setup = (f"a -> {ic['scale']:g} a + m (m ~ {ic['shift_mean']:g} + {ic['shift_std']:g} N(0,1) per unit) after "
                 f"hidden layer {ic['layer']} of a {ic['depth']}-hidden-layer width-{ic['width']} {ic['act']} MLP with BN "
                 f"before each nonlinearity, {ic['steps']} SGD steps (lr {ic['lr']:g}, momentum {ic['momentum']:g}) on "
                 f"{cfg['dataset']}, {ic['dtype']}")
    text = (f"With BN before the next nonlinearity, shifting and scaling the previous activations ({inv_setup}; BN eps "
            f"scaled by s^2) gives the same trajectory: max |d logits| on a fixed probe batch <= {c['invariance_tol']:g} "
            "(an identity in real arithmetic: fails if BN follows the nonlinearity or epsilon is not scaled)")
    metric = "max |logits - logits_base| over the trajectory"
    mx = {}
    if "invariance" in extra:
        inv = pd.read_parquet(extra["invariance"])
        mx = inv[inv.metric.isin(["loss_gap", "logit_gap"])].groupby(["run", "metric"]).value.max()
        scale = inv[(inv.run == "base") & (inv.metric == "logit_scale")].value.max()
    if ("shift_scale", "logit_gap") in mx:
        v = float(mx[("shift_scale", "logit_gap")])
        rows.append(claim_from("S5.c", text + f" (logits up to {scale:.3g}; max |d loss| "
                               f"{mx[('shift_scale', 'loss_gap')]:.3g})", LECTURE_BN, metric, exact(v, 1),
                               kind="identity", below=c["invariance_tol"]))
        for run, ctext, side in [
            ("shift_scale_eps_fixed", f"Control: the same transform with BN eps left unscaled departs by epsilon's effect "
             f"only: max |d logits| <= {c['eps_tol']:g}", dict(below=c["eps_tol"])),
            ("per_unit", f"Control: a per-unit rescaling a -> D a (D in [1/{ic['per_unit_range']:g}, "
             f"{ic['per_unit_range']:g}]) is no invariance: max |d logits| >= {c['control_min']:g}",
             dict(above=c["control_min"])),
            ("per_unit_matched", "Control: per-unit rescaling with the next weights set to W D^-1 (same initial "
             f"function) still departs: max |d logits| >= {c['control_min']:g}", dict(above=c["control_min"])),
        ]:
            if (run, "logit_gap") in mx:
                rows.append(claim_from(f"S5.c[{run}]", ctext, LECTURE_BN, metric, exact(float(mx[(run, "logit_gap")]), 1),
                                       kind="check", **side))
    else:
        rows.append(_nan_row("S5.c", text + " (invariance job missing)", LECTURE_BN, metric,
                             f"< {c['invariance_tol']:g}", 0, kind="identity"))
    for layer in layers:
        if int(layer[1:]) >= n_layers - 1:
            continue  # the read-out is not followed by BN
        sub = init[(init.norm == "bn_pre") & (init.layer == layer) & ~init.center & (init.nu >= c["nu_min"])]
        if sub.empty:
            continue
        lname = _layer_name(layer, n_layers)
        sl = growth_slopes(sub, c["nu_min"])
        if sl:
            rows.append(claim_from(f"S5.c[curvature, {lname}]", f"With BN after the {lname} (before the nonlinearity), "
                                   "its top GGN eigenvalue does not follow the outlier K-FAC predicts from its uncentered "
                                   f"input: across shifts (nu >= {c['nu_min']:g}) the log-log slope on nu*lambda_1(S) is "
                                   f"below {c['growth_max']:g}, at init", LECTURE_BN,
                                   "slope of log lambda_1(G_ll) on log nu*lambda_1(S)", mean_ci(sl, ci=ci),
                                   below=c["growth_max"]))
        far = sub[sub.condition == sub.groupby("condition").nu.mean().idxmax()]
        cond = far.condition.iloc[0]
        rows.append(claim_from(f"S5.c[curvature, {lname}, {cond}]", f"With BN after the {lname}, {cond} (nu = "
                               f"{far.nu.mean():.1f}): measured / predicted top-{nc} eigenvalues < 1/(1+{tol:g}) at init "
                               "(the predicted outliers are absent)", LECTURE_BN, ratio_metric,
                               mean_ci([far.ratio.to_numpy()], ci=ci, log=True), below=1 / (1 + tol)))
    tanh_shifts = sorted(float(x.get("shift", 0.0)) for x in cfg["conditions"] if x["act"] == "tanh" and not x.get("center"))
    if {"none", "bn_pre"} <= set(cfg["norms"]) and len(tanh_shifts) >= 2:
        lo_s, hi_s = tanh_shifts[0], tanh_shifts[-1]
        hi_c, lo_c = cond_label("tanh", hi_s, False), cond_label("tanh", lo_s, False)
        n_hi, n_lo, b_hi, b_lo = _paired(runs, "speed_loss", (runs.norm == "none") & (runs.condition == hi_c),
                                         (runs.norm == "none") & (runs.condition == lo_c),
                                         (runs.norm == "bn_pre") & (runs.condition == hi_c),
                                         (runs.norm == "bn_pre") & (runs.condition == lo_c))
        if len(n_hi):
            rows.append(claim_from("S5.c[speed]", f"The shift s={hi_s:g} (vs s={lo_s:g}) raises the train loss of tanh "
                                   f"nets at step {runs.speed_step.iloc[0]} more without BN than with BN before the "
                                   f"nonlinearity (per-seed differences; smallest effect of interest "
                                   f"{c['shift_cost_min']:g} in train loss)", LECTURE_BN,
                                   "[loss(s_max) - loss(s_min)]_none - [same]_bn_pre",
                                   mean_ci([n_hi - n_lo], [b_hi - b_lo], ci=ci, paired=True), above=0.0,
                                   sesoi=c["shift_cost_min"]))

    # S5.d: the batch-centering gradient identity ------------------------------------------------------
    text = ("With batch centering, dL/dW = S_bar^T A~ (centered activations): max relative error over layers and "
            f"batches <= {c['identity_tol']:g} (float64 autograd on a {cfg['centering_check']['depth']}-hidden-layer "
            f"width-{cfg['centering_check']['width']} {cfg['centering_check']['act']} MLP with shift "
            f"{cfg['centering_check']['shift']:g}, {cfg['dataset']} batches; fails if the statistics path is cut)")
    metric = "max ||dW - S_bar^T A~|| / ||dW||"
    if "centering" in extra:
        cen = pd.DataFrame(json.loads(open(extra["centering"]).read())["rows"])
        n = int(cen.batch.nunique())
        rows.append(claim_from("S5.d", text, LECTURE_BC, metric, exact(float(cen.err_centered.max()), n),
                               kind="identity", below=c["identity_tol"]))
        rows.append(claim_from("S5.d[direct path]", "Check: with the batch mean detached (direct path only), dL/dW = "
                               f"S_bar^T A (uncentered) to relative error <= {c['identity_tol']:g}", LECTURE_BC,
                               "max ||dW_detached - S_bar^T A|| / ||dW_detached||",
                               exact(float(cen.err_detached_plain.max()), n), kind="check", below=c["identity_tol"]))
        big = cen[cen.m_norm2 >= 1.0]
        v = float(big.err_plain.min()) if len(big) else math.nan
        row = claim_from("S5.d[statistics path]", "Check: the statistics path is what centers A: for uncentered inputs "
                         f"(||m||^2 >= 1), the full gradient differs from S_bar^T A by >= {c['control_min']:g} "
                         "(relative)", LECTURE_BC, "min ||dW - S_bar^T A|| / ||dW||", exact(v, n), kind="check",
                         above=c["control_min"])
        rows.append(row)
    else:
        rows.append(_nan_row("S5.d", text + " (centering job missing)", LECTURE_BC, metric, f"< {c['identity_tol']:g}", 0,
                             kind="identity"))

    # S5.e: does centering without BN recover BN's speed advantage? ---------------------------------
    step = int(runs.speed_step.iloc[0]) if len(runs) else cfg["train"]["steps"]
    num, den, labels = [], [], []
    for unc, cen in pairs:
        u, cc, b = _paired(runs, "speed_loss", (runs.norm == "none") & (runs.condition == unc),
                           (runs.norm == "none") & (runs.condition == cen),
                           (runs.norm == "bn_pre") & (runs.condition == unc))
        if len(u) == 0:
            continue
        num.append(u - cc)
        den.append(u - b)
        labels.append(unc)
    metric = "(L_uncentered - L_centered) / (L_uncentered - L_BN), train loss"
    thr = c["share_min"]
    text = (f"The ICS conditioning hypothesis, tested directly: explicit centering without BN (which removes the outlier "
            f"eigenvalues, S5.b) recovers more than {thr:g} of BN's training-speed advantage over the uncentered net; "
            f"speed = train loss at step {step}; share pooled over {', '.join(labels) or 'no conditions'} (ratio of "
            f"stratified means of per-seed differences, seeds paired across the three variants; Fieller interval; "
            f"{setup})")
    rows.append(share_claim("S5.e", text, LECTURE_Q, metric, num, den, thr, ci, "headline"))
    for unc, a, b in zip(labels, num, den):
        rows.append(share_claim(f"S5.e[{unc}]", f"{unc}: share of BN's train-loss advantage at step {step} that "
                                "centering without BN recovers", LECTURE_Q, metric, [a], [b], thr, ci, "cell"))
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
    setup = (f"{cfg['dataset']}, MLP {cfg['model']['depth']}x{cfg['model']['width']}, SGD lr {cfg['lr']:g}, "
             f"{cfg['train']['steps']} steps, {summary.seed.nunique() if len(summary) else 0} seeds; no paper ran this")
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
                 "circles tanh, squares logistic; green band: tolerance)\n" + setup, fontsize=9, y=1.03)
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
        fig.suptitle(f"S5.b: top eigenvalues at init with and without explicit centering (no BN)\n{setup}", fontsize=9, y=1.03)
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
                        kind="line", errorbar=t_band(0.95), height=3.0, aspect=1.2)
        g.set(yscale="log")
        for ax in g.axes.flat:
            tidy_log(ax, "y")
        g.set_axis_labels("step", "train loss")
        g.figure.suptitle(f"Training curves (mean, 95% t interval over seeds; {setup})", y=1.03)
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
        g.figure.suptitle("Top curvature eigenvalue along training (fixed curvature batch; median and range over seeds)\n"
                          + setup, y=1.05)
        save(g.figure, "curvature_over_training")

    # 6. S5.e: how much of BN's speed advantage does centering without BN recover?
    pairs = [(cond_label(x["act"], float(x.get("shift", 0.0)), False), cond_label(x["act"], float(x.get("shift", 0.0)), True))
             for x in cfg["conditions"] if x.get("center")]
    tr = metrics[metrics.metric == "train_loss"]
    step = cfg["claims"].get("speed_step") or cfg["train"]["steps"]
    fig, axes = plt.subplots(1, len(pairs) + 1, figsize=(3.4 * (len(pairs) + 1), 3.2), squeeze=False)
    axes = axes[0]
    styles = [("none", False, "no BN, uncentered", "tab:red"), ("none", True, "no BN, centered", "tab:green"),
              ("bn_pre", False, "BN before each nonlinearity", "tab:blue")]
    for ax, (unc, cen) in zip(axes, pairs):
        for norm, centered, label, colr in styles:
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
    ax = axes[-1]
    rows = claims[claims.claim_id.str.startswith("S5.e")]
    rows = pd.concat([rows[rows.kind == "headline"], rows[rows.kind != "headline"]])
    colors = {"holds": "tab:green", "fails": "tab:red", "inconclusive": "tab:grey"}
    for i, r in enumerate(rows.itertuples()):
        head = r.kind == "headline"
        if np.isfinite(r.value):
            lo = r.ci_low if np.isfinite(r.ci_low) else r.value - 10
            hi = r.ci_high if np.isfinite(r.ci_high) else r.value + 10
            ax.errorbar(r.value, i, xerr=[[r.value - lo], [hi - r.value]], fmt="D" if head else "o",
                        color=colors.get(r.verdict, "k"), ms=7 if head else 4, elinewidth=2 if head else 1)
    ax.axvline(0, color="k", lw=0.8)
    ax.axvline(1, color="k", lw=0.8, ls="--")
    ax.axvline(cfg["claims"]["share_min"], color="tab:purple", ls=":", lw=1.2)
    ax.set_xlim(-0.5, 1.5)
    ax.set_yticks(range(len(rows)), ["pooled" if r.kind == "headline" else r.claim_id[5:-1] for r in rows.itertuples()],
                  fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(f"share of BN's advantage recovered (step {step})", fontsize=8)
    ax.set_title("(L_unc - L_cen) / (L_unc - L_BN), Fieller interval at the verdict's level\n0: none, 1: all; "
                 "dotted: threshold", fontsize=8)
    fig.suptitle(f"S5.e: does explicit centering without BN recover BN's training speed? ({cfg['dataset']}, "
                 f"{cfg['model']['depth']}x{cfg['model']['width']} MLP, SGD lr {cfg['lr']:g}; mean, 95% t interval over seeds)",
                 fontsize=9, y=1.03)
    fig.tight_layout()
    save(fig, "bn_advantage_share")
    return written


def headlines(cfg: dict) -> dict:
    """``HEADLINES`` with the departures of the setup ``cfg`` (the study's resolved section) describes."""
    from ..setup_text import headlines_for

    return headlines_for(HEADLINES, cfg, _setup(cfg))
