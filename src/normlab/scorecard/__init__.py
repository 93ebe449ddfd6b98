"""The replication scorecard: the papers' headline claims first, then every study's cells and checks.

    python -m normlab.scorecard [--results results] [--version-dir results/<study>/<version> ...]
                                [--out-dir results] [--configs config] [--name <config>]
    python -m normlab.scorecard --claims-html results/<study>/<version>   # one study's claims as HTML

Reads each study version's ``claims.csv`` and ``manifest.json`` (and ``summary.parquet`` for the
run links) and writes, in ``--out-dir``, the pages of config ``--name`` (default: the versions' config name when
they share one; ``normlab.io.scorecard_paths``): the
default config's are ``scorecard.md``, ``scorecard.html``, ``scorecard_front.html`` and ``claims_all.csv``; any
other config writes ``scorecards/<name>.md``, ``.html``, ``_front.html`` and ``_claims_all.csv``, so running a
subset config never changes what the default's pages show. The files:

- ``scorecard.md`` and ``scorecard.html`` (self-contained: thumbnails embedded, full-size figures and
  run files are relative links). Both open with ONE table: one row per paper-level claim of every
  study, the empirical headline claims first and the identities (claims true by construction for a
  correct implementation) apart below them (the paper's statement, what was measured with the interval
  its verdict was made from, its level, the smallest effect of interest and seeds, the verdict, for an
  inconclusive claim what more seeds would buy, for a mixed claim its strata on each side, for a claim
  not run what it needs, what departs from the paper's setup, a figure), under the counts of empirical
  headline claims, identities, cells and checks (claims not run counted apart). Then, per study: its
  title and papers, its headline rows in full, its cells and checks (collapsed in the html), figures and
  runs.
- the replication matrix (in both, after the headline table): one row per headline claim, one column
  per config name with results under ``--results`` (``default`` first, then alphabetically; ``smoke``
  only when nothing else has run), each cell the verdict and value [CI] of the NEWEST version of that
  config name (not the ``latest`` link), linked to its claims; a note names the config files in
  ``--configs`` that would fill more columns.
- ``scorecard_front.html``: the headline table and the matrix as an HTML fragment for the Snakemake
  report's front page (``workflow/report/workflow.rst`` includes it).
- ``claims_all.csv``: every claim of every study (all kinds, with ``kind`` and ``p_adj``), with study,
  version, figures and version_dir columns.

Without ``--version-dir`` it takes the ``latest`` version of every study folder under ``--results``
(registered studies first). Nothing here is study-specific. A study module may declare (all optional,
read with getattr): ``TITLE`` (else the first line of its docstring), ``PAPERS`` (list of {"cite",
"url"}), ``HEADLINES`` ({claim_id: {"statement", "departures", "figures", "kind"}}, in order; ``kind``
"identity" for a claim true by construction, default "headline") and
``CLAIM_FIGURES`` ({claim_id: [figure stems]}; default: the HEADLINES figures). Old results
(claims.csv without ``kind``) count every row as a cell; without ``strata``, no row names strata.

Modules: ``load`` (version folders -> studies and claims tables), ``matrix`` (the replication matrix),
``table`` (the table model: row records with the display columns, formatting, counts), ``render`` (Markdown,
and HTML through the Jinja2 templates and CSS of ``normlab/templates/``), ``cli`` (``build``, ``main``).
The names below are the package's public interface.
"""

from .cli import build, main, results_root
from .load import (
    ALL_COLUMNS,
    claim_key,
    collect,
    figures_of,
    headline_rows,
    latest_versions,
    load_study,
    normalize_claims,
    rel,
    study_declared,
    study_headlines,
    study_identities,
    study_module,
    study_order,
    study_papers,
    study_title,
)
from .matrix import matrix_note, replication_matrix
from .render import (
    front_fragment,
    headlines_markdown,
    matrix_markdown,
    render_html,
    render_markdown,
    standalone_claims_html,
)
from .table import (
    KIND_TITLES,
    VERDICT_RULE,
    counts,
    fmt,
    kind_line,
    md_cell,
    p_text,
    short,
    summary_line,
    value_ci,
)

__all__ = ["ALL_COLUMNS", "KIND_TITLES", "VERDICT_RULE", "build", "claim_key", "collect", "counts", "figures_of",
           "fmt", "front_fragment", "headline_rows", "headlines_markdown", "kind_line", "latest_versions",
           "load_study", "main", "matrix_markdown", "matrix_note", "md_cell", "normalize_claims", "p_text", "rel",
           "render_html", "render_markdown", "replication_matrix", "results_root", "short", "standalone_claims_html",
           "study_declared", "study_headlines", "study_identities", "study_module", "study_order", "study_papers",
           "study_title", "summary_line", "value_ci"]
