"""Figure output shared by the studies: every figure is written as PNG (report) and PDF (print)."""

from __future__ import annotations

from pathlib import Path


def save_figure(fig, fig_dir: Path, name: str) -> list[Path]:
    """Write ``fig_dir/name.png`` and ``.pdf``, close the figure, return the two paths."""
    import matplotlib.pyplot as plt

    paths = [Path(fig_dir) / f"{name}.{ext}" for ext in ("png", "pdf")]
    for p in paths:
        fig.savefig(p, dpi=130, bbox_inches="tight")
    plt.close(fig)
    return paths
