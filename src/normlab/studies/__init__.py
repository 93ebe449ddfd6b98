"""Studies are plug-ins: each is a package ``normlab.studies.<name>/`` found by its folder alone.

A study package declares (module level, torch-free: read at DAG parse time):

- ``TITLE``: the study's title (scorecard, report, W&B);
- ``CATEGORY``: its category in the Snakemake report (e.g. ``"S1 Santurkar et al."``);
- ``FIGURES``: a list of ``Figure(file, label)``, every figure ``figures()`` writes (``figures/<file>``),
  each with its caption in ``captions/<stem>.rst`` of the package (``captions/claims.rst`` captions the
  claims table);
- ``variants(cfg) -> {variant_name: partial run spec}``: the training jobs (one per variant, all seeds
  batched); the spec holds keys, model, optimizer, lr, schedule, train, probes (see ``normlab.engine``);
- ``analyze(metrics, summary, cfg, extra) -> claims DataFrame`` (columns ``stats.CLAIM_COLUMNS``, each row
  with its ``kind``: headline, identity, cell or check);
- ``figures(metrics, summary, claims, cfg, fig_dir, extra) -> list of written figure paths``.

Optional: ``side_jobs(cfg) -> {name: SideJob}`` (jobs other than training, keyed by the config sections
they read (``SideJob.reads``): each runs ``python -m <module> <args> --config <its spec.json> [--data
<dataset>] --out results/<study>/side/<name>-<hash>/<output> --threads N`` and ``extra[name]`` is
``<version>/<output>``, a link to it, in ``analyze``/``figures``), ``PAPERS`` (list of
{"cite", "url"}), ``HEADLINES`` ({claim_id: {"statement", "departures", "figures"}}, in order),
``headlines(cfg)`` (the departures of the setup ``cfg`` describes, ``setup_text.headlines_for``),
``claim_variants(cfg) -> {headline claim id: [variant names]}`` (the training variants whose runs each
headline claim's estimate reads, all its parts and strata; [] for a claim that reads only side jobs or that the
config cannot run; identities left out: what a sequential design trains more seeds of; every study of this
repository declares it and ``tests/test_claim_variants.py`` checks it against the data),
``CLAIM_FIGURES`` ({claim_id: [figure stems]}) and ``check_config(cfg) -> [error lines]`` (cross-key
checks run when the plan is built).

``cfg`` is the study's validated config section (``workflow/schemas/studies/<name>.schema.yaml``).
``metrics`` is the concatenation of every run's tidy metrics.parquet; ``summary`` has one row per
run (variant, seed, the variant's keys, status, final metrics). Study modules import torch/seaborn
lazily inside functions, never at module level. ``workflow/rules/studies.smk`` turns these
declarations into rules; a study with needs they cannot express adds ``workflow/rules/<name>.smk``.
Every study has the same layout (docs/adding-a-study.md): ``__init__.py`` holds the declarations and imports
``variants``/``check_config`` from ``variants.py``, ``analyze`` from ``claims.py`` and ``figures`` from
``figures.py``; side jobs have modules of their own. See README "Add a study".
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Figure:
    """A figure a study writes: ``figures/<file>``, its label in the report, its caption file."""

    file: str
    label: str

    @property
    def stem(self) -> str:
        return Path(self.file).stem


@dataclass(frozen=True)
class SideJob:
    """A job besides training: ``python -m <module> <args> --config C [--data D] --out O --threads N``."""

    module: str
    output: str  # relative to the version folder
    doc: str
    args: tuple[str, ...] = ()
    data: bool = False  # reads the study's prepared dataset (``--data``)
    directory: bool = False  # the output is a folder
    gpu: bool = False  # may use the GPU (reserves one when the config's device does)
    # The keys of the study's config section the job reads (``"dln"``, or ``"exactness.steps"``: one key of a
    # section): its spec (``study_config``) holds only these, so its output is keyed by them (an edit elsewhere
    # does not rerun it; reading another key fails).
    reads: tuple[str, ...] = ()


REQUIRED = ("TITLE", "CATEGORY", "FIGURES", "variants", "analyze", "figures")


def _discover() -> list[str]:
    here = Path(__file__).parent
    return sorted(m.name for m in pkgutil.iter_modules([str(here)]) if m.ispkg)


STUDIES = _discover()


def get(name: str):
    if name not in STUDIES:
        raise ValueError(f"unknown study {name!r} (known: {', '.join(STUDIES)})")
    mod = importlib.import_module(f"{__name__}.{name}")
    missing = [k for k in REQUIRED if not hasattr(mod, k)]
    if missing:
        raise TypeError(f"study package normlab.studies.{name} does not declare {', '.join(missing)}")
    return mod


def package_dir(name: str) -> Path:
    return Path(__file__).parent / name


def caption_path(name: str, stem: str) -> Path:
    """The caption file of a study's figure (``stem`` of its file) or of its claims table (``claims``)."""
    return package_dir(name) / "captions" / f"{stem}.rst"


def side_jobs(name: str, cfg: dict) -> dict[str, SideJob]:
    fn = getattr(get(name), "side_jobs", None)
    return dict(fn(cfg)) if fn else {}


def extra_inputs(name: str, cfg: dict, version_dir) -> dict[str, str]:
    """``extra`` for ``analyze``/``figures``: each side job's name and its output's path."""
    return {k: str(Path(version_dir) / j.output) for k, j in side_jobs(name, cfg).items()}


def claim_variants(name: str, cfg: dict) -> dict[str, list[str]]:
    """The study's ``claim_variants(cfg)``; a study that does not declare it: every headline of ``HEADLINES``
    (identities left out) reads every variant (a safe superset)."""
    mod = get(name)
    fn = getattr(mod, "claim_variants", None)
    if fn:
        return {k: list(v) for k, v in fn(cfg).items()}
    names = list(mod.variants(cfg))
    return {cid: names for cid, h in getattr(mod, "HEADLINES", {}).items() if h.get("kind", "headline") != "identity"}


def figure_files(name: str) -> list[str]:
    return [f.file for f in get(name).FIGURES]
