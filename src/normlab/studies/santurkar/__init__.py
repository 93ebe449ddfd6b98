"""S1: Santurkar et al. (2018), "How does batch normalization help optimization?"

Grid (``variants.py``): network (``nets``: names of ``models`` entries, each a model and optional own
``steps``) x normalization (none | bn_pre | noisy_bn | noise_only) x learning rate (``lrs``: the sweep that
shows where BN matters), each over ``seeds`` (batched: one job per variant and block of ``seed_block``
seeds); the norms of ``probes.norms`` also at the rates of ``probes.lrs`` (0.01: the paper's Fig. 3 rate, for
S1.c and S1.d only). Variants whose norm is in ``probes.norms`` carry the ``ics`` and ``landscape`` probes;
every variant carries ``unit_activations`` (Fig. 2 histograms) and ``bn_clean_eval`` at the last step (the
learned weights with the noise off and BN statistics recomputed over the training set: train accuracy and
loss, test accuracy). The deep linear network (DLN, ``dln.py``) runs as its own job (``santurkar_dln``) and
comes in as ``extra['dln']``.

Training accuracy is what the paper plots (as read here): the train-mode accuracy of the step's own batch
(``batch_acc``, logged every ``train.log_every`` steps), averaged over the last ``claims.tail`` fraction of
steps; a diverged run counts as chance (0.1). Claims (``claims.py``; thresholds in ``claims``; Student t
intervals over seeds, stratified over cells when pooled; ``normlab.stats.finalize`` applies one multiplicity
rule per family, judges the declared strata and reads the verdicts). A claim whose variants the config does
not train is a ``not run`` row naming what it needs; ``check_config`` refuses only keys that contradict each
other or a config where no claim could run.

- S1.a (headline) noisy BN trains about as well as BN (gap within +-``equiv_margin``) and both beat the
  standard net by more than ``beat_margin``, pooled over the ``regime_lrs`` (where the standard net is slow
  or fails); the intersection-union test of the three parts. Value and parts: the paper's metric, train
  mode (the noisy forward pass scored). Strata (metric): the learned weights noise-free: train accuracy,
  train loss (log10; margins ``loss_equiv``, ``loss_beat`` as factors) and test accuracy; strata that
  disagree make it ``mixed``. The train mode is the row's own test, not also a stratum (the same estimate
  would be tested twice in the headline family).
- S1.b (check, our control) the same noise without BN stops training: noise_only's train-mode
  accuracy below chance + ``stop_margin``, pooled over ``measure_lrs`` (where the standard net trains).
- S1.c (headline) BN does not reduce ICS: over the ICS layers and ``ics_lrs`` (0.1 and 0.01, the paper's
  Fig. 3), BN's ||G - G'|| and ||G - G'|| / ||G|| are at least 1/``ics_similar`` of the standard net's
  (geometric means over probe steps, log10 scale) and cos(G, G') is not higher by more than ``cos_margin``
  (intersection). Strata: layer x measure (one per ICS layer and measure); each rate also a row
  (S1.c[lr=...], ``not run`` when not trained).
- S1.d[check: update = eta g] (check): under plain SGD the landscape grid's unit step, the actual
  update, has length eta ||g|| (the probe's instrument identity).
- S1.d (headline) BN makes the landscape smoother: log10 of loss range, gradient predictiveness
  and effective beta, BN minus no BN, below 0, pooled over the three measures and ``measure_lrs``, on the
  early window the paper stresses (probe steps after step 0 up to ``claims.early`` of the steps); it fails
  when the interval rules out a reduction by the factor ``smooth_min`` (the smallest effect of interest:
  10, one order of magnitude against the paper's "two orders"). Strata: measure. Every probe step from
  step 0: S1.d[all steps] (a cell).
"""

from __future__ import annotations

from .. import Figure, SideJob
from .claims import analyze  # noqa: F401  (the study's entry points)
from .figures import figures  # noqa: F401
from .variants import check_config, claim_variants, setup_text, variants  # noqa: F401

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
                                    "last 10% of steps (the paper's metric as read here: the noise in the forward "
                                    "pass is scored); 'about as well' = within 5 points, 'clearly better' = "
                                    "more than 10 points; also judged per metric stratum: the learned weights "
                                    "noise-free (train and test accuracy, train loss within / beyond a factor 2); "
                                    "strata that disagree make the verdict mixed",
             "figures": ["train_accuracy", "lr_sweep", "train_loss", "test_accuracy", "activation_histograms"]},
    "S1.c": {"statement": "BN does not reduce internal covariate shift (Def. 2.1): networks with BN show similar or "
                          "larger ||G - G'|| and no higher cos(G, G') than networks without (Figs. 3, 5)",
             "departures": _SETUP + "; ICS of two weight layers every probe step at the paper's Fig. 3 rates "
                                    "(lr 0.1 and 0.01; at 0.01 only the standard and BN nets are trained), pooled; "
                                    "'similar' = within a factor 1.25; also the scale-free ||G - G'|| / ||G||; "
                                    "judged per layer and measure too (strata that disagree: mixed)",
             "figures": ["ics", "dln"]},
    "S1.d": {"statement": "BN makes the loss landscape smoother: the loss range, the gradient change and the "
                          "effective beta-smoothness along the update are smaller with BN (Fig. 4)",
             "departures": _SETUP + "; step sizes 0.5-4 x the actual update (= eta x gradient under plain SGD), "
                                    "8 points, at lr 0.1, on the first 20% of training after step 0 (the "
                                    "initialization left out); pooled over the three measures (each also judged); "
                                    "smallest effect of interest a factor 10, one order of magnitude against the "
                                    "paper's two",
             "figures": ["landscape", "dln"]},
}


def side_jobs(cfg: dict) -> dict:
    return {"dln": SideJob("normlab.studies.santurkar.dln", "dln", directory=True, reads=("dln",),
                           doc="S1: the deep linear network (full-batch GD) with and without BN, with ICS and "
                               "landscape probes.")}


def headlines(cfg: dict) -> dict:
    """``HEADLINES`` with the departures of the setup ``cfg`` (the study's resolved section) describes."""
    from ..setup_text import headlines_for

    return headlines_for(HEADLINES, cfg, f"{setup_text(cfg)}; DLN {cfg['dln']['steps']:,} steps at eta "
                                         f"{', '.join(f'{x:g}' for x in cfg['dln']['lrs'])}")
