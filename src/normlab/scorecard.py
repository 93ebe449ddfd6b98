"""The replication scorecard: every study's claims, verdicts, intervals and figures on one page.

    python -m normlab.scorecard [--results results] [--version-dir results/<study>/<version> ...]
                                [--captions workflow/report] [--out-dir results]
    python -m normlab.scorecard --claims-html results/<study>/<version>   # one study's claims as HTML

Reads each study version's ``claims.csv`` and ``manifest.json`` (and ``summary.parquet`` for the
run links) and writes ``scorecard.md``, ``scorecard.html`` (self-contained: figure thumbnails are
embedded, full-size figures and run files are relative links) and ``claims_all.csv`` (every claim
of every study, with study and version columns). Without ``--version-dir`` it takes the
``latest`` version of every study folder under ``--results`` (registered studies first). Nothing
here is study-specific: a study may optionally define ``CLAIM_FIGURES = {"S4.a": ["figure_stem",
...]}`` in its module to tie claims to figures (otherwise every figure of the study is listed).
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
import math
import os
import re
from pathlib import Path

import pandas as pd

from . import studies
from .io import atomic_write, write_csv
from .stats import CLAIM_COLUMNS

VERDICTS = ("holds", "fails", "inconclusive")
COLORS = {"holds": "#1a7f37", "fails": "#cf222e", "inconclusive": "#6e7781"}
ALL_COLUMNS = ["study", "version", *CLAIM_COLUMNS, "figures", "version_dir"]


# ---------------------------------------------------------------------------- loading
def latest_versions(results: Path) -> list[Path]:
    """``results/<study>/latest`` of every study folder: registered studies in order, then others."""
    found = {p.parent.name: p.resolve() for p in sorted(Path(results).glob("*/latest")) if p.is_dir()}
    order = [s for s in studies.STUDIES if s in found] + sorted(s for s in found if s not in studies.STUDIES)
    return [Path(results) / s / found[s].name for s in order]


def study_module(name: str):
    try:
        return studies.get(name)
    except (ValueError, ImportError):
        return None


def study_title(name: str) -> str:
    """The first line of the study module's docstring ("S4: BN before vs after the activation.")."""
    mod = study_module(name)
    doc = (getattr(mod, "__doc__", None) or "").strip().splitlines()
    return doc[0].rstrip(".") if doc else name


def claim_key(claim_id: str) -> str:
    """S4.a[relu, lr=0.1] -> S4.a"""
    return claim_id.split("[", 1)[0]


def load_study(vdir: Path) -> dict:
    """Everything the scorecard shows of one study version."""
    vdir = Path(vdir)
    for f in ("claims.csv", "manifest.json"):
        if not (vdir / f).exists():
            raise FileNotFoundError(f"{vdir / f} is missing: run the study's analysis first")
    man = json.loads((vdir / "manifest.json").read_text())
    name = man.get("study", vdir.parent.name)
    claims = pd.read_csv(vdir / "claims.csv", keep_default_na=False, na_values=[""])
    missing = [c for c in CLAIM_COLUMNS if c not in claims.columns]
    if missing:
        raise ValueError(f"{vdir / 'claims.csv'} lacks the columns {missing}")
    figs = [vdir / "figures" / f for f in man.get("figures", []) if f.endswith(".png")]
    figs = [f for f in figs if f.exists()] or sorted((vdir / "figures").glob("*.png"))
    runs = pd.read_parquet(vdir / "summary.parquet") if (vdir / "summary.parquet").exists() else pd.DataFrame()
    mapping = getattr(study_module(name), "CLAIM_FIGURES", None) or {}
    return {"name": name, "version": man.get("version", vdir.name), "vdir": vdir, "manifest": man,
            "claims": claims, "figures": figs, "runs": runs, "claim_figures": mapping,
            "title": study_title(name)}


def figures_of(study: dict, claim_id: str, all_if_unmapped: bool = True) -> list[Path]:
    """The figures a claim is shown in: the study's ``CLAIM_FIGURES`` entry, else all its figures."""
    stems = study["claim_figures"].get(claim_key(claim_id))
    if stems is None:
        return study["figures"] if all_if_unmapped else []
    return [f for f in study["figures"] if f.stem in stems]


def collect(loaded: list[dict], rel_to: Path) -> pd.DataFrame:
    """All claims of all studies as one table (the ``claims_all.csv`` rows)."""
    frames = []
    for s in loaded:
        c = s["claims"][CLAIM_COLUMNS].copy()
        c.insert(0, "version", s["version"])
        c.insert(0, "study", s["name"])
        c["figures"] = [";".join(rel(f, rel_to) for f in figures_of(s, cid)) for cid in c.claim_id]
        c["version_dir"] = rel(s["vdir"], rel_to)
        frames.append(c)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=ALL_COLUMNS)


def counts(df: pd.DataFrame) -> dict:
    vc = df["verdict"].value_counts() if len(df) else pd.Series(dtype=int)
    return {v: int(vc.get(v, 0)) for v in VERDICTS}


# ---------------------------------------------------------------------------- formatting
def rel(path: Path, start: Path) -> str:
    return Path(os.path.relpath(Path(path).absolute(), Path(start).absolute())).as_posix()


def fmt(x) -> str:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return str(x)
    if math.isnan(x):
        return "n/a"
    return f"{x:.4g}"


def value_ci(r) -> str:
    return f"{fmt(r.value)} [{fmt(r.ci_low)}, {fmt(r.ci_high)}]"


def md_cell(s) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def anchor(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def count_line(c: dict) -> str:
    return ", ".join(f"{c[v]} {v}" for v in VERDICTS)


# ---------------------------------------------------------------------------- markdown
def render_markdown(loaded: list[dict], df: pd.DataFrame, out_dir: Path) -> str:
    c = counts(df)
    lines = ["# Replication scorecard", "",
             f"{len(df)} claims in {len(loaded)} studies: **{count_line(c)}**.", "",
             ("A claim *holds* when its bootstrap interval over seeds lies on the claimed side of the "
             "threshold, *fails* when it lies on the other side, and is *inconclusive* when it covers "
             "the threshold."), "",
             "| study | version | claims | holds | fails | inconclusive |", "|---|---|---|---|---|---|"]
    for s in loaded:
        sc = counts(df[df.study == s["name"]])
        lines.append(f"| [{s['name']}](#{anchor(s['title'])}) | `{s['version']}` | {sum(sc.values())} | "
                     f"{sc['holds']} | {sc['fails']} | {sc['inconclusive']} |")
    for s in loaded:
        vd = rel(s["vdir"], out_dir)
        lines += ["", f"## {s['title']}", "",
                  (f"Study `{s['name']}`, version [`{s['version']}`]({vd}/): [claims.csv]({vd}/claims.csv), "
                  f"[manifest.json]({vd}/manifest.json), runs under [{vd}/runs/]({vd}/runs/) "
                  f"(W&B group `{s['name']}/{s['version']}`)."), "",
                  "| claim | verdict | value [CI] | threshold | seeds | claim text | source | figures |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in s["claims"].itertuples():
            mapped = figures_of(s, r.claim_id, all_if_unmapped=False)
            figs = ", ".join(f"[{f.stem}]({rel(f, out_dir)})" for f in mapped) or "all, below"
            lines.append(f"| {md_cell(r.claim_id)} | **{r.verdict}** | {value_ci(r)} | {fmt(r.threshold)} | "
                         f"{r.n_seeds} | {md_cell(r.claim)} (`{md_cell(r.metric)}`) | {md_cell(r.source)} | {figs} |")
        if s["figures"]:
            lines += ["", "Figures: " + ", ".join(f"[{f.stem}]({rel(f, out_dir)})" for f in s["figures"])]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- html
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5em auto;max-width:1400px;
 padding:0 1em;color:#1f2328}
table{border-collapse:collapse;margin:.5em 0 1em;font-size:.9em}
th,td{border:1px solid #d0d7de;padding:.3em .5em;text-align:left;vertical-align:top}
th{background:#f6f8fa}
.verdict{font-weight:600;color:#fff;border-radius:.3em;padding:.1em .45em;white-space:nowrap}
.holds{background:#1a7f37}.fails{background:#cf222e}.inconclusive{background:#6e7781}
.num{font-family:ui-monospace,monospace;white-space:nowrap}
.figs{display:flex;flex-wrap:wrap;gap:1em}
figure{margin:0;max-width:420px}figure img{max-width:420px;border:1px solid #d0d7de}
figcaption{font-size:.8em;color:#57606a}
code{background:#f6f8fa;padding:0 .2em}
"""


def thumbnail_uri(png: Path, width: int = 420) -> str:
    """A small PNG of the figure as a data URI, so the page shows figures wherever it is opened."""
    try:
        from PIL import Image

        im = Image.open(png)
        if im.width > width:
            im = im.resize((width, round(im.height * width / im.width)), Image.LANCZOS)
        buf = io.BytesIO()
        im.save(buf, format="PNG", optimize=True)
        data = buf.getvalue()
    except ImportError:  # pillow ships with matplotlib; fall back to the full image
        data = Path(png).read_bytes()
    return "data:image/png;base64," + base64.b64encode(data).decode()


def caption_text(captions: Path | None, study: str, stem: str) -> str:
    if captions is None:
        return ""
    f = Path(captions) / study / f"{stem}.rst"
    return " ".join(f.read_text().split()) if f.exists() else ""


def verdict_html(v: str) -> str:
    return f'<span class="verdict {html.escape(v)}">{html.escape(v)}</span>'


def claims_table_html(claims: pd.DataFrame, fig_links=None) -> str:
    """The claims of one study as an HTML table (``fig_links(claim_id) -> html`` adds a figures column)."""
    e = html.escape
    head = ["claim", "verdict", "value [CI]", "threshold", "seeds", "claim text", "metric", "source"]
    head += ["figures"] if fig_links else []
    rows = ["<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for r in claims.itertuples():
        cells = [e(str(r.claim_id)), verdict_html(str(r.verdict)), f'<span class="num">{e(value_ci(r))}</span>',
                 f'<span class="num">{fmt(r.threshold)}</span>', str(r.n_seeds), e(str(r.claim)),
                 f"<code>{e(str(r.metric))}</code>", e(str(r.source))]
        if fig_links:
            cells.append(fig_links(str(r.claim_id)))
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return "\n".join(rows) + "</table>"


def runs_table_html(s: dict, out_dir: Path) -> str:
    runs = s["runs"]
    if runs.empty:
        return "<p>No summary.parquet.</p>"
    e = html.escape
    finals = [c for c in runs.columns if c.startswith("final_")]
    head = ["variant", "seed", "status", *[c.removeprefix("final_") for c in finals], "files"]
    rows = ["<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for r in runs.sort_values(["variant", "seed"]).itertuples(index=False):
        d = Path(s["vdir"]) / "runs" / str(r.variant) / f"seed{r.seed}"
        links = " ".join(f'<a href="{e(rel(d / f, out_dir))}">{f}</a>' for f in ("summary.json", "metrics.parquet"))
        vals = [f'<span class="num">{fmt(getattr(r, c))}</span>' for c in finals]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in [e(str(r.variant)), str(r.seed), e(str(r.status)),
                                                                 *vals, links]) + "</tr>")
    return "\n".join(rows) + "</table>"


def render_html(loaded: list[dict], df: pd.DataFrame, out_dir: Path, captions: Path | None = None) -> str:
    e = html.escape
    c = counts(df)
    parts = [(f"<!doctype html><html><head><meta charset='utf-8'><title>normlab scorecard</title>"
             f"<style>{CSS}</style></head><body>"),
             "<h1>Replication scorecard</h1>",
             f"<p id='summary'>{len(df)} claims in {len(loaded)} studies: "
             + ", ".join(f"{verdict_html(v)} {c[v]}" for v in VERDICTS) + "</p>",
             ("<p>A claim <b>holds</b> when its bootstrap interval over seeds lies on the claimed side of the "
             "threshold, <b>fails</b> when it lies on the other side, and is <b>inconclusive</b> when it covers "
             "the threshold. Every row links to its figures; each study links to its runs' metrics.</p>"),
             "<table><tr><th>study</th><th>version</th><th>claims</th>"
             + "".join(f"<th>{v}</th>" for v in VERDICTS) + "</tr>"]
    for s in loaded:
        sc = counts(df[df.study == s["name"]])
        parts.append(f"<tr><td><a href='#{anchor(s['name'])}'>{e(s['title'])}</a></td><td><code>{e(s['version'])}"
                     f"</code></td><td>{sum(sc.values())}</td>" + "".join(f"<td>{sc[v]}</td>" for v in VERDICTS)
                     + "</tr>")
    parts.append("</table>")
    for s in loaded:
        vd = rel(s["vdir"], out_dir)

        def fig_links(cid, s=s):
            mapped = figures_of(s, cid, all_if_unmapped=False)
            return (" ".join(f'<a href="{e(rel(f, out_dir))}">{e(f.stem)}</a>' for f in mapped)
                    or f"<a href='#{anchor(s['name'])}-figures'>all figures</a>")

        parts += [f"<h2 id='{anchor(s['name'])}'>{e(s['title'])}</h2>",
                  (f"<p>Study <code>{e(s['name'])}</code>, version <a href='{e(vd)}/'><code>{e(s['version'])}"
                  f"</code></a>: <a href='{e(vd)}/claims.csv'>claims.csv</a>, "
                  f"<a href='{e(vd)}/manifest.json'>manifest.json</a>, <a href='#{anchor(s['name'])}-runs'>runs</a>;"
                  f" W&amp;B group <code>{e(s['name'])}/{e(s['version'])}</code>.</p>"),
                  claims_table_html(s["claims"], fig_links), f"<div class='figs' id='{anchor(s['name'])}-figures'>"]
        for f in s["figures"]:
            cap = caption_text(captions, s["name"], f.stem)
            parts.append(f"<figure><a href='{e(rel(f, out_dir))}'><img alt='{e(f.stem)}' src='{thumbnail_uri(f)}'>"
                         f"</a><figcaption><b>{e(f.stem)}</b>. {e(cap)}</figcaption></figure>")
        parts += ["</div>", (f"<details id='{anchor(s['name'])}-runs'><summary>Runs of {e(s['name'])} "
                  f"({len(s['runs'])})</summary>"), runs_table_html(s, out_dir), "</details>"]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def standalone_claims_html(vdir: Path) -> str:
    """One study's claims as a self-contained page (the Snakemake report shows it as a table)."""
    s = load_study(vdir)
    c = counts(s["claims"])
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(s['name'])} claims</title>"
            f"<style>{CSS}</style></head><body><h3>{html.escape(s['title'])}: claims of "
            f"<code>{html.escape(s['version'])}</code></h3><p>{count_line(c)}</p>"
            + claims_table_html(s["claims"]) + "</body></html>\n")


# ---------------------------------------------------------------------------- CLI
def write_text(text: str, path: Path) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))
    os.chmod(path, 0o644)  # atomic_write's temp files are private; these pages are for reading


def build(version_dirs: list[Path], out_dir: Path, captions: Path | None = None) -> pd.DataFrame:
    out_dir = Path(out_dir)
    loaded = [load_study(v) for v in version_dirs]
    df = collect(loaded, out_dir)
    write_csv(df[ALL_COLUMNS], out_dir / "claims_all.csv")
    os.chmod(out_dir / "claims_all.csv", 0o644)
    write_text(render_markdown(loaded, df, out_dir), out_dir / "scorecard.md")
    write_text(render_html(loaded, df, out_dir, captions), out_dir / "scorecard.html")
    return df


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, default=Path("results"))
    ap.add_argument("--version-dir", type=Path, nargs="*", default=None,
                    help="study version folders (default: every results/<study>/latest)")
    ap.add_argument("--out-dir", type=Path, default=None, help="default: --results")
    ap.add_argument("--captions", type=Path, default=Path("workflow/report"),
                    help="folder of <study>/<figure>.rst captions shown under the figures")
    ap.add_argument("--claims-html", type=Path, default=None, metavar="VERSION_DIR",
                    help="only write VERSION_DIR/claims.html (one study's claims table)")
    ap.add_argument("--out", type=Path, default=None, help="with --claims-html: output file")
    a = ap.parse_args(argv)
    if a.claims_html is not None:
        out = a.out or a.claims_html / "claims.html"
        write_text(standalone_claims_html(a.claims_html), out)
        print(f"[scorecard] wrote {out}")
        return
    vdirs = a.version_dir if a.version_dir else latest_versions(a.results)
    if not vdirs:
        raise SystemExit(f"error: no study results under {a.results}/ (run snakemake first)")
    captions = a.captions if a.captions.is_dir() else None
    df = build(vdirs, a.out_dir or a.results, captions)
    print(f"[scorecard] {len(df)} claims in {len(vdirs)} studies: {count_line(counts(df))}")


if __name__ == "__main__":
    main()
