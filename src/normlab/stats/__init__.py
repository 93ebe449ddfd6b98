"""Statistics for claims: Student t intervals over seeds, tests, one multiplicity rule per family, power.

numpy + scipy.stats only (fast import). Why Student t and not a bootstrap: at 3-5 seeds a
percentile bootstrap covers far less than its nominal level (simulated: 78-80% at 3 seeds for a
nominal 95%); ``tests/test_stats.py`` simulates the coverage of every interval function here.

A claim is a statement about a mean over seeds (or a stratified mean of per-seed differences), made
of one or more ``Part`` s, each an ``Estimate`` and a side:

- directional, ``above`` h (or ``below`` h) with a smallest effect of interest: it *holds* when the
  interval clears h in the claimed direction and *fails* when the interval rules out an effect as
  large as the smallest effect of interest (lies below h + sesoi; for ``below``: above h - sesoi).
  Without a sesoi the fail margin is h itself (a threshold claim, "beats by more than 0.1");
- a band, ``within`` (a, b): *holds* by TOST (both one-sided tests at the level: the 1 - 2 alpha interval
  inside the band), *fails* when the interval lies outside the band (the two one-sided tests of
  "outside" Bonferroni-combined: the 1 - alpha interval outside);
- several parts (``claim_all``): holds when every part holds (intersection-union, p = the largest),
  fails when any part fails (Bonferroni over the parts); a ``gate`` part must hold for any verdict.

Every test is one-sided at alpha = 1 - ci (``ci`` 0.95 in the configs: alpha 5%), so TOST at 5% uses
the 90% interval. Each claim yields two p-values: ``p_holds`` (rejects "the claim is false") and
``p_fails`` (rejects "the effect is as large as the smallest effect of interest" / "the claim is true").

``finalize`` (called once per study by ``normlab.analyze``) applies ONE multiplicity rule per family:
Holm's step-down over both hypotheses of every claim of the family (a study's headline claims are one
family with the strata of its pooled claims, its cells another; each check and each identity is judged
alone), with Shaffer's logical
constraint: a directional claim with a smallest effect of interest > 0 has disjoint null hypotheses
("effect <= h" and "effect >= h + sesoi"), so at most one of its two can be true and it counts once;
a band or a threshold claim can have both true at its margin (there both verdicts are wrong) and
counts twice. So the probability of any wrong ``holds`` or ``fails`` in a family is at most alpha,
whatever the truth; ``tests/test_stats.py`` simulates it at 3, 5 and 10 seeds with the truth at the
margins. Each row then shows the interval its verdict was made from: the interval at the adjusted
level the step-down used for that claim (``ci_level``; 90% when a claim is judged alone at alpha 5%).

Values without sampling error (identities, deterministic checks) and estimates whose seeds all gave
the same value (zero variance) are compared exactly with their margins, carry no p-value and are in
no family.

Strata: a claim that pools strata (layers, activations, conditions, metrics) declares them (``strata=``, one
list of parts per stratum). ``finalize`` judges each stratum as a cell row of its own, ``<claim_id>[<label>]``, in
the family of the pooled claim (a headline's strata in the headline family: everything that decides a
headline verdict shares its alpha, so a wrong ``mixed`` is one of the family's wrong verdicts, at most alpha
in all); when one stratum holds and another fails, the pooled claim's verdict is ``mixed``
and its ``strata`` column names the strata on each side. Whether the strata agree is tested by Welch's
heterogeneity test (Welch 1951: equal means under unequal variances) on the strata's first parts when they
measure the same thing against the same margins (not across metrics or measures), its p-value in the basis (it treats the strata as independent; strata measured on the same seeds are not,
so read it as descriptive).

Power (``power_figures``): for an inconclusive claim, from its observed effect and spread, the effect
the seeds run could detect (80% power at the claim's level) and the seeds that would decide it, or
``inf`` when more seeds would not help (the estimate sits on a margin). Noncentral t; simulated in
``tests/test_stats.py``.
"""

from .constants import CLAIM_COLUMNS, FAMILIES, INTERNAL, KINDS, P_COLUMNS, POWER, SEEDS_CAP, VERDICTS
from .families import holm, stepdown, strata_agree
from .finalize import finalize, judge_looks
from .intervals import Estimate, exact, from_scale, mean_ci, p_one_sided, t_band, to_scale, tq
from .power import decide_power, detectable, part_power, power_figures, undecided_part
from .rows import claim, claim_all, claim_from, not_run
from .sequential import Looks, planned_looks
from .tests import (
           Part,
           combine,
           exact_verdict,
           judge,
           make_part,
           part_pvalues,
           verdict_above,
           verdict_below,
           verdict_within,
)

__all__ = ["CLAIM_COLUMNS", "FAMILIES", "INTERNAL", "KINDS", "P_COLUMNS", "POWER", "SEEDS_CAP", "VERDICTS", "holm",
           "stepdown", "strata_agree", "finalize", "judge_looks", "Looks", "planned_looks", "Estimate", "exact", "from_scale", "mean_ci", "p_one_sided", "t_band",
           "to_scale", "tq", "decide_power", "detectable", "part_power", "power_figures", "undecided_part", "claim",
           "claim_all", "claim_from", "not_run", "Part", "combine", "exact_verdict", "judge", "make_part",
           "part_pvalues", "verdict_above", "verdict_below", "verdict_within"]
