"""Figures shared by the studies: one set-up (``setup``), every figure written as PNG (report) and PDF
(print), and the forest plot of claims (``forest``). matplotlib and seaborn are imported here, on first use,
never at a module's import."""

from __future__ import annotations

import math
import re
from pathlib import Path

# One palette for verdicts, in figures and on the scorecard pages (the CSS file uses the same values).
VERDICT_COLORS = {"holds": "#1a7f37", "smaller": "#1b7c83", "fails": "#cf222e", "mixed": "#8250df", "inconclusive": "#6e7781",
                  "not run": "#afb8c1", "missing": "#9a6700"}
SESOI_COLOR = "#bc4c00"  # the smallest effect of interest (orange; purple is the verdict "mixed")
NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def setup():
    """The plotting modules, set up once for files (no display) in the house style: ``plt, sns = setup()``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="paper")
    return plt, sns


def save_figure(fig, fig_dir: Path, name: str) -> list[Path]:
    """Write ``fig_dir/name.png`` and ``.pdf``, close the figure, return the two paths."""
    import matplotlib.pyplot as plt

    paths = [Path(fig_dir) / f"{name}.{ext}" for ext in ("png", "pdf")]
    for p in paths:
        fig.savefig(p, dpi=130, bbox_inches="tight")
    plt.close(fig)
    return paths


def threshold_numbers(text) -> list[float]:
    """The numbers of a claim's threshold text: '> 0.5' -> [0.5], 'in [0.9, 1.1]' -> [0.9, 1.1] (both ends of
    an equivalence band); a multi-part claim's named parts ('BN - standard: > 0.1; ...') without their names;
    '' or NaN -> []."""
    if text is None or (isinstance(text, float) and math.isnan(text)):
        return []
    return [float(x) for seg in str(text).split("; ") for x in NUMBER.findall(seg.rsplit(": ", 1)[-1])]


def _float(x) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def _reference_lines(ax, lines) -> None:
    """Vertical lines: ``lines`` is a list of x values or (x, matplotlib line kwargs), or {x: kwargs}."""
    items = lines.items() if isinstance(lines, dict) else [(x, {}) if not isinstance(x, tuple) else x for x in lines]
    for x, style in items:
        ax.axvline(float(x), **{"color": "k", "lw": 0.8, **(style or {})})


def forest(rows, ax=None, *, labels=None, color=None, marker=None, offset: float = 0.0, lines=(),
           ticks: bool = True, emphasis=("headline",), xlim=None, label: str | None = None):
    """A forest plot of claims: one line per row of ``rows`` (a claims table: ``value``, ``ci_low``,
    ``ci_high``, ``verdict``, and optionally ``claim_id``, ``kind``, ``threshold``, ``fail_margin``), top to bottom
    in the given order, each the estimate with the interval its verdict was made from, coloured by verdict
    (``VERDICT_COLORS``: holds, fails, mixed, inconclusive, not run). Returns the axes.

    - ``ax``: draw there (default: a new figure sized to the rows).
    - ``labels``: the y tick labels: a list, a function of the row (a namedtuple), or None (``claim_id``).
    - ``color`` / ``marker``: one colour / marker for every row (e.g. one per version compared) instead of
      the verdict's colour / the kind's marker (rows of a kind in ``emphasis``: a large diamond, others a dot).
    - ``offset``: shift the rows up or down (two series on one axes: -0.15 and +0.15).
    - ``lines``: vertical reference lines (x values, (x, style) pairs or {x: style}; default style black).
    - ``ticks``: per row, a black tick at each number of its threshold (both ends of a band) and an orange
      one at its smallest effect of interest (when it is not the threshold's number).
    - ``xlim``: the x range; an interval end that is infinite (e.g. a Fieller interval) is drawn to the edge
      of this range (default: a little beyond the finite values) with an arrow.
    - ``label``: a legend label for this series (one entry), e.g. the version's name.
    Rows without a finite value (``not run``) show their verdict as text at the left of their line."""
    if ax is None:
        plt, _ = setup()
        ax = plt.subplots(figsize=(7, 0.3 * len(rows) + 1.2))[1]
    recs = list(rows.itertuples(index=False))
    names = (labels if isinstance(labels, list) else [labels(r) if callable(labels) else str(r.claim_id) for r in recs])
    finite = [x for r in recs for x in (_float(r.value), _float(r.ci_low), _float(r.ci_high)) if math.isfinite(x)]
    pad = 0.1 * ((max(finite) - min(finite)) or 1) if finite else 0
    lo_edge, hi_edge = xlim if xlim is not None else ((min(finite) - pad, max(finite) + pad) if finite else (0, 1))
    first = next((i for i, r in enumerate(recs) if math.isfinite(_float(r.value))), -1)  # carries the label
    for i, r in enumerate(recs):
        big = str(getattr(r, "kind", "")) in emphasis
        _row(ax, r, i + offset, color, marker, big, (lo_edge, hi_edge), label if i == first else None)
        if ticks:
            _ticks(ax, r, i + offset)
    _reference_lines(ax, lines)
    if xlim is not None:
        ax.set_xlim(*xlim)
    ax.set_yticks(range(len(recs)), names, fontsize=7)
    ax.set_ylim(len(recs) - 0.5, -0.5)
    return ax


def _row(ax, r, y, color, marker, big, edges, label) -> None:
    """One claim's estimate and interval at height ``y`` (see ``forest``)."""
    verdict = str(getattr(r, "verdict", ""))
    v, lo, hi = _float(r.value), _float(r.ci_low), _float(r.ci_high)
    c = color or VERDICT_COLORS.get(verdict, "k")
    if not math.isfinite(v):
        ax.text(0.01, y, verdict or "no value", transform=ax.get_yaxis_transform(), va="center", fontsize=7,
                style="italic", color=VERDICT_COLORS["not run"] if verdict == "not run" else "k")
        return
    lo_open, hi_open = not math.isfinite(lo), not math.isfinite(hi)
    lo, hi = (edges[0] if lo_open else lo), (edges[1] if hi_open else hi)
    ax.errorbar(v, y, xerr=[[max(v - lo, 0)], [max(hi - v, 0)]], fmt=marker or ("D" if big else "o"),
                ms=7 if big else 4, elinewidth=2 if big else 1, color=c, capsize=0 if big else 2, label=label)
    for open_, x, m in ((lo_open, lo, "<"), (hi_open, hi, ">")):
        if open_:
            ax.plot([x], [y], marker=m, color=c, ms=5)


def _ticks(ax, r, y) -> None:
    """A row's threshold numbers (black ticks) and smallest effect of interest (orange tick)."""
    thr = str(getattr(r, "threshold", "") or "")
    for x in threshold_numbers(thr):
        ax.plot([x], [y], marker="|", color="k", ms=10)
    sesoi = _float(getattr(r, "fail_margin", math.nan))
    if math.isfinite(sesoi) and f"{sesoi:g}" not in thr:
        ax.plot([sesoi], [y], marker="|", color=SESOI_COLOR, ms=10)


def verdict_legend(ax, verdicts=None, handles=(), **kw):
    """A legend of the verdict colours (those in ``verdicts``, default all) after the axes' own ``handles``
    (e.g. the versions of a comparison); ``kw`` go to ``ax.legend``."""
    from matplotlib.lines import Line2D

    shown = [v for v in VERDICT_COLORS if v != "missing" and (verdicts is None or v in set(verdicts))]
    patches = [Line2D([], [], marker="o", ls="", color=VERDICT_COLORS[v], label=v) for v in shown]
    return ax.legend(handles=[*handles, *patches], **{"fontsize": 7, "loc": "best", **kw})
