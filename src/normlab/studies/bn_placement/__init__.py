"""S4: BN before vs after the activation.

Grid: normalization (none | bn_pre | bn_post) x activation x learning rate, each over seeds.
Claims (one ``headline`` row per claim id, pooled over the activation x lr cells, with the activations as
strata; ``cell`` rows per activation and per (activation, lr) cell):

- S4.a BN before the activation reaches a higher final test accuracy than BN after (the lecture);
- S4.b BN before reaches the train-accuracy target in fewer steps than BN after;
- S4.c BN (before the activation, Ioffe & Szegedy's placement) beats no BN in final test accuracy.

Each claim is directional with a smallest effect of interest (``claims.effect_min`` in test accuracy,
``claims.speed_min`` of the step budget for S4.b, never finer than the evaluation grid ``train.eval_every``): it holds when its interval clears 0 in the claimed
direction and fails when it rules out an effect that large (``normlab.stats``). Each activation is a
stratum, judged on its own (``S4.a[tanh]``); when one holds and another fails the pooled claim is
``mixed`` ("holds for tanh, fails for relu").

Estimates: per-seed differences (seed k of one variant against seed k of the other: same batch
order, and the same initial weights wherever the two models draw the same random numbers),
averaged within a cell, then averaged over cells with equal weights (``stats.mean_ci`` with one
stratum per cell, ``paired=True``); Student t interval with Welch-Satterthwaite degrees of freedom.
Pairing is valid whether or not the seeds' runs are correlated: each seed's difference is one
independent draw. S4.c compares bn_pre, fixed in advance, not the better placement of each cell
(choosing the winner on the same data biases the difference upwards).

A diverged run counts as chance accuracy (1 / n_classes) and as never reaching the target
(steps = total steps + 1, a censored value: S4.b's mean difference is then a difference of
censored means, stated in the claim).

Subsets: a config whose ``norms`` lack one of a claim's two variants (S4.a-b: bn_pre and bn_post; S4.c:
bn_pre and none) reports that claim as ``not run``; only a list with which no claim can run is refused.

Modules: ``variants`` (the grid, the config checks), ``claims`` (run table, estimates, claims), ``figures``.
"""

from __future__ import annotations

from .. import Figure
from .claims import analyze, setup_line  # noqa: F401  (the study's entry points)
from .figures import figures  # noqa: F401
from .variants import check_config, claim_variants, variants  # noqa: F401

TITLE = "S4: BN before or after the activation (Ioffe & Szegedy 2015; Lecture 5; public benchmarks)"
CATEGORY = "S4 BN placement"
FIGURES = [
    Figure("learning_curves.png", "learning curves"),
    Figure("final_accuracy.png", "final accuracy"),
    Figure("steps_to_target.png", "steps to target"),
    Figure("placement_difference.png", "placement difference"),
]
PAPERS = [
    {"cite": "Ioffe, Szegedy. Batch normalization: accelerating deep network training by reducing internal covariate "
             "shift. ICML 2015", "url": "https://arxiv.org/abs/1502.03167"},
    {"cite": "Mishkin. caffenet-benchmark: BatchNorm before/after ReLU on ImageNet-2012 at 128 px (CaffeNet, GoogLeNet)",
     "url": "https://github.com/ducha-aiki/caffenet-benchmark/blob/master/batchnorm.md"},
]
_DEPARTURES = ("MNIST-1D (4,000 training signals) instead of ImageNet; 4-layer width-128 MLPs instead of the "
               "CaffeNet / GoogLeNet convnets; SGD with momentum 0.9 at constant lr 0.02, 0.1 and 0.5, 1,000 steps of "
               "batch 128, no augmentation; ReLU, tanh and logistic units; 5 seeds; pooled over the 9 activation x lr "
               "cells with equal weights, per-seed differences, each activation also judged on its own (the pooled "
               "verdict is 'mixed' when one activation holds and another fails)")
HEADLINES = {
    "S4.a": {"statement": "BN before the nonlinearity works better than after it (Ioffe & Szegedy 2015: Wu + b is "
                          "'more Gaussian'; the lecture: 'it generally works better to apply BN before the activation "
                          "function'). Evidence against: CaffeNet on ImageNet at 128 px, top-1 0.499 with BN after ReLU "
                          "vs 0.474 before; a course project found 'after' better with ReLU only",
             "departures": _DEPARTURES + "; metric: final test accuracy; smallest effect of interest 1 point (the "
                                         "benchmarks' smallest gap)",
             "figures": ["placement_difference", "final_accuracy", "learning_curves"]},
    "S4.b": {"statement": "BN before the nonlinearity trains faster than BN after it (the lecture's placement advice, "
                          "read as speed of training; Ioffe & Szegedy 2015 report BN's speed-up with BN before)",
             "departures": _DEPARTURES + "; metric: steps to 80% train accuracy (evaluated every 100 steps; a run "
                                         "that never reaches it counts as 1,001); smallest speed-up of interest 100 steps (10% of the budget, one "
                                         "evaluation interval: a smaller speed-up cannot be seen on the grid steps to "
                                         "target are read on; the lecture gives no size, and BN's speed-ups in Ioffe & "
                                         "Szegedy are many-fold)",
             "figures": ["placement_difference", "steps_to_target"]},
    "S4.c": {"statement": "BN helps: BN before the nonlinearity gives higher accuracy than no BN (Ioffe & Szegedy 2015). "
                          "Evidence against: GoogLeNet on ImageNet at 128 px, top-1 0.619 without BN vs 0.607 before "
                          "and 0.596 after",
             "departures": _DEPARTURES + "; metric: final test accuracy, bn_pre minus none; smallest effect of "
                                         "interest 1 point",
             "figures": ["placement_difference", "final_accuracy"]},
}


def headlines(cfg: dict) -> dict:
    """``HEADLINES`` with the departures of the setup ``cfg`` (the study's resolved section) describes."""
    from ..setup_text import headlines_for

    return headlines_for(HEADLINES, cfg, setup_line(cfg))
