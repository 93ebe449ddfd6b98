"""Atomic file writes, manifests and the ``latest`` link: nothing is ever half written.

A manifest records the package versions and the lock file (``requirements.lock``, what ``make setup``
installs): its sha256 and whether the installed packages are the versions it pins (``lock_state``).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
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


def read_spec(arg: str) -> dict:
    """A job's spec from its ``--spec``/``--config`` argument: a JSON string, or the path of a JSON file."""
    return json.loads(arg if arg.lstrip().startswith("{") else Path(arg).read_text())


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


LOCK_FILE = Path(__file__).resolve().parents[2] / "requirements.lock"  # the repository's (editable install)
_PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;#]+)")


def canonical_name(name: str) -> str:
    """A distribution's name as packaging compares them (PEP 503): ``PyYAML`` -> ``pyyaml``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: Path | str = LOCK_FILE) -> dict[str, str]:
    """{canonical name: version} of a lock file's ``name==version`` lines."""
    out = {}
    for line in Path(path).read_text().splitlines():
        m = _PIN.match(line)
        if m:
            out[canonical_name(m.group(1))] = m.group(2)
    return out


def installed_versions() -> dict[str, str]:
    """{canonical name: version} of every installed distribution (the first on sys.path of each name)."""
    out: dict[str, str] = {}
    for d in metadata.distributions():
        name = d.metadata["Name"]
        if name:
            out.setdefault(canonical_name(name), d.version)
    return out


def lock_state(path: Path | str = LOCK_FILE) -> dict:
    """The lock file (its sha256) and whether the installed packages are the versions it pins: ``differs``
    holds each one that is not, {name: {"locked": ..., "installed": ... or None}}. A local version label
    counts as the version (torch 2.14.1+cpu is torch==2.14.1, as pip has it). Without the file (normlab
    installed from elsewhere than its repository): sha256 and matches None."""
    path = Path(path)
    try:
        blob = path.read_bytes()
    except OSError:
        return {"file": path.name, "sha256": None, "matches": None, "differs": {}}
    installed = installed_versions()
    differs = {}
    for name, locked in read_lock(path).items():
        have = installed.get(name)
        if have is None or (have != locked and have.split("+")[0] != locked):
            differs[name] = {"locked": locked, "installed": have}
    return {"file": path.name, "sha256": hashlib.sha256(blob).hexdigest(), "matches": not differs,
            "differs": differs}


def manifest(resolved_config: dict, started: str | None, extra: dict | None = None) -> dict:
    return {
        "resolved_config": resolved_config,
        "git": git_state(),
        "packages": package_versions(),
        "lock": lock_state(),
        "host": platform.node(),
        "platform": platform.platform(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "started": started,
        "finished": now(),
        "command": " ".join(sys.argv),
        **(extra or {}),
    }


DEFAULT_CONFIG = "default"  # the config whose pages are results/scorecard.* and whose versions `latest` points at
VERSION_NAME = re.compile(r"^(.+)-[0-9a-f]{8}$")


def config_name(version: str) -> str:
    """The config name of a version folder's name: ``fashion-1a2b3c4d`` -> ``fashion``."""
    m = VERSION_NAME.match(Path(version).name)
    return m.group(1) if m else Path(version).name


def scorecard_paths(name: str, results: Path | str = "results") -> dict[str, Path]:
    """The scorecard files of config ``name`` (keys md, html, csv, front): the default config's are
    ``results/scorecard.md``, ``scorecard.html``, ``claims_all.csv`` and ``scorecard_front.html``; any other
    config writes its own, ``results/scorecards/<name>.md``, ``<name>.html``, ``<name>_claims_all.csv`` and
    ``<name>_front.html``, so that running it never changes what the default's pages show."""
    r = Path(results)
    if name == DEFAULT_CONFIG:
        return {"md": r / "scorecard.md", "html": r / "scorecard.html", "csv": r / "claims_all.csv",
                "front": r / "scorecard_front.html"}
    d = r / "scorecards"
    return {"md": d / f"{name}.md", "html": d / f"{name}.html", "csv": d / f"{name}_claims_all.csv",
            "front": d / f"{name}_front.html"}


def front_of(page: Path | str) -> Path:
    """The front-page fragment written beside a scorecard page (``scorecard_paths``'s ``front`` of its ``html``)."""
    page = Path(page)
    return page.with_name(f"{page.stem}_front.html")


def point_latest(version_dir: Path | str) -> bool:
    """Atomically make ``<study>/latest`` a relative link to ``version_dir``, when it may: ``latest`` belongs to
    the default config (``DEFAULT_CONFIG``), so a version of another config moves it only while ``latest`` does
    not point at a default version (a tree where only the smoke or fashion config ran still has one). Returns
    whether the link now points at ``version_dir``."""
    version_dir = Path(version_dir)
    link = version_dir.parent / "latest"
    if config_name(version_dir.name) != DEFAULT_CONFIG and os.path.islink(link):
        current = os.readlink(link)
        if config_name(current) == DEFAULT_CONFIG and (version_dir.parent / current).is_dir():
            return current == version_dir.name
    tmp = version_dir.parent / f".latest.{os.getpid()}"
    tmp.unlink(missing_ok=True)
    os.symlink(version_dir.name, tmp)
    os.replace(tmp, link)
    return True
