"""Example study: does BatchNorm lower a small MLP's training loss at a fixed budget?

A template for README "Add a study" (and the test that builds it through real Snakemake): a package
``normlab.studies.example`` declaring its title, variants, one side job, figures and claims.
"""

from __future__ import annotations

import pandas as pd

from ...stats import claim_from, exact, mean_ci
from .. import Figure, SideJob

TITLE = "EX: BatchNorm lowers a small MLP's training loss (example study)"
CATEGORY = "EX Example"
PAPERS = [{"cite": "Ioffe, Szegedy. Batch normalization. ICML 2015", "url": "https://arxiv.org/abs/1502.03167"}]
HEADLINES = {"EX.a": {"statement": "BN lowers the final training loss", "departures": "a toy setup",
                      "figures": ["loss"]}}
FIGURES = [Figure("loss.png", "training loss")]


def variants(cfg: dict) -> dict:
    """One training job per normalization; all seeds of a job train batched."""
    return {norm: {"keys": {"norm": norm}, "model": {**cfg["model"], "norm": norm},
                   "optimizer": {"name": "sgd", "momentum": 0.9}, "lr": cfg["lr"],
                   "schedule": {"name": "constant"}, "train": cfg["train"], "probes": []}
            for norm in ("none", "bn_pre")}


def side_jobs(cfg: dict) -> dict:
    # reads: the config sections the job reads (its spec holds only these; it reruns when they change).
    # This one reads none: it reruns only when its dataset changes.
    return {"sizes": SideJob("normlab.studies.example.sizes", "sizes.json", data=True, reads=(),
                             doc="EX: count the dataset's training and test examples.")}


def final_loss(metrics: pd.DataFrame) -> pd.DataFrame:
    m = metrics[metrics.metric == "train_loss"]
    last = m[m.step == m.step.max()]
    return last.pivot_table(index="seed", columns="variant", values="value")


def analyze(metrics, summary, cfg, extra=None):
    import json
    from pathlib import Path

    loss = final_loss(metrics)
    est = mean_ci([loss["bn_pre"].to_numpy()], [loss["none"].to_numpy()], paired=True, ci=cfg["claims"]["ci"])
    sizes = json.loads(Path(extra["sizes"]).read_text())
    return pd.DataFrame([
        claim_from("EX.a", "BN's final training loss minus the plain net's (per-seed differences)",
                   "Ioffe & Szegedy 2015", "train_loss(bn_pre) - train_loss(none)", est, kind="headline", below=0.0),
        claim_from("EX.check", "the side job counted a non-empty training set", "instrument check", "n_train",
                   exact(sizes["n_train"]), kind="check", above=0.0),
    ])


def figures(metrics, summary, claims, cfg, fig_dir, extra=None):
    import matplotlib

    matplotlib.use("Agg")
    import seaborn as sns

    from ...plotting import save_figure

    m = metrics[metrics.metric == "train_loss"]
    g = sns.relplot(data=m, x="step", y="value", hue="variant", kind="line", errorbar=("pi", 100), height=3)
    g.set(ylabel="training loss", title="EX: training loss, band = min-max over seeds")
    return save_figure(g.figure, fig_dir, "loss")
