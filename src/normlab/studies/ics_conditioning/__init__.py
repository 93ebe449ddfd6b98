"""S5: the ICS conditioning hypothesis (the lecture's suggested class project), tested.

Variants (variants.py): a shifted_mlp (models/shifted.py) per condition (activation, added shift c, explicit
centering of the hidden activations or not) x normalization (none | bn_pre: BN before every
nonlinearity, hence "before the next nonlinearity" for every hidden activation but the last),
each over seeds, all trained with the same optimizer and learning rate; plus S5.e's sweep runs (the
three variants it compares at the other rates of ``lr_sweep.lrs``). Claims in claims.py, figures in
figures.py. The ``curvature`` probe
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
  (train loss, uncentered no-BN net minus BN net) that explicit centering without BN recovers,
  (L_U - L_C) / (L_U - L_B), pooled over the conditions that have a centered twin, seeds paired
  across the three variants, each variant at its own best learning rate: ``lr_sweep.lrs`` trains the
  three variants at further rates (no curvature probe), and each seed is compared at rates chosen on
  the other seeds (leave one seed out: seed k's rate for a variant is the one with the lowest mean
  ``lr_sweep.select`` loss at the sweep step over the seeds other than k), so no comparison is made at a
  rate its own result chose (choosing on the compared seeds biases the share; better conditioning may pay
  off through a higher stable rate). The per-seed values then share the other seeds' choices (a mild
  dependence where the held-out choices differ between seeds; none where they agree, the usual case).
  A chosen rate at an end of the sweep is marked on the row (its best may lie beyond). Strata: the conditions (each judged as a cell; ``mixed`` when one
  holds and another fails). The same test with every variant at the common ``lr`` is the cell
  S5.e[common lr]; without a sweep the headline is ``not run``. Interval: Fieller's, i.e. the set of
  shares theta whose paired t test of the linear contrast (L_U - L_C) - theta (L_U - L_B) does not
  reject. It is exact for normal per-seed differences, needs no ratio of noisy per-seed numbers, and
  is unbounded (so the verdict inconclusive) when BN's advantage itself is not clearly non-zero.
Subsets: a config with part of the grid (norms, conditions) runs; a claim whose variants are absent is a
``not run`` row that names what it needs (``variants.needs``).
Intervals: Student t over seeds (``normlab.stats.mean_ci``); verdicts from ``normlab.stats.finalize`` (one
multiplicity rule per family, the interval each verdict was made from).
"""

from __future__ import annotations

from .. import Figure, SideJob
from .claims import analyze, setup_text
from .figures import figures
from .variants import check_config, claim_variants, variants

__all__ = ["TITLE", "CATEGORY", "FIGURES", "PAPERS", "HEADLINES", "side_jobs", "headlines", "analyze", "figures",
           "variants", "check_config", "claim_variants"]

TITLE = "S5: the ICS conditioning hypothesis (Lecture 5's class project: do BN's gains come from removing outlier eigenvalues?)"
CATEGORY = "S5 ICS conditioning"
FIGURES = [
    Figure("eig_vs_nu.png", "eigenvalues vs nu"),
    Figure("spectra_centering.png", "spectra with and without centering"),
    Figure("invariance.png", "invariance trajectories"),
    Figure("training_curves.png", "training curves"),
    Figure("curvature_over_training.png", "curvature along training"),
    Figure("bn_advantage_share.png", "share of BN's speed advantage recovered by centering"),
    Figure("lr_sweep.png", "S5.e learning-rate sweep"),
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
             "departures": _SETUP + "; each of the three variants (uncentered, centered, BN) at its own best lr from a "
                                    "sweep over 0.01, 0.02, 0.05, 0.1, 0.2, 0.5 (the lowest mean train loss at step "
                                    "1,000 over the other seeds: leave one seed out, so no seed is compared at a rate "
                                    "its own runs chose; better conditioning may pay off through a higher stable lr; "
                                    "a rate chosen at an end of the sweep is marked on the row); speed = train loss after 1,000 steps; share = (uncentered - centered) / "
                                    "(uncentered - BN), pooled over tanh + 2 and logistic and judged per condition "
                                    "(mixed when one holds and the other fails), seeds paired; holds if the share "
                                    "exceeds 0.5; at the common lr 0.05 the same test is a cell, S5.e[common lr]",
             "figures": ["bn_advantage_share", "lr_sweep", "training_curves"]},
}


def side_jobs(cfg: dict) -> dict:
    return {
        "invariance": SideJob("normlab.studies.ics_conditioning.checks", "checks/invariance.parquet",
                              args=("invariance",), data=True, reads=("invariance",),
                              doc="S5: float64 check that BN makes the trajectory invariant to input shifts."),
        "centering": SideJob("normlab.studies.ics_conditioning.checks", "checks/centering.json",
                             args=("centering",), data=True, reads=("centering_check",),
                             doc="S5: float64 check of the batch-centering identity."),
    }


def headlines(cfg: dict) -> dict:
    """``HEADLINES`` with the departures of the setup ``cfg`` (the study's resolved section) describes."""
    from ..setup_text import headlines_for

    return headlines_for(HEADLINES, cfg, setup_text(cfg))
