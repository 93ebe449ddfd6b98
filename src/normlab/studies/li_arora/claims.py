"""S2's analysis: tables of the accuracy runs and the exactness pairs, and the claims S2.a-d (``analyze``).

Light at import (the Snakefile imports the study at parse time): numpy, pandas and ``normlab.stats`` are
imported inside the functions."""

from __future__ import annotations

import math

from .variants import NEEDS, milestone_steps, missing, variants

SOURCE = "Li & Arora, ICLR 2020 (Thm. 2.12, TEXP)"
RATE_FLOOR = 1e-3  # decades per 1,000 steps: "no drift" on the log scale


def exact_net(cfg: dict, sep: str = ", ") -> str:
    """The exactness pairs' net and data, as the claim texts name them (``sep`` joins the two)."""
    from ..setup_text import dataset_text, is_default_setup, model_text

    if is_default_setup(cfg):
        return f"2x64 BN MLP{sep}MNIST-1D"
    return f"scale-invariant BN {model_text(cfg['exactness']['model'], cfg['dataset'])}{sep}{dataset_text(cfg['dataset'])}"


def accuracy_net(cfg: dict, capital: bool = False) -> str:
    """The accuracy runs' net and data and how they depart from PreResNet32 on CIFAR-10."""
    from ..setup_text import dataset_text, is_default_setup, model_text

    if is_default_setup(cfg):
        txt = "scale-invariant 1-D CNN on MNIST-1D"
    else:
        txt = f"scale-invariant {model_text(cfg['model'], cfg['dataset'])} on {dataset_text(cfg['dataset'])}"
    txt = txt[0].upper() + txt[1:] if capital else txt
    return txt + (", not PreResNet32/CIFAR-10" if capital else " (not PreResNet32/CIFAR-10)")


# Tables -----------------------------------------------------------------------------------------

def run_table(summary):
    """The runs with ``test_acc``: the final test accuracy, chance (0.1) for a diverged run."""
    import numpy as np
    import pandas as pd

    runs = summary.copy()
    acc = runs.get("final_test_acc", pd.Series(np.nan, index=runs.index))
    runs["test_acc"] = acc.where(runs.status == "ok", 0.1).fillna(0.1)  # diverged: chance (10 classes)
    return runs


def norm_table(metrics, cfg: dict):
    """Per (variant, seed, step): ||w_t||^2 over the trained layers, eta_t and ||w_t||^2 / eta_t."""
    import numpy as np
    import pandas as pd

    from ...schedules import build_schedule

    wn = metrics[metrics.metric.str.startswith("weight_norm/")]
    if wn.empty:
        return pd.DataFrame(columns=["variant", "seed", "step", "w2", "lr", "w2_over_lr", "norm"])
    layer = wn.metric.str.split("/").str[1].astype(int)
    wn = wn[layer < layer.max()]  # the last layer is the fixed output layer
    t = (wn.assign(v2=wn.value ** 2).groupby(["variant", "seed", "step"]).v2.sum().rename("w2").reset_index())
    specs = variants(cfg)
    lrs = {v: build_schedule(s["schedule"], s["lr"], s["optimizer"]) for v, s in specs.items()}
    t = t[t.variant.isin(list(lrs))].copy()
    t["lr"] = [lrs[v](int(s)) for v, s in zip(t.variant, t.step)]
    t["w2_over_lr"] = t.w2 / t.lr
    t["norm"] = np.sqrt(t.w2)
    return t


def load_exact(extra):
    """The exactness jobs' outputs (every dtype), one tidy frame."""
    import pandas as pd

    frames = [pd.read_parquet(p) for k, p in sorted((extra or {}).items()) if k.startswith("exact")]
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["step", "metric", "value", "setting", "pair", "dtype", "momentum", "seed"])
    if "seed" not in out:
        out["seed"] = 0
    return out


def drift_rates(ex, level: float):
    """Per float32 (setting, pair, seed): how fast the weight gap grows from rounding level.

    rate = decades gained per 1,000 steps, log10(gap(T) / gap_0) / (T - t_0) * 1000, where gap_0 is the
    median gap over the first five logged steps >= 1 (rounding level; at least 1e-12), t_0 the first of
    them, and T the first logged step where the gap reaches ``level`` (the end of the run if never).
    A pair whose gap stays at rounding level gets a rate near 0, floored at RATE_FLOOR (so that the
    geometric mean over seeds is defined and such a pair fails clearly). Also the first step with gap >= level.
    """
    import numpy as np
    import pandas as pd

    rows = []
    w = ex[(ex.dtype == "float32") & (ex.metric == "weight_gap") & (ex.step >= 1)]
    for (setting, pair, seed), g in w.groupby(["setting", "pair", "seed"]):
        g = g.sort_values("step")
        steps, gap = g.step.to_numpy(float), g.value.to_numpy(float)
        g0, t0 = max(float(np.median(gap[:5])), 1e-12), steps[0]
        over = np.flatnonzero(gap >= level)
        k = int(over[0]) if len(over) else len(gap) - 1
        rate = max(math.log10(max(gap[k], 1e-12) / g0) / max(steps[k] - t0, 1.0) * 1000, RATE_FLOOR)
        rows.append(dict(setting=setting, pair=pair, seed=seed, rate=rate, start_gap=g0,
                         t_sep=steps[k] if len(over) else math.inf))
    return pd.DataFrame(rows, columns=["setting", "pair", "seed", "rate", "start_gap", "t_sep"])


# Claims -----------------------------------------------------------------------------------------

def _gap_max(ex, pair, metric):
    import pandas as pd

    sub = ex[(ex.pair == pair) & (ex.dtype == "float64")]
    if sub[sub.metric == "diverged"].shape[0]:
        return pd.Series(math.inf, index=sorted(set(sub.setting)))
    return sub[sub.metric == metric].groupby("setting").value.max()


def _gap_rows(ex, pair, cid, what, tol, steps_txt, kind, per_setting):
    """Exactness rows of one float64 pair: weight gap (the claim), softmax gap and norm ratio (cells), and per
    setting (``per_setting``)."""
    from ...stats import claim_from, exact

    rows = []
    for metric, tag, desc in [("weight_gap", "", "distance between normalized weights"),
                              ("softmax_gap", "[softmax]", "max |softmax difference| on the probe batch"),
                              ("norm_ratio_err", "[norm_ratio]", "relative error of ||w_B||/||w_A|| vs the predicted c_t")]:
        per = _gap_max(ex, pair, metric)
        v = float(per.max()) if len(per) else float("nan")
        k = kind if not tag else ("cell" if kind in ("headline", "identity") else kind)
        rid = cid if not tag else (f"{cid[:-1]}, {tag[1:]}" if cid.endswith("]") else f"{cid}{tag}")
        row = claim_from(rid, f"{what}: float64 {desc} stays below {tol:g} {steps_txt} for every one of "
                         f"{len(per)} (lr, wd, momentum) settings", SOURCE, f"max over steps and settings of {metric}",
                         exact(v, 1), kind=k, below=tol)
        if not len(per):
            row["verdict"] = "inconclusive"
        rows.append(row)
    if per_setting:
        for setting, v in _gap_max(ex, pair, "weight_gap").items():
            rows.append(claim_from(f"{cid}[{setting}]", f"{what}: float64 weight gap below {tol:g} {steps_txt}, {setting}",
                                   SOURCE, "max weight_gap over steps", exact(float(v), 1), kind=kind if kind == "check"
                                   else "cell", below=tol))
    return rows


def _not_run(cid: str, cfg: dict, text: str, kind: str = "headline", need: dict | None = None) -> dict:
    from ...stats import not_run

    return not_run(cid, text, SOURCE, ", ".join(missing(cfg, need or NEEDS[cid])), kind=kind)


def exactness_claims(ex, cfg: dict) -> list[dict]:
    """S2.a (float64 exactness of constant + WD vs exponential), its zero-buffer control, and the exact TEXP
    trajectory check."""
    from ...stats import claim_from, exact

    tol = cfg["claims"]["gap_tol"]
    steps_txt = f"over {cfg['exactness']['steps']} steps from step 0"
    what = ("Constant eta + WD + momentum vs exponential eta without WD "
            f"({exact_net(cfg)}, same init and batches, derived initial momentum buffer; an identity: true "
            "by construction for a correct implementation)")
    if missing(cfg, NEEDS["S2.a"]):
        rows = [_not_run("S2.a", cfg, what, kind="identity")]
    else:
        rows = _gap_rows(ex, "exp", "S2.a", what, tol, steps_txt, "identity", True)
    z = ex[(ex.pair == "exp_zero_buffer") & (ex.dtype == "float64") & (ex.momentum > 0) & (ex.metric == "weight_gap")]
    if len(z):
        per = z.groupby("setting").value.max()
        rows.append(claim_from("S2.a[zero_buffer]", "Control: with PyTorch's default zero initial momentum buffer (instead "
                               f"of the derived one) the exponential pair is not exact: its float64 weight gap exceeds {tol:g}",
                               "derived here (initial conditions)", "min over momentum>0 settings of max weight_gap",
                               exact(float(per.min()), 1), kind="check", above=tol))
    what = "Check: step decay + WD vs the exact TEXP without WD (derived boundary rule; the same trajectory by construction)"
    need = {"exactness": [("float64", "texp")]}
    if missing(cfg, need):
        return rows + [_not_run("S2.b[exact_trajectory]", cfg, what, kind="check", need=need)]
    return rows + _gap_rows(ex, "texp", "S2.b[exact_trajectory]", what, tol, steps_txt, "check", False)


class Paired:
    """Final test accuracies per seed and schedule: ``diff(a, b)`` is the paired difference a - b (same seed
    means same initialization and batches, so the pair is matched)."""

    def __init__(self, summary, ci: float):
        runs = run_table(summary)
        self.runs = runs
        self.have = set(runs.variant) if len(runs) else set()
        self.seeds = sorted(set(runs.seed)) if len(runs) else []
        self.tab = runs.pivot_table(index="seed", columns="variant", values="test_acc").reindex(self.seeds) \
            if len(runs) else None
        self.ci = ci

    def diff(self, a: str, b: str):
        from ...stats import mean_ci

        return mean_ci([self.tab[a].to_numpy()], [self.tab[b].to_numpy()], paired=True, ci=self.ci)


def texp_claims(acc: Paired, cfg: dict) -> list[dict]:
    """S2.b: the paper's TEXP (no WD) reaches the test accuracy of step decay + WD; the exact TEXP as checks."""
    from ...stats import claim_from

    margin = cfg["claims"]["equivalence_margin"]
    steps = cfg["train"]["steps"]
    ms = milestone_steps(cfg["step_decay"]["milestones"], steps)
    text = (f"TEXP without WD (the paper's rule: at each milestone divide the rate by "
            f"{cfg['step_decay']['factor']:g} and switch to the new phase's growth; no momentum correction, zero initial "
            f"buffer) reaches the final test accuracy of step decay + WD (lambda {cfg['weight_decay']:g}) within "
            f"+-{margin:g}: {accuracy_net(cfg)}, {steps} steps, milestones at steps {ms}, paired by seed")
    rows = []
    if missing(cfg, NEEDS["S2.b"]):
        rows.append(_not_run("S2.b", cfg, text))
    elif {"step_wd", "texp_practical"} <= acc.have:
        rows.append(claim_from("S2.b", text, SOURCE, "test_acc(texp_practical) - test_acc(step_wd), paired by seed",
                               acc.diff("texp_practical", "step_wd"), kind="headline", within=(-margin, margin)))
    if {"step_wd", "texp"} <= acc.have:
        rows.append(claim_from(
            "S2.b[exact_accuracy]", f"Check: the exact TEXP (no WD) reaches the test accuracy of step decay + WD within "
            f"+-{margin:g} (same training trajectory up to BN eps and float32; eval-mode running statistics differ)",
            SOURCE, "test_acc(texp) - test_acc(step_wd), paired by seed", acc.diff("texp", "step_wd"), kind="check",
            within=(-margin, margin)))
    if {"texp", "texp_practical"} <= acc.have:
        rows.append(claim_from(
            "S2.b[practical_vs_exact]", f"The paper's TEXP and the exact TEXP reach the same test accuracy within +-{margin:g}",
            "derived here (momentum correction)", "test_acc(texp_practical) - test_acc(texp), paired by seed",
            acc.diff("texp_practical", "texp"), kind="cell", within=(-margin, margin)))
    return rows


def _growth_fit(e, steps: int):
    """Per seed over the second half of the exponential run: the slope of log ||w||^2 on log eta, and the max/min
    of ||w||^2 / eta."""
    import numpy as np

    slopes, spreads = [], []
    for _, g in e[e.step >= steps / 2].groupby("seed"):
        slopes.append(np.polyfit(np.log(g.lr.to_numpy(float)), np.log(g.w2.to_numpy(float)), 1)[0])
        spreads.append(float(g.w2_over_lr.max() / g.w2_over_lr.min()))
    return np.array(slopes), np.array(spreads)


def _growth_text(cfg: dict, bad: int, acc_value: float) -> str:
    from ...schedules import build_schedule

    c, steps, lam_g = cfg["claims"], cfg["train"]["steps"], cfg["growth"]["weight_decay"]
    sched = build_schedule({"name": "exponential", "weight_decay": lam_g}, cfg["lr"],
                           {"name": "sgd", "momentum": cfg["momentum"]})
    g_all, g_half = sched(steps - 1) / sched(0), sched(steps - 1) / sched(int(steps / 2))
    return (f"Under the exponential schedule (no WD; replaces lambda = {lam_g:g}, so eta_t grows {g_all:.3g}x over "
            f"{steps} steps, {g_half:.3g}x over the second half) ||w_t||^2 grows like eta_t: slope of log ||w_t||^2 on "
            f"log eta_t over the second half in 1 +- {c['slope_tol']:g} (||w||^2 ~ eta^0.5 would give 0.5), AND training "
            f"stays well behaved: no divergence ({bad} diverged) and final test accuracy equal to constant + WD within "
            f"+-{c['equivalence_margin']:g} (paired by seed, TOST; measured difference {acc_value:+.3f}). "
            f"{accuracy_net(cfg, capital=True)}; lambda larger than the paper's 5e-4"), g_half


def growth_claims(metrics, acc: Paired, cfg: dict) -> list[dict]:
    """S2.c: under the exponential schedule ||w||^2 grows like eta_t while training stays as good as constant + WD."""
    from ...stats import claim_all, claim_from, exact, mean_ci

    c = cfg["claims"]
    ci, margin, rt = c["ci"], c["equivalence_margin"], c["slope_tol"]
    if missing(cfg, NEEDS["S2.c"]):
        return [_not_run("S2.c", cfg, "Under the exponential schedule (no WD) ||w_t||^2 grows like eta_t and training "
                         "stays as good as constant + WD")]
    nt = norm_table(metrics, cfg)
    e = nt[nt.variant == "exponential"]
    if not (len(e) and {"const_wd", "exponential"} <= acc.have):
        return []
    slopes, spreads = _growth_fit(e, cfg["train"]["steps"])
    est = mean_ci([slopes], ci=ci)
    bad = int((acc.runs[acc.runs.variant == "exponential"].status != "ok").sum())
    d = acc.diff("exponential", "const_wd")
    slope_part = (est, dict(within=(1 - rt, 1 + rt), label="slope"))
    acc_part = (d, dict(within=(-margin, margin), label="test accuracy, exponential - constant + WD"))
    div_part = (exact(bad, len(acc.seeds)), dict(below=0.5, label="diverged exponential runs"))
    text, g_half = _growth_text(cfg, bad, d.value)
    return [
        claim_all("S2.c", text, SOURCE, "slope of log ||w||^2 on log eta (second half), mean over seeds",
                  [slope_part, acc_part, div_part], kind="headline"),
        claim_from("S2.c[slope]", f"Slope of log ||w_t||^2 on log eta_t (exponential, second half) in 1 +- {rt:g}",
                   SOURCE, "slope, mean over seeds", est, kind="cell", within=(1 - rt, 1 + rt)),
        claim_all("S2.c[stable]", f"Exponential (no WD) reaches the final test accuracy of constant + WD "
                  f"within +-{margin:g} ({bad} diverged)", SOURCE,
                  "test_acc(exponential) - test_acc(const_wd), paired by seed", [acc_part, div_part], kind="cell"),
        claim_from("S2.c[ratio_flat]", f"||w_t||^2 / eta_t stays near constant under the exponential schedule: "
                   f"over the second half (eta_t grows {g_half:.3g}x) its max/min stays below "
                   f"{c['ratio_band']:g} (geometric mean over seeds)", SOURCE,
                   "max/min of ||w||^2/eta over the second half", mean_ci([spreads], ci=ci, log=True),
                   kind="cell", below=c["ratio_band"])]


def drift_claims(ex, cfg: dict) -> list[dict]:
    """S2.d: float32 pairs drift apart, at a measured rate (decades of weight gap per 1,000 steps)."""
    import numpy as np

    from ...stats import claim_from, exact, mean_ci

    c = cfg["claims"]
    ci, level, rmin = c["ci"], c["drift_level"], c["drift_rate_min"]
    text = ("In float32 constant eta + WD + momentum and its exact exponential twin (no WD) drift apart: their "
            "normalized-weight gap grows from rounding level")
    if missing(cfg, NEEDS["S2.d"]):
        return [_not_run("S2.d", cfg, text)]
    dr = drift_rates(ex, level)
    if not len(dr):
        return []
    groups = [g.rate.to_numpy() for _, g in dr.groupby(["setting", "pair"])]
    sep = dr.t_sep.to_numpy(float)
    n_sep = int(np.isfinite(sep).sum())
    several = dr.pair.nunique() > 1  # float32 runs the exp pair only: the label is the setting, without commas
    strata = {(f"{pair} " if several else "") + setting.replace(", ", " "):
              [(mean_ci([g.rate.to_numpy()], ci=ci, log=True), dict(above=rmin))]
              for (setting, pair), g in dr.groupby(["setting", "pair"])}
    rows = [claim_from(
        "S2.d", f"{text} (median {dr.start_gap.median():.1e}) at more "
        f"than {rmin:g} decade(s) per 1,000 steps until it reaches {level:g} ({n_sep} of {len(dr)} runs reached it "
        f"within {cfg['exactness']['steps']} steps; median step {np.median(sep):.0f}). {exact_net(cfg, ' on ')}; "
        f"geometric mean over seeds, stratified over settings, each setting judged as a stratum; rates floored at "
        f"{RATE_FLOOR:g}", SOURCE, f"decades of float32 weight gap per 1,000 steps (to {level:g}), geometric mean",
        mean_ci(groups, ci=ci, log=True), kind="headline", above=rmin,  # rates are positive and skewed: geometric mean
        strata=strata, stratum="setting")]
    rows.append(claim_from("S2.d[rounding]", "Check: the float32 pairs start at rounding level (gap over the first "
                           "logged steps below 1e-5), so the drift is rounding error amplified by training, not an "
                           "implementation difference", "measured here", "max over runs of the start gap",
                           exact(float(dr.start_gap.max()), len(dr)), kind="check", below=1e-5))
    return rows


def analyze(metrics, summary, cfg, extra=None):
    import pandas as pd

    ex = load_exact(extra)
    acc = Paired(summary, cfg["claims"]["ci"])
    rows = exactness_claims(ex, cfg) + texp_claims(acc, cfg) + growth_claims(metrics, acc, cfg) + drift_claims(ex, cfg)
    return pd.DataFrame(rows)
