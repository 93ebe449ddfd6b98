"""Example study: does BatchNorm lower a small MLP's training loss at a fixed budget?

A template for docs/adding-a-study.md (and the test that builds it through real Snakemake), in the one
layout every study has:

- ``__init__.py`` (this file): declarations only: title, category, papers, headlines, figures, side jobs,
  and the entry points imported from the modules below;
- ``variants.py``: ``variants(cfg)`` (the training jobs) and ``check_config(cfg)`` (cross-key checks);
- ``claims.py``: ``analyze(metrics, summary, cfg, extra)`` (the claims);
- ``figures.py``: ``figures(metrics, summary, claims, cfg, fig_dir, extra)``;
- ``sizes.py``: the side job; ``captions/``: one caption per figure and one for the claims table.

The Snakefile imports every study when it parses the workflow: numpy, pandas, torch, matplotlib and
seaborn are imported inside functions, never at the top of these modules.
"""

from __future__ import annotations

from .. import Figure, SideJob
from .claims import analyze  # noqa: F401  (the study's entry points)
from .figures import figures  # noqa: F401
from .variants import check_config, variants  # noqa: F401

TITLE = "EX: BatchNorm lowers a small MLP's training loss (example study)"
CATEGORY = "EX Example"
PAPERS = [{"cite": "Ioffe, Szegedy. Batch normalization. ICML 2015", "url": "https://arxiv.org/abs/1502.03167"}]
HEADLINES = {"EX.a": {"statement": "BN lowers the final training loss", "departures": "a toy setup",
                      "figures": ["loss"]}}
FIGURES = [Figure("loss.png", "training loss")]


def side_jobs(cfg: dict) -> dict:
    # reads: the config sections the job reads (its spec holds only these; it reruns when they change).
    # This one reads none: it reruns only when its dataset changes.
    return {"sizes": SideJob("normlab.studies.example.sizes", "sizes.json", data=True, reads=(),
                             doc="EX: count the dataset's training and test examples.")}
