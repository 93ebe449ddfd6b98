"""Compare two versions (two configs) of one study: claims side by side, figures overlaid.

    python -m normlab.compare results/<study>/<version A> results/<study>/<version B> [--out DIR]

Default output: ``results/compare/<study>/<A>_vs_<B>/`` with
- ``claims.csv`` and ``claims.md``: one row per claim id present in either version, its kind
  (headline / identity / cell / check), value, interval, verdict and adjusted p-value of each, and whether
  the verdict changed (claims.csv of old versions without ``kind`` count as cells);
- ``figures/claims.png``: each claim's value and interval for A and B on one forest plot;
- ``figures/curves_<metric>.png``: the learning curves of both versions overlaid (mean and 95% Student t interval
  over seeds), one panel per variant, for the evaluation metrics both versions logged;
- ``figures.md``: each figure of the study from A and B side by side.
The same comes from Snakemake: ``snakemake results/compare/<study>/<A>_vs_<B>/claims.md``.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import pandas as pd

from .analyze import load_runs
from .io import atomic_write, write_csv
from .plotting import forest, setup, threshold_numbers, verdict_legend
from .scorecard import fmt, md_cell, normalize_claims, rel
from .stats import t_band

KEY_METRICS = ["test_acc", "train_acc", "test_loss", "train_loss"]
SKIP_METRICS = {"lr", "diverged", "batch_loss", "batch_acc"}
MAX_CURVES = 6


def version_info(vdir: Path) -> dict:
    vdir = Path(vdir)
    if not (vdir / "claims.csv").exists():
        raise SystemExit(f"error: {vdir}/claims.csv not found (is {vdir} a study version folder?)")
    man = json.loads((vdir / "manifest.json").read_text()) if (vdir / "manifest.json").exists() else {}
    return {"dir": vdir, "study": man.get("study", vdir.parent.name), "version": vdir.resolve().name,
            "claims": normalize_claims(pd.read_csv(vdir / "claims.csv"))}


def side_by_side(a: dict, b: dict) -> pd.DataFrame:
    cols = ["claim_id", "kind", "value", "ci_low", "ci_high", "verdict", "p_adj", "n_seeds"]
    m = a["claims"][cols + ["claim", "metric"]].merge(b["claims"][cols], on="claim_id", how="outer",
                                                       suffixes=("_a", "_b"))
    m.insert(1, "kind", m.pop("kind_a").fillna(m.pop("kind_b")))
    order = list(dict.fromkeys([*a["claims"].claim_id, *b["claims"].claim_id]))  # A's order, then B-only
    m = m.set_index("claim_id").loc[order].reset_index()
    m["verdict_changed"] = m.verdict_a.fillna("absent") != m.verdict_b.fillna("absent")
    m.insert(1, "version_a", a["version"])
    m.insert(2, "version_b", b["version"])
    return m


def render_markdown(df: pd.DataFrame, a: dict, b: dict) -> str:
    va, vb = a["version"], b["version"]
    changed = int(df.verdict_changed.sum())
    heads = df[df.kind == "headline"]
    lines = [f"# {a['study']}: `{va}` (A) vs `{vb}` (B)", "",
             (f"{len(df)} claims ({len(heads)} headline); {changed} with a different verdict "
             f"({int(heads.verdict_changed.sum())} headline). Verdicts are adjusted within each family of each version. "
             "Figures: [claims](figures/claims.png), curves in [figures/](figures/), "
             "study figures side by side in [figures.md](figures.md)."), "",
             "| claim | kind | verdict A | value A [CI] | verdict B | value B [CI] | changed |",
             "|---|---|---|---|---|---|---|"]
    for r in df.itertuples():
        ca = f"{fmt(r.value_a)} [{fmt(r.ci_low_a)}, {fmt(r.ci_high_a)}]"
        cb = f"{fmt(r.value_b)} [{fmt(r.ci_low_b)}, {fmt(r.ci_high_b)}]"
        lines.append(f"| {md_cell(r.claim_id)} | {r.kind} | {r.verdict_a} | {ca} | {r.verdict_b} | {cb} | "
                     f"{'**yes**' if r.verdict_changed else ''} |")
    return "\n".join(lines) + "\n"


def figures_markdown(a: dict, b: dict, out: Path) -> str:
    fa = {p.name: p for p in sorted((a["dir"] / "figures").glob("*.png"))}
    fb = {p.name: p for p in sorted((b["dir"] / "figures").glob("*.png"))}
    lines = [f"# {a['study']}: figures of `{a['version']}` (A) and `{b['version']}` (B)", "", "| figure | A | B |",
             "|---|---|---|"]
    for name in sorted(set(fa) | set(fb)):
        cell = [f"![A]({rel(fa[name], out)})" if name in fa else "absent",
                f"![B]({rel(fb[name], out)})" if name in fb else "absent"]
        lines.append(f"| {name} | {cell[0]} | {cell[1]} |")
    return "\n".join(lines) + "\n"


def load_metrics(vdir: Path) -> pd.DataFrame:
    return load_runs(Path(vdir))[0]


def curve_metrics(ma: pd.DataFrame, mb: pd.DataFrame) -> list[str]:
    shared = (set(ma.metric) & set(mb.metric)) - SKIP_METRICS
    return ([m for m in KEY_METRICS if m in shared] + sorted(shared - set(KEY_METRICS)))[:MAX_CURVES]


def thresholds(texts) -> set[float]:
    """The numbers of threshold texts ('> 0.5', '< 1e-09', 'in [0.9, 1.1]'; old files: plain numbers)."""
    return {x for t in texts.dropna() for x in threshold_numbers(t)}


VERSION_MARKERS = {"a": ("o", -0.15), "b": ("s", 0.15)}  # version A: dots above, B: squares below


def claims_figure(df: pd.DataFrame, a: dict, b: dict):
    """Each claim's value and interval for A and B on one forest plot (colour: verdict; marker: version), one
    panel per claim metric (its own scale), with A's thresholds."""
    from matplotlib.lines import Line2D

    plt, _ = setup()
    groups = [(m, g) for m, g in df.groupby(df.metric.fillna("(absent in A)"), sort=False)]
    fig, axes = plt.subplots(len(groups), 1, figsize=(7.5, 0.32 * len(df) + 0.9 * len(groups) + 0.5), squeeze=False,
                             gridspec_kw={"height_ratios": [len(g) + 1 for _, g in groups]})
    for ax, (metric, g) in zip(axes[:, 0], groups):
        lines = sorted(thresholds(a["claims"].set_index("claim_id").threshold.reindex(g.claim_id)))
        for tag, (marker, dy) in VERSION_MARKERS.items():
            side = g.rename(columns={f"{c}_{tag}": c for c in ("value", "ci_low", "ci_high", "verdict")})
            forest(side.assign(verdict=side.verdict.fillna("absent")), ax, marker=marker, offset=dy, ticks=False,
                   emphasis=(), lines=lines if tag == "a" else ())
        ax.set_title(metric, fontsize=8)
    versions = [Line2D([], [], marker=m, ls="", color="k", label=f"{tag.upper()}: {v['version']}")
                for (tag, (m, _)), v in zip(VERSION_MARKERS.items(), (a, b))]
    verdict_legend(axes[0, 0], set(df.verdict_a.dropna()) | set(df.verdict_b.dropna()), handles=versions,
                   loc="upper left", bbox_to_anchor=(1.01, 1))
    axes[-1, 0].set_xlabel("claim value and the interval its verdict was made from (black lines: thresholds of A)")
    fig.suptitle(f"{a['study']}: claims of two versions")
    fig.tight_layout()
    return fig


def plot(df: pd.DataFrame, a: dict, b: dict, fig_dir: Path) -> list[Path]:
    plt, sns = setup()
    fig_dir.mkdir(parents=True, exist_ok=True)
    written = []

    def save(fig, name):
        p = fig_dir / f"{name}.png"
        fig.savefig(p, dpi=120, bbox_inches="tight")
        plt.close(fig)
        written.append(p)

    save(claims_figure(df, a, b), "claims")
    # learning curves of both versions overlaid, per variant
    ma, mb = load_metrics(a["dir"]), load_metrics(b["dir"])
    both = pd.concat([ma.assign(version=f"A: {a['version']}"), mb.assign(version=f"B: {b['version']}")],
                     ignore_index=True)
    variants = sorted(set(ma.variant) | set(mb.variant)) if len(ma) and len(mb) else []
    for metric in curve_metrics(ma, mb) if variants else []:
        d = both[both.metric == metric]
        g = sns.relplot(data=d, x="step", y="value", hue="version", col="variant", col_order=variants,
                        col_wrap=min(4, len(variants)), kind="line", errorbar=t_band(0.95), height=2.2, aspect=1.3,
                        facet_kws={"sharey": False})
        g.set_titles("{col_name}")
        g.set_axis_labels("step", metric)
        g.figure.suptitle(f"{a['study']}: {metric}, A vs B (mean and 95% Student t interval over seeds)", y=1.02)
        save(g.figure, f"curves_{metric}")
    return written


def compare(dir_a: Path, dir_b: Path, out: Path | None = None, figures: bool = True) -> pd.DataFrame:
    a, b = version_info(dir_a), version_info(dir_b)
    if a["study"] != b["study"]:
        raise SystemExit(f"error: {dir_a} is study {a['study']!r} but {dir_b} is {b['study']!r}")
    out = Path(out) if out else Path(dir_a).parent.parent / "compare" / a["study"] / f"{a['version']}_vs_{b['version']}"
    df = side_by_side(a, b)
    if figures:
        plot(df, a, b, out / "figures")
    for name, text in [("claims.md", render_markdown(df, a, b)), ("figures.md", figures_markdown(a, b, out))]:
        atomic_write(out / name, lambda tmp, text=text: tmp.write_text(text))
    write_csv(df, out / "claims.csv")
    for name in ("claims.md", "figures.md", "claims.csv"):
        os.chmod(out / name, 0o644)
    print(f"[compare] {a['study']}: {a['version']} vs {b['version']}: {len(df)} claims, "
          f"{int(df.verdict_changed.sum())} verdicts changed -> {out}")
    return df


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a", type=Path, help="version folder A (results/<study>/<version>)")
    ap.add_argument("b", type=Path, help="version folder B of the same study")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--no-figures", action="store_true")
    x = ap.parse_args(argv)
    compare(x.a, x.b, x.out, figures=not x.no_figures)


if __name__ == "__main__":
    main()
