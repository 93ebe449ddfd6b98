"""Atomic file writes, manifests and the ``latest`` link: nothing is ever half written."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path


def _tmp_path(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; results are meant to be shared
    return Path(tmp)


def atomic_write(path, write_fn) -> None:
    """Call ``write_fn(tmp_path)`` then rename over ``path`` (atomic on POSIX)."""
    path = Path(path)
    tmp = _tmp_path(path)
    try:
        write_fn(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(obj, path) -> None:
    def w(tmp):
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")

    atomic_write(path, w)


def write_parquet(df, path) -> None:
    atomic_write(path, lambda tmp: df.to_parquet(tmp, index=False))


def write_csv(df, path) -> None:
    atomic_write(path, lambda tmp: df.to_csv(tmp, index=False))


def atomic_torch_save(obj, path) -> None:
    import torch

    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def git_state(repo: Path | str = ".") -> dict:
    def git(*args):
        return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=10).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD") or None
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        commit, dirty = None, None
    return {"commit": commit, "dirty": dirty}


def package_versions(names=("torch", "torchvision", "snakemake", "pandas", "seaborn", "wandb", "mnist1d", "numpy", "scipy")) -> dict:
    out = {"python": platform.python_version()}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            out[n] = None
    return out


def manifest(resolved_config: dict, started: str | None, extra: dict | None = None) -> dict:
    return {
        "resolved_config": resolved_config,
        "git": git_state(),
        "packages": package_versions(),
        "host": platform.node(),
        "platform": platform.platform(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "started": started,
        "finished": now(),
        "command": " ".join(sys.argv),
        **(extra or {}),
    }


def point_latest(version_dir: Path | str) -> None:
    """Atomically make ``<study>/latest`` a relative link to ``version_dir``."""
    version_dir = Path(version_dir)
    link = version_dir.parent / "latest"
    tmp = version_dir.parent / f".latest.{os.getpid()}"
    tmp.unlink(missing_ok=True)
    os.symlink(version_dir.name, tmp)
    os.replace(tmp, link)
