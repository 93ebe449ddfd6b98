"""The training job's command line (``normlab.engine`` is the loop, and the one way into it):

    python -m normlab.train --spec SPEC.json|'{...}' --out DIR [--ckpt-dir DIR] [--threads N]

trains every seed of the spec (one block of seeds of one variant), batched, into DIR (see
``normlab.engine`` for the run spec and outputs).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .io import read_spec


def keep_freed_memory() -> None:
    """Let glibc's malloc keep freed memory for reuse (``mallopt``: blocks up to 32 MiB from the heap, never trimmed)
    instead of returning every large tensor's pages to the kernel: a training step allocates and frees the same
    activation-sized blocks again and again, and fresh pages cost a page fault each (on a small conv net about a
    quarter of a step's CPU time went to the kernel). No number changes. A no-op where glibc is not the C library."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD: glibc's maximum
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass


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
    keep_freed_memory()
    deterministic()  # as torch.use_deterministic_algorithms(True, warn_only=True), without torch._dynamo
    for s in run(spec, a.out, a.ckpt_dir):
        print(f"[train] {s['variant']} seed {s['seed']}: {s['status']} {s['final']} ({s['wall_s']:.1f}s)")


if __name__ == "__main__":
    main()
