"""S1: Santurkar et al. (2018), "How does batch normalization help optimization?"

Grid: network (``nets``: names of ``models`` entries, each a model and optional own ``steps``) x
normalization (none | bn_pre | noisy_bn | noise_only) x learning rate (``lrs``: the sweep that shows
where BN matters), each over ``seeds`` (batched: one job per variant and block of
``seed_block`` seeds). Variants whose norm is in ``probes.norms`` carry the ``ics`` and ``landscape``
probes; every variant carries ``unit_activations`` (Fig. 2 histograms) and ``bn_clean_eval`` at the
last step (test accuracy with noise-free BN statistics recomputed over the training set).
The deep linear network (DLN) runs as its own job (``santurkar_dln``) and comes in as ``extra['dln']``.

Training accuracy is what the paper plots: the train-mode accuracy of the step's own batch
(``batch_acc``, logged every ``train.log_every`` steps), averaged over the last ``claims.tail``
fraction of steps; a diverged run counts as chance (0.1). Claims (thresholds in ``claims``; Student t
intervals over seeds, stratified over cells when pooled; ``normlab.stats.finalize`` applies one
multiplicity rule per family and reads the verdicts):

- S1.a (headline) noisy BN trains about as well as BN (train-mode accuracy gap within
  +-``equiv_margin``) and both beat the standard net by more than ``beat_margin``, pooled over the
  ``regime_lrs`` (where the standard net is slow or fails). One row: value = the noisy-BN-minus-BN
  gap; the verdict is the intersection-union test of the three parts (shown as cell rows).
- S1.b (check, our control) the same noise without BN stops training: noise_only's train-mode
  accuracy below chance + ``stop_margin``, pooled over ``measure_lrs`` (where the standard net trains).
- S1.c (headline) BN does not reduce ICS: over the ICS layers and ``measure_lrs``, BN's ||G - G'||
  and ||G - G'|| / ||G|| are at least 1/``ics_similar`` of the standard net's (geometric means over
  probe steps, log10 scale) and cos(G, G') is not higher by more than ``cos_margin`` (intersection).
- S1.d[check: update = eta g] (check): under plain SGD the landscape grid's unit step, the actual
  update, has length eta ||g|| (the probe's instrument identity).
- S1.d (headline) BN makes the landscape smoother: log10 of loss range, gradient predictiveness
  and effective beta, BN minus no BN, below 0, pooled over the three measures and ``measure_lrs``;
  it fails when the interval rules out a reduction by the factor ``smooth_min`` (the smallest effect
  of interest, 1.25: the factor S1.c calls similar).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from ...plotting import save_figure
from ...stats import claim, claim_all, claim_from, mean_ci, verdict_below
from .. import Figure, SideJob

TITLE = "S1: Santurkar et al. 2018, How does batch normalization help optimization?"
CATEGORY = "S1 Santurkar et al."
FIGURES = [
    Figure("train_accuracy.png", "training accuracy, train mode (Fig. 2)"),
    Figure("test_accuracy.png", "test accuracy (Fig. 2)"),
    Figure("train_loss.png", "training loss, train mode (Figs. 7-8)"),
    Figure("lr_sweep.png", "learning-rate sweep (regime choice)"),
    Figure("activation_histograms.png", "activation histograms (Fig. 2)"),
    Figure("ics.png", "ICS (Figs. 3-4)"),
    Figure("landscape.png", "landscape (Fig. 4)"),
    Figure("dln.png", "deep linear network (Fig. 5)"),
    Figure("claims.png", "claims"),
]
PAPERS = [{"cite": "Santurkar, Tsipras, Ilyas, Madry. How does batch normalization help optimization? NeurIPS 2018",
           "url": "https://arxiv.org/abs/1805.11604"}]
_SETUP = ("MNIST-1D instead of CIFAR-10; a deep ReLU MLP (default 10 x 64, Glorot) instead of the VGG CNN; "
          "plain SGD, batch 128, 4,000 steps instead of 15,000; 8 seeds")
HEADLINES = {
    "S1.a": {"statement": "Noisy BN (BN followed by random, non-stationary shifts and scalings, Algorithm 1) trains "
                          "about as well as BN, and both train clearly better than the standard network (Fig. 2)",
             "departures": _SETUP + "; measured at the learning rates where the standard net is slow or fails "
                                    "(chosen from the study's own lr sweep, since at small rates the standard "
                                    "MLP reaches 100% training accuracy); train-mode training accuracy over the "
                                    "last 10% of steps; 'about as well' = within 5 points, 'clearly better' = "
                                    "more than 10 points",
             "figures": ["train_accuracy", "lr_sweep", "train_loss", "test_accuracy", "activation_histograms"]},
    "S1.c": {"statement": "BN does not reduce internal covariate shift (Def. 2.1): networks with BN show similar or "
                          "larger ||G - G'|| and no higher cos(G, G') than networks without (Figs. 3, 5)",
             "departures": _SETUP + "; ICS of two weight layers every probe step at the rate where the standard "
                                    "net trains (lr 0.1, the paper's rate); 'similar' = within a factor 1.25; "
                                    "also the scale-free ||G - G'|| / ||G||",
             "figures": ["ics", "dln"]},
    "S1.d": {"statement": "BN makes the loss landscape smoother: the loss range, the gradient change and the "
                          "effective beta-smoothness along the update are smaller with BN (Fig. 4)",
             "departures": _SETUP + "; step sizes 0.5-4 x the actual update (= eta x gradient under plain SGD), "
                                    "8 points, every probe step, at lr 0.1; pooled over the three measures",
             "figures": ["landscape", "dln"]},
}

PAPER = "Santurkar et al. 2018"
CHANCE = 0.1  # 10 classes
EARLY_FRAC = 0.2  # S1.d[early]: the first fifth of training ("two orders of magnitude early on")
NORM_LABEL = {"none": "standard", "bn_pre": "BN", "noisy_bn": "noisy BN", "noise_only": "standard + noise"}
MEASURES = {"loss_range": "loss range", "grad_diff_max": "gradient predictiveness (max ||grad change||)",
            "beta": "effective beta-smoothness"}


def check_config(cfg: dict) -> list[str]:
    """Cross-key checks (names relative to the study's section)."""
    out = []
    missing = [n for n in cfg["nets"] if n not in cfg["models"]]
    if missing:
        out.append(f"'nets' {missing} must be keys of 'models' {sorted(cfg['models'])}")
    lrs = cfg["lrs"]
    for key in ("measure_lrs", "regime_lrs"):
        bad = [lr for lr in cfg["claims"][key] if not np.isclose(lr, lrs).any()]
        if bad:
            out.append(f"'claims.{key}' {bad} must be among 'lrs' {lrs}")
    bad = [n for n in cfg["probes"]["norms"] if n not in cfg["norms"]]
    if bad:
        out.append(f"'probes.norms' {bad} must be among 'norms' {cfg['norms']}")
    for net in [n for n in cfg["nets"] if n in cfg["models"]]:
        depth = n_weight_layers(cfg["models"][net]["model"])
        bad = [i for i in cfg["probes"]["ics_layers"] if depth is not None and not -depth <= i < depth]
        if bad:
            out.append(f"'probes.ics_layers' {bad} must be weight-layer indices of 'models.{net}' "
                       f"({depth} weight layers: -{depth}..{depth - 1})")
        steps = cfg["models"][net].get("steps", cfg["train"]["steps"])
        if cfg["train"]["eval_every"] > steps:
            out.append(f"'train.eval_every' {cfg['train']['eval_every']} must be at most the steps of "
                       f"'models.{net}' ({steps})")
        if cfg["probes"]["every"] > steps:
            out.append(f"'probes.every' {cfg['probes']['every']} must be at most the steps of 'models.{net}' ({steps})")
    d = cfg["dln"]
    bad = [i for i in d["ics_layers"] if not -d["depth"] <= i < d["depth"]]
    if bad:
        out.append(f"'dln.ics_layers' {bad} must be layer indices within 'dln.depth' {d['depth']}")
    if d["probe_every"] > d["steps"]:
        out.append(f"'dln.probe_every' {d['probe_every']} must be at most 'dln.steps' {d['steps']}")
    return out


DEFAULT_CHANNELS = {"cnn1d": 4, "vgg": 10}  # conv layers of normlab.models.cnn's defaults


def n_weight_layers(model: dict) -> int | None:
    """Weight layers (Linear / Conv) of a model entry, torch-free: an MLP's depth hidden layers + the output;
    a CNN's convolutions (``channels``) + the output layer; None for other architectures (not checked)."""
    arch = model.get("arch", "mlp")
    if arch == "mlp":
        return int(model.get("depth", 1)) + 1
    if arch in DEFAULT_CHANNELS:
        return len(model.get("channels") or [0] * DEFAULT_CHANNELS[arch]) + 1
    return None
    if "channels" in model:
        return len(model["channels"]) + 1
    return int(model.get("depth", 1)) + 1


def setup_text(cfg: dict, joiner: str = ", ") -> str:
    """Dataset, nets and optimizer as the claim texts name them: the default's wording on MNIST-1D,
    else what was run (dataset, each net, steps, seeds)."""
    from ..setup_text import dataset_text, is_default_setup, model_text

    if is_default_setup(cfg):
        return joiner.join(["MNIST-1D", "MLP", "plain SGD"]) if joiner == ", " else "MNIST-1D MLP, plain SGD"
    nets = "; ".join(f"{model_text(net_entry(cfg, n)['model'], cfg['dataset'])}, {net_train(cfg, n)['steps']:,} steps"
                     for n in cfg["nets"])
    return (f"{dataset_text(cfg['dataset'])} instead of CIFAR-10; {nets} (the paper: VGG, 15,000 steps); plain SGD, "
            f"batch {cfg['train']['batch_size']}, {cfg['seeds']} seeds")


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


def side_jobs(cfg: dict) -> dict:
    return {"dln": SideJob("normlab.studies.santurkar.dln", "dln", directory=True, reads=("dln",),
                           doc="S1: the deep linear network (full-batch GD) with and without BN, with ICS and "
                               "landscape probes.")}


def variants(cfg: dict) -> dict:
    p = cfg["probes"]
    h = p["histogram"]
    out = {}
    for net in cfg["nets"]:
        model = net_entry(cfg, net)["model"]
        for norm in cfg["norms"]:
            for lr in cfg["lrs"]:
                steps = net_train(cfg, net)["steps"]
                # unit_activations first: it imports normlab.probes.ics, which also registers bn_clean_eval
                probes = [{"name": "unit_activations", "every": 1, "at": hist_steps(cfg, net), "layer": h["layer"],
                           "unit": h["unit"], "max_values": h["max_values"]},
                          {"name": "bn_clean_eval", "every": 1, "at": [steps - 1],
                           "batch_size": cfg["train"]["batch_size"]}]
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


def run_table(summary: pd.DataFrame, metrics: pd.DataFrame, tail: float) -> pd.DataFrame:
    """One row per run: train-mode accuracy and loss over the last ``tail`` of steps (chance if diverged),
    eval-mode final train/test accuracy and the clean-BN test accuracy (NaN if diverged)."""
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
    clean = metrics[metrics.metric == "bn_clean/test_acc"].groupby(["variant", "seed"]).value.last()
    runs = runs.join(clean.rename("test_acc_clean"), on=["variant", "seed"])
    runs["test_acc_clean"] = runs.test_acc_clean.where(ok)
    return runs


def _log10_mean(v: pd.Series) -> float:
    """Geometric mean on a log10 scale over the finite, positive values (nan if none)."""
    v = v[np.isfinite(v) & (v > 0)]
    return float(np.log10(v).mean()) if len(v) else np.nan


def probe_table(metrics: pd.DataFrame, keys=("net", "norm", "lr", "seed")) -> pd.DataFrame:
    """One row per (run, measure): ICS (log10 l2 and rel, mean cos per layer) and log10 landscape measures."""
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


# ---------------------------------------------------------------------------------------------
# Claims


def _lr_tag(lr):
    return f"lr={lr:g}"


def _at(lrs, chosen):
    return np.isclose(np.asarray(lrs, float)[:, None], np.asarray(chosen, float)[None, :]).any(1)


def conjunction(cid, text, source, metric, parts, n=None, kind="headline"):
    """One row for a claim that holds only if every part holds and fails if any part fails
    (``stats.claim_all``: intersection-union for holds, Bonferroni over the parts for fails); the value
    and interval shown are the first part's. ``parts``: (Estimate, dict(above=/below=/within=, label=))."""
    return claim_all(cid, text, source, metric, parts, kind=kind)


def smooth_min(cfg: dict) -> float:
    """S1.d's smallest effect of interest on the log10 scale: log10 of ``claims.smooth_min``, the factor by
    which BN's landscape measures must be lower to count (1.25: the factor S1.c calls 'similar')."""
    return float(np.log10(cfg["claims"]["smooth_min"]))


def analyze(metrics, summary, cfg, extra=None):
    c = cfg["claims"]
    ci = c["ci"]
    runs = run_table(summary, metrics, c["tail"])
    n_seeds = int(runs.groupby("variant").seed.nunique().min())
    norms = set(runs.norm)
    cells = sorted({(r.net, r.lr) for r in runs.itertuples()})
    regime = [(n, lr) for n, lr in cells if _at([lr], c["regime_lrs"] or [lr])[0]]
    measured = [(n, lr) for n, lr in cells if _at([lr], c["measure_lrs"] or [lr])[0]]
    rows = []
    tail = f"train-mode accuracy of the training batches over the last {c['tail']:.0%} of steps"

    def col(norm, cell_list, name="train_acc"):
        return [runs[(runs.norm == norm) & (runs.net == n) & np.isclose(runs.lr, lr)][name].to_numpy()
                for n, lr in cell_list]

    eq, beat = c["equiv_margin"], c["beat_margin"]
    # S1.a: noisy BN ~ BN; both beat the standard net, in the regime where BN matters.
    if {"bn_pre", "noisy_bn", "none"} <= norms and regime:
        gap = mean_ci(col("noisy_bn", regime), col("bn_pre", regime), ci=ci)
        bn_beats = mean_ci(col("bn_pre", regime), col("none", regime), ci=ci)
        nb_beats = mean_ci(col("noisy_bn", regime), col("none", regime), ci=ci)
        where = ", ".join(f"{n} {_lr_tag(lr)}" for n, lr in regime)
        rows.append(conjunction(
            "S1.a", f"Noisy BN trains about as well as BN (its {tail} within +-{eq:g} of BN's) and both beat the "
            f"standard net by more than {beat:g} (pooled over {where}, where the standard net is slow or fails; "
            f"{setup_text(cfg)}; a diverged run counts as chance). Value: noisy BN - BN; the verdict needs "
            f"all three parts (rows S1.a[...])", PAPER + ", Fig. 2", "train_acc(noisy_bn) - train_acc(bn_pre)",
            [(gap, {"within": (-eq, eq), "label": "noisy BN - BN"}),
             (bn_beats, {"above": beat, "label": "BN - standard"}),
             (nb_beats, {"above": beat, "label": "noisy BN - standard"})], n_seeds))
        rows.append(claim_from("S1.a[noisy_bn ~ bn_pre, pooled]", f"noisy BN's {tail} within +-{eq:g} of BN's "
                               f"(pooled over {where})", PAPER + ", Fig. 2", "train_acc(noisy_bn) - train_acc(bn_pre)",
                               gap, within=(-eq, eq)))
        for better, est in (("bn_pre", bn_beats), ("noisy_bn", nb_beats)):
            rows.append(claim_from(f"S1.a[{better} > none, pooled]", f"{NORM_LABEL[better]}'s {tail} exceeds the "
                                   f"standard net's by more than {beat:g} (pooled over {where})", PAPER + ", Fig. 2",
                                   f"train_acc({better}) - train_acc(none)", est, above=beat))
        # the eval-mode metric and clean-BN test accuracy, as details
        tc = [col("noisy_bn", regime, "test_acc_clean"), col("bn_pre", regime, "test_acc_clean")]
        if all(len(a) for a in tc[0]):
            rows.append(claim_from("S1.a[test, clean BN stats: noisy_bn ~ bn_pre, pooled]",
                                   f"noisy BN's test accuracy with BN statistics recomputed without noise is within "
                                   f"+-{eq:g} of BN's (pooled over {where})", PAPER + ", Fig. 2 (test)",
                                   "test_acc_clean(noisy_bn) - test_acc_clean(bn_pre)", mean_ci(*tc, ci=ci),
                                   within=(-eq, eq)))
    for n, lr in cells:
        tag = f"{n} {_lr_tag(lr)}"
        if {"bn_pre", "noisy_bn"} <= norms:
            rows.append(claim_from(f"S1.a[{tag}: noisy_bn ~ bn_pre]", f"noisy BN's {tail} within +-{eq:g} of BN's "
                                   f"({tag})", PAPER + ", Fig. 2", "train_acc(noisy_bn) - train_acc(bn_pre)",
                                   mean_ci(col("noisy_bn", [(n, lr)]), col("bn_pre", [(n, lr)]), ci=ci),
                                   within=(-eq, eq)))
        for better in ("bn_pre", "noisy_bn"):
            if {better, "none"} <= norms:
                rows.append(claim_from(f"S1.a[{tag}: {better} > none]", f"{NORM_LABEL[better]}'s {tail} exceeds "
                                       f"the standard net's by more than {beat:g} ({tag})", PAPER + ", Fig. 2",
                                       f"train_acc({better}) - train_acc(none)",
                                       mean_ci(col(better, [(n, lr)]), col("none", [(n, lr)]), ci=ci), above=beat))
    # S1.b (our control): noise without BN stops training, where the noise-free standard net trains.
    if "noise_only" in norms and measured:
        thr = CHANCE + c["stop_margin"]
        where = ", ".join(f"{n} {_lr_tag(lr)}" for n, lr in measured)
        rows.append(claim_from("S1.b", f"Control: the same noise without BN stops training: noise_only's {tail} "
                               f"is below chance + {c['stop_margin']:g} = {thr:g} (pooled over {where}, where the "
                               f"standard net trains; a diverged run counts as chance)", PAPER + ", Sec. 2.2",
                               "train_acc(noise_only)", mean_ci(col("noise_only", measured), ci=ci), below=thr,
                               kind="check"))
        for n, lr in cells:
            rows.append(claim_from(f"S1.b[{n} {_lr_tag(lr)}]", f"noise_only's {tail} below {thr:g} ({n} "
                                   f"{_lr_tag(lr)})", PAPER + ", Sec. 2.2", "train_acc(noise_only)",
                                   mean_ci(col("noise_only", [(n, lr)]), ci=ci), below=thr, kind="check"))
    # Instrument check: under plain SGD the landscape grid's unit step (the actual update) is eta * ||g||.
    opt = cfg["optimizer"]
    sn = metrics[metrics.metric.isin(["landscape/step_norm", "landscape/grad_norm"])]
    if opt.get("name") == "sgd" and not opt.get("momentum") and not opt.get("weight_decay") and len(sn):
        w = sn.pivot_table(index=["variant", "seed", "step"], columns="metric", values="value").join(
            runs.set_index(["variant", "seed"]).lr, on=["variant", "seed"])
        w = w[w["landscape/grad_norm"] > 0]
        dev = float((w["landscape/step_norm"] / (w.lr * w["landscape/grad_norm"]) - 1).abs().max())
        rows.append(claim("S1.d[check: update = eta g]", "Instrument: under plain SGD the landscape probe's unit step "
                          "(the actual update w_t+1 - w_t) has length eta ||g|| at every probe (max relative "
                          "deviation below 1e-4)", "this study", "max |step_norm / (eta ||g||) - 1|", dev, dev, dev,
                          "< 0.0001", verdict_below(dev, dev, 1e-4), n_seeds, kind="check"))
    # S1.c / S1.d from the probes.
    pt = probe_table(metrics)
    rows += _probe_claims(pt, _dln_table(extra), cfg, n_seeds)
    # The paper stresses the gap early in training: the pooled S1.d test on the first EARLY_FRAC of steps.
    if len(metrics) and "net" in metrics:
        limit = metrics.net.map({n: EARLY_FRAC * net_train(cfg, n)["steps"] for n in cfg["nets"]})
        early = [r for r in _probe_claims(probe_table(metrics[metrics.step <= limit]), None, cfg, n_seeds)
                 if r["claim_id"] == "S1.d"]
        for r in early:
            r.update(claim_id="S1.d[early]", claim=r["claim"] + f"; first {EARLY_FRAC:.0%} of training", kind="cell")
        rows += early
    return pd.DataFrame(rows)


def _dln_table(extra):
    if not extra or "dln" not in extra:
        return None
    m = pd.read_parquet(Path(extra["dln"]) / "metrics.parquet")
    if "lr" not in m:
        m = m.assign(lr=0.0)
    return probe_table(m.assign(net="dln"), keys=("net", "norm", "lr", "seed"))


def _probe_claims(pt, dln, cfg, n_seeds):
    c = cfg["claims"]
    ci = c["ci"]
    rows = []
    if pt.empty or not {"none", "bn_pre"} <= set(pt.norm):
        return rows
    measure_lrs = c["measure_lrs"] or sorted(set(pt.lr))
    pt = pt.assign(measured=_at(pt.lr.to_numpy(), measure_lrs))

    def est(tab, measure_re, where):
        """Stratified BN - none difference over (net, lr, measure) strata where both exist (None if none)."""
        sub = tab[tab.measure.str.fullmatch(measure_re) & where(tab)]
        a, b = [], []
        for _, g in sub.groupby(["net", "lr", "measure"]):
            x, y = g[g.norm == "bn_pre"].value.dropna().to_numpy(), g[g.norm == "none"].value.dropna().to_numpy()
            if len(x) and len(y):
                a.append(x)
                b.append(y)
        return mean_ci(a, b, ci=ci) if a else None

    ics_thr = -float(np.log10(c["ics_similar"]))
    cos_m = c["cos_margin"]
    where_measured = lambda t: t.measured  # noqa: E731
    l2, rel, cos = (est(pt, rf"ics_{q}/\d+", where_measured) for q in ("l2", "rel", "cos"))
    if l2 is not None and rel is not None and cos is not None:
        rows.append(conjunction(
            "S1.c", f"BN does not reduce ICS (Def. 2.1): BN's ||G - G'|| and ||G - G'||/||G|| are at least "
            f"1/{c['ics_similar']:g} of the standard net's (geometric means over probe steps) and its cos(G, G') is not "
            f"higher by more than {cos_m:g}; {ics_layer_text(cfg)}, lr in {measure_lrs}, pooled "
            f"({setup_text(cfg, ' ')}). Value: log10 ||G-G'|| ratio; the verdict needs all three parts (rows S1.c[...])",
            PAPER + ", Figs. 3, 5", "log10 ||G-G'||(bn) - log10 ||G-G'||(none)",
            [(l2, {"above": ics_thr, "label": "log10 ||G-G'|| ratio"}),
             (rel, {"above": ics_thr, "label": "log10 relative-ICS ratio"}),
             (cos, {"below": cos_m, "label": "cos(G, G') difference"})], n_seeds))
        rows.append(claim_from("S1.c[l2, pooled]", f"BN's ||G - G'|| at least 1/{c['ics_similar']:g} of the "
                               "standard net's (log10 ratio; pooled)", PAPER + ", Fig. 3",
                               "log10 ||G-G'||(bn) - log10 ||G-G'||(none)", l2, above=ics_thr))
        rows.append(claim_from("S1.c[rel, pooled]", f"BN's relative ICS ||G - G'||/||G|| (scale-free) at least "
                               f"1/{c['ics_similar']:g} of the standard net's (log10 ratio; pooled)", PAPER + ", Fig. 3",
                               "log10 rel(bn) - log10 rel(none)", rel, above=ics_thr))
        rows.append(claim_from("S1.c[cos, pooled]", f"cos(G, G') with BN not higher than without by more than {cos_m:g} "
                               "(pooled)", PAPER + ", Fig. 3", "cos(G,G')(bn) - cos(G,G')(none)", cos, below=cos_m))
    sm = smooth_min(cfg)
    sm_txt = (f"smallest effect of interest: lower by a factor {c['smooth_min']:g} (log10 {sm:.3g}, the factor S1.c "
              "calls similar); it fails when the interval rules out a reduction that large")
    d = est(pt, "|".join(MEASURES), where_measured)
    if d is not None:
        rows.append(claim_from(
            "S1.d", f"BN makes the landscape smoother: loss range, gradient predictiveness (max ||grad change||) and "
            f"effective beta along the actual update (step sizes {cfg['probes']['landscape']['scales']} x the update) are "
            f"lower with BN: log10 ratio below 0, pooled over the three measures, lr in {measure_lrs} "
            f"({setup_text(cfg, ' ')}; {sm_txt})", PAPER + ", Fig. 4", "log10 measure(bn) - log10 measure(none)", d,
            below=0.0, sesoi=sm, kind="headline"))
    for mname, label in MEASURES.items():
        e = est(pt, mname, where_measured)
        if e is not None:
            rows.append(claim_from(f"S1.d[{mname}, pooled]", f"{label} is lower with BN (lr in {measure_lrs}; smallest "
                                   f"effect of interest a factor {c['smooth_min']:g})", PAPER + ", Fig. 4",
                                   f"log10 {mname}(bn) - log10 {mname}(none)", e, below=0.0, sesoi=sm))
    for (net, lr), _ in pt.groupby(["net", "lr"]):
        cell = lambda t, net=net, lr=lr: (t.net == net) & np.isclose(t.lr, lr)  # noqa: E731
        tag = f"{net} {_lr_tag(lr)}"
        for layer in sorted({m.split("/")[1] for m in pt.measure if m.startswith("ics_l2/")}, key=int):
            for q, metric, side in (("l2", "log10 ||G-G'||(bn) - log10 ||G-G'||(none)", {"above": ics_thr}),
                                    ("rel", "log10 rel(bn) - log10 rel(none)", {"above": ics_thr}),
                                    ("cos", "cos(G,G')(bn) - cos(G,G')(none)", {"below": cos_m})):
                e = est(pt, f"ics_{q}/{layer}", cell)
                if e is not None:
                    rows.append(claim_from(f"S1.c[{tag} layer {layer} {q}]", f"ICS ({q}) of weight layer {layer} "
                                           f"(0-based) with BN not lower than without ({tag})", PAPER + ", Fig. 3",
                                           metric, e, **side))
        for mname in MEASURES:
            e = est(pt, mname, cell)
            if e is not None:
                rows.append(claim_from(f"S1.d[{tag} {mname}]", f"{MEASURES[mname]} lower with BN ({tag}; smallest "
                                       f"effect of interest a factor {c['smooth_min']:g})", PAPER + ", Fig. 4",
                                       f"log10 {mname}(bn) - log10 {mname}(none)", e, below=0.0, sesoi=sm))
    if dln is not None and not dln.empty:
        dln = dln.replace({"norm": {"bn": "bn_pre"}})
        for lr in sorted(set(dln.lr)):
            at = lambda t, lr=lr: np.isclose(t.lr, lr)  # noqa: E731
            tag = f"dln {_lr_tag(lr)}"
            for layer in sorted({m.split("/")[1] for m in dln.measure if m.startswith("ics_l2/")}, key=int):
                for q, metric, side in (("l2", "log10 ||G-G'||(bn) - log10 ||G-G'||(none)", {"above": ics_thr}),
                                        ("rel", "log10 rel(bn) - log10 rel(none)", {"above": ics_thr}),
                                        ("cos", "cos(G,G')(bn) - cos(G,G')(none)", {"below": cos_m})):
                    e = est(dln, f"ics_{q}/{layer}", at)
                    if e is not None:
                        rows.append(claim_from(f"S1.c[{tag} layer {layer} {q}]", f"DLN: ICS ({q}) of layer {layer} "
                                               f"(0-based) with BN not lower than without ({tag})",
                                               PAPER + ", Fig. 5 (DLN)", metric, e, **side))
            for mname in MEASURES:
                e = est(dln, mname, at)
                if e is not None:
                    rows.append(claim_from(f"S1.d[{tag} {mname}]", f"DLN: {MEASURES[mname]} lower with BN ({tag}; "
                                           f"smallest effect of interest a factor {c['smooth_min']:g})",
                                           PAPER + ", App. (DLN landscape)", f"log10 {mname}(bn) - log10 {mname}(none)",
                                           e, below=0.0, sesoi=sm))
    return rows


# ---------------------------------------------------------------------------------------------
# Figures

SMOOTH = 10  # training curves: rolling mean over this many logged steps
PALETTE = {"none": "tab:blue", "bn_pre": "tab:red", "noisy_bn": "tab:green", "noise_only": "tab:purple"}


def _label(df):
    return df.assign(variant_label=df.norm.map(NORM_LABEL))


def figures(metrics, summary, claims, cfg, fig_dir, extra=None):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="paper")
    fig_dir = Path(fig_dir)
    written = []
    order = [n for n in NORM_LABEL if n in set(summary.norm)]
    hue_order = [NORM_LABEL[n] for n in order]
    palette = {NORM_LABEL[n]: PALETTE[n] for n in order}

    def save(fig, name):
        written.extend(save_figure(fig, fig_dir, name))

    from ..setup_text import is_default_setup, title_note, title_y

    note = "" if is_default_setup(cfg) else title_note(setup_text(cfg))  # what departs from the paper, in every title
    # Fig. 2 (left, middle) and Figs. 7-8: training curves. Training accuracy/loss as the paper plots them:
    # train mode, the step's own batch (rolling mean over ``SMOOTH`` logged steps); test accuracy in eval mode.
    lr_list = sorted(set(summary.lr))
    for metric, ylabel, what, name in [
            ("batch_acc", "training accuracy", "train mode, the step's batch, rolling mean", "train_accuracy"),
            ("test_acc", "test accuracy", "eval mode, BN running statistics as trained", "test_accuracy"),
            ("batch_loss", "training loss", "train mode, the step's batch, rolling mean", "train_loss")]:
        d = _label(metrics[metrics.metric == metric]).sort_values("step")
        if metric.startswith("batch_"):
            d = d.assign(value=d.groupby(["variant", "seed"]).value.transform(
                lambda v: v.rolling(SMOOTH, min_periods=1).mean()))
            d = d[d.step % (SMOOTH * cfg["train"]["log_every"] // 2 or 1) == 0]  # thin the points
        g = sns.relplot(data=d, x="step", y="value", hue="variant_label", hue_order=hue_order, palette=palette,
                        row="net", col="lr", col_order=lr_list, kind="line", errorbar=("pi", 100), height=2.6,
                        aspect=1.3, facet_kws={"margin_titles": True, "sharex": "row",
                                               "sharey": metric != "batch_loss"})
        g.set_axis_labels("step", ylabel)
        g.set_titles(row_template="{row_name}", col_template="lr={col_name}")
        if metric == "batch_loss":
            g.set(yscale="log")
        g._legend.set_title("")
        g.figure.suptitle(f"{ylabel.capitalize()} ({what}): mean over "
                          f"{int(summary.groupby('variant').seed.nunique().min())} seeds, band = min-max;\n"
                          "plain SGD; a diverged run's curve stops" + note, y=title_y(g.figure, 1.08, note))
        save(g.figure, name)

    # The lr sweep: where BN matters.
    runs = run_table(summary, metrics, cfg["claims"]["tail"])
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for norm in order:
        r = runs[runs.norm == norm]
        for ax, colname in zip(axes, ["train_acc", "test_acc_clean"]):
            m = r.groupby("lr")[colname].mean()
            ax.plot(m.index, m.to_numpy(), marker="o", color=PALETTE[norm], label=NORM_LABEL[norm])
            ax.scatter(r.lr, r[colname], color=PALETTE[norm], s=8, alpha=0.4)
    for ax, t in zip(axes, [f"training accuracy, train mode, last {cfg['claims']['tail']:.0%} of steps\n"
                            "(diverged = chance 0.1)", "test accuracy, BN statistics recomputed without noise\n"
                            "(diverged runs left out)"]):
        ax.set_xscale("log")
        ax.set_xticks(lr_list, [f"{v:g}" for v in lr_list])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_ylabel("accuracy")
        ax.set_xlabel("learning rate (plain SGD)")
        ax.set_title(t, fontsize=8)
        ax.axhline(CHANCE, color="k", lw=0.6, ls=":")
        for lr in cfg["claims"]["regime_lrs"]:
            ax.axvspan(lr / 1.15, lr * 1.15, color="0.9", zorder=0)
    axes[0].legend(fontsize=7)
    fig.suptitle("Learning-rate sweep (dots: seeds, line: mean; grey: the rates S1.a pools)" + note, fontsize=9)
    fig.tight_layout()
    save(fig, "lr_sweep")

    # Fig. 2 (right): one unit's activation input, early vs late.
    act = metrics[metrics.metric.str.startswith("unit_act/")]
    lr0 = (cfg["claims"]["measure_lrs"] or cfg["lrs"])[0]
    if not np.isclose(metrics.lr, lr0).any():
        lr0 = float(metrics.lr.iloc[0]) if len(metrics) else lr0
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
        unit = "one unit" if is_default_setup(cfg) else "one unit (a conv channel: every sample and position)"
        g.figure.suptitle(f"Activation distribution of {unit}, early vs late (lr={lr0:g}, seed 0; {when})" + note,
                          y=title_y(g.figure, 1.03, note))
        save(g.figure, "activation_histograms")
    else:
        save(_empty(plt, "no unit_activations data"), "activation_histograms")

    # Fig. 3: ICS over training, BN vs standard, two layers.
    ics = metrics[metrics.metric.str.startswith(("ics/l2/", "ics/rel/", "ics/cos/"))]
    if not ics.empty:
        ics = _label(ics[np.isclose(ics.lr, lr0)])
        layer = ics.metric.str.split("/").str[2].astype(int)
        early = layer == layer.groupby(ics.net).transform("min")
        ics = ics.assign(quantity=ics.metric.str.split("/").str[1].map({"l2": "||G - G'||", "rel": "||G - G'||/||G||",
                                                                     "cos": "cos(G, G')"}),
                         layer=np.where(early, "early layer", "late layer"))
        conv_names = _conv_layer_names(cfg)  # VGG nets: "conv layer k of N" (the paper's Fig. 3 names VGG layers)
        if conv_names:
            named = [conv_names.get((n, int(i))) for n, i in zip(ics.net, layer)]
            ics = ics.assign(layer=[nm or lab for nm, lab in zip(named, ics.layer)])
        ics = ics.assign(panel_row=ics.net + ", " + ics.layer)
        layers = "; ".join(f"{n}: weight layers {sorted(set(layer[ics.net == n]))}" for n in sorted(set(ics.net)))
        if conv_names:
            layers = ("; ".join(f"{n}: " + " and ".join(sorted({conv_names[(n, int(i))] for i in set(layer[ics.net == n])
                                                                 if (n, int(i)) in conv_names}))
                                for n in sorted(set(ics.net)))
                      + " (counted from 1; the paper's Fig. 3 plots VGG layers 5 and 10 of 10, here scaled to the depth "
                      "used)")
        quantities = ["||G - G'||", "||G - G'||/||G||", "cos(G, G')"]
        g = sns.relplot(data=ics, x="step", y="value", hue="variant_label", palette=palette, row="panel_row",
                        col="quantity", col_order=quantities, kind="line", errorbar=("pi", 100), height=2.4,
                        aspect=1.3, facet_kws={"sharex": True, "sharey": False, "margin_titles": True})
        for (_row, quantity), ax in g.axes_dict.items():
            if quantity.startswith("||"):
                ax.set_yscale("log")
        g.set_axis_labels("step", "")
        g.set_titles(row_template="{row_name}", col_template="{col_name}")
        g._legend.set_title("")
        g.figure.suptitle(f"Internal covariate shift (Def. 2.1) at lr={lr0:g}\n({layers}{'' if conv_names else ', 0-based'}; "
                          "mean over seeds, band = min-max)" + note, y=title_y(g.figure, 1.06, note))
        save(g.figure, "ics")
    else:
        save(_empty(plt, "no ICS data (see probes.norms)"), "ics")

    # Fig. 4: landscape bands (loss range, gradient predictiveness, effective beta).
    ls = metrics[metrics.metric.str.startswith("landscape/")]
    if not ls.empty:
        fig = _landscape_bands(ls[np.isclose(ls.lr, lr0)], plt, f"lr={lr0:g}", note=note)
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


def _conv_layer_names(cfg: dict) -> dict:
    """{(net, 0-based weight layer): "conv layer k of N" / "read-out"} for the VGG nets (empty for others)."""
    from ..setup_text import n_conv_layers

    out = {}
    for n in cfg["nets"]:
        m = net_entry(cfg, n)["model"]
        convs, total = n_conv_layers(m), n_weight_layers(m)
        if m.get("arch") != "vgg" or convs is None:
            continue
        for i in cfg["probes"]["ics_layers"]:
            k = i % total
            out[(n, k)] = f"conv layer {k + 1} of {convs}" if k < convs else "read-out layer"
    return out


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


def _landscape_bands(ls, plt, title_tag, nets=None, note=""):
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
    fig.suptitle(f"Landscape along the update, step sizes a x (w_t+1 - w_t) ({title_tag}; bands: range over step sizes, "
                 "mean over seeds; "
                 "beta: mean, band over seeds)" + note, fontsize=9)
    fig.tight_layout()
    return fig


def _dln_figure(m, plt, sns, cfg):
    m = m.replace({"norm": {"bn": "bn_pre"}})
    lr = cfg["dln"]["lrs"][0]
    if "lr" in m:
        m = m[np.isclose(m.lr, lr)]
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
                 f"full-batch GD, eta={lr:g}, {d['steps']} steps; mean over {d['seeds']} seeds; layers numbered from 1; "
                 f"other rates in claims.csv)", fontsize=9)
    fig.tight_layout()
    return fig


def _claims_figure(claims, plt):
    a = claims[(claims.kind == "headline") | claims.claim_id.str.contains("pooled") |
               claims.claim_id.isin(["S1.b", "S1.d[early]"])].copy()
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(a) + 1.2))
    colors = {"holds": "tab:green", "fails": "tab:red", "inconclusive": "tab:grey"}
    for i, r in enumerate(a.itertuples()):
        ax.errorbar(r.value, i, xerr=[[max(r.value - r.ci_low, 0)], [max(r.ci_high - r.value, 0)]], fmt="o",
                    color=colors[r.verdict])
        for thr in re.findall(r"-?\d+(?:\.\d+)?(?:e-?\d+)?", str(r.threshold)):
            ax.plot([float(thr)], [i], marker="|", color="k", ms=10)
        sesoi = getattr(r, "sesoi", float("nan"))
        if np.isfinite(sesoi) and f"{sesoi:g}" not in str(r.threshold):
            ax.plot([sesoi], [i], marker="|", color="tab:purple", ms=10)
    ax.set_yticks(range(len(a)), [r.claim_id for r in a.itertuples()], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("claim metric (the interval each verdict was made from, at its adjusted level); black ticks = "
                  "threshold (both ends of an equivalence band); purple = smallest effect of interest", fontsize=7)
    ax.set_title("S1 headline and pooled claims (green holds, red fails, grey inconclusive);\n"
                 "metrics differ per row, see claims.csv",
                 fontsize=8)
    return fig


def headlines(cfg: dict) -> dict:
    """``HEADLINES`` with the departures of the setup ``cfg`` (the study's resolved section) describes."""
    from ..setup_text import headlines_for

    return headlines_for(HEADLINES, cfg, f"{setup_text(cfg)}; DLN {cfg['dln']['steps']:,} steps at eta "
                                         f"{', '.join(f'{x:g}' for x in cfg['dln']['lrs'])}")
