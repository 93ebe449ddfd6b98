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
after it) is not scale invariant, so eta/||w_out||^2 is no effective rate for it; S3.f measures every layer the
same way, by the relative update size per step ||w' - w|| / ||w|| (rms over units, the probe's ``relupd_rms``:
for a BN-fed unit under plain SGD it is eta G / ||w||^2, the lecture's effective rate, about the angle), and
tests that the output layer's late/early ratio is higher than the BN-fed layers' in the same run (paired by
seed, smallest effect of interest a ratio 1 + ``claims.output_tol``). Cells: the output layer's own ratio (not
slowed at all), the BN-fed layers' (slowed), eta/||w_out||^2 (the read-out's norm growth) and the angle.

S3.f is scored on real labels (``sgd_trained_out_real``), the lecture's regime, where the read-out has labels
to fit; the run on fresh random labels (``sgd_trained_out``: the read-out has nothing to learn, the kindest
regime) is a cell.

Claims: one row per claim id S3.a-f (the lecture's claims as stated; S3.a and S3.b, true by construction for
a correct implementation, are of kind ``identity``, the others ``headline``), ``cell`` rows for
detail, ``check`` rows for instrument checks and controls (identities, "this must not hold"). Any subset of
the variants runs: a headline whose variants the config lacks is a ``not run`` row naming what it needs
(``claims.NEEDS``); S3.a-b come from the invariance job, which every config runs.

Layout: ``variants.py`` (variants, cross-key checks), ``claims.py`` (tables and claims), ``figures.py``,
``invariance.py`` (the float64 side job).
"""

from __future__ import annotations

from .. import Figure, SideJob
from .claims import analyze
from .figures import figures
from .variants import active_variants, check_config, claim_variants, variants

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
                                    "over the 3 BN-fed layers per seed, within [1/1.1, 1.1]; each layer also "
                                    "judged as a stratum (mixed if they disagree)",
             "figures": ["norm_growth", "g2_steady"]},
    "S3.d": {"statement": "weight decay counteracts the growth: ||w||^2 -> sqrt(eta / (2 lambda)) G for SGD "
                          "(sqrt(eta / (2 lambda (1 - gamma))) G with momentum gamma, derived in the study module)",
             "departures": _SETUP + "; fresh random labels (steady G), lambda 5e-4, SGD eta 1 and SGD with momentum 0.9 "
                                    "at eta 0.1, 3,000 steps; measured over the last 25% of the run against the "
                                    "prediction from G^2 measured there; geometric mean over layers per seed, pooled "
                                    "over both optimizers, within a factor 1.2; each optimizer also judged as a "
                                    "stratum (mixed if they disagree)",
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
             "departures": _SETUP + "; here the output layer and BN's affine parameters are trained; real labels, plain "
                                    "SGD eta 1, 3,000 steps (fresh random labels, where the read-out has nothing to "
                                    "learn, reported as a cell, not scored); the effective rate of every layer measured "
                                    "the same way, as the relative update size per step ||w' - w|| / ||w|| (eta/||w||^2 "
                                    "is an effective rate only for a scale-invariant layer, which the output layer is "
                                    "not); the claim tested: the output layer's late/early ratio (last 25% vs first 10% "
                                    "of steps) is higher than the BN-fed layers' in the same run, paired by seed, "
                                    "smallest effect of interest a ratio 1.1; the output layer's own decay (gradients "
                                    "shrink as the labels are fitted) is a cell",
             "figures": ["unit_spread", "effective_lr"]},
}


def side_jobs(cfg: dict) -> dict:
    return {"invariance": SideJob("normlab.studies.norm_growth.invariance", "invariance.parquet", data=True,
                                  reads=("invariance", "model"),
                                  doc="S3: float64 checks of the scale-invariance identities and the "
                                      "Pythagorean recursion.")}


def headlines(cfg: dict) -> dict:
    """``HEADLINES`` with the departures of the setup ``cfg`` (the study's resolved section) describes."""
    from ..setup_text import dataset_text, headlines_for, model_text, unit_word

    steps = ", ".join(f"{n} {v.get('steps', cfg['train']['steps']):,}" for n, v in active_variants(cfg).items())
    return headlines_for(HEADLINES, cfg, f"{dataset_text(cfg['dataset'])} instead of the lecture's image nets; a "
                                         f"scale-invariant {model_text(cfg['model'], cfg['dataset'])} (units: "
                                         f"{unit_word(cfg['model'])}); steps per variant: {steps}; {cfg['seeds']} seeds")


__all__ = ["TITLE", "CATEGORY", "FIGURES", "PAPERS", "HEADLINES", "analyze", "check_config", "figures", "headlines",
           "side_jobs", "variants", "claim_variants"]
