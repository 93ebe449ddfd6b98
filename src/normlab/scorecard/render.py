"""Rendering the scorecard's tables (``table``: one model per table) as Markdown (``scorecard.md``, W&B
panels) and as HTML through the Jinja2 templates and the CSS file of ``normlab/templates/`` (``scorecard.html``,
``scorecard_front.html``, each study version's ``claims.html``). jinja2 (installed with Snakemake) and pillow
(thumbnails) are imported on first use."""

from __future__ import annotations

import base64
import html
import io
import re
from pathlib import Path

import pandas as pd

from .. import studies
from ..plotting import VERDICT_COLORS
from ..stats import KINDS
from .load import load_study, rel
from .matrix import matrix_header, matrix_note
from .table import (
    KIND_TITLES,
    RULE_SHORT,
    VERDICT_RULE,
    anchor,
    claim_records,
    fmt,
    headline_records,
    kind_line,
    matrix_records,
    md_cell,
    short,
    short_title,
    summary_line,
)

INLINE_TD = "border:1px solid #d0d7de;padding:2px 4px;vertical-align:top;"  # a cell of the report's front page


# ---------------------------------------------------------------------------- markdown
def verdict_md(h: dict) -> str:
    """'**holds** (p_adj 0.03)' of a record; with sequential seeds, how its looks reached it ('**holds** · 6 seeds,
    look 2 of 3, α 0.016 (p_adj 0.03)')."""
    return f"**{h['verdict']}**" + (f" · {h['seq']}" if h.get("seq") else "") + (f" ({h['p']})" if h["p"] else "")


def headline_table_md(records: list[dict], out_dir: Path) -> list[str]:
    lines = ["| study | claim | verdict | the paper says | we measured | departs from the paper | figure |",
             "|---|---|---|---|---|---|---|"]
    for h in records:
        s = h["study"]
        if h["group"]:
            lines.append(f"| **{md_cell(h['group'])}** | | | | | | |")
        study = f"[{md_cell(short_title(s['title']))}](#{anchor(s['title'])})" if h["first"] else ""
        fig = f"[{h['figure'].stem}]({rel(h['figure'], out_dir)})" if h["figure"] else ""
        lines.append(f"| {study} | {md_cell(h['claim_id'])} | {verdict_md(h)} | {md_cell(short(h['statement']))} | "
                     f"{md_cell(h['measured'])} | {md_cell(short(h['departures']))} | {fig} |")
    if not records:
        lines.append("| | | | no study declares headline claims yet | | | |")
    return lines


def claims_table_md(records: list[dict], out_dir: Path) -> list[str]:
    lines = ["| claim | verdict | value [CI] | level | threshold | fail margin | p_adj | seeds | more seeds | claim text | "
             "basis | source | figures |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        figs = ", ".join(f"[{f.stem}]({rel(f, out_dir)})" for f in r["figures"]) or "all, below"
        lines.append(f"| {md_cell(r['claim_id'])} | **{r['verdict']}** | {r['value_ci']} | {r['level']} | "
                     f"{r['threshold']} | {r['margin']} | {r['p']} | {r['seeds']} | {md_cell(r['more'])} | "
                     f"{md_cell(r['claim'])} (`{md_cell(r['metric'])}`) | {md_cell(r['basis'])} | "
                     f"{md_cell(r['source'])} | {figs} |")
    return lines


def matrix_cell_md(c: dict | None, out_dir: Path | None) -> str:
    if c is None:
        return "study not run"
    verdict = f"**{c['verdict']}**"
    if out_dir is not None:
        verdict = f"[{verdict}]({rel(Path(c['vdir']) / 'claims.csv', out_dir)})"
    text = verdict + (f" · {c['seq']}" if c["seq"] else "")
    if c["has_row"] and c["verdict"] != "not run":
        text += f" {c['value_ci3']}" + (f" ({c['level']})" if c["level"] else "")
    text += "".join(f"; {x}" for x in (c["more"], c["note"]) if x)
    return md_cell(text) + ("" if out_dir is not None else f" `{c['version']}`")


def matrix_markdown(m: dict, out_dir: Path | None = None) -> str:
    """The matrix as a markdown table; with ``out_dir`` each verdict links to its version's claims.csv
    (relative to ``out_dir``), without it (W&B) each cell names its version."""
    lines = ["| study | claim | " + " | ".join(md_cell(matrix_header(m, n)) for n in m["configs"]) + " |",
             "|---|---|" + "---|" * len(m["configs"])]
    for row in matrix_records(m):
        if row["group"]:
            lines.append(f"| **{md_cell(row['group'])}** | |" + " |" * len(m["configs"]))
        lines.append(f"| {md_cell(row['study'])} | {md_cell(row['claim_id'])} | "
                     + " | ".join(matrix_cell_md(c, out_dir) for c in row["cells"]) + " |")
    if not m["rows"]:
        lines.append("| | no headline claims under any config yet |" + " |" * len(m["configs"]))
    return "\n".join(lines)


def study_section_md(s: dict, out_dir: Path) -> list[str]:
    """A study's part of scorecard.md: title, papers, files, its paper-level claims in full, its claims tables."""
    vd = rel(s["vdir"], out_dir)
    lines = ["", f"## {s['title']}", ""]
    if s["papers"]:
        papers = "; ".join(f"[{md_cell(p['cite'])}]({p['url']})" if p["url"] else md_cell(p["cite"])
                           for p in s["papers"])
        lines += [f"Papers: {papers}.", ""]
    lines += [(f"Study `{s['name']}`, version [`{s['version']}`]({vd}/): [claims.csv]({vd}/claims.csv), "
              f"[manifest.json]({vd}/manifest.json), runs under [{vd}/runs/]({vd}/runs/) "
              f"(W&B: analysis run group `{s['name']}/{s['version']}`, training runs tagged `version:{s['version']}`).")]
    heads = headline_records([s])
    if heads:
        lines += ["", "### Headline claims", ""]
    for h in heads:
        tag = " (identity)" if h["kind"] == "identity" else ""
        lines += [f"- **{md_cell(h['claim_id'])}{tag}: {h['verdict']}.** The paper: {md_cell(h['statement'])}"
                  + (f" Measured: {md_cell(h['claim'])}; {md_cell(h['measured'])}" if h["has_row"] else "")
                  + (f"; {h['p']}." if h["p"] else ".")
                  + (f" Departures: {md_cell(h['departures'])}." if h["departures"] else "")]
    c = s["claims"]
    for kind in KINDS:
        rows = c[c.kind == kind]
        if len(rows):
            lines += ["", f"### {KIND_TITLES[kind]} ({kind_line(rows, kind)})", "",
                      *claims_table_md(claim_records(s, rows), out_dir)]
    if s["figures"]:
        lines += ["", "Figures: " + ", ".join(f"[{f.stem}]({rel(f, out_dir)})" for f in s["figures"])]
    return lines


def config_line(name: str, default_page: Path | None, out_dir: Path) -> str:
    """For another config's page: which config it shows, and where the default config's page is (markdown)."""
    if default_page is None:
        return ""
    return (f"Config `{name}` (its own page: running it never changes the default config's page, "
            f"[{default_page.name}]({rel(default_page, out_dir)})).")


def render_markdown(loaded: list[dict], df: pd.DataFrame, out_dir: Path, matrix: dict | None = None,
                    name: str = "default", default_page: Path | None = None) -> str:
    title = "# Replication scorecard" + (f" of config `{name}`" if default_page is not None else "")
    other = config_line(name, default_page, out_dir)
    lines = [title, "", *([other, ""] if other else []), f"**{summary_line(df)}**", "",
             f"{len(loaded)} {'study' if len(loaded) == 1 else 'studies'}, {len(df)} claims in all. {VERDICT_RULE} "
             "Checks (instrument identities, controls) and per-cell detail are listed per study below, apart from "
             "the papers' claims. *Departs from the paper* is the study's declaration for its default config; each "
             "claim's own text (per study, below) describes this run's setup.", "",
             *headline_table_md(headline_records(loaded), out_dir)]
    if matrix is not None:
        lines += ["", "## Replication matrix", "", matrix_note(matrix), "", matrix_markdown(matrix, out_dir)]
    lines += ["", "## Studies", "", "| study | version | " + " | ".join(KIND_TITLES[k].lower() for k in KINDS) + " |",
              "|---|---|" + "---|" * len(KINDS)]
    for s in loaded:
        sd = df[df.study == s["name"]]
        lines.append(f"| [{md_cell(s['title'])}](#{anchor(s['title'])}) | `{s['version']}` | "
                     + " | ".join(kind_line(sd, k) for k in KINDS) + " |")
    for s in loaded:
        lines += study_section_md(s, out_dir)
    return "\n".join(lines) + "\n"


def headlines_markdown(version_dirs: list[Path]) -> str:
    """The headline table in short (claim, verdict, statement, measured, departures) as markdown, for W&B."""
    lines = ["| claim | verdict | the paper says | we measured | departs from the paper |", "|---|---|---|---|---|"]
    for v in version_dirs:
        for h in headline_records([load_study(v)]):
            verdict = f"**{h['verdict']}** {h['p']}".strip()
            meas = ("no row" if not h["has_row"] else h["note"] if h["verdict"] == "not run"
                    else f"{h['metric']} = {h['value_ci']}, {h['seq'] or h['seeds'] + ' seeds'}"
                    + (f"; {h['note']}" if h["note"] else ""))
            lines.append(f"| {md_cell(h['claim_id'])} | {verdict} | {md_cell(short(h['statement']))} | "
                         f"{md_cell(meas)} | {md_cell(short(h['departures']))} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- html
def md_inline(text: str) -> str:
    """Markdown `code` spans of a note as HTML <code> (escaped)."""
    from markupsafe import Markup

    return Markup(re.sub(r"`([^`]*)`", r"<code>\1</code>", html.escape(text)))


def environment(out_dir: Path):
    """The Jinja2 environment of the pages, its links relative to ``out_dir`` (the page's folder)."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("normlab", "templates"), autoescape=True,
                             trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
    env.filters.update(rel=lambda p: rel(p, out_dir), anchor=anchor, short=short, short_title=short_title,
                       md_inline=md_inline)
    env.globals.update(colors=VERDICT_COLORS, INLINE_TD=INLINE_TD)
    return env


def css(env) -> str:
    """The pages' style sheet (``templates/scorecard.css``), embedded in each page: a page is one file."""
    return env.loader.get_source(env, "scorecard.css")[0]


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


def caption_text(study: str, stem: str) -> str:
    """The figure's caption as its study package declares it (``captions/<stem>.rst``), else ''."""
    if study not in studies.STUDIES:
        return ""
    f = studies.caption_path(study, stem)
    return " ".join(f.read_text().split()) if f.exists() else ""


def matrix_view(m: dict, out_dir: Path) -> dict:
    """The matrix for the templates: its note, headings and records, each cell linked to its version's claims
    (claims.html when the Snakemake rule made it, else claims.csv)."""
    rows = matrix_records(m)
    for row in rows:
        for c in row["cells"]:
            if c is not None:
                vd = Path(c["vdir"])
                c["href"] = rel(vd / ("claims.html" if (vd / "claims.html").exists() else "claims.csv"), out_dir)
    return {"note": matrix_note(m), "heads": ["study", "claim", *(matrix_header(m, n) for n in m["configs"])],
            "rows": rows}


def kinds_view(s: dict) -> list[dict]:
    """A study's claims tables, one per kind with rows: {kind, title, line (counts), rows (claim_records)}."""
    c = s["claims"]
    return [{"kind": k, "title": KIND_TITLES[k], "line": kind_line(c[c.kind == k], k),
             "rows": claim_records(s, c[c.kind == k])} for k in KINDS if (c.kind == k).any()]


def runs_view(s: dict) -> dict | None:
    """The study's runs table (from summary.parquet): head and rows {variant, seed, status, finals, files}."""
    runs = s["runs"]
    if runs.empty:
        return None
    finals = [c for c in runs.columns if c.startswith("final_")]
    rows = []
    for r in runs.sort_values(["variant", "seed"]).itertuples(index=False):
        d = Path(s["vdir"]) / "runs" / str(r.variant) / f"seed{r.seed}"
        rows.append({"variant": r.variant, "seed": r.seed, "status": r.status,
                     "finals": [fmt(getattr(r, c)) for c in finals],
                     "files": [d / "summary.json", d / "metrics.parquet"]})
    return {"head": ["variant", "seed", "status", *[c.removeprefix("final_") for c in finals], "files"], "rows": rows}


def render_html(loaded: list[dict], df: pd.DataFrame, out_dir: Path, matrix: dict | None = None,
                name: str = "default", default_page: Path | None = None) -> str:
    thumbs: dict[Path, str] = {}  # one thumbnail per figure, however many claims show it
    heads = headline_records(loaded)
    for h in heads:
        if h["figure"] and h["figure"] not in thumbs:
            thumbs[h["figure"]] = thumbnail_uri(h["figure"], 160)
        h["thumb"] = thumbs.get(h["figure"], "")
    views = [{"s": s, "vd": rel(s["vdir"], out_dir), "heads": headline_records([s]), "kinds": kinds_view(s),
              "kind_lines": [kind_line(df[df.study == s["name"]], k) for k in KINDS], "runs": runs_view(s),
              "figures": [{"path": f, "uri": thumbnail_uri(f), "caption": caption_text(s["name"], f.stem)}
                          for f in s["figures"]]} for s in loaded]
    env = environment(out_dir)
    return env.get_template("scorecard.html.j2").render(
        css=css(env), config=None if default_page is None else name,
        default_page=None if default_page is None else rel(default_page, out_dir), counts_head=summary_line(df, ("headline",)),
        counts_others=summary_line(df, ("identity", "cell", "check")), rule_short=RULE_SHORT, headlines=heads,
        matrix=None if matrix is None else matrix_view(matrix, out_dir),
        kind_titles=[KIND_TITLES[k].lower() for k in KINDS], studies=views)


def front_fragment(loaded: list[dict], df: pd.DataFrame, matrix: dict | None = None,
                   out_dir: Path | None = None) -> str:
    """The headline table as an HTML fragment with inline styles, for the Snakemake report's front page
    (``workflow.rst`` includes it; the report's narrow description column gets a compact table)."""
    out_dir = Path(out_dir or ".")
    return environment(out_dir).get_template("front.html.j2").render(
        summary=summary_line(df), headlines=headline_records(loaded),
        matrix=None if matrix is None else matrix_view(matrix, out_dir))


def standalone_claims_html(vdir: Path) -> str:
    """One study's claims as a self-contained page (the Snakemake report shows it as a table):
    headline claims first, then identities, cells, checks."""
    s = load_study(vdir)
    env = environment(Path(vdir))
    return env.get_template("claims.html.j2").render(css=css(env), s=s, rule=VERDICT_RULE, kinds=kinds_view(s))

