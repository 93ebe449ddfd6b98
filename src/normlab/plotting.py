"""Figures shared by the studies: one set-up (``setup``), and every figure written as PNG (report) and PDF
(print). matplotlib and seaborn are imported here, on first use, never at a module's import."""

from __future__ import annotations

from pathlib import Path


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
