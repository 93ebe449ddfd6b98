"""GPUs for jobs, without importing torch: how many this host has, and one per job.

``count()`` reads /proc/driver/nvidia/gpus (Linux NVIDIA driver), so the Snakefile can reserve a
``gpu`` resource for jobs that will use CUDA (``device: cuda``, or ``auto`` on a host with a GPU)
at parse time, cheaply. ``claim_one()`` gives a job one GPU of its own on a multi-GPU host when
nothing set ``CUDA_VISIBLE_DEVICES`` (SLURM does, through --gpus): it takes the first free
per-GPU lock file (``fcntl.flock``, released when the process exits) and sets
``CUDA_VISIBLE_DEVICES`` to that index before torch initializes CUDA.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_DIR = Path(os.environ.get("NORMLAB_GPU_LOCKS", "resources/gpu_locks"))
_held = []  # keep the lock files open for the life of the process


def count() -> int:
    d = Path("/proc/driver/nvidia/gpus")
    try:
        return len([p for p in d.iterdir() if p.is_dir()])
    except OSError:
        return 0


def will_use_cuda(device: str) -> bool:
    return device == "cuda" or (device == "auto" and count() > 0)


def claim_one(n_gpus: int | None = None, lock_dir: Path | None = None) -> int | None:
    """Pin this process to one free GPU (sets CUDA_VISIBLE_DEVICES); None if already pinned or no GPU."""
    if os.environ.get("CUDA_VISIBLE_DEVICES"):
        return None
    n = count() if n_gpus is None else n_gpus
    if n <= 1:
        return None
    lock_dir = Path(lock_dir or LOCK_DIR)
    lock_dir.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        f = open(lock_dir / f"gpu{i}.lock", "w")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            continue
        _held.append(f)
        os.environ["CUDA_VISIBLE_DEVICES"] = str(i)
        return i
    return None  # every GPU busy (more GPU jobs than GPUs: --resources gpu=N prevents this)
