"""Torch start-up workarounds for training jobs: seconds saved per job, no change to any number.

A training job is short (seconds to minutes) and the DAG runs hundreds of them, so importing
``torch._dynamo`` / ``torch._inductor`` (seconds each, pulled in by public torch calls the engine
makes but never needs: it compiles nothing) costs more than some jobs' training. Each function here
reaches into a private torch API to avoid one such import, falls back to the public call when that
API is missing (another torch version), and is checked against the public call in tests
(``tests/test_engine.py``: same numbers, no ``torch._dynamo`` import at start-up).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch


def deterministic() -> None:
    """``torch.use_deterministic_algorithms(True, warn_only=True)`` without its import of
    ``torch._inductor`` (which pulls in ``torch._dynamo``: seconds of start-up). The public call also
    sets inductor's flag, which only compiled code reads; the engine compiles nothing.

    Uninitialized memory is not filled with NaN (``torch.utils.deterministic.fill_uninitialized_memory``,
    on by default with deterministic algorithms): no correct op reads it, and filling every ``torch.empty``
    cost a quarter of a small model's training step on CPU (``make bench`` profile)."""
    setter = getattr(torch._C, "_set_deterministic_algorithms", None)
    if setter is None or "torch._inductor.config" in sys.modules:
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        setter(True, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = False  # (imported by torch itself)


def lean_optimizers() -> None:
    """Keep ``torch.optim`` from importing ``torch._dynamo`` (seconds of start-up) on first use.

    Optimizer methods are wrapped by ``torch._compile._disable_dynamo``, which imports torch._dynamo
    on the first call to build ``torch._dynamo.disable(fn)`` and caches it as ``fn.__dynamo_disable``.
    The engine never compiles, so the cache is filled with ``fn`` itself (what the wrapper does when
    dynamo is off). A no-op once torch._dynamo is imported (then the real wrapper is used)."""
    if "torch._dynamo" in sys.modules:
        return
    try:
        from torch._compile import _disable_dynamo

        inner = _disable_dynamo(lambda: None).__code__  # the wrapper's code, shared by every wrapped method
    except (ImportError, AttributeError, TypeError):
        return
    for cls in (torch.optim.Optimizer, torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW):
        for f in vars(cls).values():
            fn = getattr(f, "__wrapped__", None)
            if (fn is not None and getattr(f, "__code__", None) is inner
                    and getattr(fn, "__dynamo_disable", None) is None):
                fn.__dynamo_disable = fn


def optimizer_step(optimizer, lean: bool | None = None) -> None:
    """``optimizer.step()`` without its wrapper's ``import torch._dynamo`` (the wrapper only turns grad
    off and marks a graph break for compiled code): the undecorated step under ``torch.no_grad()``.
    Same update, bitwise; step hooks are not run (the engine registers none). ``lean`` (default: while
    torch._dynamo is not imported) chooses the undecorated step; otherwise the public one runs."""
    lean = "torch._dynamo" not in sys.modules if lean is None else lean
    raw = type(optimizer).step
    while hasattr(raw, "__wrapped__"):  # the profile-hook wrapper, then _use_grad_for_differentiable
        raw = raw.__wrapped__
    if not lean or raw is type(optimizer).step or optimizer.defaults.get("differentiable"):
        optimizer.step()
        return
    with torch.no_grad():
        raw(optimizer)


def process_age() -> float | None:
    """Seconds since this process started (Linux ``/proc``; 10 ms resolution), else None."""
    try:
        fields = Path("/proc/self/stat").read_text().rpartition(")")[2].split()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
