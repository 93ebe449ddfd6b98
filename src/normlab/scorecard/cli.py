"""Writing the scorecard's files (``build``) and its command line (``python -m normlab.scorecard``; see the
package's docstring)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import pandas as pd

from ..io import DEFAULT_CONFIG, atomic_write, config_name, scorecard_paths, write_csv
from .load import ALL_COLUMNS, collect, latest_versions, load_study, study_order
from .matrix import replication_matrix
from .render import front_fragment, render_html, render_markdown, standalone_claims_html
from .table import summary_line


def write_text(text: str, path: Path) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))
    os.chmod(path, 0o644)  # atomic_write's temp files are private; these pages are for reading


def results_root(version_dirs: list[Path], default: Path) -> Path:
    """The results folder the version folders live in (``results/<study>/<version>``), else ``default``."""
    return Path(version_dirs[0]).parent.parent if version_dirs else Path(default)


def build(version_dirs: list[Path], out_dir: Path, results: Path | None = None,
          configs: Path | None = Path("config"), name: str = DEFAULT_CONFIG) -> pd.DataFrame:
    """Write the scorecard of ``version_dirs`` (the versions of config ``name``) into ``out_dir`` (the results
    folder), at ``normlab.io.scorecard_paths(name, out_dir)``: for the default config scorecard.md,
    scorecard.html, scorecard_front.html and claims_all.csv, for another config
    scorecards/<name>.md, .html, _front.html and _claims_all.csv. Its replication matrix reads every version
    under ``results`` (default: the folder the version folders are in) and names the configs in ``configs``
    that have no column yet. Returns every claim of the versions (the claims table written)."""
    paths = scorecard_paths(name, out_dir)
    page_dir = paths["html"].parent  # links are relative to the pages' folder
    loaded = sorted((load_study(v) for v in version_dirs), key=lambda s: study_order(s["title"]))
    df = collect(loaded, page_dir)
    matrix = replication_matrix(results or results_root(version_dirs, out_dir), loaded, configs)
    write_csv(df[ALL_COLUMNS], paths["csv"])
    os.chmod(paths["csv"], 0o644)
    default = None if name == DEFAULT_CONFIG else scorecard_paths(DEFAULT_CONFIG, out_dir)["html"]
    write_text(render_markdown(loaded, df, page_dir, matrix, name=name, default_page=default), paths["md"])
    write_text(render_html(loaded, df, page_dir, matrix, name=name, default_page=default), paths["html"])
    write_text(front_fragment(loaded, df, matrix, page_dir), paths["front"])
    return df


def main(argv=None):
    doc = sys.modules[__package__].__doc__  # the package's docstring: what the scorecard writes
    ap = argparse.ArgumentParser(prog="python -m normlab.scorecard", description=doc,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, default=None,
                    help="results folder (default: results; with --version-dir: the folder those are in): its "
                         "latest versions (without --version-dir) and every config's newest version (the matrix)")
    ap.add_argument("--configs", type=Path, default=Path("config"),
                    help="folder of the config files the matrix suggests for its empty columns")
    ap.add_argument("--version-dir", type=Path, nargs="*", default=None,
                    help="study version folders (default: every results/<study>/latest)")
    ap.add_argument("--out-dir", type=Path, default=None, help="default: --results")
    ap.add_argument("--name", default=None,
                    help=f"the config the versions belong to (default: their config name when they share one, else "
                         f"{DEFAULT_CONFIG}); the {DEFAULT_CONFIG} config's pages are scorecard.*, another's "
                         "scorecards/<name>.*")
    ap.add_argument("--claims-html", type=Path, default=None, metavar="VERSION_DIR",
                    help="only write VERSION_DIR/claims.html (one study's claims table)")
    ap.add_argument("--out", type=Path, default=None, help="with --claims-html: output file")
    a = ap.parse_args(argv)
    if a.claims_html is not None:
        out = a.out or a.claims_html / "claims.html"
        write_text(standalone_claims_html(a.claims_html), out)
        print(f"[scorecard] wrote {out}")
        return
    results = a.results or Path("results")
    vdirs = a.version_dir if a.version_dir else latest_versions(results)
    if not vdirs:
        raise SystemExit(f"error: no study results under {results}/ (run snakemake first)")
    names = {config_name(Path(v).name) for v in vdirs}
    name = a.name or (names.pop() if len(names) == 1 else DEFAULT_CONFIG)
    df = build(vdirs, a.out_dir or results, a.results, a.configs, name)
    print(f"[scorecard] {len(vdirs)} {'study' if len(vdirs) == 1 else 'studies'}: {summary_line(df)}")
