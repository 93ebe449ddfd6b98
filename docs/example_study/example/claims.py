"""EX claims: the headline claim from per-seed differences, and a check of the side job's output."""

from __future__ import annotations


def final_loss(metrics):
    """Final training loss, one row per seed, one column per variant."""
    m = metrics[metrics.metric == "train_loss"]
    last = m[m.step == m.step.max()]
    return last.pivot_table(index="seed", columns="variant", values="value")


def analyze(metrics, summary, cfg, extra=None):
    import json
    from pathlib import Path

    import pandas as pd

    from ...stats import claim_from, exact, mean_ci

    c = cfg["claims"]
    loss = final_loss(metrics)
    est = mean_ci([loss["bn_pre"].to_numpy()], [loss["none"].to_numpy()], paired=True, ci=c["ci"])
    sizes = json.loads(Path(extra["sizes"]).read_text())
    # A directional claim declares its smallest effect of interest (sesoi): it holds when the interval clears
    # 0 in the claimed direction, fails when it rules out an effect this large, and is inconclusive otherwise.
    return pd.DataFrame([
        claim_from("EX.a", f"BN's final training loss minus the plain net's (per-seed differences; smallest effect "
                   f"of interest {c['loss_min']:g})", "Ioffe & Szegedy 2015", "train_loss(bn_pre) - train_loss(none)",
                   est, kind="headline", below=0.0, sesoi=c["loss_min"]),
        claim_from("EX.check", "the side job counted a non-empty training set", "instrument check", "n_train",
                   exact(sizes["n_train"]), kind="check", above=0.0),
    ])
