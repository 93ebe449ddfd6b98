"""Remove old result versions and the runs no version uses. Dry run by default: it lists what it would
remove.

    python -m normlab.clean [--results results] [--yes]

1. Versions: keep, for every study, the version ``latest`` points at and the newest version of each
   config name (``<name>-<hash>``; newest by manifest.json's finish time, else folder modification
   time); the others are stale.
2. Runs and side jobs: a run folder (``<study>/runs/<variant>/<block>``) or side-job folder
   (``<study>/side/<name>-<hash>``) that no kept version links to is unused (with its log, benchmark and
   checkpoint). A run trained for an analysis that has not finished yet is unused too: clean when no
   pipeline is running.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
from pathlib import Path

VERSION = re.compile(r"^(?P<name>.+)-[0-9a-f]{8}$")


def finished(vdir: Path) -> tuple[str, float]:
    """Sort key of a version's age: manifest.json's finish time, then the folder's modification time."""
    try:
        done = json.loads((Path(vdir) / "manifest.json").read_text()).get("finished") or ""
    except (OSError, ValueError):
        done = ""
    return str(done), Path(vdir).stat().st_mtime


def newest_by_name(versions) -> dict[str, Path]:
    """{config name: the newest of ``versions`` (version folders) with that name} (``default-9ba3fcc7`` -> ``default``)."""
    by_name: dict[str, list[Path]] = {}
    for v in versions:
        by_name.setdefault(VERSION.match(Path(v).name)["name"], []).append(Path(v))
    return {name: max(vs, key=finished) for name, vs in by_name.items()}


def study_dirs(results: Path) -> list[Path]:
    return sorted(p for p in Path(results).iterdir() if p.is_dir() and not p.is_symlink())


def versions_of(study: Path) -> list[Path]:
    return [p for p in study.iterdir() if p.is_dir() and not p.is_symlink() and VERSION.match(p.name)]


def stale_versions(results: Path) -> list[Path]:
    """Version folders that are neither ``latest`` nor the newest of their config name."""
    stale = []
    for study in study_dirs(results):
        versions = versions_of(study)
        if not versions:
            continue
        latest = (study / "latest").resolve() if (study / "latest").exists() else None
        keep = {latest} if latest else set()
        keep |= {v.resolve() for v in newest_by_name(versions).values()}
        stale += sorted(v for v in versions if v.resolve() not in keep)
    return stale


def linked_targets(vdir: Path) -> set[Path]:
    """Every path the version folder's links point at (runs' seeds, side jobs' outputs), resolved."""
    out = set()
    for root, dirs, files in os.walk(vdir):  # links are not followed
        for name in dirs + files:
            p = Path(root) / name
            if p.is_symlink():
                out.add(p.resolve())
    return out


def job_folders(study: Path) -> list[Path]:
    """The study's run folders (runs/<variant>/<block>) and side-job folders (side/<name>-<hash>)."""
    return sorted([*study.glob("runs/*/*"), *study.glob("side/*")])


def unused_jobs(results: Path, removed=()) -> list[Path]:
    """Run and side-job folders that no version (but those in ``removed``) links to."""
    removed = {Path(v).resolve() for v in removed}
    unused = []
    for study in study_dirs(results):
        used = set()
        for v in versions_of(study):
            if v.resolve() not in removed:
                used |= linked_targets(v)
        for d in job_folders(study):
            r = d.resolve()
            if d.is_dir() and not any(u == r or r in u.parents for u in used):
                unused.append(d)
    return unused


def companions(job: Path) -> list[Path]:
    """A job folder's log, benchmark and checkpoint (results/<study>/{logs,benchmarks,.ckpt}/...)."""
    if job.parent.parent.name == "runs":
        study, rel = job.parents[2], Path("train") / job.parent.name / job.name
        return [study / "logs" / f"{rel}.log", study / "benchmarks" / f"{rel}.tsv",
                study / ".ckpt" / job.parent.name / job.name]
    study = job.parents[1]
    return [study / "logs" / "side" / f"{job.name}.log", study / "benchmarks" / "side" / f"{job.name}.tsv"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, default=Path("results"))
    ap.add_argument("--yes", action="store_true", help="remove them (default: only list)")
    a = ap.parse_args(argv)
    if not a.results.is_dir():
        print(f"no results folder at {a.results}")
        return
    stale = stale_versions(a.results)
    unused = unused_jobs(a.results, removed=stale)
    if not stale and not unused:
        print("nothing to remove: every version left is a study's latest or the newest of its config name, "
              "and every run is used by one")
        return
    verb = "removing " if a.yes else "would remove "
    for v in stale:
        print(f"{verb}{v} (old version)")
    for d in unused:
        print(f"{verb}{d} (used by no version left)")
    if a.yes:
        for p in [*stale, *unused, *(c for d in unused for c in companions(d))]:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    else:
        print(f"{len(stale)} old version(s), {len(unused)} unused run or side-job folder(s); "
              "run `make clean-results YES=1` to remove them")


if __name__ == "__main__":
    main()
