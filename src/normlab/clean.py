"""Remove old result versions: keep, for every study, the version ``latest`` points at and the newest
version of each config name (``<name>-<hash>``; newest by manifest.json's finish time, else folder
modification time). Dry run by default: it lists what it would remove.

    python -m normlab.clean [--results results] [--yes]
"""

from __future__ import annotations

import argparse
import json
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


def stale_versions(results: Path) -> list[Path]:
    """Version folders that are neither ``latest`` nor the newest of their config name."""
    stale = []
    for study in sorted(p for p in Path(results).iterdir() if p.is_dir() and not p.is_symlink()):
        versions = [p for p in study.iterdir() if p.is_dir() and not p.is_symlink() and VERSION.match(p.name)]
        if not versions:
            continue
        latest = (study / "latest").resolve() if (study / "latest").exists() else None
        keep = {latest} if latest else set()
        keep |= {v.resolve() for v in newest_by_name(versions).values()}
        stale += sorted(v for v in versions if v.resolve() not in keep)
    return stale


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, default=Path("results"))
    ap.add_argument("--yes", action="store_true", help="remove them (default: only list)")
    a = ap.parse_args(argv)
    if not a.results.is_dir():
        print(f"no results folder at {a.results}")
        return
    stale = stale_versions(a.results)
    if not stale:
        print("nothing to remove: every version left is a study's latest or the newest of its config name")
        return
    for v in stale:
        print(("removing " if a.yes else "would remove ") + str(v))
    if a.yes:
        for v in stale:
            shutil.rmtree(v)
    else:
        print(f"{len(stale)} old version(s); run `make clean-results YES=1` to remove them")


if __name__ == "__main__":
    main()
