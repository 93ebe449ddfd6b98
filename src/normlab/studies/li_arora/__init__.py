r"""S2: Li & Arora (ICLR 2020): weight decay + momentum is an exponential learning rate, exactly.

Two experiments:

- exactness (``li_arora.exactness``, its own Snakemake job per dtype: ``li_arora_exact_float64``, ``li_arora_exact_float32``): pairs of runs from one
  initialization on the same batches, float64 and float32; per step the gap between the two
  runs' normalized weights, the largest softmax difference on a fixed probe batch, and the ratio
  of their weight norms against the predicted scalar (claims S2.a, S2.b[trajectory], S2.d);
- accuracy (the generic ``train`` rule): step decay + WD, the paper's practical TEXP and the exact
  TEXP (no WD), constant + WD and exponential (no WD; a larger weight decay ``growth.weight_decay``
  so that eta_t grows by orders of magnitude within the run), over seeds; final test accuracy,
  weight norms, ||w_t||^2 / eta_t (claims S2.b, S2.c).

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

BN's epsilon and running statistics break exact invariance; see ``li_arora.exactness`` for how the
exactness pair handles them (eps = 1e-30; outputs compared with batch statistics). The accuracy runs
use the model's own eps and eval-mode running statistics, as a practitioner would.

The practical TEXP (``schedules.PracticalTEXP``, the paper's definition as run in practice) jumps
to a_T = alpha_k at once and starts from a zero momentum buffer: close to the exact TEXP, not equal.

Claims (one row each): S2.a exactness in float64 (constant + WD vs exponential; an ``identity``, true by
construction for a correct implementation, counted apart); S2.b
practical TEXP vs step decay + WD, same test accuracy within a margin over seeds; S2.c under the
exponential schedule ||w_t||^2 grows like eta_t (log-log slope near 1) and training stays as good as
constant + WD; S2.d float32 pairs drift apart, at a measured rate (decades of weight gap per 1,000
steps). Checks: the exact TEXP (float64 trajectory, accuracy), the zero-buffer control, rounding.

Any subset of the schedules and of the exactness dtypes and pairs runs: a claim whose runs the config lacks is
a ``not run`` row naming what it needs (``variants.NEEDS``); refused are keys that contradict each other and a
config where no claim could run (``check_config``).

Layout: ``variants.py`` (variants, cross-key checks, what each claim needs), ``claims.py`` (tables and claims),
``figures.py``, ``exactness.py`` (the paired-runs side job).
"""

from __future__ import annotations

from .. import Figure, SideJob
from .claims import accuracy_net, analyze, exact_net
from .figures import figures
from .variants import check_config, claim_variants, variants

TITLE = "S2: Li & Arora 2020, An exponential learning rate schedule for deep learning"
CATEGORY = "S2 Li-Arora"
FIGURES = [
    Figure("exactness_gap.png", "exactness gap"),
    Figure("lr_schedules.png", "learning-rate schedules"),
    Figure("norms.png", "norms"),
    Figure("drift.png", "float32 drift"),
    Figure("test_accuracy.png", "test accuracy"),
]
PAPERS = [{"cite": "Li, Arora. An exponential learning rate schedule for deep learning. ICLR 2020",
           "url": "https://arxiv.org/abs/1910.07454"}]
_SETUP = "MNIST-1D instead of CIFAR-10"
HEADLINES = {
    "S2.a": {"statement": "On a scale-invariant loss, SGD with constant eta, weight decay lambda and momentum gamma and "
                          "SGD with momentum, no weight decay and eta_t = eta alpha^(-2t-1) produce the same functions",
             "departures": f"{_SETUP}; a 2x64 BN MLP (scale invariant: fixed output layer, BN eps 1e-30) instead of "
                           "PreResNet32; float64; 2,000 steps from the same initialization on the same batches, three "
                           "(eta, lambda, gamma) settings; the initial momentum buffer is derived, not zero; an "
                           "identity (true by construction for a correct implementation): it verifies code and theorem",
             "figures": ["exactness_gap"], "kind": "identity"},
    "S2.b": {"statement": "The tapered exponential schedule (TEXP) without weight decay reaches the test accuracy of "
                          "step decay with weight decay",
             "departures": f"{_SETUP}; scale-invariant 1-D CNN (4 conv layers) instead of PreResNet32; 1,500 steps "
                           "with milestones at 50% and 75% (the paper: 200 epochs); TEXP as practitioners run it "
                           "(no momentum correction, zero initial buffer); equality judged by TOST on paired "
                           "differences over 5 seeds within +-0.02; BN eval mode (running statistics)",
             "figures": ["lr_schedules", "test_accuracy"]},
    "S2.c": {"statement": "Under the exponential schedule the weight norm grows exponentially while training stays well "
                          "behaved; ||w_t||^2 / eta_t stays near constant",
             "departures": f"{_SETUP}; scale-invariant 1-D CNN; 1,500 steps; weight decay 2e-3 replaced (not the "
                           "paper's 5e-4) so that eta_t grows about 450x within the run (the paper's 1.481 per epoch "
                           "over 200 epochs grows far more); well behaved = test accuracy of constant + WD within a "
                           "margin; growth = slope of log ||w_t||^2 on log eta_t over the second half",
             "figures": ["norms", "lr_schedules"]},
    "S2.d": {"statement": "In float32 the exponential run and its weight-decay twin drift apart (rounding errors grow)",
             "departures": f"{_SETUP}; 2x64 BN MLP; the paper only remarks on it: the rate is measured here, in decades "
                           "of the normalized-weight gap per 1,000 steps from rounding level until the gap reaches "
                           "1e-2, over seeds and (eta, lambda, gamma) settings; each setting also judged "
                           "as a stratum (mixed if they disagree)",
             "figures": ["exactness_gap", "drift"]},
}


def side_jobs(cfg: dict) -> dict:
    """One exactness job per dtype of the config (``extra["exact_float64"]``, ``extra["exact_float32"]``).
    float64 runs one seed: it does not read ``exactness.float32_seeds``."""
    def reads(d):
        return ("step_decay", *(f"exactness.{k}" for k in cfg["exactness"] if (d, k) != ("float64", "float32_seeds")))

    return {f"exact_{d}": SideJob("normlab.studies.li_arora.exactness", f"exactness/{d}.parquet",
                                  args=("--dtype", d), data=True, gpu=True, reads=reads(d),
                                  doc=f"S2: paired runs (constant lr + WD vs exponential lr, step decay vs TEXP) "
                                      f"in {d}, for exactness and drift.")
            for d in cfg["exactness"]["dtypes"]}


def headlines(cfg: dict) -> dict:
    """``HEADLINES`` with the departures of the setup ``cfg`` (the study's resolved section) describes."""
    from ..setup_text import headlines_for

    t = cfg["train"]
    return headlines_for(HEADLINES, cfg, f"accuracy runs: {accuracy_net(cfg)}, {t['steps']:,} steps of batch "
                                         f"{t['batch_size']}, {cfg['seeds']} seeds, growth lambda "
                                         f"{cfg['growth']['weight_decay']:g}; exactness pairs: {exact_net(cfg, ' on ')}, "
                                         f"{cfg['exactness']['steps']:,} steps")


__all__ = ["TITLE", "CATEGORY", "FIGURES", "PAPERS", "HEADLINES", "analyze", "check_config", "figures", "headlines",
           "side_jobs", "variants", "claim_variants"]
