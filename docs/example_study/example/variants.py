"""EX variants: one training job per normalization, and the config's cross-key checks."""

from __future__ import annotations

NORMS = ("none", "bn_pre")


def check_config(cfg: dict) -> list[str]:
    """Cross-key checks (names relative to the study's section): refuse only keys that contradict each other
    or a config where no claim could run."""
    if cfg["seeds"] < 2:
        return [f"'seeds' {cfg['seeds']} must be at least 2: EX.a's interval comes from per-seed differences"]
    return []


def variants(cfg: dict) -> dict:
    """One training job per normalization; all seeds of a job train batched."""
    return {norm: {"keys": {"norm": norm}, "model": {**cfg["model"], "norm": norm},
                   "optimizer": {"name": "sgd", "momentum": 0.9}, "lr": cfg["lr"],
                   "schedule": {"name": "constant"}, "train": cfg["train"], "probes": []}
            for norm in NORMS}
