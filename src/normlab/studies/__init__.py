"""Studies are plug-ins. Each module ``normlab.studies.<name>`` defines:

- ``variants(cfg) -> {variant_name: partial run spec}`` (torch-free: called at DAG parse time);
  the spec holds keys, model, optimizer, lr, schedule, train, probes (see ``normlab.train``);
- ``analyze(metrics, summary, cfg, extra) -> claims DataFrame`` (columns ``stats.CLAIM_COLUMNS``);
- ``figures(metrics, summary, claims, cfg, fig_dir, extra) -> list of written figure paths``.

Optional: ``headlines(cfg) -> HEADLINES`` with the departures of the setup ``cfg`` (the study's resolved
section, e.g. a version's ``manifest.json`` ``resolved_config.study_config``) describes: the declared
``HEADLINES`` on the default dataset, what was run on any other (``studies.setup_text.headlines_for``).

``metrics`` is the concatenation of every run's tidy metrics.parquet; ``summary`` has one row per
run (variant, seed, the variant's keys, status, final metrics). ``extra`` maps names to any
additional input files the study's rule file passes (e.g. outputs of study-specific jobs).
Study modules import torch/seaborn lazily inside functions, never at module level.
"""

import importlib

STUDIES = ["bn_placement", "santurkar", "li_arora", "norm_growth", "ics_conditioning"]


def get(name: str):
    if name not in STUDIES:
        raise ValueError(f"unknown study {name!r} (known: {', '.join(STUDIES)})")
    return importlib.import_module(f"normlab.studies.{name}")
