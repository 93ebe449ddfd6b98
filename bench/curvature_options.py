"""What the curvature probe (S5) would cost under other settings: a maintainer's table, not part of ``make bench``.

For each setting, the default config's ics_conditioning job (``--variants``; 3 seeds, 1,000 steps, calls at steps
0 and 500, one thread) runs in this process through the engine, as ``make bench``'s probe rows do; the share is the
loop's probe seconds / (loop wall - probes - evaluations), the best of ``--repeats`` runs. Every setting but
"today" changes what the probe measures (its batch, its number of eigenvalues, its tolerance, or whether the
whole-network Hessian is measured at all: only figures read it, no claim), so it is a choice of experiment.

Usage: .venv/bin/python bench/curvature_options.py [--variants none-tanh-s0 bn_pre-tanh-s2] [--repeats 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run_bench as B  # noqa: E402

SETTINGS = {
    "today (config.yaml)": {},
    "n_samples 128": {"n_samples": 128},
    "k 5": {"k": 5},
    "k 5, k_network 1": {"k": 5, "k_network": 1},
    "tol 1e-3": {"tol": 1e-3},
    "no whole-network Hessian": {"network": False},
}


def share(spec: dict, tmp: Path, repeats: int) -> tuple[float, float, float]:
    """(probe share of training, probe seconds, training seconds) of the best of ``repeats`` runs."""
    best = None
    for _ in range(repeats):
        loop = B.engine(spec, tmp)[0]["loop"]
        train = loop["wall_s"] - loop["probes_s"] - loop["evals_s"]
        row = (loop["probes_s"] / train, loop["probes_s"], train)
        best = row if best is None or row[0] < best[0] else best
    return best


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", nargs="+", default=["none-tanh-s0", "bn_pre-tanh-s2"])
    ap.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    cfg, tmp = B.default_config(), Path(tempfile.mkdtemp())
    data = str(B.data_file(cfg, "mnist1d", tmp))
    specs = {v: {**s, "data": data} for st, v, s in B.study_specs(cfg) if st == "ics_conditioning"}
    print("| setting | " + " | ".join(f"{v}: probes / training (share)" for v in a.variants) + " |")
    print("|---|" + "---|" * len(a.variants))
    for name, change in SETTINGS.items():
        cells = []
        for v in a.variants:
            spec = {**specs[v], "probes": [{**p, **change} if p["name"] == "curvature" else p
                                           for p in specs[v]["probes"]]}
            f, p, t = share(spec, tmp, a.repeats)
            cells.append(f"{p:.2f} s / {t:.2f} s ({100 * f:.1f}%)")
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
