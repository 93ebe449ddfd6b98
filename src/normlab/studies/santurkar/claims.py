"""S1 claims: one row per run (train-mode and noise-free metrics), one row per (run, probe measure), the claims.

numpy, pandas and ``normlab.stats`` are imported inside the functions (the Snakefile imports the study at
parse time)."""

from __future__ import annotations

import math
from pathlib import Path

from .variants import (
    NORM_LABEL,
    claim_needs,
    claim_rates,
    early_steps,
    n_weight_layers,
    net_entry,
    net_train,
    setup_text,
)

PAPER = "Santurkar et al. 2018"
CHANCE = 0.1  # 10 classes
CHANCE_LOSS = math.log(10)  # cross-entropy of the uniform prediction over 10 classes: a diverged run's loss
# The noise-free metrics (``bn_clean/<name>``) and a diverged run's value
NOISE_FREE = {"train_acc": CHANCE, "train_loss": CHANCE_LOSS, "test_acc": CHANCE}
MEASURES = {"loss_range": "loss range", "grad_diff_max": "gradient predictiveness (max ||grad change||)",
            "beta": "effective beta-smoothness"}
# S1.c's three measures: (name in the probe table, the claim's metric, the side that supports the paper)
ICS_METRICS = {"l2": "log10 ||G-G'||(bn) - log10 ||G-G'||(none)", "rel": "log10 rel(bn) - log10 rel(none)",
               "cos": "cos(G,G')(bn) - cos(G,G')(none)"}


# ---------------------------------------------------------------------------------------------
# Tables


def run_table(summary, metrics, tail: float):
    """One row per run: train-mode accuracy and loss over the last ``tail`` of steps (chance if diverged),
    eval-mode final train/test accuracy, and the learned weights' noise-free train accuracy, train loss and
    test accuracy (``bn_clean/*`` at the last step: noise off, BN statistics recomputed over the training
    set; chance if diverged: ``clean_train_acc``, ``clean_train_loss``, ``clean_test_acc``; the test
    accuracy also as ``test_acc_clean``, NaN if diverged)."""
    import numpy as np
    import pandas as pd

    runs = summary.copy()
    ok = runs.status == "ok"
    steps = metrics.groupby(["variant", "seed"]).step.max().rename("last")
    m = metrics[metrics.metric.isin(["batch_acc", "batch_loss"])].join(steps, on=["variant", "seed"])
    m = m[m.step >= (1 - tail) * (m["last"] + 1)]
    tailm = m.groupby(["variant", "seed", "metric"]).value.mean().unstack("metric")
    runs = runs.join(tailm, on=["variant", "seed"])
    runs["train_acc"] = runs.get("batch_acc", pd.Series(np.nan, index=runs.index)).where(ok, CHANCE).fillna(CHANCE)
    runs["train_loss"] = runs.get("batch_loss", pd.Series(np.nan, index=runs.index)).where(ok)
    for col in ("final_train_acc", "final_test_acc"):
        runs[col.removeprefix("final_") + "_eval"] = runs.get(col, pd.Series(np.nan, index=runs.index)).where(ok)
    clean = metrics[metrics.metric.str.startswith("bn_clean/")].groupby(["variant", "seed", "metric"]).value.last()
    for name, chance in NOISE_FREE.items():  # the learned weights, noise off: chance if diverged
        v = clean.xs(f"bn_clean/{name}", level="metric") if f"bn_clean/{name}" in set(clean.index.get_level_values(
            "metric")) else pd.Series(np.nan, index=pd.MultiIndex.from_arrays([[], []], names=["variant", "seed"]))
        runs[f"clean_{name}"] = runs.join(v.rename("v"), on=["variant", "seed"]).v.where(ok, chance)
    runs["test_acc_clean"] = runs.clean_test_acc.where(ok)  # the lr sweep figure: diverged runs left out
    return runs


def _log10_mean(v) -> float:
    """Geometric mean on a log10 scale over the finite, positive values (nan if none)."""
    import numpy as np

    v = v[np.isfinite(v) & (v > 0)]
    return float(np.log10(v).mean()) if len(v) else np.nan


def probe_table(metrics, keys=("net", "norm", "lr", "seed")):
    """One row per (run, measure): ICS (log10 l2 and rel, mean cos per layer) and log10 landscape measures."""
    import numpy as np
    import pandas as pd

    rows = []
    m = metrics[metrics.metric.str.startswith(("ics/", "landscape/"))]
    for k, g in m.groupby(list(keys)):
        base = dict(zip(keys, k))
        for metric, s in g.groupby("metric").value:
            parts = metric.split("/")
            if parts[0] == "ics" and parts[1] in ("l2", "rel"):
                rows.append({**base, "measure": f"ics_{parts[1]}/{parts[2]}", "value": _log10_mean(s)})
            elif parts[0] == "ics" and parts[1] == "cos":
                s = s[np.isfinite(s)]
                rows.append({**base, "measure": f"ics_cos/{parts[2]}", "value": float(s.mean()) if len(s) else np.nan})
            elif parts[0] == "landscape" and parts[1] in MEASURES:
                rows.append({**base, "measure": parts[1], "value": _log10_mean(s),
                             "n_inf": int(np.isinf(s).sum())})
    return pd.DataFrame(rows)


def dln_table(extra):
    """The DLN side job's probe table (net "dln"), None without it."""
    import pandas as pd

    if not extra or "dln" not in extra:
        return None
    m = pd.read_parquet(Path(extra["dln"]) / "metrics.parquet")
    if "lr" not in m:
        m = m.assign(lr=0.0)
    return probe_table(m.assign(net="dln"), keys=("net", "norm", "lr", "seed"))


# ---------------------------------------------------------------------------------------------
# Claim texts


def lr_tag(lr) -> str:
    return f"lr={lr:g}"


def at_lrs(lrs, chosen):
    """Boolean mask: which of ``lrs`` are among ``chosen``."""
    import numpy as np

    return np.isclose(np.asarray(lrs, float)[:, None], np.asarray(chosen, float)[None, :]).any(1)


def ics_layer_text(cfg: dict) -> str:
    """The ICS layers in words; for conv nets also as conv layers of the depth used, next to the paper's VGG
    layers 5 and 10 of 10."""
    from ..setup_text import n_conv_layers

    layers = cfg["probes"]["ics_layers"]
    txt = f"weight layers {layers}"
    for n in cfg["nets"]:
        m = net_entry(cfg, n)["model"]
        convs, total = n_conv_layers(m), n_weight_layers(m)
        if convs is None or total is None or m.get("arch") != "vgg":
            continue
        ones = sorted({i % total + 1 for i in layers})
        where = f"conv layers {' and '.join(str(k) for k in ones if k <= convs)} of {convs}"
        where += ", and the read-out" if any(k > convs for k in ones) else ""
        txt += (f" ({n}: {where}, counted from 1; the paper plots VGG layers 5 and 10 of 10, scaled "
                f"to the depth used)")
    return txt


def smooth_min(cfg: dict) -> float:
    """S1.d's smallest effect of interest on the log10 scale: log10 of ``claims.smooth_min``, the factor by
    which BN's landscape measures must be lower to count as the paper's effect."""
    return math.log10(cfg["claims"]["smooth_min"])


def _smooth_text(cfg: dict) -> str:
    f = cfg["claims"]["smooth_min"]
    return (f"smallest effect of interest: lower by a factor {f:g} (a log10 ratio of -{smooth_min(cfg):.3g}), stated "
            "against the paper's gaps 'near two orders of magnitude' early on (a factor 100, a log10 ratio of -2); it "
            "fails when the interval rules out a reduction that large")


def _tail_text(c: dict) -> str:
    return f"train-mode accuracy of the training batches over the last {c['tail']:.0%} of steps"


def _where(cells) -> str:
    return ", ".join(f"{n} {lr_tag(lr)}" for n, lr in cells)


def _untrained(key: str, missing) -> str:
    return f"; 'claims.{key}' rate {', '.join(f'{x:g}' for x in missing)} not trained" if missing else ""


# ---------------------------------------------------------------------------------------------
# Claims


def analyze(metrics, summary, cfg, extra=None):
    """S1.a-S1.d (each a ``not run`` row naming what it needs when the config does not train its variants),
    the instrument check, and the per-cell rows of the MLP and the DLN."""
    import pandas as pd

    c = cfg["claims"]
    runs = run_table(summary, metrics, c["tail"])
    n_seeds = int(runs.groupby("variant").seed.nunique().min()) if len(runs) else 0
    needs = claim_needs(cfg)
    rows = s1a_claims(runs, cfg, needs["S1.a"]) + s1b_claims(runs, cfg, needs["S1.b"])
    rows += update_check(metrics, runs, cfg, n_seeds)
    pt = probe_table(metrics)
    rows += s1c_claims(pt, cfg, needs["S1.c"]) + s1d_claims(metrics, pt, cfg, needs["S1.d"])
    if len(pt) and {"none", "bn_pre"} <= set(pt.norm):
        rows += cell_claims(pt, cfg, source_c=PAPER + ", Fig. 3", source_d=PAPER + ", Fig. 4")
    dln = dln_table(extra)
    if dln is not None and not dln.empty:
        rows += cell_claims(dln.replace({"norm": {"bn": "bn_pre"}}), cfg, source_c=PAPER + ", Fig. 5 (DLN)",
                            source_d=PAPER + ", App. (DLN landscape)", prefix="DLN: ", layer_word="layer")
    return pd.DataFrame(rows)


def _cells(runs, cfg: dict, key: str, norms, probed: bool = False):
    """The (net, lr) cells of the runs; those at the rates of ``claims.<key>`` the config trains for ``norms``;
    the rates of ``claims.<key>`` it does not train."""
    cells = sorted({(r.net, r.lr) for r in runs.itertuples()})
    rates, missing = claim_rates(cfg, key, norms, probed)
    return cells, [(n, lr) for n, lr in cells if at_lrs([lr], rates)[0]] if rates else [], missing


def _with(runs, cells, norms) -> list:
    """The cells where every norm of ``norms`` has runs."""
    import numpy as np

    return [(n, lr) for n, lr in cells
            if set(norms) <= set(runs.norm[(runs.net == n) & np.isclose(runs.lr, lr)])]


def _column(runs, norm, cells, name="train_acc"):
    """Per cell, the runs' values of ``name`` for ``norm`` (one array per cell)."""
    import numpy as np

    return [runs[(runs.norm == norm) & (runs.net == n) & np.isclose(runs.lr, lr)][name].to_numpy() for n, lr in cells]


# S1.a's metric strata: label -> run-table column. The first is the paper's metric (its Fig. 2 as this study
# reads it: the noisy network in train mode); the others score the learned weights noise-free.
A_STRATA = {"train mode": "train_acc", "noise-free train acc": "clean_train_acc",
            "noise-free train loss": "clean_train_loss", "noise-free test acc": "clean_test_acc"}


def _s1a_parts(runs, cfg: dict, regime, col: str):
    """S1.a's three parts on one metric (noisy BN ~ BN, BN > standard, noisy BN > standard); a loss on the
    log10 scale (lower is better, margins ``loss_equiv``/``loss_beat`` as factors); None without data."""
    import numpy as np

    from ...stats import mean_ci

    c = cfg["claims"]
    g = {n: _column(runs, n, regime, col) for n in ("noisy_bn", "bn_pre", "none")}
    if not all(np.isfinite(np.asarray(a, float)).any() for v in g.values() for a in v):
        return None
    if col.endswith("loss"):
        g = {n: [np.log10(np.asarray(a, float)) for a in v] for n, v in g.items()}
    est = lambda a, b: mean_ci(g[a], g[b], ci=c["ci"])  # noqa: E731
    if col.endswith("loss"):
        eq, beat = math.log10(c["loss_equiv"]), math.log10(c["loss_beat"])
        return [(est("noisy_bn", "bn_pre"), {"within": (-eq, eq), "label": "log10 loss ratio noisy BN / BN"}),
                (est("none", "bn_pre"), {"above": beat, "label": "log10 loss ratio standard / BN"}),
                (est("none", "noisy_bn"), {"above": beat, "label": "log10 loss ratio standard / noisy BN"})]
    eq, beat = c["equiv_margin"], c["beat_margin"]
    return [(est("noisy_bn", "bn_pre"), {"within": (-eq, eq), "label": "noisy BN - BN"}),
            (est("bn_pre", "none"), {"above": beat, "label": "BN - standard"}),
            (est("noisy_bn", "none"), {"above": beat, "label": "noisy BN - standard"})]


def _s1a_text(cfg: dict, where: str, strata) -> str:
    c = cfg["claims"]
    eq, beat = c["equiv_margin"], c["beat_margin"]
    text = (f"Noisy BN trains about as well as BN (its {_tail_text(c)} within +-{eq:g} of BN's) and both beat the "
            f"standard net by more than {beat:g} (pooled over {where}, where the standard net is slow or fails; "
            f"{setup_text(cfg)}; a diverged run counts as chance). Value and parts: the paper's metric (Fig. 2 as "
            "read here: the noisy network in train mode, so the noise in the forward pass is part of what is "
            "scored); value noisy BN - BN; the verdict needs all three parts")
    if strata:
        loss = "noise-free train loss" in strata
        text += (". Strata (metric), each judged on its own (rows S1.a[<metric>]): the learned weights noise-free "
                 "(noise off, BN statistics recomputed over the training set): "
                 f"{', '.join(k.removeprefix('noise-free ') for k in strata)}"
                 + ("; accuracies with the same margins, the train loss on a log10 scale (noisy BN within a factor "
                    f"{c['loss_equiv']:g} of BN's, BN and noisy BN below the standard net's by more than a factor "
                    f"{c['loss_beat']:g}; a diverged run counts as the chance loss ln 10)" if loss else
                    ", with the same margins")
                 + "; strata that disagree make it mixed (the strata are in different units: their agreement test "
                 "is descriptive). The paper's metric (train mode) is this row's own test and not also a stratum: "
                 "a train-mode stratum would be the same estimate tested twice in the family")
    return text


def s1a_claims(runs, cfg: dict, needs: str | None) -> list[dict]:
    """S1.a: noisy BN ~ BN; both beat the standard net, in the regime where BN matters (pooled, with metric
    strata), then per cell; ``not run`` with what it needs when the config lacks its variants."""
    from ...stats import claim_all, claim_from, not_run

    c = cfg["claims"]
    eq, beat, tail = c["equiv_margin"], c["beat_margin"], _tail_text(c)
    cells, regime, missing = _cells(runs, cfg, "regime_lrs", ("none", "bn_pre", "noisy_bn"))
    source, metric = PAPER + ", Fig. 2", "train_acc(noisy_bn) - train_acc(bn_pre)"
    strata = {k: p for k, col in A_STRATA.items() if needs is None and regime
              for p in [_s1a_parts(runs, cfg, regime, col)] if p is not None}
    if "train mode" not in strata:
        return [not_run("S1.a", "Noisy BN trains about as well as BN and both train clearly better than the "
                        "standard net, where the standard net is slow or fails", source,
                        needs or "runs of none, bn_pre and noisy_bn at the rates of 'claims.regime_lrs' (none found)",
                        metric=metric)]
    where = _where(regime) + _untrained("regime_lrs", missing)
    parts = strata["train mode"]
    noise_free = {k: p for k, p in strata.items() if k != "train mode"}  # the row's own test is the train mode
    rows = [claim_all("S1.a", _s1a_text(cfg, where, noise_free), source, metric, parts, kind="headline",
                      strata=noise_free or None, stratum="metric")]
    rows.append(claim_from("S1.a[noisy_bn ~ bn_pre, pooled]", f"noisy BN's {tail} within +-{eq:g} of BN's "
                           f"(pooled over {where})", source, metric, parts[0][0], within=(-eq, eq)))
    for better, (est, _) in (("bn_pre", parts[1]), ("noisy_bn", parts[2])):
        rows.append(claim_from(f"S1.a[{better} > none, pooled]", f"{NORM_LABEL[better]}'s {tail} exceeds the "
                               f"standard net's by more than {beat:g} (pooled over {where})", source,
                               f"train_acc({better}) - train_acc(none)", est, above=beat))
    return rows + _s1a_cells(runs, cfg, _with(runs, cells, ("none", "bn_pre", "noisy_bn")))


def _s1a_cells(runs, cfg: dict, cells) -> list[dict]:
    from ...stats import claim_from, mean_ci

    c = cfg["claims"]
    ci, eq, beat, tail = c["ci"], c["equiv_margin"], c["beat_margin"], _tail_text(c)
    rows = []
    for n, lr in cells:
        tag = f"{n} {lr_tag(lr)}"
        col = lambda norm, n=n, lr=lr: _column(runs, norm, [(n, lr)])  # noqa: E731
        rows.append(claim_from(f"S1.a[{tag}: noisy_bn ~ bn_pre]", f"noisy BN's {tail} within +-{eq:g} of BN's "
                               f"({tag})", PAPER + ", Fig. 2", "train_acc(noisy_bn) - train_acc(bn_pre)",
                               mean_ci(col("noisy_bn"), col("bn_pre"), ci=ci), within=(-eq, eq)))
        for better in ("bn_pre", "noisy_bn"):
            rows.append(claim_from(f"S1.a[{tag}: {better} > none]", f"{NORM_LABEL[better]}'s {tail} exceeds "
                                   f"the standard net's by more than {beat:g} ({tag})", PAPER + ", Fig. 2",
                                   f"train_acc({better}) - train_acc(none)",
                                   mean_ci(col(better), col("none"), ci=ci), above=beat))
    return rows


def s1b_claims(runs, cfg: dict, needs: str | None) -> list[dict]:
    """S1.b (our control): noise without BN stops training, where the noise-free standard net trains."""
    from ...stats import claim_from, mean_ci, not_run

    c = cfg["claims"]
    ci, tail = c["ci"], _tail_text(c)
    cells, measured, missing = _cells(runs, cfg, "measure_lrs", ("noise_only",))
    thr = CHANCE + c["stop_margin"]
    text = (f"Control: the same noise without BN stops training: noise_only's {tail} is below chance + "
            f"{c['stop_margin']:g} = {thr:g}")
    if needs is not None or not measured:
        return [not_run("S1.b", text, PAPER + ", Sec. 2.2", needs or "runs of noise_only at 'claims.measure_lrs'",
                        kind="check", metric="train_acc(noise_only)")]
    cells = _with(runs, cells, ("noise_only",))
    rows = [claim_from("S1.b", f"{text} (pooled over {_where(measured)}{_untrained('measure_lrs', missing)}, where "
                       "the standard net trains; a diverged run counts as chance)", PAPER + ", Sec. 2.2",
                       "train_acc(noise_only)", mean_ci(_column(runs, "noise_only", measured), ci=ci), below=thr,
                       kind="check")]
    for n, lr in cells:
        rows.append(claim_from(f"S1.b[{n} {lr_tag(lr)}]", f"noise_only's {tail} below {thr:g} ({n} "
                               f"{lr_tag(lr)})", PAPER + ", Sec. 2.2", "train_acc(noise_only)",
                               mean_ci(_column(runs, "noise_only", [(n, lr)]), ci=ci), below=thr, kind="check"))
    return rows


def update_check(metrics, runs, cfg: dict, n_seeds: int) -> list[dict]:
    """Instrument check: under plain SGD the landscape grid's unit step (the actual update) is eta * ||g||."""
    from ...stats import claim, verdict_below

    opt = cfg["optimizer"]
    sn = metrics[metrics.metric.isin(["landscape/step_norm", "landscape/grad_norm"])]
    if opt.get("name") != "sgd" or opt.get("momentum") or opt.get("weight_decay") or not len(sn):
        return []
    w = sn.pivot_table(index=["variant", "seed", "step"], columns="metric", values="value").join(
        runs.set_index(["variant", "seed"]).lr, on=["variant", "seed"])
    w = w[w["landscape/grad_norm"] > 0]
    dev = float((w["landscape/step_norm"] / (w.lr * w["landscape/grad_norm"]) - 1).abs().max())
    return [claim("S1.d[check: update = eta g]", "Instrument: under plain SGD the landscape probe's unit step "
                  "(the actual update w_t+1 - w_t) has length eta ||g|| at every probe (max relative "
                  "deviation below 1e-4)", "this study", "max |step_norm / (eta ||g||) - 1|", dev, dev, dev,
                  "< 0.0001", verdict_below(dev, dev, 1e-4), n_seeds, kind="check")]


def bn_minus_none(tab, measure_re: str, where, ci: float):
    """Stratified BN - none difference over the (net, lr, measure) strata of ``tab`` whose measure matches
    ``measure_re`` and rows satisfy ``where(tab)``, where both norms exist (None if none)."""
    from ...stats import mean_ci

    sub = tab[tab.measure.str.fullmatch(measure_re) & where(tab)]
    a, b = [], []
    for _, g in sub.groupby(["net", "lr", "measure"]):
        x, y = g[g.norm == "bn_pre"].value.dropna().to_numpy(), g[g.norm == "none"].value.dropna().to_numpy()
        if len(x) and len(y):
            a.append(x)
            b.append(y)
    return mean_ci(a, b, ci=ci) if a else None


def _ics_side(q: str, cfg: dict) -> dict:
    """S1.c's side of measure ``q``: the log10 BN / none ratio stays above -log10(ics_similar); the cos difference
    below cos_margin."""
    c = cfg["claims"]
    return {"below": c["cos_margin"]} if q == "cos" else {"above": -math.log10(c["ics_similar"])}


ICS_LABEL = {"l2": "log10 ||G-G'|| BN / standard", "rel": "log10 relative ICS BN / standard",
             "cos": "cos(G, G') BN - standard"}


def _ics_parts(pt, cfg: dict, where, layer: str = r"\d+"):
    """S1.c's three parts (l2, rel, cos) pooled over the rows ``where`` selects; None if one is missing."""
    est = {q: bn_minus_none(pt, rf"ics_{q}/{layer}", where, cfg["claims"]["ci"]) for q in ICS_METRICS}
    if any(e is None for e in est.values()):
        return None
    return [(e, {**_ics_side(q, cfg), "label": ICS_LABEL[q]}) for q, e in est.items()]


def _layers(tab) -> list[str]:
    return sorted({m.split("/")[1] for m in tab.measure if m.startswith("ics_l2/")}, key=int)


def s1c_claims(pt, cfg: dict, needs: str | None) -> list[dict]:
    """S1.c: BN does not reduce ICS, pooled over the ICS layers and ``ics_lrs`` (three parts; strata: layer x
    measure), each measure pooled, and each rate of ``ics_lrs`` (``not run`` where the config does not train it)."""
    from ...stats import claim_all, claim_from, not_run

    c = cfg["claims"]
    source = PAPER + ", Figs. 3, 5"
    rates, missing = claim_rates(cfg, "ics_lrs", ("none", "bn_pre"), probed=True)
    at = lambda t: at_lrs(t.lr.to_numpy(), rates) if rates else t.lr < 0  # noqa: E731
    parts = _ics_parts(pt, cfg, at) if needs is None and len(pt) and {"none", "bn_pre"} <= set(pt.norm) else None
    text = (f"BN does not reduce ICS (Def. 2.1): BN's ||G - G'|| and ||G - G'||/||G|| are at least 1/{c['ics_similar']:g} "
            f"of the standard net's (geometric means over probe steps) and its cos(G, G') is not higher by more than "
            f"{c['cos_margin']:g}")
    if parts is None:
        return [not_run("S1.c", text, source, needs or "ICS probes of none and bn_pre at 'claims.ics_lrs' (none found)",
                        metric=ICS_METRICS["l2"])]
    strata = {f"layer {layer} {q}": [p] for layer in _layers(pt)
              for q, p in zip(ICS_METRICS, _ics_parts(pt, cfg, at, layer) or [])}
    rows = [claim_all(
        "S1.c", f"{text}; {ics_layer_text(cfg)}, lr in [{', '.join(f'{x:g}' for x in rates)}] (the paper's Fig. 3: 0.1 "
        f"and 0.01){_untrained('ics_lrs', missing)}, pooled ({setup_text(cfg, ' ')}). Value: log10 ||G-G'|| ratio; "
        "the verdict needs all three parts (rows S1.c[l2|rel|cos, pooled]); strata: layer x measure, each judged "
        "on its own (rows S1.c[layer <i> <measure>], 0-based); strata that disagree make it mixed",
        source, ICS_METRICS["l2"], parts, kind="headline", strata=strata, stratum="layer x measure")]
    for (est, side), q in zip(parts, ICS_METRICS):
        what = {"l2": f"BN's ||G - G'|| at least 1/{c['ics_similar']:g} of the standard net's (log10 ratio",
                "rel": f"BN's relative ICS ||G - G'||/||G|| (scale-free) at least 1/{c['ics_similar']:g} of the "
                       "standard net's (log10 ratio",
                "cos": f"cos(G, G') with BN not higher than without by more than {c['cos_margin']:g} ("}[q]
        rows.append(claim_from(f"S1.c[{q}, pooled]", f"{what}; pooled)", PAPER + ", Fig. 3", ICS_METRICS[q], est,
                               **{k: v for k, v in side.items() if k != "label"}))
    return rows + _s1c_per_lr(pt, cfg, rates, text)


def _s1c_per_lr(pt, cfg: dict, rates, text: str) -> list[dict]:
    """S1.c at each rate of ``claims.ics_lrs`` (when there are several): the three parts pooled over layers."""
    import numpy as np

    from ...stats import claim_all, not_run

    wanted = cfg["claims"]["ics_lrs"] or rates
    rows = []
    for lr in wanted if len(wanted) > 1 else []:
        cid = f"S1.c[{lr_tag(lr)}]"
        if not (rates and at_lrs([lr], rates)[0]):
            rows.append(not_run(cid, f"{text} ({lr_tag(lr)})", PAPER + ", Fig. 3", f"{lr_tag(lr)} trained for "
                                "norms none and bn_pre with the ICS probe (add it to 'probes.lrs')", kind="cell",
                                metric=ICS_METRICS["l2"]))
            continue
        parts = _ics_parts(pt, cfg, lambda t, lr=lr: np.isclose(t.lr, lr))
        if parts is not None:
            rows.append(claim_all(cid, f"{text} ({lr_tag(lr)}, pooled over the ICS layers; the verdict needs all "
                                  "three parts)", PAPER + ", Fig. 3", ICS_METRICS["l2"], parts))
    return rows


def _early(metrics, cfg: dict):
    """The metrics of S1.d's early window: after step 0, up to ``claims.early`` of each net's steps."""
    limit = metrics.net.map({n: cfg["claims"]["early"] * net_train(cfg, n)["steps"] for n in cfg["nets"]})
    return metrics[(metrics.step > 0) & (metrics.step <= limit)]


def s1d_claims(metrics, pt, cfg: dict, needs: str | None) -> list[dict]:
    """S1.d: BN makes the landscape smoother, on the early window (after step 0), pooled over the three measures
    and ``measure_lrs`` (strata: measure); the same over all probe steps (a cell)."""
    from ...stats import claim_from, not_run

    c = cfg["claims"]
    ci, sm = c["ci"], smooth_min(cfg)
    rates, missing = claim_rates(cfg, "measure_lrs", ("none", "bn_pre"), probed=True)
    at = lambda t: at_lrs(t.lr.to_numpy(), rates) if rates else t.lr < 0  # noqa: E731
    early = probe_table(_early(metrics, cfg)) if needs is None and len(pt) else pt.iloc[:0]
    d = bn_minus_none(early, "|".join(MEASURES), at, ci) if len(early) and {"none", "bn_pre"} <= set(early.norm) else None
    steps = "; ".join(f"{n}: probe steps {', '.join(map(str, early_steps(cfg, n)))}" for n in cfg["nets"])
    text = ("BN makes the landscape smoother: loss range, gradient predictiveness (max ||grad change||) and effective "
            f"beta along the actual update (step sizes {cfg['probes']['landscape']['scales']} x the update) are lower "
            "with BN: log10 ratio below 0")
    if d is None:
        return [not_run("S1.d", text, PAPER + ", Fig. 4", needs or "landscape probes of none and bn_pre in the early "
                        "window (none found)", metric="log10 measure(bn) - log10 measure(none)")]
    lrs = f"lr in [{', '.join(f'{x:g}' for x in rates)}]{_untrained('measure_lrs', missing)}"
    strata = {m: [(e, {"below": 0.0, "sesoi": sm, "label": MEASURES[m]})] for m in MEASURES
              for e in [bn_minus_none(early, m, at, ci)] if e is not None}
    rows = [claim_from(
        "S1.d", f"{text}, pooled over the three measures, {lrs}, early in training as the paper stresses: the probe "
        f"steps after step 0 (the initialization) up to {c['early']:.0%} of the steps ({steps}) ({setup_text(cfg, ' ')}; "
        f"{_smooth_text(cfg)}); strata: measure (rows S1.d[<measure>]); strata that disagree make it mixed; every "
        "probe step: row S1.d[all steps]", PAPER + ", Fig. 4", "log10 measure(bn) - log10 measure(none)", d,
        below=0.0, sesoi=sm, kind="headline", strata=strata if len(strata) > 1 else None, stratum="measure")]
    whole = bn_minus_none(pt, "|".join(MEASURES), at, ci)
    if whole is not None:
        rows.append(claim_from("S1.d[all steps]", f"{text}, pooled over the three measures, {lrs}, every probe step "
                               f"from step 0 ({_smooth_text(cfg)})", PAPER + ", Fig. 4",
                               "log10 measure(bn) - log10 measure(none)", whole, below=0.0, sesoi=sm))
    return rows


def cell_claims(tab, cfg: dict, *, source_c: str, source_d: str, prefix: str = "",
                layer_word: str = "weight layer") -> list[dict]:
    """Per (net, lr) cell of a probe table (the MLP's or the DLN's): S1.c per ICS layer and measure, S1.d per
    landscape measure (every probe step). ``prefix`` starts each text ("DLN: "); ``layer_word`` names a layer."""
    import numpy as np

    from ...stats import claim_from

    c = cfg["claims"]
    ci, sm = c["ci"], smooth_min(cfg)
    rows = []
    for (net, lr), _ in tab.groupby(["net", "lr"]):
        cell = lambda t, net=net, lr=lr: (t.net == net) & np.isclose(t.lr, lr)  # noqa: E731
        tag = f"{net} {lr_tag(lr)}"
        for layer in _layers(tab):
            for q, metric in ICS_METRICS.items():
                e = bn_minus_none(tab, f"ics_{q}/{layer}", cell, ci)
                if e is not None:
                    rows.append(claim_from(f"S1.c[{tag} layer {layer} {q}]", f"{prefix}ICS ({q}) of {layer_word} "
                                           f"{layer} (0-based) with BN not lower than without ({tag})", source_c,
                                           metric, e, **_ics_side(q, cfg)))
        for mname in MEASURES:
            e = bn_minus_none(tab, mname, cell, ci)
            if e is not None:
                rows.append(claim_from(f"S1.d[{tag} {mname}]", f"{prefix}{MEASURES[mname]} lower with BN ({tag}; "
                                       f"every probe step; smallest effect of interest a factor {c['smooth_min']:g})",
                                       source_d, f"log10 {mname}(bn) - log10 {mname}(none)", e, below=0.0, sesoi=sm))
    return rows
