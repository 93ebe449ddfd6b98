r"""S2: Li & Arora (ICLR 2020): weight decay + momentum is an exponential learning rate, exactly.

Two experiments:

- exactness (``li_arora_exact``, its own Snakemake job per dtype): pairs of runs from one
  initialization on the same batches, float64 and float32; per step the gap between the two
  runs' normalized weights, the largest softmax difference on a fixed probe batch, and the ratio
  of their weight norms against the predicted scalar (claims S2.a, S2.b[trajectory], S2.d);
- accuracy (the generic ``train`` rule): step decay + WD, TEXP (no WD), constant + WD and
  exponential (no WD), over seeds; final test accuracy, weight norms, ||w_t||^2 / eta_t
  (claims S2.b[accuracy], S2.c).

Derivation (PyTorch's SGD; the code is ``normlab.schedules.ScaledSchedule``)
-----------------------------------------------------------------------------
PyTorch's heavy-ball SGD with weight decay lambda: d_t = g_t + lambda w_t with g_t = grad L(w_t),
buf_t = gamma buf_{t-1} + d_t, w_{t+1} = w_t - eta_t buf_t, where the buffer is initialized to d_0 at
step 0, i.e. buf_{-1} = 0. Eliminating the buffer (buf_{t-1} = (w_{t-1} - w_t) / eta_{t-1}):

    (A)  w_{t+1} = (1 + gamma rho_t - eta_t lambda) w_t - gamma rho_t w_{t-1} - eta_t g_t,   rho_t = eta_t / eta_{t-1},

valid from t = 0 with the virtual w_{-1} = w_0 (any rho_0; take rho_0 = 1). Run B has no weight
decay and rates eta'_t; the same elimination gives

    (B)  w'_{t+1} = (1 + gamma r_t) w'_t - gamma r_t w'_{t-1} - eta'_t g'_t,   r_t = eta'_t / eta'_{t-1}.

Suppose L is scale invariant (L(c w) = L(w), so grad L(c w) = grad L(w) / c) and try w'_t = c_t w_t.
Then g'_t = g_t / c_t; substituting into (B), dividing by c_{t+1} and matching (A) term by term
(w_t, w_{t-1} and g_t are generically independent, so this is necessary and sufficient), with
a_t = c_t / c_{t+1}:

    (i)   eta'_t = eta_t c_t c_{t+1}                      (the g_t terms)
    (iii) r_t a_{t-1} a_t = rho_t                         (the w_{t-1} terms; implied by (i))
    (ii)  a_t = 1 + gamma rho_t - lambda eta_t - gamma rho_t / a_{t-1}   (the w_t terms)

So the whole family of exact equivalents is one first-order recurrence for a_t, fixed by its start
a_{-1} = c_{-1} / c_0. Take c_0 = 1 (same initialization). The start is the initial momentum state
of B: buf'_{-1} = (w'_{-1} - w'_0) / eta'_{-1} with w'_{-1} = c_{-1} w_0 and eta'_{-1} = eta_{-1} c_{-1} c_0:

    buf'_{-1} = (a_{-1} - 1) / (eta_0 a_{-1}) * w_0.

PyTorch's default (buf'_{-1} = 0) is a_{-1} = 1; then a_t only converges to the fixed point below.

Constant rate (S2.a). For rho_t = 1 the fixed points of (ii) solve alpha^2 - (1 + gamma - lambda eta)
alpha + gamma = 0; the larger root is the stable one (for gamma = 0 it is 1 - lambda eta, the other
root is 0). Starting B with a_{-1} = alpha keeps a_t = alpha for all t: c_t = alpha^(-t) and, by (i),

    eta'_t = eta alpha^(-2t-1),   with the initial momentum buffer (alpha - 1) / (eta alpha) * w_0,

an exact equivalence from step 0. Without that buffer (PyTorch's zero default) the pair is NOT
exact (the ``exp_zero_buffer`` control shows it). A real root exists iff lambda eta <= (1 - sqrt(gamma))^2.

Step decay (S2.b, TEXP). With step decay eta_t = eta / C^k(t), run (ii) and (i) with the same start
a_{-1} = alpha(eta_0). Inside a phase, a_t relaxes geometrically (ratio gamma / alpha_k^2 per step) to
the new phase's root alpha_k, so the rate grows by a_{t-1}^-1 a_t^-1 -> alpha_k^-2 per step. At a
boundary T (rho_T = 1/C) the exact rule, momentum included, is

    eta'_T = eta'_{T-1} / (C a_{T-1} a_T),   a_T = 1 + (gamma / C)(1 - 1 / a_{T-1}) - lambda eta_T,

and thereafter eta'_t = eta'_{t-1} / (a_{t-1} a_t). The paper's TEXP jumps straight to a_T = alpha_k
(divide by C, multiply by alpha_{k-1}^-1 alpha_k^-1, then grow by alpha_k^-2); that is exact only with a
momentum correction at the boundary, which the recurrence makes unnecessary: B stays plain SGD.

BN's epsilon and running statistics break exact invariance; see ``li_arora_exact`` for how the
exactness pair handles them (eps = 1e-30; outputs compared with batch statistics). The accuracy runs
use the model's own eps and eval-mode running statistics, as a practitioner would.

Claims: S2.a (exactness, float64, constant + WD vs exponential), S2.b (step decay + WD vs TEXP:
trajectory and test accuracy), S2.c (exponential: norm growth, ||w||^2 / eta flat, well behaved),
S2.d (float32 drift and its rate).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..config import ConfigError
from ..plotting import save_figure
from ..schedules import build_schedule, li_arora_alpha
from ..stats import bootstrap_mean_diff, claim, verdict_above
from ..stats import verdict_within as verdict_within_band

SOURCE = "Li & Arora, ICLR 2020 (Thm. 2.12, TEXP)"
LABELS = {"step_wd": "step decay + WD", "texp": "TEXP (no WD)", "const_wd": "constant + WD",
          "exponential": "exponential (no WD)"}
ORDER = list(LABELS)
DASHES = {lab: (1, 0) if v.endswith("_wd") else (4, 2) for v, lab in LABELS.items()}  # no-WD runs dashed


def milestone_steps(fractions, steps: int) -> list[int]:
    """Milestones given as fractions of the run, as step numbers (each >= 1, distinct)."""
    return sorted({max(1, round(f * steps)) for f in fractions})


def _check_alpha(lr, wd, mom, key):
    try:
        li_arora_alpha(lr, wd, mom)
    except ValueError as e:
        raise ConfigError(f"'{key}': {e}") from None


def variants(cfg: dict) -> dict:
    _check_alpha(cfg["lr"], cfg["weight_decay"], cfg["momentum"], "studies.li_arora.weight_decay")
    for i, s in enumerate(cfg["exactness"]["settings"]):
        _check_alpha(s["lr"], s["weight_decay"], s["momentum"], f"studies.li_arora.exactness.settings[{i}]")
    lam, mom, steps = cfg["weight_decay"], cfg["momentum"], cfg["train"]["steps"]
    step = {"milestones": milestone_steps(cfg["step_decay"]["milestones"], steps), "factor": cfg["step_decay"]["factor"]}
    wd_opt = {"name": "sgd", "momentum": mom, "weight_decay": lam}
    no_wd = {"name": "sgd", "momentum": mom, "weight_decay": 0.0}
    defs = {
        "step_wd": (wd_opt, {"name": "step", **step}),
        "texp": (no_wd, {"name": "texp", **step, "weight_decay": lam}),
        "const_wd": (wd_opt, {"name": "constant"}),
        "exponential": (no_wd, {"name": "exponential", "weight_decay": lam}),
    }
    return {name: {"keys": {"schedule": name},
                   "model": cfg["model"], "optimizer": defs[name][0], "lr": cfg["lr"], "schedule": defs[name][1],
                   "train": cfg["train"], "probes": [{"name": "weight_norms", "every": cfg["norm_every"]}]}
            for name in cfg["schedules"]}


# Tables -----------------------------------------------------------------------------------------

def run_table(summary: pd.DataFrame) -> pd.DataFrame:
    runs = summary.copy()
    acc = runs.get("final_test_acc", pd.Series(np.nan, index=runs.index))
    runs["test_acc"] = acc.where(runs.status == "ok", 0.1).fillna(0.1)  # diverged: chance (10 classes)
    return runs


def norm_table(metrics: pd.DataFrame, cfg: dict) -> pd.DataFrame:
    """Per (variant, seed, step): ||w_t||^2 over the trained layers, eta_t and ||w_t||^2 / eta_t."""
    wn = metrics[metrics.metric.str.startswith("weight_norm/")]
    if wn.empty:
        return pd.DataFrame(columns=["variant", "seed", "step", "w2", "lr", "w2_over_lr"])
    layer = wn.metric.str.split("/").str[1].astype(int)
    wn = wn[layer < layer.max()]  # the last layer is the fixed output layer
    t = (wn.assign(v2=wn.value ** 2).groupby(["variant", "seed", "step"]).v2.sum().rename("w2").reset_index())
    specs = variants(cfg)
    lrs = {v: build_schedule(s["schedule"], s["lr"], s["optimizer"]) for v, s in specs.items()}
    t["lr"] = [lrs[v](int(s)) for v, s in zip(t.variant, t.step)]
    t["w2_over_lr"] = t.w2 / t.lr
    t["norm"] = np.sqrt(t.w2)
    return t


def load_exact(extra) -> pd.DataFrame:
    frames = [pd.read_parquet(p) for k, p in sorted((extra or {}).items()) if k.startswith("exact")]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["step", "metric", "value", "setting", "pair", "dtype", "momentum"])


def verdict_within(low, high, margin) -> str:
    """Equivalence: 'holds' if the interval lies inside (-margin, margin), 'fails' if wholly outside."""
    if not np.isfinite([low, high]).all():
        return "inconclusive"
    if -margin < low and high < margin:
        return "holds"
    if high <= -margin or low >= margin:
        return "fails"
    return "inconclusive"




def _gap_claims(ex, pair, dtype_claims, cid, what, tol, steps_txt):
    """Exactness rows: the max over steps and settings of each gap metric (float64)."""
    rows = []
    sub = ex[(ex.pair == pair) & (ex.dtype == "float64")]
    for metric, tag, desc in [("weight_gap", "", "distance between normalized weights"),
                              ("softmax_gap", "[softmax]", "max |softmax difference| on the probe batch"),
                              ("norm_ratio_err", "[norm_ratio]", "relative error of ||w_B||/||w_A|| vs the predicted c_t")]:
        m = sub[sub.metric == metric]
        if m.empty or sub[sub.metric == "diverged"].shape[0]:
            v = lo = hi = float("nan")
        else:
            per = m.groupby("setting").value.max()
            v, lo, hi = float(per.max()), float(per.min()), float(per.max())
        verdict = "inconclusive" if m.empty else ("holds" if np.isfinite(v) and v < tol else "fails")
        rows.append(claim(f"{cid}{tag}" if tag else cid,
                          f"{what}: float64 {desc} stays below {tol:g} {steps_txt} for every (lr, wd, momentum) setting",
                          SOURCE, f"max {metric} (CI: min/max over settings)", v, lo, hi, tol, verdict, 1))
    if dtype_claims:
        for setting, m in sub[sub.metric == "weight_gap"].groupby("setting"):
            v = float(m.value.max())
            rows.append(claim(f"{cid}[{setting}]", f"{what}: float64 weight gap below {tol:g} {steps_txt}, {setting}",
                              SOURCE, "max weight_gap", v, v, v, tol, "holds" if v < tol else "fails", 1))
    return rows


def _median(x) -> float:
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    return float(np.median(x)) if len(x) else float("nan")


def _separation(m: pd.DataFrame, level: float = 1e-3) -> tuple[float, float]:
    """(first step where the float32 weight gap exceeds ``level`` (inf if never), median gap before it)."""
    m = m[m.step >= 1].sort_values("step")
    over = m[m.value > level]
    first = float(over.step.iloc[0]) if len(over) else math.inf
    return first, float(m[m.step < first].value.median())


def analyze(metrics, summary, cfg, extra=None):
    c = cfg["claims"]
    tol, margin = c["gap_tol"], c["equivalence_margin"]
    kw = {"n_boot": c["n_boot"], "ci": c["ci"]}
    ex = load_exact(extra)
    steps_txt = f"over {cfg['exactness']['steps']} steps from step 0"
    rows = []
    rows += _gap_claims(ex, "exp", True, "S2.a", "constant eta + WD + momentum vs exponential eta without WD", tol, steps_txt)
    z = ex[(ex.pair == "exp_zero_buffer") & (ex.dtype == "float64") & (ex.momentum > 0) & (ex.metric == "weight_gap")]
    if len(z):
        per = z.groupby("setting").value.max()
        v, lo, hi = float(per.min()), float(per.min()), float(per.max())
        rows.append(claim("S2.a[zero_buffer]", "Control: with PyTorch's default zero initial momentum buffer (instead of the "
                          f"derived one) the exponential pair is not exact: its float64 weight gap exceeds {tol:g}",
                          "derived here (initial conditions)", "min over momentum>0 settings of max weight_gap", v, lo, hi,
                          tol, verdict_above(lo, hi, tol), 1))
    rows += _gap_claims(ex, "texp", False, "S2.b[trajectory]", "step decay + WD vs TEXP without WD (same trajectory)", tol, steps_txt)

    runs = run_table(summary)
    n_seeds = int(runs.groupby("variant").seed.nunique().min()) if len(runs) else 0

    def paired(a, b):
        """Per-seed differences (same seed: same initialization and batches, so the pair is matched)."""
        t = runs.pivot_table(index="seed", columns="variant", values="test_acc")
        return [(t[a] - t[b]).dropna().to_numpy()]

    have = set(runs.variant) if len(runs) else set()
    if {"step_wd", "texp"} <= have:
        v, lo, hi = bootstrap_mean_diff(paired("texp", "step_wd"), **kw)
        rows.append(claim("S2.b[accuracy]", f"TEXP (no WD) reaches the test accuracy of step decay + WD within +-{margin:g}",
                          SOURCE, "test_acc(texp) - test_acc(step_wd), paired by seed", v, lo, hi, margin, verdict_within(lo, hi, margin), n_seeds))
    if {"const_wd", "exponential"} <= have:
        v, lo, hi = bootstrap_mean_diff(paired("exponential", "const_wd"), **kw)
        bad = int((runs[runs.variant == "exponential"].status != "ok").sum())
        verdict = "fails" if bad else verdict_within(lo, hi, margin)
        rows.append(claim("S2.c[stable]", f"Under the exponential schedule training stays well behaved: no divergence ({bad} "
                          f"diverged) and test accuracy equal to constant + WD within +-{margin:g}",
                          SOURCE, "test_acc(exponential) - test_acc(const_wd), paired by seed", v, lo, hi, margin, verdict, n_seeds))

    nt = norm_table(metrics, cfg)
    e = nt[nt.variant == "exponential"]
    if len(e):
        half = cfg["train"]["steps"] / 2
        rates, spreads = [], []
        for _, g in e[e.step >= half].groupby("seed"):
            x = g.step.to_numpy(float)
            rates.append(np.polyfit(x, np.log(g.w2), 1)[0] / np.polyfit(x, np.log(g.lr), 1)[0])
            spreads.append(g.w2_over_lr.max() / g.w2_over_lr.min())
        growth = float(e[e.step >= half].lr.max() / e[e.step >= half].lr.min())
        rt = c["rate_tol"]
        v, lo, hi = bootstrap_mean_diff([np.array(rates)], **kw)
        rows.append(claim("S2.c[norm_growth]", "Under the exponential schedule ||w_t||^2 grows exponentially at the rate of "
                          f"eta_t (second half of training; ratio of fitted log-slopes within 1 +- {rt:g})",
                          SOURCE, "slope(log ||w||^2) / slope(log eta)", v, lo, hi, 1.0,
                          verdict_within_band(lo, hi, 1 - rt, 1 + rt), len(rates)))
        v, lo, hi = bootstrap_mean_diff([np.array(spreads)], **kw)
        rows.append(claim("S2.c[ratio_flat]", f"||w_t||^2 / eta_t stays near constant under the exponential schedule: over the "
                          f"second half (where eta_t grows {growth:.3g}x) its max/min stays below {c['ratio_band']:g}",
                          SOURCE, "max/min of ||w||^2/eta over the second half", v, lo, hi, c["ratio_band"],
                          verdict_above(-hi, -lo, -c["ratio_band"]), len(spreads)))

    f32 = ex[(ex.dtype == "float32") & ex.pair.isin(["exp", "texp"])]
    if len(f32):
        final, sep, plateau = [], [], []
        for (_, _), g in f32[f32.metric == "weight_gap"].groupby(["setting", "pair"]):
            final.append(float(g.sort_values("step").value.iloc[-1]))
            a, b = _separation(g)
            sep.append(a)
            plateau.append(b)
        final = np.array(final)
        rows.append(claim("S2.d", f"In float32 the two runs drift apart: the weight gap after {cfg['exactness']['steps']} steps "
                          f"exceeds the float64 bound {tol:g} for every pair and setting", SOURCE,
                          "min final float32 weight_gap (CI: min/max over pairs x settings)", float(final.min()),
                          float(final.min()), float(final.max()), tol, verdict_above(final.min(), final.max(), tol), 1))
        sm = f32[f32.metric == "softmax_gap"].sort_values("step").groupby(["setting", "pair"]).value.last()
        rows.append(claim("S2.d[softmax]", "Float32 drift shows in the outputs: final max |softmax difference| above the float64 bound",
                          SOURCE, "min final float32 softmax_gap (CI: min/max)", float(sm.min()), float(sm.min()),
                          float(sm.max()), tol, verdict_above(sm.min(), sm.max(), tol), 1))
        sep = np.array(sep)
        n = cfg["exactness"]["steps"]
        verdict = "holds" if sep.max() <= n else ("fails" if sep.min() > n else "inconclusive")
        rows.append(claim("S2.d[separation]", f"How fast: every float32 pair separates (weight gap > 1e-3) within {n} steps; "
                          f"before that its gap sits near {_median(plateau):.1e} (median)", "measured here",
                          "first step with float32 weight_gap > 1e-3 (median; CI: min/max over pairs x settings; inf: never)",
                          float(np.median(sep)), float(sep.min()), float(sep.max()), float(n), verdict, 1))
    return pd.DataFrame(rows)


# Figures ----------------------------------------------------------------------------------------

def figures(metrics, summary, claims, cfg, fig_dir, extra=None):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="paper")
    written = []

    def save(fig, name):
        written.extend(save_figure(fig, fig_dir, name))

    tol = cfg["claims"]["gap_tol"]
    ex = load_exact(extra)
    gaps = ex[ex.metric.isin(["weight_gap", "softmax_gap", "norm_ratio_err"]) & (ex.step > 0)].copy()
    gaps["value"] = gaps.value.clip(lower=1e-17)
    pairs = [p for p in ["exp", "texp", "exp_zero_buffer"] if p in set(gaps.pair)]
    names = {"exp": "const+WD vs exponential", "texp": "step+WD vs TEXP", "exp_zero_buffer": "exponential, zero init. buffer"}
    gaps["pair"] = gaps.pair.map(names)
    g = sns.relplot(data=gaps, x="step", y="value", hue="dtype", hue_order=["float64", "float32"], style="setting",
                    col="metric", col_order=["weight_gap", "softmax_gap", "norm_ratio_err"], row="pair",
                    row_order=[names[p] for p in pairs], kind="line", height=2.3, aspect=1.35, lw=0.9,
                    facet_kws={"margin_titles": True}, errorbar=None)
    g.set(yscale="log", ylim=(1e-17, 10))
    for ax in g.axes.flat:
        ax.axhline(tol, color="k", ls=":", lw=0.8)
    g.set_axis_labels("step", "gap (log)")
    g.figure.suptitle(f"Exactness: the two runs' gap per step (dotted: {tol:g}; values < 1e-17 shown at 1e-17)", y=1.02)
    save(g.figure, "exactness_gap")

    specs = variants(cfg)
    steps = np.arange(cfg["train"]["steps"])
    lr = pd.concat([pd.DataFrame({"step": steps, "schedule": LABELS[v],
                                  "value": [build_schedule(s["schedule"], s["lr"], s["optimizer"])(int(t)) for t in steps]})
                    for v, s in specs.items()], ignore_index=True)
    hue_order = [LABELS[v] for v in ORDER if v in specs]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    sns.lineplot(data=lr, x="step", y="value", hue="schedule", hue_order=hue_order, style="schedule",
                 style_order=hue_order, dashes={h: DASHES[h] for h in hue_order}, ax=ax)
    ax.set(yscale="log", ylabel="learning rate eta_t (log)", title="Learning-rate schedules of the accuracy runs (dotted: milestones)")
    for m in milestone_steps(cfg["step_decay"]["milestones"], cfg["train"]["steps"]):
        ax.axvline(m, color="grey", ls=":", lw=0.8)
    save(fig, "lr_schedules")

    nt = norm_table(metrics, cfg).assign(schedule=lambda d: d.variant.map(LABELS))
    hue_order = [LABELS[v] for v in ORDER if v in set(nt.variant)]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    line = {"hue": "schedule", "hue_order": hue_order, "style": "schedule", "style_order": hue_order,
            "dashes": {h: DASHES[h] for h in hue_order}, "errorbar": ("ci", 95)}
    sns.lineplot(data=nt, x="step", y="norm", ax=axes[0], **line)
    axes[0].set(yscale="log", ylabel="||w_t|| (trained layers, log)", title="Weight norm")
    sns.lineplot(data=nt, x="step", y="w2_over_lr", ax=axes[1], legend=False, **line)
    axes[1].set(yscale="log", ylabel="||w_t||^2 / eta_t (log)", title="||w_t||^2 / eta_t")
    fig.suptitle("Norms over training (mean, 95% CI over seeds)", y=1.02)
    save(fig, "norms")

    curves = metrics[metrics.metric == "test_acc"].assign(schedule=lambda d: d.variant.map(LABELS))
    runs = run_table(summary).assign(schedule=lambda d: d.variant.map(LABELS))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4), gridspec_kw={"width_ratios": [2, 1]})
    sns.lineplot(data=curves, x="step", y="value", ax=axes[0], **line)
    axes[0].set(ylabel="test accuracy", title="Test accuracy over training (mean, 95% CI)")
    sns.pointplot(data=runs, x="schedule", y="test_acc", order=hue_order, hue="schedule", hue_order=hue_order,
                  errorbar=("ci", 95), ax=axes[1], legend=False)
    axes[1].set(xlabel="", ylabel="final test accuracy", title=f"Final ({runs.groupby('variant').seed.nunique().min()} seeds)")
    axes[1].tick_params(axis="x", rotation=30)
    save(fig, "test_accuracy")
    return written
