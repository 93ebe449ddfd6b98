"""Names shared by the statistics modules: claim columns, verdicts, kinds, families, power settings."""

from __future__ import annotations

CLAIM_COLUMNS = ["claim_id", "claim", "source", "metric", "value", "ci_low", "ci_high", "threshold", "verdict",
                 "n_seeds", "kind", "p_adj", "fail_margin", "ci_level", "basis", "detectable", "seeds_needed", "strata",
                 "look", "looks", "nominal", "stop"]
# Internal columns the studies fill (through ``claim``); ``finalize`` consumes them.
P_COLUMNS = ["p_holds", "p_fails"]
INTERNAL = ["_parts", "_display", "_strata", "_stratum", "_family"]
# mixed: a pooled claim whose strata give opposite verdicts (one holds, another fails); not run: the config
# does not contain what the claim needs.
VERDICTS = ("holds", "smaller", "fails", "mixed", "inconclusive", "not run")
# headline: the paper's empirical claims; identity: a paper-level claim true by construction for a correct
# implementation (it verifies code and theorem, not an empirical finding); cell: per-cell detail; check:
# controls and instrument checks.
KINDS = ("headline", "identity", "cell", "check")
FAMILIES = ("headline", "cell")  # one multiplicity family each per study; other kinds are judged alone
POWER = 0.8
SEEDS_CAP = 200  # beyond this many seeds "more seeds would not help": the estimate sits on a margin
