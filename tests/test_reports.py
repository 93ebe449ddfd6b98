"""Browsing results: the Snakemake report in a real (headless) browser, and the W&B report builder."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from html import escape
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from conftest import ROOT, snakemake

from normlab import scorecard
from normlab import wandb_reports as wbr

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]

# Injected into a copy of the report: waits for the report's React app, then either shows every
# result through the app's own view switch and records whether each image decoded (#check), or
# opens one result the way a click in the menu does (#show=<path>) for a screenshot.
HARNESS = """
window.addEventListener("load", async () => {
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  for (let i = 0; i < 400 && (typeof app === "undefined" || !app); i++) await sleep(50);
  const shown = (sel, uri) => [...document.querySelectorAll("#app " + sel)].find((x) => x.src === uri);
  const hash = decodeURIComponent(location.hash.slice(1));
  const out = { images: {}, html: {} };
  if (hash === "check") {
    for (const [path, r] of Object.entries(results)) {
      const kind = r.mime_type.startsWith("image/") ? "img" : r.mime_type === "text/html" ? "html" : null;
      if (!kind) continue;
      app.setView({ content: kind, contentPath: r.data_uri, resultPath: path });
      await sleep(200);
      const el = shown(kind === "img" ? "img" : "iframe", r.data_uri);
      if (kind === "img") {
        if (el && !el.complete) await new Promise((res) => { el.onload = res; el.onerror = res; });
        out.images[path] = el ? el.naturalWidth : -1;
      } else {
        out.html[path] = el ? 1 : -1;
      }
    }
    const pre = document.createElement("pre");
    pre.id = "normlab-check";
    pre.textContent = JSON.stringify(out);
    document.body.appendChild(pre);
  } else if (hash === "top") {
    await sleep(500);
    const title = [...document.querySelectorAll("#app h1")].find((h) => h.textContent.startsWith("normlab"));
    const counts = [...document.querySelectorAll("#app b")].find((b) => b.textContent.startsWith("Empirical headline"));
    const box = (el) => el ? el.getBoundingClientRect() : null;
    const pre = document.createElement("pre");
    pre.id = "normlab-check";
    pre.textContent = JSON.stringify({ title: box(title), counts: box(counts), h: window.innerHeight,
                                       w: window.innerWidth });
    document.body.appendChild(pre);
  } else if (hash.startsWith("show=")) {
    const path = hash.slice(5);
    const r = results[path];
    const cat = Object.keys(categories).find((c) => Object.values(categories[c]).some((l) => l.includes(path)));
    app.showCategory(cat);
    await sleep(200);
    app.setView({ content: r.mime_type === "text/html" ? "html" : "img", contentPath: r.data_uri, resultPath: path });
  }
});
"""


def js_var(page: str, name: str):
    """The JSON value of ``var <name> = ...;`` in the report page."""
    i = page.rindex(f"var {name} = {{") + len(f"var {name} = ")  # the report's data come after its libraries
    return json.JSONDecoder().raw_decode(page, i)[0]


def workflow_desc(page: str) -> str:
    """The report's front-page text (``var workflow_desc = "...";``, rendered from workflow.rst)."""
    i = page.rindex("var workflow_desc = ") + len("var workflow_desc = ")
    return json.JSONDecoder().raw_decode(page, i)[0]


def render_front_page(results: Path | None) -> str:
    """workflow/report/workflow.rst rendered the way Snakemake 9's report renders it (Jinja2 with the
    report's ``files``, then docutils to HTML), with the scorecard's output among the files or not."""
    from docutils.core import publish_parts
    from jinja2 import Environment

    files = [SimpleNamespace(target="scorecard.html", path=results / "scorecard.html")] if results else []
    text = (ROOT / "workflow" / "report" / "workflow.rst").read_text()
    text += "\n".join(f"\n.. _{f.target}: javascript:app.showResultInfo('{f.path}')" for f in files)
    rst = Environment(trim_blocks=True, lstrip_blocks=True).from_string(text).render(files=files, snakemake=None,
                                                                                      categories={})
    return publish_parts(rst, writer_name="html", settings_overrides={"report_level": 5})["html_body"]


def test_front_page_shows_the_headline_table(tmp_path, monkeypatch):
    """The report's front page includes the scorecard's headline fragment verbatim, links to the full
    scorecard, and renders without it (a report made before the scorecard exists)."""
    from test_scorecard import ALPHA, claim, fake_version

    from normlab import scorecard

    monkeypatch.setattr(scorecard.load, "study_module", lambda name: {"alpha": ALPHA}.get(name))
    res = tmp_path / "results"
    fake_version(res, "alpha", "smoke-0000aaaa", [claim("A1.a", "holds", kind="headline", p_adj=0.01),
                                                 claim("A1.b", "fails", kind="headline", p_adj=0.02),
                                                 claim("A1.a[x]", "holds")], figure=False)
    scorecard.build(scorecard.latest_versions(res), res)
    monkeypatch.chdir(tmp_path)  # Snakemake renders from the working directory; result paths are relative
    page = render_front_page(Path("results"))
    front = (res / "scorecard_front.html").read_text()
    assert "What replicated" in page and "Empirical headline claims: 1 hold, 1 fail, 0 inconclusive (of 2)" in page
    # the declared identity A1.i (no row: missing) is listed apart, after the empirical claims
    assert re.findall(r"<tr title='[^']*'><td[^>]*><b>([^<]+)</b>", page) == ["A1.a", "A1.b", "A1.d", "A1.i"]
    assert page.index("<b>A1.d</b>") < page.index("Identities: true by construction") < page.index("<b>A1.i</b>")
    assert front.strip() in page  # included verbatim
    assert "javascript:app.showResultInfo(" in page and ">scorecard.html</a>" in page
    bare = render_front_page(None)
    assert "What replicated" not in bare and "normlab" in bare and "error" not in bare.lower()


def chromium() -> str:
    """The chromium binary, installed from Debian's packages by `make browser` if missing."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None and shutil.which("make") and shutil.which("apt-get") and os.geteuid() == 0:
        subprocess.run(["make", "-s", "-C", str(ROOT), "browser"], check=False, capture_output=True,
                       timeout=900)
        exe = shutil.which("chromium")
    if exe is None:
        pytest.skip("chromium is not installed and could not be installed (`make browser` needs apt-get as root)")
    return exe


def browse(exe: str, url: str, *args: str, timeout: int = 180) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=30000",
                               *args, url], check=False, capture_output=True, text=True, timeout=timeout)


def present_versions(results: Path) -> dict[str, Path]:
    return {p.parent.name: p.resolve() for p in sorted(results.glob("*/latest")) if (p / "claims.csv").exists()}


def test_snakemake_report_shows_every_figure_and_claims_table(smoke_workdir, tmp_path):
    report = tmp_path / "report.html"
    made = snakemake(smoke_workdir, "--cores", "1", "--configfile", "config/smoke.yaml", "--report", str(report))
    assert "RuntimeWarning" not in made.stderr + made.stdout  # (resources from input sizes, profiles/default)
    page = report.read_text()
    results, categories = js_var(page, "results"), js_var(page, "categories")
    versions = present_versions(smoke_workdir / "results")
    assert versions
    assert "Scorecard" in categories and "results/scorecards/smoke.html" in results  # the smoke config's own page
    assert not (smoke_workdir / "results" / "scorecard.html").exists()  # the default config's: not written by smoke
    desc = workflow_desc(page)  # the front page: the headline table, from results/scorecards/smoke_front.html
    front = (smoke_workdir / "results" / "scorecards" / "smoke_front.html").read_text()
    assert "What replicated" in desc and front.strip() in desc and ">smoke.html</a>" in desc
    for study, v in versions.items():
        rel = f"results/{study}/{v.name}"
        figs = [f for f in json.loads((v / "manifest.json").read_text())["figures"] if f.endswith(".png")]
        assert figs, study
        for f in figs:  # every figure of every study is in the report, with a caption
            r = results[f"{rel}/figures/{f}"]
            assert r["mime_type"] == "image/png" and r["caption"].strip(), f
        table = results[f"{rel}/claims.html"]  # the claims table, rendered, in the study's category
        assert table["mime_type"] == "text/html"
        cats = [c for c, subs in categories.items() if any(f"{rel}/claims.html" in fs for fs in subs.values())]
        assert cats and cats[0] != "Scorecard"
        assert all(any(f"{rel}/figures/{f}" in fs for fs in categories[cats[0]].values()) for f in figs)
        html = base64.b64decode(table["data_uri"].split(",", 1)[1]).decode()
        for r in pd.read_csv(v / "claims.csv").itertuples():
            assert re.search(re.escape(f"<td>{escape(r.claim_id)}</td><td><span class=\"verdict {r.verdict}\">"), html), \
                r.claim_id

    exe = chromium()
    harness = tmp_path / "report_check.html"
    i = page.rindex("</body>")
    harness.write_text(page[:i] + f"<script>{HARNESS}</script>" + page[i:])
    dom = browse(exe, harness.as_uri() + "#check", "--dump-dom")
    m = re.search(r'<pre id="normlab-check">(.*?)</pre>', dom.stdout)
    assert m, f"the report did not render in chromium:\n{dom.stderr[-3000:]}"
    seen = json.loads(m.group(1).replace("&quot;", '"'))
    images = [p for p, r in results.items() if r["mime_type"].startswith("image/")]
    assert sorted(seen["images"]) == sorted(images)
    assert all(w > 0 for w in seen["images"].values()), seen["images"]  # every figure decoded and shown
    assert seen["html"] and all(v == 1 for v in seen["html"].values()), seen["html"]

    # the front page opens at its top: in a 1400x900 window, its title and counts are in view at scroll 0
    dom = browse(exe, harness.as_uri() + "#top", "--window-size=1400,900", "--dump-dom")
    m = re.search(r'<pre id="normlab-check">(.*?)</pre>', dom.stdout)
    assert m, f"the report did not render in chromium:\n{dom.stderr[-3000:]}"
    top = json.loads(m.group(1).replace("&quot;", '"'))
    for what in ("title", "counts"):
        box = top[what]
        assert box and 0 <= box["top"] and box["bottom"] <= top["h"] and 0 <= box["left"] < top["w"], (what, top)
    browse(exe, harness.as_uri() + "#top", "--window-size=1400,900", f"--screenshot={tmp_path / 'report_front.png'}")

    study, v = next(iter(versions.items()))
    shots = {"report_claims.png": f"results/{study}/{v.name}/claims.html",
             "report_figure.png": f"results/{study}/{v.name}/figures/"
                                  + json.loads((v / "manifest.json").read_text())["figures"][0]}
    for name, path in shots.items():
        browse(exe, f"{harness.as_uri()}#show={path}", "--window-size=1400,900", f"--screenshot={tmp_path / name}")
        assert (tmp_path / name).stat().st_size > 20_000, name  # a blank page is a few kB
    print(f"screenshots: {tmp_path / 'report_front.png'} {tmp_path / 'report_claims.png'} {tmp_path / 'report_figure.png'}")


# ---------------------------------------------------------------------------- W&B reports
def wandb_versions(smoke_workdir) -> dict[str, Path]:
    versions = present_versions(smoke_workdir / "results")
    assert versions
    for s, v in versions.items():
        assert list(v.glob("wandb/offline-run-*/run-*.wandb")), f"{s}: no offline W&B runs (smoke mode is offline)"
    return versions


def test_wandb_runs_log_what_the_metrics_files_hold(smoke_workdir):
    """Each train run's W&B history (offline run file, read with wandb's own reader) is its metrics.parquet."""
    from test_tracking import runs_in

    from normlab.tracking import with_runs

    for study, v in wandb_versions(smoke_workdir).items():
        runs = [r for root in with_runs([v]) for r in runs_in(root) if r["job_type"] == "train"]  # run folders
        assert runs, study
        for r in runs[:3]:
            variant, seed = r["name"].rsplit("/seed", 1)
            assert r["group"] == f"smoke/{study}/{variant}" and r["config"]["key"] in wbr.study_meta(v)["run_keys"]
            m = pd.read_parquet(v / "runs" / variant / f"seed{seed}" / "metrics.parquet")
            assert r["history"].keys() == {(int(x.step), x.metric) for x in m.itertuples()}


def test_wandb_report_panels_refer_to_logged_metrics(smoke_workdir):
    versions = wandb_versions(smoke_workdir)
    reports = wbr.build_reports(version_dirs=list(versions.values()))
    assert set(reports) == set(versions) | {"overview"}
    from test_tracking import runs_in

    from normlab.tracking import with_runs

    for study, v in versions.items():
        runs = [r for root in with_runs([v]) for r in runs_in(root)]
        train = [r for r in runs if r["job_type"] == "train" and r["config"]["key"] in wbr.study_meta(v)["run_keys"]]
        analysis = [r for r in runs if r["job_type"] == "analysis"]
        assert train and analysis
        keys = [{k for _, k in r["history"]} for r in train]
        train_keys = set().union(*keys)
        assert "test_acc" in set.intersection(*keys)  # every run logs it
        analysis_keys = set().union(*({k for _, k in r["history"]} for r in analysis))
        rep = reports[study]
        panels = wbr.panels_of(rep)
        plotted = [m for p in panels if type(p).__name__ in ("LinePlot", "BarPlot") for m in wbr.panel_metrics(p)]
        media = [m for p in panels if type(p).__name__ == "MediaBrowser" for m in wbr.panel_metrics(p)]
        assert plotted and set(plotted) <= train_keys, (set(plotted) - train_keys)
        assert "test_acc" in plotted
        assert media and set(media) <= analysis_keys, (set(media) - analysis_keys)
        assert sorted(media) == sorted(f"figures/{Path(f).stem}" for f in
                                       json.loads((v / "manifest.json").read_text())["figures"] if f.endswith(".png"))
        grids = [b for b in rep.blocks if type(b).__name__ == "PanelGrid"]
        for g in grids:
            for rs in g.runsets:
                keys = wbr.study_meta(v)["run_keys"]  # train runs: the version's run keys; analysis: its group
                assert f"== '{study}/{v.name}'" in rs.filters or (keys and all(k in rs.filters for k in keys))
                for key in rs.groupby:  # grouped by variant: a config key every train run has
                    assert key.removeprefix("config.") in train[0]["config"]
        text = " ".join(getattr(b, "text", "") for b in rep.blocks if type(b).__name__ == "MarkdownBlock")
        for r in pd.read_csv(v / "claims.csv").itertuples():
            assert f"| {scorecard.md_cell(r.claim_id)} | **{r.verdict}** |" in text
        for p in panels:  # each panel serializes to W&B's spec without a server
            p._to_model()
    over = wbr.panels_of(reports["overview"])
    assert all(set(wbr.panel_metrics(p)) <= {"test_acc"} for p in over)


def test_wandb_reports_offline_exits_cleanly(smoke_workdir):
    env = {**os.environ, "WANDB_MODE": "offline"}
    p = subprocess.run([sys.executable, "-m", "normlab.wandb_reports"], cwd=smoke_workdir, env=env,
                       check=False, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "wandb sync" in p.stdout and "make sync" in p.stdout


def test_wandb_reports_put_headline_claims_first(tmp_path, monkeypatch):
    """Without any W&B run files: the claims tables list headline claims first, with kind and p_adj;
    the overview opens with the scorecard's headline table and counts kinds apart."""
    from test_scorecard import ALPHA, claim, fake_version

    from normlab import scorecard

    monkeypatch.setattr(scorecard.load, "study_module", lambda name: {"alpha": ALPHA}.get(name))
    res = tmp_path / "results"
    v = fake_version(res, "alpha", "smoke-0000aaaa", [claim("A1.a[x]", "holds"), claim("A1.chk", "holds", kind="check"),
                                                     claim("A1.b", "fails", kind="headline", p_adj=0.002),
                                                     claim("A1.a", "holds", kind="headline", p_adj=0.03)])
    md = wbr.claims_markdown(pd.read_csv(v / "claims.csv"))
    ids = [ln.split(" | ")[0].removeprefix("| ") for ln in md.splitlines()[2:]]
    assert ids == ["A1.b", "A1.a", "A1.a[x]", "A1.chk"]
    assert "| A1.b | **fails** | headline | 0.1 [0.05, 0.2] | 0.002 | 3 |" in md
    reports = wbr.build_reports(version_dirs=[v])
    over = reports["overview"]
    texts = [getattr(b, "text", "") for b in over.blocks]
    kinds = [type(b).__name__ for b in over.blocks]
    first_md = kinds.index("MarkdownBlock")
    assert "| A1.a | **holds** p_adj 0.03 | Alpha beats beta by far" in texts[first_md]
    assert "| A1.d | **missing** |" in texts[first_md]
    assert any("Empirical headline claims: 1 hold, 1 fail, 0 inconclusive (of 2). Identities: 0 hold, 0 fail, "
               "0 inconclusive (of 0). Cells: 1 hold" in str(getattr(b, "text", "")) for b in over.blocks)
    study_md = [b.text for b in reports["alpha"].blocks if type(b).__name__ == "MarkdownBlock"][0]
    assert study_md == md


def test_wandb_overview_shows_the_replication_matrix(tmp_path, monkeypatch):
    """The overview Report carries the scorecard's matrix (headline claims x configs, newest version of
    each config name) as a markdown panel; cells name their version (the W&B group) instead of local links."""
    from test_scorecard import ALPHA, claim, config_dir, fake_version, finished_at

    from normlab import scorecard

    monkeypatch.setattr(scorecard.load, "study_module", lambda name: {"alpha": ALPHA}.get(name))
    res = tmp_path / "results"
    h = dict(kind="headline", p_adj=0.01)
    finished_at(fake_version(res, "alpha", "default-0000aaa2", [claim("A1.a", "holds", 0.5, 0.4, 0.6, **h)],
                             figure=False), "2024-06-01")
    fash = finished_at(fake_version(res, "alpha", "fashion-0000aaa3", [claim("A1.a", "fails", -1, -2, -0.5, **h)],
                                    figure=False), "2024-05-01")
    finished_at(fake_version(res, "alpha", "default-0000aaa1", [claim("A1.a", "fails", **h)], figure=False),
                "2024-01-01")
    configs = config_dir(tmp_path, config="default", fashion="fashion", paper="paper")
    md = wbr.matrix_markdown(res, configs)
    assert "| study | claim | default | fashion |" in md
    assert "| A1.a | **holds** 0.5 [0.4, 0.6] `default-0000aaa2` | **fails** -1 [-2, -0.5] `fashion-0000aaa3` |" in md
    assert "0000aaa1" not in md and "](" not in md and "config/paper.yaml" in md
    monkeypatch.chdir(tmp_path)  # the overview names the configs of ./config
    over = wbr.build_reports(version_dirs=[fash])["overview"]
    kinds = [type(b).__name__ for b in over.blocks]
    texts = [str(getattr(b, "text", "")) for b in over.blocks]
    i = next(k for k, b in enumerate(over.blocks) if kinds[k] == "H2" and "Replication matrix" in str(b.text))
    assert kinds[i + 1] == "MarkdownBlock" and texts[i + 1] == md
