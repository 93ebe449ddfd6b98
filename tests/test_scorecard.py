"""The replication scorecard and the comparison of two versions of a study."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from conftest import snakemake

from normlab import compare, scorecard
from normlab.stats import CLAIM_COLUMNS


def present_versions(results: Path) -> dict[str, Path]:
    """{study: version folder} of every study the smoke run left results for."""
    return {p.parent.name: p.resolve() for p in sorted(results.glob("*/latest")) if (p / "claims.csv").exists()}


def html_rows(page: str) -> list[tuple[str, str]]:
    """(claim id, verdict) of every claims-table row of a scorecard page."""
    rows = re.findall(r"<tr><td>([^<]+)</td><td><span class=\"verdict ([\w-]+)\">", page)
    return [(html.unescape(cid), verdict.replace("-", " ")) for cid, verdict in rows]  # class not-run: "not run"


def test_scorecard_lists_every_claim_of_every_study(smoke_workdir):
    results = smoke_workdir / "results"
    versions = present_versions(results)
    assert versions, "the smoke run left no study results"
    expected = pd.concat([scorecard.normalize_claims(pd.read_csv(v / "claims.csv")).assign(study=s, version=v.name)
                          for s, v in versions.items()])

    from normlab.io import scorecard_paths

    pages = scorecard_paths("smoke", results)  # the smoke config's own pages (results/scorecards/smoke.*)
    assert not (results / "scorecard.html").exists()  # the default config's: not written by another config
    got = pd.read_csv(pages["csv"])
    assert list(got.columns) == scorecard.ALL_COLUMNS
    key = ["study", "version", "claim_id"]
    assert sorted(map(tuple, got[key + ["verdict", "kind"]].values)) == sorted(
        map(tuple, expected[key + ["verdict", "kind"]].values))
    merged = got.merge(expected, on=key, suffixes=("", "_csv"))
    assert len(merged) == len(expected)
    np.testing.assert_allclose(merged.value.astype(float), merged.value_csv.astype(float), equal_nan=True)

    md = pages["md"].read_text()
    page = pages["html"].read_text()
    rows = html_rows(page)
    for r in expected.itertuples():
        assert f"| {scorecard.md_cell(r.claim_id)} | **{r.verdict}** |" in md, r.claim_id
        assert (r.claim_id, r.verdict) in rows, r.claim_id
    assert len(rows) == len(expected)
    assert scorecard.summary_line(expected) in md
    assert html.escape(scorecard.summary_line(expected, ("headline",))) in page
    # the headline table: the empirical claims of every study, then the identities of every study; per study its
    # declared claims (a missing row shows as such), then others
    want = []
    for kind, declared_of in (("headline", scorecard.study_headlines), ("identity", scorecard.study_identities)):
        for v in sorted(scorecard.latest_versions(results), key=lambda v: scorecard.study_order(
                scorecard.study_title(v.parent.name))):
            declared = list(declared_of(v.parent.name))
            rows_ = expected[(expected.study == v.parent.name) & (expected.kind == kind)].claim_id.tolist()
            want += declared + [c for c in rows_ if c not in declared]
    assert headline_ids(page) == want and "S2.a" in want[want.index("S5.e"):]  # identities after every empirical claim
    for s, v in versions.items():  # figures shown and linked, runs linked
        for png in json.loads((v / "manifest.json").read_text())["figures"]:
            if png.endswith(".png"):
                assert f"{s}/{v.name}/figures/{png}" in page
        assert f"{s}/{v.name}/runs/" in page and "summary.json" in page
    assert page.count("<img ") >= sum(len(list((v / "figures").glob("*.png"))) for v in versions.values())
    assert pages["front"].exists()


def headline_ids(page: str) -> list[str]:
    """Claim ids of the rows of the headline table (the first table of the page), in order."""
    table = page[page.index("<table class='headlines'"):]
    table = table[: table.index("</table>")]
    return [html.unescape(x) for x in re.findall(r"<td><a href='#[^']*'><b>([^<]+)</b></a></td>", table)]


def fake_version(root: Path, study: str, version: str, claims: list[dict], figure: bool = True,
                 columns=CLAIM_COLUMNS) -> Path:
    v = root / study / version
    (v / "figures").mkdir(parents=True)
    pd.DataFrame(claims, columns=columns).to_csv(v / "claims.csv", index=False)
    figs = []
    if figure:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        for stem in ("curve", "bars"):
            fig, ax = plt.subplots(figsize=(3, 2))
            ax.plot([0, 1], [0, 1] if stem == "curve" else [1, 0])
            fig.savefig(v / "figures" / f"{stem}.png")
            plt.close(fig)
            figs += [f"{stem}.png", f"{stem}.pdf"]
    (v / "manifest.json").write_text(json.dumps({"study": study, "version": version, "figures": figs}))
    latest = root / study / "latest"
    latest.unlink(missing_ok=True)
    latest.symlink_to(version)
    return v


def claim(cid, verdict, value=0.1, lo=0.05, hi=0.2, text="x beats y", kind="cell", p_adj=float("nan"), **extra):
    """A claims.csv row; ``extra``: the newer columns (fail_margin, ci_level, basis, detectable, seeds_needed)."""
    return {"claim_id": cid, "claim": text, "source": "paper", "metric": "m", "value": value, "ci_low": lo,
            "ci_high": hi, "threshold": "> 0", "verdict": verdict, "n_seeds": 3, "kind": kind, "p_adj": p_adj, **extra}


ALPHA = SimpleNamespace(
    TITLE="A1: Alpha et al. 2099, A study of alpha",
    PAPERS=[{"cite": "Alpha, Beta. A study of alpha. 2099", "url": "https://arxiv.org/abs/9999.00001"}],
    HEADLINES={"A1.a": {"statement": "Alpha beats beta by far.", "departures": "MNIST-1D instead of CIFAR-10",
                        "figures": ["bars"]},
               "A1.b": {"statement": "Gamma is smooth.", "departures": "1,000 steps instead of 15,000",
                        "figures": ["curve"]},
               "A1.d": {"statement": "Delta is declared but was not run.", "departures": "", "figures": []},
               "A1.i": {"statement": "Iota holds by construction.", "departures": "float64", "figures": [],
                        "kind": "identity"}})


@pytest.fixture
def fake_studies(tmp_path, monkeypatch):
    """Three studies: alpha declares TITLE/PAPERS/HEADLINES; beta declares nothing; gamma has an old
    claims.csv (no kind, no p_adj: every row a cell)."""
    mods = {"alpha": ALPHA, "beta": SimpleNamespace(__doc__="B1: the beta study.\n\nMore text.")}
    monkeypatch.setattr(scorecard.load, "study_module", lambda name: mods.get(name))
    res = tmp_path / "results"
    fake_version(res, "alpha", "smoke-0000aaaa", [
        claim("A1.a[x]", "holds", kind="cell", p_adj=0.01),
        claim("A1.b", "fails", -0.3, -0.4, -0.2, kind="headline", p_adj=0.002, text="gamma curvature a | b"),
        claim("A1.a", "holds", kind="headline", p_adj=0.03, fail_margin=0.01, ci_level=0.975,
              basis="holds: the estimate's 97.5% interval [0.05, 0.2] lies above 0"),
        claim("A1.c", "inconclusive", float("nan"), float("nan"), float("nan"), kind="headline", p_adj=0.4,
              seeds_needed=12.0, detectable=0.05),
        claim("A1.check", "holds", 1e-13, 1e-13, 1e-13, kind="check"),
        claim("A1.i", "holds", 1e-14, 1e-14, 1e-14, kind="identity"),
        claim("A1.a[y]", "inconclusive", kind="cell", p_adj=0.2)])
    fake_version(res, "beta", "smoke-0000bbbb", [claim("B1.a", "holds", kind="headline", p_adj=0.001),
                                               claim("B1.ctl", "fails", kind="check", p_adj=0.01)], figure=False)
    old = [{k: v for k, v in claim("G1.a", "holds").items() if k not in ("kind", "p_adj")}]
    fake_version(res, "gamma", "smoke-0000cccc", old, figure=False, columns=CLAIM_COLUMNS[:10])
    return res


def test_scorecard_leads_with_headline_claims(fake_studies):
    res = fake_studies
    df = scorecard.build(scorecard.latest_versions(res), res)
    assert list(df.kind) == ["cell", "headline", "headline", "headline", "check", "identity", "cell", "headline",
                             "check", "cell"]
    line = ("Empirical headline claims: 2 hold, 1 fail, 1 inconclusive (of 4). Identities: 1 hold, 0 fail, "
            "0 inconclusive (of 1). Cells: 2 hold, 0 fail, 1 inconclusive (of 3). "
            "Checks: 1 hold, 1 fail, 0 inconclusive (of 2).")
    assert scorecard.summary_line(df) == line

    md = (res / "scorecard.md").read_text()
    head, rest = md.split("\n## Studies\n", 1)
    head, matrix = head.split("\n## Replication matrix\n", 1)
    assert "| study | claim | smoke |" in matrix  # only smoke results: its one column
    assert f"**{line}**" in head and "One multiplicity rule per family" in head
    table = [ln for ln in head.splitlines() if ln.startswith("| ")]
    assert table[0].startswith("| study | claim | verdict | the paper says | we measured | departs from the paper |")
    ids = [ln.split(" | ")[1] for ln in table[1:] if not ln.startswith("| **")]
    # declared order, then undeclared; no cells or checks; the identities grouped apart, after the empirical claims
    assert ids == ["A1.a", "A1.b", "A1.d", "A1.c", "B1.a", "A1.i"]
    groups = [ln for ln in table if ln.startswith("| **")]
    assert [g.split("**")[1].split(":")[0] for g in groups] == ["Empirical claims", "Identities"]
    assert table.index(groups[1]) == len(table) - 2  # the identity group: its heading and A1.i, last
    row_a = table[2]
    assert "**holds** (p_adj 0.03)" in row_a and "Alpha beats beta by far" in row_a and "MNIST-1D instead" in row_a
    assert "[bars](alpha/smoke-0000aaaa/figures/bars.png)" in row_a  # the figure HEADLINES names
    # the interval's level, the claim's smallest effect of interest; an inconclusive claim: what more seeds buy
    assert "m = 0.1 [0.05, 0.2] (97.5%), 3 seeds (claim: > 0; fail margin 0.01)" in row_a
    assert "~12 seeds would decide it (detects 0.05 at 3)" in table[5]
    assert "**missing**" in table[4]  # declared but without a row
    assert "[A1: Alpha et al. 2099](#a1-alpha-et-al-2099-a-study-of-alpha)" in row_a
    assert "| [B1: the beta study](#" in table[6]  # no TITLE: the docstring's first line
    assert "| [A1: Alpha et al. 2099](#" in table[-1] and "**holds**" in table[-1]  # named again in its group
    assert "## A1: Alpha et al. 2099, A study of alpha" in rest
    assert "[Alpha, Beta. A study of alpha. 2099](https://arxiv.org/abs/9999.00001)" in rest
    assert "### Cells (1 hold, 0 fail, 1 inconclusive (of 2))" in rest and "### Checks (" in rest
    assert "| A1.a[x] | **holds** | 0.1 [0.05, 0.2] |  | > 0 |  | 0.01 | 3 |" in rest
    assert "| A1.a | **holds** | 0.1 [0.05, 0.2] | 97.5% | > 0 | 0.01 | 0.03 | 3 |  |" in rest
    assert "lies above 0 |" in rest  # the basis of the verdict
    assert "### Identities (1 hold, 0 fail, 0 inconclusive (of 1))" in rest and "**A1.i (identity): holds.**" in rest
    assert "| A1.c | **inconclusive** | n/a (no interval) |" in rest
    assert "gamma curvature a \\| b" in rest  # a pipe in a claim does not break the table
    assert "| G1.a | **holds** |" in rest.split("## gamma", 1)[1]

    page = (res / "scorecard.html").read_text()
    first_table = page.index("<table")
    assert page.index("<table class='headlines'") == first_table
    heads_line, rest_line = line.split(" Identities:", 1)
    assert page.index(html.escape(heads_line)) < page.index(html.escape("Identities:" + rest_line)) < first_table
    assert page.index("one multiplicity rule per family") < first_table
    assert headline_ids(page) == ["A1.a", "A1.b", "A1.d", "A1.c", "B1.a", "A1.i"]
    assert first_table < page.index("<details")
    for cid in ("A1.a[x]", "A1.check", "B1.ctl", "G1.a"):  # cells and checks only below, inside <details>
        i = page.index(f"<td>{html.escape(cid)}</td>")
        assert i > page.index("</table>", first_table)
        assert page.rfind("<details", 0, i) > page.rfind("</details>", 0, i), cid
    assert "<details class='cell'><summary>Cells of alpha: 1 hold, 0 fail, 1 inconclusive (of 2)" in page
    assert "href='https://arxiv.org/abs/9999.00001'" in page
    headline_table = page[first_table:page.index("</table>", first_table)]
    assert headline_table.count("data:image/png;base64,") == 2  # thumbnails of bars and curve
    assert "href='alpha/smoke-0000aaaa/figures/bars.png'" in headline_table
    assert "verdict missing" in headline_table and "rowspan='4'" in headline_table
    assert headline_table.index("Empirical claims: what replicated") < headline_table.index("A1.a") \
        < headline_table.index("Identities: true by construction") < headline_table.index("A1.i")
    assert "~12 seeds would decide it" in headline_table and "97.5%" in headline_table
    assert html_rows(page) == [("A1.b", "fails"), ("A1.a", "holds"), ("A1.c", "inconclusive"), ("A1.i", "holds"),
                               ("A1.a[x]", "holds"), ("A1.a[y]", "inconclusive"), ("A1.check", "holds"),
                               ("B1.a", "holds"), ("B1.ctl", "fails"), ("G1.a", "holds")]

    out = pd.read_csv(res / "claims_all.csv")
    assert list(out.columns) == scorecard.ALL_COLUMNS
    assert list(out.study) == ["alpha"] * 7 + ["beta"] * 2 + ["gamma"]
    assert out.set_index("claim_id").kind["G1.a"] == "cell" and out.p_adj.notna().sum() == 7
    figs = out.set_index("claim_id").figures.fillna("")
    assert figs["A1.a"] == "alpha/smoke-0000aaaa/figures/bars.png"
    assert figs["A1.a[x]"] == "alpha/smoke-0000aaaa/figures/bars.png"  # cells of A1.a share its figures
    assert figs["A1.check"] == "alpha/smoke-0000aaaa/figures/curve.png;alpha/smoke-0000aaaa/figures/bars.png"

    front = (res / "scorecard_front.html").read_text()
    assert html.escape(line) in front and "<script" not in front and "<style" not in front
    assert re.findall(r"<tr title='[^']*'><td[^>]*><b>([^<]+)</b>", front) == ["A1.a", "A1.b", "A1.d", "A1.c", "B1.a",
                                                                               "A1.i"]
    assert front.index("Identities: true by construction") < front.index("<b>A1.i</b>")


def test_claims_page_orders_kinds(fake_studies):
    page = scorecard.standalone_claims_html(fake_studies / "alpha" / "latest")
    assert (page.index("Empirical headline claims: 1 hold, 1 fail") < page.index("Identities: 1 hold")
            < page.index("Cells: 1 hold") < page.index("Checks: 1 hold"))
    assert html_rows(page)[0] == ("A1.b", "fails") and "p_adj" in page


def test_titles_and_headlines_of_the_registered_studies():
    from normlab import studies

    for name in studies.STUDIES:
        mod = studies.get(name)
        title = scorecard.study_title(name)
        assert title == getattr(mod, "TITLE", title) and title
        for h in scorecard.study_headlines(name).values():
            assert set(h) == {"statement", "departures", "figures"}
        declared = scorecard.study_declared(name)
        assert list(declared) == list(getattr(mod, "HEADLINES", {}))
        assert {cid for cid, h in declared.items() if h["kind"] == "identity"} == set(scorecard.study_identities(name))
        assert all(p["cite"] for p in scorecard.study_papers(name))


def test_scorecard_counts_and_formats(tmp_path):
    """Old-format claims (no study module, no kind) still render: every row a cell."""
    res = tmp_path / "results"
    fake_version(res, "alpha", "smoke-0000aaaa", [claim("A1.a", "holds"), claim("A1.b[x]", "fails", -0.3, -0.4, -0.2),
                                                 claim("A1.c", "inconclusive", float("nan"), float("nan"), float("nan"),
                                                       text="a | b")], figure=False)
    df = scorecard.build(scorecard.latest_versions(res), res)
    assert scorecard.counts(df) == {"holds": 1, "smaller": 0, "fails": 1, "mixed": 0, "inconclusive": 1, "not run": 0}
    md = (res / "scorecard.md").read_text()
    assert ("**Empirical headline claims: 0 hold, 0 fail, 0 inconclusive (of 0). Identities: 0 hold, 0 fail, "
            "0 inconclusive (of 0). Cells: 1 hold, 1 fail, 1 inconclusive (of 3).") in md
    assert "no study declares headline claims yet" in md
    assert "| A1.b[x] | **fails** | -0.3 [-0.4, -0.2] |" in md and "a \\| b" in md
    assert "No study declares headline claims yet" in (res / "scorecard.html").read_text()


def test_scorecard_errors(tmp_path):
    with pytest.raises(SystemExit, match="no study results"):
        scorecard.main(["--results", str(tmp_path)])
    v = fake_version(tmp_path, "alpha", "smoke-0000aaaa", [claim("A1.a", "holds")], figure=False)
    (v / "manifest.json").unlink()
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        scorecard.load_study(v)


def fake_runs(v: Path, shift: float) -> None:
    """Two variants x two seeds of tidy metrics, as train.py writes them."""
    for variant in ("bn-relu", "none-relu"):
        for seed in (0, 1):
            d = v / "runs" / variant / f"seed{seed}"
            d.mkdir(parents=True)
            steps = np.arange(0, 60, 20)
            rows = [(int(t), m, float(val)) for t in steps for m, val in
                    [("test_acc", 0.1 + t / 100 + shift + seed / 50), ("test_loss", 2 - t / 50), ("lr", 0.1)]]
            pd.DataFrame(rows, columns=["step", "metric", "value"]).assign(variant=variant, seed=seed).to_parquet(
                d / "metrics.parquet")
            (d / "summary.json").write_text(json.dumps({"variant": variant, "seed": seed, "status": "ok", "keys": {},
                                                        "final": {"test_acc": 0.5}}))


def test_compare_two_versions(tmp_path):
    res = tmp_path / "results"
    a = fake_version(res, "alpha", "smoke-0000aaaa", [claim("A1.a", "holds"), claim("A1.b", "fails", -1, -2, -0.5)],
                     figure=False)
    b = fake_version(res, "alpha", "default-0000bbbb", [claim("A1.a", "inconclusive", 0.1, -0.1, 0.3),
                                                      claim("A1.c", "holds")], figure=False)
    fake_runs(a, 0.0)
    fake_runs(b, 0.2)
    df = compare.compare(a, b)
    out = res / "compare" / "alpha" / "smoke-0000aaaa_vs_default-0000bbbb"
    assert list(df.claim_id) == ["A1.a", "A1.b", "A1.c"]
    assert df.set_index("claim_id").verdict_changed.to_dict() == {"A1.a": True, "A1.b": True, "A1.c": True}
    assert df.verdict_a.fillna("").tolist() == ["holds", "fails", ""]
    assert df.verdict_b.fillna("").tolist() == ["inconclusive", "", "holds"]
    md = (out / "claims.md").read_text()
    assert "| A1.a | cell | holds | 0.1 [0.05, 0.2] | inconclusive | 0.1 [-0.1, 0.3] | **yes** |" in md
    assert compare.thresholds(pd.Series(["> 0.5", "in [-1, 2e-3]", 3.0, None])) == {0.5, -1.0, 2e-3, 3.0}
    figs = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert figs == ["claims.png", "curves_test_acc.png", "curves_test_loss.png"]  # lr is not a curve to compare
    same = compare.compare(a, a, out=tmp_path / "same", figures=False)
    assert not same.verdict_changed.any()


def test_compare_refuses_two_studies(tmp_path):
    a = fake_version(tmp_path, "alpha", "smoke-0000aaaa", [claim("A1.a", "holds")], figure=False)
    b = fake_version(tmp_path, "beta", "smoke-0000bbbb", [claim("B1.a", "holds")], figure=False)
    with pytest.raises(SystemExit, match="study 'alpha' but"):
        compare.compare(a, b)


def test_compare_rule(smoke_workdir):
    """`snakemake results/compare/<study>/<A>_vs_<B>/claims.md` on a real smoke version and a copy."""
    study, v = next(iter(present_versions(smoke_workdir / "results").items()))
    other = v.parent / "copy-0000abcd"
    target = f"results/compare/{study}/{v.name}_vs_{other.name}"
    try:
        shutil.copytree(v, other, symlinks=True, ignore=shutil.ignore_patterns("wandb", "runs"))
        c = pd.read_csv(other / "claims.csv")
        c.loc[0, "verdict"] = "fails" if c.loc[0, "verdict"] != "fails" else "holds"
        c.to_csv(other / "claims.csv", index=False)
        shutil.copytree(v / "runs", other / "runs")
        snakemake(smoke_workdir, f"{target}/claims.md", "--cores", "1", "--configfile", "config/smoke.yaml")
        got = pd.read_csv(smoke_workdir / target / "claims.csv")
        assert got.verdict_changed.tolist() == [True] + [False] * (len(got) - 1)
        assert (smoke_workdir / target / "figures" / "claims.png").exists()
    finally:
        shutil.rmtree(other, ignore_errors=True)
        shutil.rmtree(smoke_workdir / "results" / "compare", ignore_errors=True)


# ---------------------------------------------------------------------------- the replication matrix
def finished_at(v: Path, when: str) -> Path:
    """Set the version's manifest.json finish time (the newest version of a config name has the latest)."""
    man = json.loads((v / "manifest.json").read_text())
    (v / "manifest.json").write_text(json.dumps({**man, "finished": when}))
    return v


def config_dir(root: Path, **names) -> Path:
    """A config/ folder: {file stem: config name}."""
    d = root / "config"
    d.mkdir()
    for stem, name in names.items():
        (d / f"{stem}.yaml").write_text(f"name: {name}\nseed: 0\n")
    return d


@pytest.fixture
def two_configs(tmp_path, monkeypatch):
    """alpha: two default versions (the OLDER one is `latest`, with other verdicts), a fashion version, an
    unfinished newer fashion version (no manifest) and a smoke version; beta: default only."""
    monkeypatch.setattr(scorecard.load, "study_module", lambda name: {"alpha": ALPHA}.get(name))
    res = tmp_path / "results"
    h = dict(kind="headline", p_adj=0.01)
    finished_at(fake_version(res, "alpha", "smoke-0000aaa0", [claim("A1.a", "fails", **h)], figure=False), "2030-01-01")
    new = finished_at(fake_version(res, "alpha", "default-0000aaa2", [claim("A1.a", "holds", 0.5, 0.4, 0.6, **h),
                                                                      claim("A1.b", "fails", **h),
                                                                      claim("A1.i", "holds", 0, 0, 0, kind="identity")],
                                   figure=False), "2024-06-01T00:00:00")
    fash = finished_at(fake_version(res, "alpha", "fashion-0000aaa3", [claim("A1.a", "inconclusive", 0.2, -0.1, 0.4, **h,
                                                                             seeds_needed=float("inf"), ci_level=0.9),
                                                                       claim("A1.e", "holds", **h)], figure=False),
                       "2024-05-01T00:00:00")
    partial = res / "alpha" / "fashion-0000aaa9"  # a newer fashion version still running: no manifest yet
    partial.mkdir()
    (partial / "claims.csv").write_text((fash / "claims.csv").read_text().replace("inconclusive", "fails"))
    old = finished_at(fake_version(res, "alpha", "default-0000aaa1", [claim("A1.a", "fails", -1, -2, -0.5, **h),
                                                                      claim("A1.b", "holds", **h)], figure=False),
                      "2024-01-01T00:00:00")  # made last, so `latest` points at it
    beta = finished_at(fake_version(res, "beta", "default-0000bbb1", [claim("B1.a", "holds", **h)], figure=False),
                       "2024-02-01T00:00:00")
    assert (res / "alpha" / "latest").resolve() == old.resolve()
    return SimpleNamespace(res=res, new=new, fash=fash, old=old, beta=beta,
                           configs=config_dir(tmp_path, config="default", fashion="fashion", paper="paper",
                                              smoke="smoke"))


def test_replication_matrix_picks_the_newest_version_of_each_config(two_configs):
    t = two_configs
    m = scorecard.replication_matrix(t.res, configs=t.configs)
    assert m["configs"] == ["default", "fashion"] and m["dropped"] == ["smoke"]
    assert m["todo"] == {"paper": "snakemake --cores all --configfile config/paper.yaml"}
    assert {n: {s: v["vdir"].name for s, v in ss.items()} for n, ss in m["studies"].items()} == {
        "default": {"alpha": "default-0000aaa2", "beta": "default-0000bbb1"}, "fashion": {"alpha": "fashion-0000aaa3"}}
    # one row per headline claim: declared ones in order (A1.d: declared, no row anywhere), then the others; the
    # identities after every empirical claim
    assert [(r["study"], r["claim_id"], r["kind"]) for r in m["rows"]] == [
        ("alpha", "A1.a", "headline"), ("alpha", "A1.b", "headline"), ("alpha", "A1.d", "headline"),
        ("alpha", "A1.e", "headline"), ("beta", "B1.a", "headline"), ("alpha", "A1.i", "identity")]
    cell = {(r["claim_id"], n): h for r in m["rows"] for n, h in r["cells"].items()}
    assert cell["A1.a", "default"]["row"].verdict == "holds"  # the newest default version, not `latest`
    assert cell["A1.a", "fashion"]["row"].verdict == "inconclusive"  # not the unfinished newer one
    assert cell["A1.b", "fashion"]["row"] is None  # declared but not in that version: missing
    assert cell["B1.a", "fashion"] is None  # beta has no fashion version: study not run
    assert cell["A1.d", "default"]["row"] is None  # declared, no row: missing
    assert cell["A1.e", "default"] is None and cell["A1.e", "fashion"]["row"].verdict == "holds"

    md = scorecard.matrix_markdown(m, t.res)
    assert md.splitlines()[0] == "| study | claim | default | fashion |"
    assert ("| A1: Alpha et al. 2099 | A1.a | [**holds**](alpha/default-0000aaa2/claims.csv) 0.5 [0.4, 0.6] | "
            "[**inconclusive**](alpha/fashion-0000aaa3/claims.csv) 0.2 [-0.1, 0.4] (90%); on a margin: no seed count "
            "decides it at the observed effect, though more seeds narrow it |") in md
    assert md.splitlines()[2] == "| **Empirical claims** | | | |" and "| **Identities** | | | |" in md
    assert "| A1: Alpha et al. 2099 | A1.i | [**holds**](alpha/default-0000aaa2/claims.csv) 0 [0, 0] | [**missing**]" in md
    assert "| B1.a | [**holds**](beta/default-0000bbb1/claims.csv) 0.1 [0.05, 0.2] | study not run |" in md
    assert "\n|  | A1.d | [**missing**](alpha/default-0000aaa2/claims.csv) | [**missing**](alpha/fashion" in md
    assert "| beta | B1.a |" in md  # each study named on its first row
    assert "0000aaa1" not in md and "0000aaa9" not in md and "smoke" not in md
    assert "`default-0000aaa2`" in scorecard.matrix_markdown(m)  # without links (W&B): the version named

    scorecard.build(scorecard.latest_versions(t.res), t.res, configs=t.configs)
    page = (t.res / "scorecard.md").read_text()
    head, rest = page.split("\n## Replication matrix\n", 1)
    assert "| A1.a | **fails** (p_adj 0.01) |" in head  # the headline table stays on `latest`
    assert md in rest.split("\n## Studies\n")[0]
    assert "config/paper.yaml" in rest and "`smoke` (a pipeline test" in rest
    html_page = (t.res / "scorecard.html").read_text()
    table = html_page[html_page.index("<table class='matrix'"):]
    table = table[:table.index("</table>")]
    assert table.count("<tr>") == 7 and table.count("<tr class='group'>") == 2
    assert "<th>default</th><th>fashion</th>" in table and "on a margin" in table
    assert "href='alpha/default-0000aaa2/claims.csv' title='alpha/default-0000aaa2'><span class=\"verdict holds\">" \
        in table
    assert "0000aaa1" not in table
    assert html_rows(html_page) == [("A1.a", "fails"), ("A1.b", "holds"), ("B1.a", "holds")]  # claims tables: latest
    assert headline_ids(html_page) == ["A1.a", "A1.b", "A1.d", "B1.a", "A1.i"]
    front = (t.res / "scorecard_front.html").read_text()
    assert "Replication matrix" in front and "href='alpha/fashion-0000aaa3/claims.csv'" in front
    assert "<style" not in front and "class=" not in front.split("Replication matrix", 1)[1]


def test_replication_matrix_with_one_config(tmp_path, monkeypatch):
    """One config with results: one column, and a note naming the configs that would fill more."""
    monkeypatch.setattr(scorecard.load, "study_module", lambda name: {"alpha": ALPHA}.get(name))
    res = tmp_path / "results"
    fake_version(res, "alpha", "default-0000aaaa", [claim("A1.a", "holds", kind="headline")], figure=False)
    configs = config_dir(tmp_path, config="default", fashion="fashion", paper="paper", smoke="smoke")
    m = scorecard.replication_matrix(res, configs=configs)
    assert m["configs"] == ["default"] and not m["dropped"]
    note = scorecard.matrix_note(m)
    assert "--configfile config/fashion.yaml" in note and "--configfile config/paper.yaml" in note
    assert "smoke" not in note
    assert scorecard.matrix_markdown(m, res).splitlines()[0] == "| study | claim | default |"
    assert "config/<name>.yaml" in scorecard.matrix_note(scorecard.replication_matrix(res))  # no config folder
    empty = scorecard.replication_matrix(tmp_path / "nothing")
    assert empty["configs"] == [] and "no headline claims under any config yet" in scorecard.matrix_markdown(empty)


# ---------------------------------------------------------------------------- the verdicts mixed and not run
STRATA = "holds: tanh; fails: logistic; inconclusive: relu"


@pytest.fixture
def new_verdicts(tmp_path, monkeypatch):
    """alpha, default config: a mixed headline claim (its strata as cells), one not run, one holding, an identity."""
    monkeypatch.setattr(scorecard.load, "study_module", lambda name: {"alpha": ALPHA}.get(name))
    res = tmp_path / "results"
    nan = float("nan")
    fake_version(res, "alpha", "default-0000aaaa", [
        claim("A1.a", "mixed", 0.04, 0.01, 0.07, kind="headline", p_adj=0.02, strata=STRATA, ci_level=0.9,
              basis="mixed: tanh holds, logistic fails; the strata disagree (Welch p 0.001)"),
        claim("A1.a[tanh]", "holds", 0.2, 0.1, 0.3), claim("A1.a[logistic]", "fails", -0.05, -0.08, -0.02),
        claim("A1.a[relu]", "inconclusive", 0.0, -0.03, 0.03),
        claim("A1.b", "not run", nan, nan, nan, kind="headline", basis="not run: needs norms none and bn_pre"),
        claim("A1.c", "holds", kind="headline", p_adj=0.01),
        claim("A1.i", "holds", 0, 0, 0, kind="identity")], figure=False)
    return res


def test_scorecard_counts_mixed_and_not_run_apart(new_verdicts):
    res = new_verdicts
    df = scorecard.build(scorecard.latest_versions(res), res, configs=None)
    assert scorecard.counts(df[df.kind == "headline"]) == {"holds": 1, "smaller": 0, "fails": 0, "mixed": 1, "inconclusive": 0,
                                                           "not run": 1}
    head = "Empirical headline claims: 1 hold, 0 fail, 1 mixed, 0 inconclusive (of 2); 1 not run."
    assert scorecard.summary_line(df).startswith(head + " Identities: 1 hold, 0 fail, 0 inconclusive (of 1).")
    assert "Cells: 1 hold, 1 fail, 1 inconclusive (of 3)." in scorecard.summary_line(df)  # no mixed: not shown

    md = (res / "scorecard.md").read_text()
    assert f"**{scorecard.summary_line(df)}**" in md
    table = md.split("\n## Replication matrix\n")[0]
    row_a = next(ln for ln in table.splitlines() if ln.startswith("| [A1: ") and "| A1.a |" in ln)
    assert "| **mixed** (p_adj 0.02) |" in row_a and f"; strata: {STRATA} |" in row_a  # the strata on each side
    assert "|  | A1.b | **not run** | Gamma is smooth. | needs norms none and bn_pre |" in table  # what it needs
    matrix = md.split("\n## Replication matrix\n")[1].split("\n## Studies\n")[0]
    assert f"[**mixed**](alpha/default-0000aaaa/claims.csv) 0.04 [0.01, 0.07] (90%); strata: {STRATA} |" in matrix
    assert "| A1.b | [**not run**](alpha/default-0000aaaa/claims.csv); needs norms none and bn_pre |" in matrix
    assert f"Strata: {STRATA}." in md.split("### Empirical headline claims")[1]  # the claims table: with the basis

    page = (res / "scorecard.html").read_text()
    assert html.escape(head) in page
    headlines = page[page.index("<table class='headlines'"):]
    headlines = headlines[:headlines.index("</table>")]
    assert '<span class="verdict mixed">mixed</span>' in headlines and html.escape(f"strata: {STRATA}") in headlines
    assert '<span class="verdict not-run">not run</span>' in headlines and "needs norms none and bn_pre" in headlines
    assert ("A1.b", "not run") in html_rows(page) and ("A1.a", "mixed") in html_rows(page)
    matrix_html = page[page.index("<table class='matrix'"):]
    matrix_html = matrix_html[:matrix_html.index("</table>")]
    assert "<br><small>needs norms none and bn_pre</small>" in matrix_html
    assert html.escape(f"<br><small>strata: {STRATA}</small>", quote=False) not in matrix_html  # escaped text...
    assert f"<br><small>strata: {html.escape(STRATA)}</small>" in matrix_html  # ...inside the tags

    front = (res / "scorecard_front.html").read_text()
    from normlab.plotting import VERDICT_COLORS

    assert f"background:{VERDICT_COLORS['mixed']};color:#fff" in front
    assert f"background:{VERDICT_COLORS['not run']};color:#1f2328" in front  # light grey: dark text
    assert "needs norms none and bn_pre" in front and "class=" not in front
    assert pd.read_csv(res / "claims_all.csv").set_index("claim_id").strata["A1.a"] == STRATA


def test_old_claims_without_strata_load(tmp_path):
    old = pd.DataFrame([claim("A1.a", "holds")]).drop(columns=["kind", "p_adj"])
    assert "strata" not in old and scorecard.normalize_claims(old).strata.tolist() == [""]
    v = fake_version(tmp_path, "alpha", "smoke-0000aaaa", [claim("A1.a", "holds", kind="headline")], figure=False,
                     columns=[c for c in CLAIM_COLUMNS if c != "strata"])
    s = scorecard.load_study(v)
    assert s["claims"].strata.tolist() == [""] and s["claims"].kind.tolist() == ["headline"]


def test_page_colours_are_the_figures_colours():
    """The CSS file's verdict classes use the figures' colours (normlab.plotting.VERDICT_COLORS)."""
    from normlab.plotting import VERDICT_COLORS
    from normlab.stats import VERDICTS

    css = (Path(scorecard.__file__).parent.parent / "templates" / "scorecard.css").read_text()
    got = dict(re.findall(r"^\.([a-z-]+)\{background:(#[0-9a-f]{6})", css, flags=re.M))
    assert got == {v.replace(" ", "-"): c for v, c in VERDICT_COLORS.items()}
    assert set(VERDICTS) <= set(VERDICT_COLORS)


def test_forest_plot_of_claims():
    """normlab.plotting.forest: rows top to bottom, colour = verdict, a row not run says so, an open interval
    reaches the edge of the axes, thresholds and smallest effects as ticks, reference lines."""
    from matplotlib.colors import to_hex

    from normlab.plotting import SESOI_COLOR, VERDICT_COLORS, forest, verdict_legend

    inf, nan = float("inf"), float("nan")
    rows = pd.DataFrame([claim("A1.a", "mixed", 0.03, 0.01, 0.05, kind="headline", fail_margin=0.01),
                         claim("A1.a[tanh]", "holds", 0.2, 0.1, 0.3, fail_margin=0.01),
                         claim("A1.a[logistic]", "fails", -0.05, -0.08, -0.02, fail_margin=0.01),
                         claim("A1.b", "not run", nan, nan, nan, kind="headline"),
                         claim("A1.e", "inconclusive", 0.6, 0.2, inf)]).assign(
        threshold=["> 0", "> 0", "> 0", "", "in [-0.1, 0.1]"])
    ax = forest(rows, lines=[(0.5, {"ls": "--"})], xlim=(-0.5, 1.0))
    assert [t.get_text() for t in ax.get_yticklabels()] == list(rows.claim_id)
    bars = ax.containers
    assert [to_hex(b.lines[0].get_color()) for b in bars] == [VERDICT_COLORS[v] for v in
                                                             ("mixed", "holds", "fails", "inconclusive")]
    assert [b.lines[0].get_marker() for b in bars] == ["D", "o", "o", "o"]  # the headline claim: a diamond
    assert [b.lines[0].get_ydata()[0] for b in bars] == [0, 1, 2, 4]
    assert [t.get_text() for t in ax.texts] == ["not run"]
    arrows = [ln for ln in ax.lines if ln.get_marker() == ">"]
    assert len(arrows) == 1 and arrows[0].get_xdata()[0] == 1.0  # the open end, drawn to the edge
    ticks = [(ln.get_xdata()[0], ln.get_ydata()[0], to_hex(ln.get_color())) for ln in ax.lines if ln.get_marker() == "|"]
    black = to_hex("k")  # seaborn's theme: near black
    assert (0.01, 0, SESOI_COLOR) in ticks and (0.0, 0, black) in ticks
    assert (-0.1, 4, black) in ticks and (0.1, 4, black) in ticks  # both ends of a band
    assert any(ln.get_xdata()[0] == 0.5 and ln.get_linestyle() == "--" for ln in ax.lines)
    assert ax.get_xlim() == (-0.5, 1.0) and ax.get_ylim() == (4.5, -0.5)
    legend = verdict_legend(ax, rows.verdict)
    assert [t.get_text() for t in legend.get_texts()] == ["holds", "fails", "mixed", "inconclusive", "not run"]
    import matplotlib.pyplot as plt

    plt.close(ax.figure)


# ---------------------------------------------------------------------------- one config's pages, its own
def test_another_config_writes_its_own_pages_and_leaves_the_default_alone(two_configs):
    """results/scorecard.* belong to the config named `default`; any other config writes
    results/scorecards/<name>.* (with every config's matrix column), and the default's files are untouched."""
    from normlab.io import scorecard_paths

    t = two_configs
    scorecard.build([t.new, t.beta], t.res, configs=t.configs)  # the default config's pages
    default = scorecard_paths("default", t.res)
    assert default["html"] == t.res / "scorecard.html" and default["csv"] == t.res / "claims_all.csv"
    before = {k: (p.read_bytes(), p.stat().st_mtime_ns) for k, p in default.items()}
    df = scorecard.build([t.fash], t.res, configs=t.configs, name="fashion")
    own = scorecard_paths("fashion", t.res)
    assert own["html"] == t.res / "scorecards" / "fashion.html" and own["front"].name == "fashion_front.html"
    assert all(p.exists() for p in own.values())
    assert {k: (p.read_bytes(), p.stat().st_mtime_ns) for k, p in default.items()} == before
    md = own["md"].read_text()
    assert md.startswith("# Replication scorecard of config `fashion`") and "[scorecard.html](../scorecard.html)" in md
    assert "| study | claim | default (" in md or "| study | claim | default |" in md  # the matrix: both columns
    assert "fashion" in md.split("## Replication matrix", 1)[1].split("\n\n")[2].splitlines()[0]
    page = own["html"].read_text()
    assert "of config <code>fashion</code>" in page and "href='../scorecard.html'" in page
    assert "href='../alpha/fashion-0000aaa3/claims.csv'" in page  # links relative to results/scorecards/
    assert set(pd.read_csv(own["csv"]).version) == {"fashion-0000aaa3"} and len(df) == 2


def test_latest_belongs_to_the_default_config(tmp_path):
    """A version of another config moves `latest` only while it does not point at a default version."""
    from normlab.io import config_name, point_latest

    study = tmp_path / "alpha"
    for v in ("smoke-0000aaaa", "default-0000bbbb", "fashion-0000cccc", "default-0000dddd"):
        (study / v).mkdir(parents=True)
    latest = study / "latest"
    assert point_latest(study / "smoke-0000aaaa") and os.readlink(latest) == "smoke-0000aaaa"  # no default yet
    assert point_latest(study / "default-0000bbbb") and os.readlink(latest) == "default-0000bbbb"
    assert not point_latest(study / "fashion-0000cccc") and os.readlink(latest) == "default-0000bbbb"
    assert point_latest(study / "default-0000dddd") and os.readlink(latest) == "default-0000dddd"
    (study / "default-0000dddd").rmdir()  # the default version it named is gone: another config may take it
    assert point_latest(study / "fashion-0000cccc") and os.readlink(latest) == "fashion-0000cccc"
    assert config_name("fashion-0000cccc") == "fashion" and config_name("my-run-v2-12345678") == "my-run-v2"


# ---------------------------------------------------------------------------- how a verdict was reached
SEQ = [claim("A1.a", "holds", 0.3, 0.1, 0.5, kind="headline", p_adj=0.01, look=2, looks=3, nominal=0.0162,
             stop="decided", n_seeds=6, fail_margin=0.0123456, threshold="> 0.0909091 and in [-0.05, 0.05]"),
       claim("A1.b", "inconclusive", 0.1, -0.2, 0.4, kind="headline", look=1, looks=3, nominal=0.001,
             stop="futility", n_seeds=3),
       claim("A1.d", "inconclusive", 0.1, -0.2, 0.4, kind="headline", look=3, looks=3, nominal=0.02,
             stop="max_seeds", n_seeds=9),
       claim("A1.a[x]", "fails", 0.7503, float("nan"), float("nan"), ci_level=0.988, look=1, looks=1, stop=""),
       claim("A1.i", "holds", 0, 0, 0, kind="identity")]


def test_rows_say_how_sequential_looks_reached_the_verdict(tmp_path, monkeypatch):
    """looks > 1: each headline row and matrix cell says at which look, with how many seeds and at which nominal
    level the verdict was reached, or why it stopped undecided; fixed-design rows (looks 1, or the columns
    missing) show as before. Margins to 3 significant digits, the fail margin named so, no [n/a, n/a]."""
    monkeypatch.setattr(scorecard.load, "study_module", lambda name: {"alpha": ALPHA}.get(name))
    res = tmp_path / "results"
    v = fake_version(res, "alpha", "default-0000aaaa", SEQ, figure=False)
    scorecard.build([v], res, configs=None)
    md = (res / "scorecard.md").read_text()
    head = md.split("\n## Replication matrix\n", 1)[0]
    assert "**holds** · 6 seeds, look 2 of 3, α 0.016 (p_adj 0.01)" in head
    assert "**inconclusive** · stopped for futility at look 1 (3 seeds)" in head
    assert "**inconclusive** · ran out of max_seeds (9)" in head
    assert "(claim: > 0.0909 and in [-0.05, 0.05]; fail margin 0.0123)" in head and "0.0909091" not in md
    row_i = next(line for line in head.splitlines() if "| A1.i |" in line)
    assert "look" not in row_i and "3 seeds" in row_i  # a fixed design: as before
    matrix = md.split("\n## Replication matrix\n", 1)[1].split("\n## Studies\n", 1)[0]
    assert "**holds**](../" not in matrix and "· 6 seeds, look 2 of 3, α 0.016" in matrix
    assert "· stopped for futility at look 1 (3 seeds)" in matrix and "· ran out of max_seeds (9)" in matrix
    cells = md.split("### Cells", 1)[1]
    assert "| fail margin |" in cells and "| sesoi |" not in md
    assert "0.7503 (no interval) |  |" in cells and "n/a, n/a" not in md  # no level beside a missing interval
    page = (res / "scorecard.html").read_text()
    assert "<small class='seq'>6 seeds, look 2 of 3, α 0.016</small>" in page and "n/a, n/a" not in page
    assert "<th>fail margin</th>" in page and "<th>sesoi</th>" not in page
    front = (res / "scorecard_front.html").read_text()
    assert "<small>6 seeds, look 2 of 3, α 0.016</small>" in front
    assert "<small>· ran out of max_seeds (9)</small>" in front  # the matrix cell


def test_old_claims_without_look_columns_are_a_fixed_design(fake_studies):
    df = scorecard.build(scorecard.latest_versions(fake_studies), fake_studies)
    md = (fake_studies / "scorecard.md").read_text()
    assert len(df) and " look " not in md and "max_seeds" not in md


def test_an_old_claims_file_keeps_its_fail_margin():
    """Before 2026-12-07 the fail margin's column was named ``sesoi``: an old claims.csv is read with it renamed."""
    from normlab.scorecard.load import normalize_claims

    old = pd.DataFrame([claim("A1.a", "holds", sesoi=0.01)])
    assert normalize_claims(old)["fail_margin"].tolist() == [0.01]


def test_the_power_text_names_the_undecided_part_and_never_says_seeds_would_not_help():
    """S2.c's row: the accuracy part sits on its margin. The scorecard names that part, says that no seed count
    decides it at the observed effect while more seeds narrow it, and what a central truth would need."""
    from types import SimpleNamespace

    from normlab.scorecard.table import power_short

    basis = ("inconclusive: ... At 5 seeds TOST (test accuracy, exponential - constant + WD) shows equivalence (80% "
             "power, true difference 0) only within ±0.0667; the estimate (test accuracy, exponential - constant + "
             "WD) sits on a margin: at the observed effect no number of seeds up to 200 decides it with 80% power, "
             "though more seeds keep shrinking its interval (were the true difference 0, about 24 seeds would show "
             "equivalence)")
    r = SimpleNamespace(verdict="inconclusive", seeds_needed=float("inf"), detectable=0.0667, n_seeds=5, basis=basis)
    assert power_short(r) == ("on a margin (test accuracy, exponential - constant + WD): no seed count decides it at "
                              "the observed effect, though more seeds narrow it; ~24 seeds if the true difference "
                              "were 0")
    r = SimpleNamespace(verdict="inconclusive", seeds_needed=28.0, detectable=0.0325, n_seeds=6,
                        basis="... about 28 seeds would decide it (noisy BN - BN) (80% power at the observed effect")
    assert power_short(r) == "~28 seeds would decide it (noisy BN - BN) (detects 0.0325 at 6)"
    # the same from the power text stats.finalize writes (the scorecard reads its wording)
    from normlab import stats

    rng = np.random.default_rng(5)
    slope = stats.mean_ci([1.0 + 0.02 * rng.standard_normal(5)])
    acc = stats.mean_ci([-0.0202 + 0.024 * rng.standard_normal(5)])
    row = stats.claim_all("S2.c", "slope and accuracy", "s", "m", [(slope, dict(within=(0.8, 1.2), label="slope")),
                          (acc, dict(within=(-0.02, 0.02), label="test accuracy"))], kind="headline")
    r = stats.finalize([row]).iloc[0]
    assert r.verdict == "inconclusive" and "(test accuracy)" in power_short(r)
    assert "would not help" not in power_short(r)
