"""The training job's command line (``normlab.engine`` is the loop, and the one way into it):

    python -m normlab.train --spec SPEC.json|'{...}' --out DIR [--ckpt-dir DIR] [--threads N]

trains every seed of the spec (one block of seeds of one variant), batched, into DIR (see
``normlab.engine`` for the run spec and outputs).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .io import read_spec


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spec", required=True, help="a JSON file or a JSON string")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--ckpt-dir", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args(argv)
    spec = read_spec(a.spec)
    if spec.get("device", "auto") in ("auto", "cuda"):
        from .gpu import claim_one

        claim_one()  # one GPU of its own on a multi-GPU host (before torch initializes CUDA)
    import torch

    from .engine import run
    from .startup import deterministic

    if a.threads:
        torch.set_num_threads(a.threads)
    deterministic()  # as torch.use_deterministic_algorithms(True, warn_only=True), without torch._dynamo
    for s in run(spec, a.out, a.ckpt_dir):
        print(f"[train] {s['variant']} seed {s['seed']}: {s['status']} {s['final']} ({s['wall_s']:.1f}s)")


if __name__ == "__main__":
    main()
