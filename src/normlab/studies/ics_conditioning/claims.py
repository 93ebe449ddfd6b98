"""S5's tables (curvature, K-FAC ratios, training speed) and claims S5.a-e.

Light at import: numpy, pandas and normlab.stats are imported inside the functions (the Snakefile imports
the study package at parse time)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from .variants import cond_label, needs, s5e_variants, sweep_lrs, sweep_step
from .variants import pairs as center_pairs

LECTURE = "Lecture 5 (Grosse), 'ICS conditioning hypothesis'; K-FAC (Martens & Grosse 2015)"
LECTURE_BN = "Lecture 5 (Grosse), 'A Wrinkle': BN in the next layer before its nonlinearity"
LECTURE_BC = "Lecture 5 (Grosse), batch centering: W_bar = S_bar^T A~ (statistics path)"
LECTURE_Q = "Lecture 5 (Grosse): 'the ICS conditioning hypothesis could still be correct ... good class project'"
RATIO_METRIC = "geo-mean lambda_i(G_ll) / (nu lambda_i(S)), top n_compare"
SLOPE_METRIC = "slope of log lambda_1(G_ll) on log nu*lambda_1(S)"


# tables ------------------------------------------------------------------------------------------

def curvature_tables(metrics):
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


def ratio_table(eig, stats, n_compare: int):
    """Per (variant, seed, step, layer): geometric mean of ggn_j / kfac_pred_j (j <= n_compare),
    lambda_1 of the GGN block, the prediction, nu and the mean eigenvector overlap."""
    import numpy as np
    import pandas as pd

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


def growth_slopes(sub, nu_min: float) -> list:
    """Per activation with >= 2 uncentered conditions at nu >= nu_min: per-seed least-squares slopes of
    log lambda_1(G) on log nu*lambda_1(S) across those conditions (one array per activation)."""
    import numpy as np

    sub = sub[~sub.center.astype(bool) & (sub.nu >= nu_min)].dropna(subset=["ggn1", "pred1"])
    out = []
    for _, ga in sub.groupby("act"):
        if ga.condition.nunique() < 2:
            continue
        sl = [np.polyfit(np.log(g.pred1), np.log(g.ggn1), 1)[0] for _, g in ga.groupby("seed") if g.condition.nunique() >= 2]
        if sl:
            out.append(np.array(sl))
    return out


def layer_name(layer: str, n_layers: int) -> str:
    i = int(layer[1:])
    return f"read-out L{i}" if i == n_layers - 1 else f"hidden L{i}"


def layers_of(rt) -> list[str]:
    return sorted(rt.layer.unique(), key=lambda s: int(s[1:])) if len(rt) else []


def split_sweep(metrics, summary):
    """(main metrics, main summary, sweep metrics, sweep summary): the sweep runs carry the key ``sweep_lr``."""
    if "sweep_lr" not in summary:
        return metrics, summary, metrics.iloc[0:0], summary.iloc[0:0]
    sm, mm = summary.sweep_lr.isna(), metrics.sweep_lr.isna()
    return metrics[mm], summary[sm], metrics[~mm], summary[~sm]


def speed_table(metrics, summary, cfg: dict, step: int | None = None, metric: str = "train_loss"):
    """One row per run: ``speed_loss`` = ``metric`` (train loss) at the last evaluation at or before ``step``
    (default ``claims.speed_step``, else the end of training); chance level log(10) for a run that diverged
    before it."""
    import numpy as np
    import pandas as pd

    step = step or cfg["claims"].get("speed_step") or cfg["train"]["steps"]
    runs = summary.set_index(["variant", "seed"]).copy()
    tl = metrics[(metrics.metric == metric) & (metrics.step <= step)].sort_values("step")
    last = tl.groupby(["variant", "seed"]).value.last()
    loss = last.reindex(runs.index)
    div = runs.get("diverged_step", pd.Series(np.nan, index=runs.index)).astype(float)
    bad = (runs.status != "ok") & (div.isna() | (div <= step))
    runs["speed_loss"] = loss.where(~bad & np.isfinite(loss), np.log(10)).fillna(np.log(10))
    runs["speed_step"] = step
    return runs.reset_index()


def paired(df, col: str, *selectors) -> list:
    """Per selector (a boolean mask), the values of ``col`` indexed by seed, restricted to the common seeds."""
    series = [df[m].set_index("seed")[col] for m in selectors]
    common = series[0].index
    for s in series[1:]:
        common = common.intersection(s.index)
    common = common.sort_values()
    return [s.loc[common].to_numpy(float) for s in series]


# the share of BN's advantage (S5.e) ---------------------------------------------------------------

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
    import numpy as np
    from scipy import stats as st

    from ...stats import mean_ci

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


def nan_row(cid, text, source, metric, threshold, n, kind="headline"):
    from ...stats import claim

    return claim(cid, text, source, metric, math.nan, math.nan, math.nan, threshold, "inconclusive", n, kind=kind)


def share_parts(num_groups, den_groups, thr, ci) -> list:
    """The parts of 'share > thr': the contrast num - thr * den above 0 (a threshold claim: it fails when the
    contrast is below 0) and BN's advantage den > 0 as a gate (it must be significant for any verdict)."""
    import numpy as np

    from ...stats import make_part, mean_ci

    con = mean_ci([np.asarray(a, float) - thr * np.asarray(b, float) for a, b in zip(num_groups, den_groups)], ci=ci)
    return [make_part(con, above=0.0, label=f"centering's gain - {thr:g} x BN's, (L_U - L_C) - {thr:g} (L_U - L_B)"),
            make_part(mean_ci(den_groups, ci=ci), above=0.0, label="BN's gain L_U - L_B", gate=True)]


def share_claim(cid, text, source, metric, num_groups, den_groups, thr, ci, kind, labels=None):
    """A claim 'share > thr' from ``share_parts``. The interval shown is Fieller's (``share_ci``) at the level the
    verdict was made at. ``labels`` (one per group): the groups are conditions, judged as strata too (each a
    cell ``<cid>[<label>]``; opposite verdicts make the claim mixed)."""
    import numpy as np

    from ...stats import claim_all

    s = share_ci(num_groups, den_groups, ci)
    if not num_groups or not np.isfinite(s["value"]):
        return nan_row(cid, text + " (no runs to compare)", source, metric, f"> {thr:g}", s["n"], kind)
    parts = share_parts(num_groups, den_groups, thr, ci)
    den = parts[1].est

    def fieller(level):
        f = share_ci(num_groups, den_groups, level)
        return f["value"], f["low"], f["high"]

    def stratum(lab, a, b):
        def fieller_one(level):
            f = share_ci([a], [b], level)
            return f["value"], f["low"], f["high"]

        # the stratum's threshold is the share's, as the pooled row's (its first part is the contrast, "> 0")
        return {"parts": share_parts([a], [b], thr, ci), "display": fieller_one, "metric": metric,
                "claim": f"{text} (condition {lab})", "threshold": f"> {thr:g}", "fail_margin": thr}

    strata = {lab: stratum(lab, a, b) for lab, a, b in zip(labels, num_groups, den_groups)} \
        if labels and len(labels) > 1 else None
    row = claim_all(cid, text + f" (BN's advantage {den.value:.3g} [{den.low:.3g}, {den.high:.3g}] in train loss)",
                    source, metric, parts, kind=kind, display=fieller, strata=strata, stratum="condition")
    row.update(threshold=f"> {thr:g}", fail_margin=thr)
    return row


# the analysis --------------------------------------------------------------------------------------

def setup_text(cfg: dict) -> str:
    m, o, t = cfg["model"], cfg["optimizer"], cfg["train"]
    mom = f" momentum {o['momentum']:g}" if o.get("momentum") else ""
    from ..setup_text import IMAGE_DATASETS

    flat = (" on the flattened images (the curvature probes and checks are written for an MLP's per-unit "
            f"activations), {cfg['seeds']} seeds") if cfg["dataset"] in IMAGE_DATASETS else ""
    return (f"{cfg['dataset']}, shifted MLP {m['depth']} hidden x {m['width']}{flat}, {o['name'].upper()}{mom} lr "
            f"{cfg['lr']:g}, {t['steps']} steps of batch {t['batch_size']}; no paper ran this (the lecture's class project)")


@dataclass
class Ctx:
    """What every claim of the analysis reads: the config, the tables and the setup text."""

    cfg: dict
    rt: object  # ratio_table, center as bool
    runs: object  # speed_table of the main runs
    extra: dict
    n_seeds: int
    setup: str
    metrics: object  # every run, the sweep's too
    summary: object

    @property
    def c(self) -> dict:
        return self.cfg["claims"]

    @property
    def ci(self) -> float:
        return self.c["ci"]

    @property
    def n_layers(self) -> int:
        return self.cfg["model"]["depth"] + 1

    @property
    def steps(self) -> list:
        return sorted(self.rt.step.unique()) if len(self.rt) else []

    @property
    def layers(self) -> list[str]:
        return layers_of(self.rt)

    @property
    def init(self):
        return self.rt[self.rt.step == 0] if len(self.rt) else self.rt

    @property
    def band(self) -> tuple[float, float]:
        return 1 / (1 + self.c["tol"]), 1 + self.c["tol"]

    def unc_none(self, df):
        """Uncentered inputs without BN far from centered (nu >= nu_min): where the prediction applies."""
        return df[(df.norm == "none") & ~df.center & (df.nu >= self.c["nu_min"])]


def context(metrics, summary, cfg, extra) -> Ctx:
    mm, ms, _, _ = split_sweep(metrics, summary)
    eig, stats = curvature_tables(mm)
    rt = ratio_table(eig, stats, cfg["claims"]["n_compare"])
    if len(rt):
        rt["center"] = rt.center.astype(bool)
    n_seeds = int(ms.groupby("variant").seed.nunique().min()) if len(ms) else 0
    return Ctx(cfg, rt, speed_table(mm, ms, cfg), extra or {}, n_seeds, setup_text(cfg), metrics, summary)


def analyze(metrics, summary, cfg, extra=None):
    import pandas as pd

    x = context(metrics, summary, cfg, extra)
    rows = [*s5a_claims(x), *s5a_cells(x), *s5b_claims(x), *s5c_claims(x), *s5c_cells(x), *s5d_claims(x),
            *s5e_claims(x)]
    return pd.DataFrame(rows)


# S5.a: the prediction, for uncentered inputs without BN -------------------------------------------

def _s5a_groups(sub):
    """Per (variant, layer) stratum, the per-seed ratios; strata with fewer than 2 seeds (a seed whose nu fell
    below nu_min in training) are left out, so the pooled interval exists."""
    import numpy as np

    gs = [g.ratio.to_numpy() for _, g in sub.groupby(["variant", "layer"])] if len(sub) else []
    return [g for g in gs if np.isfinite(g).sum() >= 2], len(gs)


def _s5a_text(x: Ctx, when: str, used: int, total: int) -> str:
    c = x.c
    left = f" ({total - used} with fewer than 2 seeds at nu >= {c['nu_min']:g} left out)" if total > used else ""
    return (f"Uncentered inputs (no BN, no centering, nu >= {c['nu_min']:g}) give outlier eigenvalues matching "
            f"K-FAC's prediction: the top {c['n_compare']} eigenvalues of the GGN blocks of layers "
            f"{', '.join(x.layers)} equal nu*lambda_i(S) within a factor 1+{c['tol']:g}, {when} (geometric mean over "
            f"seeds, pooled over {used} variant x layer strata{left}; {x.setup}; curvature on a fixed "
            f"{x.cfg['curvature']['n_samples']}-sample batch in float64)")


def trained_step(x: Ctx):
    """The trained point: the last curvature probe at or before claims.trained_step (default: the last probe)."""
    want = x.c.get("trained_step")
    later = [s for s in x.steps if s > 0 and (want is None or s <= want)]
    return later[-1] if later else None


def s5a_claims(x: Ctx) -> list[dict]:
    from ...stats import claim_from, mean_ci, not_run

    rows, band, rt = [], x.band, x.rt
    thr = f"in [{band[0]:g}, {band[1]:g}]"
    trained = trained_step(x)
    if needs(x.cfg)["S5.a"]:
        text = _s5a_text(x, "at a trained point (the last curvature probe) and at init (the check S5.a[init])", 0, 0)
        return [not_run("S5.a", text, LECTURE, needs(x.cfg)["S5.a"], metric=RATIO_METRIC),
                not_run("S5.a[init]", text, LECTURE, needs(x.cfg)["S5.a"], kind="check", metric=RATIO_METRIC)]
    groups, total = _s5a_groups(x.unc_none(rt[rt.step == trained]) if trained is not None else rt.iloc[0:0])
    text = _s5a_text(x, f"at a trained point (step {trained}, the last curvature probe; at init, where K-FAC's "
                     "factorization is nearly exact, the match is the check S5.a[init])", len(groups), total)
    if groups:
        rows.append(claim_from("S5.a", text, LECTURE, RATIO_METRIC, mean_ci(groups, ci=x.ci, log=True),
                               kind="headline", within=band))
    else:
        rows.append(nan_row("S5.a", text + " (no curvature probe after init reached nu_min)", LECTURE, RATIO_METRIC,
                            thr, x.n_seeds))
    groups, total = _s5a_groups(x.unc_none(x.init) if len(x.init) else x.init)
    text = _s5a_text(x, "at init (nearly exact there: a check of the probe and of the prediction, not the claim)",
                     len(groups), total)
    if groups:
        rows.append(claim_from("S5.a[init]", text, LECTURE, RATIO_METRIC, mean_ci(groups, ci=x.ci, log=True),
                               kind="check", within=band))
    else:
        rows.append(nan_row("S5.a[init]", text + " (no run reached nu_min)", LECTURE, RATIO_METRIC, thr, x.n_seeds,
                            kind="check"))
    return rows


def s5a_cells(x: Ctx) -> list[dict]:
    """Per condition and layer at init and at the last probe; eigenvector overlap and growth with nu at init."""
    from ...stats import claim_from, mean_ci

    rows, c, rt, nc = [], x.c, x.rt, x.c["n_compare"]
    steps = x.steps
    for step in steps[:1] + steps[-1:] if len(steps) > 1 else steps:
        when = "at init" if step == 0 else f"at step {step}"
        for layer in x.layers:
            lname = layer_name(layer, x.n_layers)
            s_ = x.unc_none(rt[(rt.step == step) & (rt.layer == layer)])
            for cond, g in s_.groupby("condition"):
                rows.append(claim_from(f"S5.a[{lname}, {cond}, {when}]", f"{cond}, no BN: measured / predicted top-{nc} "
                                       f"eigenvalues of the {lname} GGN block {when} (nu = {g.nu.mean():.1f})", LECTURE,
                                       RATIO_METRIC, mean_ci([g.ratio.to_numpy()], ci=x.ci, log=True), within=x.band))
            if step == 0 and "overlap" in s_ and len(s_):
                est = mean_ci([g.overlap.to_numpy() for _, g in s_.groupby("variant")], ci=x.ci)
                rows.append(claim_from(f"S5.a[eigvec, {lname}]", f"The top-{nc} GGN eigenvectors of the {lname} block "
                                       f"lie in m_bar (x) R^M (mean squared overlap >= {c['overlap_min']:g}), at init, "
                                       "no BN, nu >= nu_min", LECTURE, "mean ||U m_bar||^2 / (||m_bar||^2 ||U||^2)", est,
                                       above=c["overlap_min"]))
            if step == 0:
                sl = growth_slopes(rt[(rt.step == 0) & (rt.layer == layer) & (rt.norm == "none")], c["nu_min"])
                if sl:
                    rows.append(claim_from(f"S5.a[growth, {lname}]", f"Across shifts (no BN, nu >= {c['nu_min']:g}), "
                                           f"lambda_1 of the {lname} GGN block grows as the prediction nu*lambda_1(S) "
                                           "does: log-log slope near 1, at init", LECTURE, SLOPE_METRIC,
                                           mean_ci(sl, ci=x.ci), within=x.band))
    return rows


# S5.b: explicit centering removes the outliers -----------------------------------------------------

def s5b_claims(x: Ctx) -> list[dict]:
    from ...stats import claim_from, mean_ci

    c, init, rows = x.c, x.init, []
    red_groups, red_labels = [], []
    for unc, cen in center_pairs(x.cfg):
        for layer in x.layers:
            base = init[(init.norm == "none") & (init.layer == layer)]
            a, b = paired(base, "ggn1", base.condition == unc, base.condition == cen)
            if len(a) == 0:
                continue
            red_groups.append(a / b)
            red_labels.append((unc, layer))
            lname = layer_name(layer, x.n_layers)
            nus = paired(base, "nu", base.condition == unc, base.condition == cen)
            rows.append(claim_from(f"S5.b[{lname}, {unc}]", f"Centering the activations of {unc} (no BN) divides lambda_1 "
                                   f"of the {lname} GGN block by >= {c['min_reduction']:g} at init (nu: "
                                   f"{nus[0].mean():.1f} -> {nus[1].mean():.1f}; same initial weights)", LECTURE,
                                   "lambda_1(uncentered) / lambda_1(centered)", mean_ci([a / b], ci=x.ci, log=True),
                                   above=c["min_reduction"]))
    text = (f"Explicit centering of the hidden activations removes the outliers: lambda_1 of the GGN blocks of layers "
            f"{', '.join(x.layers)} shrinks by a factor >= {c['min_reduction']:g} at init (per-seed ratios, same initial "
            f"weights; geometric mean pooled over {len(red_groups)} condition x layer strata: "
            f"{', '.join(sorted({u for u, _ in red_labels}))}; {x.setup})")
    metric = "lambda_1(uncentered) / lambda_1(centered)"
    if needs(x.cfg)["S5.b"]:
        from ...stats import not_run

        head = not_run("S5.b", text, LECTURE, needs(x.cfg)["S5.b"], metric=metric)
    elif red_groups:
        head = claim_from("S5.b", text, LECTURE, metric, mean_ci(red_groups, ci=x.ci, log=True), kind="headline",
                          above=c["min_reduction"])
    else:
        head = nan_row("S5.b", text + " (no centered twin measured)", LECTURE, metric, f"> {c['min_reduction']:g}",
                       x.n_seeds)
    return [*rows, head]


# S5.c: BN before the next nonlinearity makes the shift harmless ------------------------------------

_CONTROLS = [("shift_scale_eps_fixed", "eps_tol", "below"), ("per_unit", "control_min", "above"),
             ("per_unit_matched", "control_min", "above")]


def _control_text(run: str, c: dict, ic: dict) -> str:
    if run == "shift_scale_eps_fixed":
        return (f"Control: the same transform with BN eps left unscaled departs by epsilon's effect only: max |d logits| "
                f"<= {c['eps_tol']:g}")
    if run == "per_unit":
        return (f"Control: a per-unit rescaling a -> D a (D in [1/{ic['per_unit_range']:g}, {ic['per_unit_range']:g}]) "
                f"is no invariance: max |d logits| >= {c['control_min']:g}")
    return ("Control: per-unit rescaling with the next weights set to W D^-1 (same initial function) still departs: "
            f"max |d logits| >= {c['control_min']:g}")


def s5c_claims(x: Ctx) -> list[dict]:
    """The identity (the float64 invariance trajectory) and its controls."""
    import pandas as pd

    from ...stats import claim_from, exact

    c, ic = x.c, x.cfg["invariance"]
    inv_setup = (f"a -> {ic['scale']:g} a + m (m ~ {ic['shift_mean']:g} + {ic['shift_std']:g} N(0,1) per unit) after "
                 f"hidden layer {ic['layer']} of a {ic['depth']}-hidden-layer width-{ic['width']} {ic['act']} MLP with BN "
                 f"before each nonlinearity, {ic['steps']} SGD steps (lr {ic['lr']:g}, momentum {ic['momentum']:g}) on "
                 f"{x.cfg['dataset']}, {ic['dtype']}")
    text = (f"With BN before the next nonlinearity, shifting and scaling the previous activations ({inv_setup}; BN eps "
            f"scaled by s^2) gives the same trajectory: max |d logits| on a fixed probe batch <= {c['invariance_tol']:g} "
            "(an identity in real arithmetic: fails if BN follows the nonlinearity or epsilon is not scaled)")
    metric = "max |logits - logits_base| over the trajectory"
    mx = {}
    if "invariance" in x.extra:
        inv = pd.read_parquet(x.extra["invariance"])
        mx = inv[inv.metric.isin(["loss_gap", "logit_gap"])].groupby(["run", "metric"]).value.max()
        scale = inv[(inv.run == "base") & (inv.metric == "logit_scale")].value.max()
    if ("shift_scale", "logit_gap") not in mx:
        return [nan_row("S5.c", text + " (invariance job missing)", LECTURE_BN, metric, f"< {c['invariance_tol']:g}", 0,
                        kind="identity")]
    v = float(mx[("shift_scale", "logit_gap")])
    rows = [claim_from("S5.c", text + f" (logits up to {scale:.3g}; max |d loss| {mx[('shift_scale', 'loss_gap')]:.3g})",
                       LECTURE_BN, metric, exact(v, 1), kind="identity", below=c["invariance_tol"])]
    for run, key, side in _CONTROLS:
        if (run, "logit_gap") in mx:
            rows.append(claim_from(f"S5.c[{run}]", _control_text(run, c, ic), LECTURE_BN, metric,
                                   exact(float(mx[(run, "logit_gap")]), 1), kind="check", **{side: c[key]}))
    return rows


def s5c_cells(x: Ctx) -> list[dict]:
    """Curvature of the BN-followed blocks at init, and the shift's training cost with and without BN."""
    from ...stats import claim_from, mean_ci

    c, init, rows, tol = x.c, x.init, [], x.c["tol"]
    for layer in x.layers:
        if int(layer[1:]) >= x.n_layers - 1:
            continue  # the read-out is not followed by BN
        sub = init[(init.norm == "bn_pre") & (init.layer == layer) & ~init.center & (init.nu >= c["nu_min"])]
        if sub.empty:
            continue
        lname = layer_name(layer, x.n_layers)
        sl = growth_slopes(sub, c["nu_min"])
        if sl:
            rows.append(claim_from(f"S5.c[curvature, {lname}]", f"With BN after the {lname} (before the nonlinearity), "
                                   "its top GGN eigenvalue does not follow the outlier K-FAC predicts from its uncentered "
                                   f"input: across shifts (nu >= {c['nu_min']:g}) the log-log slope on nu*lambda_1(S) is "
                                   f"below {c['growth_max']:g}, at init", LECTURE_BN, SLOPE_METRIC, mean_ci(sl, ci=x.ci),
                                   below=c["growth_max"]))
        far = sub[sub.condition == sub.groupby("condition").nu.mean().idxmax()]
        cond = far.condition.iloc[0]
        rows.append(claim_from(f"S5.c[curvature, {lname}, {cond}]", f"With BN after the {lname}, {cond} (nu = "
                               f"{far.nu.mean():.1f}): measured / predicted top-{c['n_compare']} eigenvalues < "
                               f"1/(1+{tol:g}) at init (the predicted outliers are absent)", LECTURE_BN, RATIO_METRIC,
                               mean_ci([far.ratio.to_numpy()], ci=x.ci, log=True), below=1 / (1 + tol)))
    return rows + s5c_speed(x)


def s5c_speed(x: Ctx) -> list[dict]:
    """S5.c[speed]: the largest tanh shift costs more train loss without BN than with it."""
    from ...stats import claim_from, mean_ci

    cfg, runs, c = x.cfg, x.runs, x.c
    tanh_shifts = sorted(float(k.get("shift", 0.0)) for k in cfg["conditions"] if k["act"] == "tanh" and not k.get("center"))
    if not ({"none", "bn_pre"} <= set(cfg["norms"]) and len(tanh_shifts) >= 2):
        return []
    lo_s, hi_s = tanh_shifts[0], tanh_shifts[-1]
    hi_c, lo_c = cond_label("tanh", hi_s, False), cond_label("tanh", lo_s, False)
    n_hi, n_lo, b_hi, b_lo = paired(runs, "speed_loss", (runs.norm == "none") & (runs.condition == hi_c),
                                    (runs.norm == "none") & (runs.condition == lo_c),
                                    (runs.norm == "bn_pre") & (runs.condition == hi_c),
                                    (runs.norm == "bn_pre") & (runs.condition == lo_c))
    if not len(n_hi):
        return []
    return [claim_from("S5.c[speed]", f"The shift s={hi_s:g} (vs s={lo_s:g}) raises the train loss of tanh nets at step "
                       f"{runs.speed_step.iloc[0]} more without BN than with BN before the nonlinearity (per-seed "
                       f"differences; smallest effect of interest {c['shift_cost_min']:g} in train loss)", LECTURE_BN,
                       "[loss(s_max) - loss(s_min)]_none - [same]_bn_pre",
                       mean_ci([n_hi - n_lo], [b_hi - b_lo], ci=x.ci, paired=True), above=0.0,
                       sesoi=c["shift_cost_min"])]


# S5.d: the batch-centering gradient identity -------------------------------------------------------

def s5d_claims(x: Ctx) -> list[dict]:
    import pandas as pd

    from ...stats import claim_from, exact

    c, cc = x.c, x.cfg["centering_check"]
    text = ("With batch centering, dL/dW = S_bar^T A~ (centered activations): max relative error over layers and "
            f"batches <= {c['identity_tol']:g} (float64 autograd on a {cc['depth']}-hidden-layer width-{cc['width']} "
            f"{cc['act']} MLP with shift {cc['shift']:g}, {x.cfg['dataset']} batches; fails if the statistics path is cut)")
    metric = "max ||dW - S_bar^T A~|| / ||dW||"
    if "centering" not in x.extra:
        return [nan_row("S5.d", text + " (centering job missing)", LECTURE_BC, metric, f"< {c['identity_tol']:g}", 0,
                        kind="identity")]
    with open(x.extra["centering"]) as f:
        cen = pd.DataFrame(json.load(f)["rows"])
    n = int(cen.batch.nunique())
    big = cen[cen.m_norm2 >= 1.0]
    v = float(big.err_plain.min()) if len(big) else math.nan
    return [
        claim_from("S5.d", text, LECTURE_BC, metric, exact(float(cen.err_centered.max()), n), kind="identity",
                   below=c["identity_tol"]),
        claim_from("S5.d[direct path]", "Check: with the batch mean detached (direct path only), dL/dW = S_bar^T A "
                   f"(uncentered) to relative error <= {c['identity_tol']:g}", LECTURE_BC,
                   "max ||dW_detached - S_bar^T A|| / ||dW_detached||", exact(float(cen.err_detached_plain.max()), n),
                   kind="check", below=c["identity_tol"]),
        claim_from("S5.d[statistics path]", "Check: the statistics path is what centers A: for uncentered inputs "
                   f"(||m||^2 >= 1), the full gradient differs from S_bar^T A by >= {c['control_min']:g} (relative)",
                   LECTURE_BC, "min ||dW - S_bar^T A|| / ||dW||", exact(v, n), kind="check", above=c["control_min"]),
    ]


# S5.e: does centering without BN recover BN's speed advantage? -------------------------------------

SHARE_METRIC = "(L_uncentered - L_centered) / (L_uncentered - L_BN), train loss"


def sweep_table(metrics, summary, cfg: dict):
    """One row per run of the variants S5.e compares, at every rate of the sweep (the main runs at ``lr`` and
    the sweep runs): ``lr``, ``speed_loss`` (train loss at ``sweep_step``) and ``select_loss`` (the loss that
    picks the rate, ``lr_sweep.select``, at the same step)."""
    step, sel = sweep_step(cfg), cfg["lr_sweep"]["select"]
    t = speed_table(metrics, summary, cfg, step=step)
    t["select_loss"] = t.speed_loss if sel == "train_loss" else speed_table(metrics, summary, cfg, step, sel).speed_loss
    t["lr"] = t.sweep_lr.fillna(cfg["lr"]) if "sweep_lr" in t else float(cfg["lr"])
    keep = {(n, cond_label(a, s_, c)) for n, a, s_, c in s5e_variants(cfg)}
    return t[[(n, c) in keep for n, c in zip(t.norm, t.condition)]].reset_index(drop=True)


def chosen_lrs(table) -> dict:
    """{(norm, condition): the rate with the lowest seed-mean select loss over every seed} (the sweep figure's
    ring; the headline uses ``held_out_lrs``)."""
    m = table.groupby(["norm", "condition", "lr"]).select_loss.mean().reset_index()
    return {(n, c): float(g.lr.loc[g.select_loss.idxmin()]) for (n, c), g in m.groupby(["norm", "condition"])}


def held_out_lrs(table) -> dict:
    """{(norm, condition): {seed k: the rate with the lowest mean select loss over the OTHER seeds}}: each seed is
    compared at a rate its own runs did not choose (leave one seed out; a seed with no other seed gets none)."""
    out = {}
    for (n, c), g in table.groupby(["norm", "condition"]):
        per = {}
        for k in sorted(g.seed.unique()):
            m = g[g.seed != k].groupby("lr").select_loss.mean()
            if len(m):
                per[int(k)] = float(m.idxmin())
        out[(n, c)] = per
    return out


def _at(runs, rates):
    """Mask of the runs at ``rates``: one rate, or {seed: rate} (each seed at its own)."""
    if isinstance(rates, dict):
        return runs.lr.to_numpy(float) == runs.seed.map(rates).to_numpy(float)
    return runs.lr == rates


def share_groups(runs, cfg: dict, lr_of: dict | None = None) -> tuple[list, list, list]:
    """(labels, num, den): per centered condition with its twin and all three variants, the per-seed
    L_U - L_C and L_U - L_B (seeds paired), at the rates ``lr_of`` ({(norm, condition): a rate or {seed: rate}};
    None: the runs as given, one rate)."""
    num, den, labels = [], [], []
    for unc, cen in center_pairs(cfg):
        sel = [(runs.norm == n) & (runs.condition == c) for n, c in [("none", unc), ("none", cen), ("bn_pre", unc)]]
        if lr_of is not None:
            sel = [m & _at(runs, lr_of.get((n, c), -1.0))
                   for m, (n, c) in zip(sel, [("none", unc), ("none", cen), ("bn_pre", unc)])]
        u, cc, b = paired(runs, "speed_loss", *sel)
        if len(u) == 0:
            continue
        num.append(u - cc)
        den.append(u - b)
        labels.append(unc)
    return labels, num, den


def s5e_data(metrics, summary, cfg: dict) -> dict:
    """What S5.e and its figures read: ``common`` (labels, num, den) at the common rate and speed step; with a
    sweep, ``sweep`` (its table), ``chosen`` (the rate per variant chosen on every seed: the figure's ring),
    ``held_out`` ({variant: {seed: the rate chosen on the other seeds}}) and ``best`` (labels, num, den), each seed
    at its held-out rates."""
    mm, ms, sm, ss = split_sweep(metrics, summary)
    out = {"common": share_groups(speed_table(mm, ms, cfg), cfg)}
    if sweep_lrs(cfg) and not needs(cfg)["S5.e"]:
        table = sweep_table(metrics, summary, cfg)
        chosen = chosen_lrs(table) if len(table) else {}
        held = held_out_lrs(table) if len(table) else {}
        out.update(sweep=table, chosen=chosen, held_out=held, best=share_groups(table, cfg, held))
    return out


def _chosen_text(held: dict, cfg: dict) -> str:
    """The rates the seeds were compared at, per variant (chosen on the other seeds: one rate when every seed's
    held-out choice agrees, else each seed's); a rate at an end of the sweep is marked (*): the variant's best may
    lie beyond it."""
    out = []
    rates = [float(cfg["lr"]), *sweep_lrs(cfg)]
    ends = {min(rates), max(rates)}

    def fmt(per: dict) -> str:
        got = sorted(set(per.values()))
        txt = [f"{lr:g}" + ("*" if lr in ends else "") for lr in got]
        return txt[0] if len(txt) == 1 else "/".join(txt) + " (by seed)"

    for unc, cen in center_pairs(cfg):
        got = [(w, held.get(k)) for w, k in [("uncentered", ("none", unc)), ("centered", ("none", cen)),
                                             ("BN", ("bn_pre", unc))]]
        out.append(f"{unc}: " + ", ".join(f"{w} {fmt(per)}" for w, per in got if per))
    text = "; ".join(out)
    return text + (" (*: at an end of the sweep, the variant's best rate may lie beyond it)" if "*" in text else "")


def s5e_claims(x: Ctx) -> list[dict]:
    from ...stats import not_run

    cfg, thr = x.cfg, x.c["share_min"]
    need = needs(cfg)
    step = x.cfg["claims"].get("speed_step") or cfg["train"]["steps"]
    common_text = (f"Explicit centering without BN (which removes the outlier eigenvalues, S5.b) recovers more than "
                   f"{thr:g} of BN's training-speed advantage over the uncentered net with every variant at the common "
                   f"learning rate {cfg['lr']:g}; speed = train loss at step {step}")
    head_text = ("The ICS conditioning hypothesis, tested directly: explicit centering without BN (which removes the "
                 f"outlier eigenvalues, S5.b) recovers more than {thr:g} of BN's training-speed advantage over the "
                 "uncentered net, each variant at its own best learning rate")
    if need["S5.e[common lr]"]:
        return [not_run("S5.e", head_text, LECTURE_Q, need["S5.e"], metric=SHARE_METRIC),
                not_run("S5.e[common lr]", common_text, LECTURE_Q, need["S5.e[common lr]"], kind="cell",
                        metric=SHARE_METRIC)]
    data = s5e_data(x.metrics, x.summary, cfg)
    rows = [s5e_best(x, data, head_text) if "best" in data else
            not_run("S5.e", head_text, LECTURE_Q, need["S5.e"], metric=SHARE_METRIC)]
    labels, num, den = data["common"]
    pooled = (f"; share pooled over {', '.join(labels) or 'no conditions'} (ratio of stratified means of per-seed "
              f"differences, seeds paired across the three variants; Fieller interval; {x.setup})")
    rows.append(share_claim("S5.e[common lr]", common_text + pooled, LECTURE_Q, SHARE_METRIC, num, den, thr, x.ci,
                            "cell"))
    for unc, a, b in zip(labels, num, den):
        rows.append(share_claim(f"S5.e[common lr, {unc}]", f"{unc}: share of BN's train-loss advantage at step {step} "
                                f"that centering without BN recovers, every variant at lr {cfg['lr']:g}", LECTURE_Q,
                                SHARE_METRIC, [a], [b], thr, x.ci, "cell"))
    return rows


def _n_seeds(data: dict) -> int:
    t = data.get("sweep")
    return int(t.seed.nunique()) if t is not None and len(t) else 0


def s5e_best(x: Ctx, data: dict, head_text: str) -> dict:
    """The headline S5.e: each variant at the rate the sweep chose for it; strata: the conditions."""
    cfg = x.cfg
    labels, num, den = data["best"]
    sw = cfg["lr_sweep"]
    rates = ", ".join(f"{lr:g}" for lr in sorted({float(cfg["lr"]), *sweep_lrs(cfg)}))
    step = sweep_step(cfg)
    text = (f"{head_text}; speed = train loss at step {step}; rates swept {rates} (the main runs at {cfg['lr']:g}, "
            f"the others without the curvature probe, every rate on the same seeds); no seed is compared at a rate "
            f"its own runs chose: seed k's rate for each variant is the one with the lowest mean "
            f"{sw['select'].replace('_', ' ')} at step {step} over the other seeds (leave one seed out; with "
            f"{_n_seeds(data)} seeds each choice rests on {_n_seeds(data) - 1}), a diverged run counting at chance level; "
            f"compared at: {_chosen_text(data['held_out'], cfg)}; share pooled "
            f"over {', '.join(labels) or 'no conditions'} and judged per condition (opposite verdicts: mixed) (ratio "
            f"of stratified means of per-seed differences, seeds paired across the three variants; Fieller interval; "
            f"{x.setup})")
    return share_claim("S5.e", text, LECTURE_Q, SHARE_METRIC, num, den, cfg["claims"]["share_min"], x.ci,
                       "headline", labels=labels)
