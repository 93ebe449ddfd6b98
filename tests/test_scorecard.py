"""The replication scorecard and the comparison of two versions of a study."""

from __future__ import annotations

import html
import json
import re
import shutil
from pathlib import Path

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
    rows = re.findall(r"<tr><td>([^<]+)</td><td><span class=\"verdict (\w+)\">", page)
    return [(html.unescape(cid), verdict) for cid, verdict in rows]


def test_scorecard_lists_every_claim_of_every_study(smoke_workdir):
    results = smoke_workdir / "results"
    versions = present_versions(results)
    assert versions, "the smoke run left no study results"
    expected = pd.concat([pd.read_csv(v / "claims.csv").assign(study=s, version=v.name) for s, v in versions.items()])

    got = pd.read_csv(results / "claims_all.csv")
    assert list(got.columns) == scorecard.ALL_COLUMNS
    key = ["study", "version", "claim_id"]
    assert sorted(map(tuple, got[key + ["verdict"]].values)) == sorted(map(tuple, expected[key + ["verdict"]].values))
    merged = got.merge(expected, on=key, suffixes=("", "_csv"))
    assert len(merged) == len(expected)
    np.testing.assert_allclose(merged.value.astype(float), merged.value_csv.astype(float), equal_nan=True)

    md = (results / "scorecard.md").read_text()
    page = (results / "scorecard.html").read_text()
    rows = html_rows(page)
    for r in expected.itertuples():
        assert f"| {r.claim_id} | **{r.verdict}** |" in md, r.claim_id
        assert (r.claim_id, r.verdict) in rows, r.claim_id
    assert len(rows) == len(expected)
    c = expected.verdict.value_counts()
    assert f"{len(expected)} claims in {len(versions)} studies: **" + ", ".join(
        f"{c.get(v, 0)} {v}" for v in scorecard.VERDICTS) + "**" in md
    for s, v in versions.items():  # figures shown and linked, runs linked
        for png in json.loads((v / "manifest.json").read_text())["figures"]:
            if png.endswith(".png"):
                assert f"{s}/{v.name}/figures/{png}" in page
        assert f"{s}/{v.name}/runs/" in page and "summary.json" in page
    assert page.count("<img ") >= sum(len(list((v / "figures").glob("*.png"))) for v in versions.values())


def fake_version(root: Path, study: str, version: str, claims: list[dict], figure: bool = True) -> Path:
    v = root / study / version
    (v / "figures").mkdir(parents=True)
    pd.DataFrame(claims, columns=CLAIM_COLUMNS).to_csv(v / "claims.csv", index=False)
    figs = []
    if figure:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(3, 2))
        ax.plot([0, 1], [0, 1])
        fig.savefig(v / "figures" / "curve.png")
        plt.close(fig)
        figs = ["curve.png", "curve.pdf"]
    (v / "manifest.json").write_text(json.dumps({"study": study, "version": version, "figures": figs}))
    latest = root / study / "latest"
    latest.unlink(missing_ok=True)
    latest.symlink_to(version)
    return v


def claim(cid, verdict, value=0.1, lo=0.05, hi=0.2, text="x beats y"):
    return {"claim_id": cid, "claim": text, "source": "paper", "metric": "m", "value": value, "ci_low": lo,
            "ci_high": hi, "threshold": 0.0, "verdict": verdict, "n_seeds": 3}


def test_scorecard_counts_and_formats(tmp_path):
    res = tmp_path / "results"
    fake_version(res, "alpha", "smoke-0000aaaa", [claim("A1.a", "holds"), claim("A1.b[x]", "fails", -0.3, -0.4, -0.2),
                                                 claim("A1.c", "inconclusive", float("nan"), float("nan"), float("nan"),
                                                       text="a | b")])
    fake_version(res, "beta", "smoke-0000bbbb", [claim("B1.a", "holds")], figure=False)
    df = scorecard.build(scorecard.latest_versions(res), res)
    assert scorecard.counts(df) == {"holds": 2, "fails": 1, "inconclusive": 1}
    md = (res / "scorecard.md").read_text()
    assert "4 claims in 2 studies: **2 holds, 1 fails, 1 inconclusive**" in md
    assert "| [alpha](#" in md and "| [beta](#" in md
    assert "| A1.c | **inconclusive** | n/a [n/a, n/a] |" in md
    assert "a \\| b" in md  # a pipe in a claim does not break the table
    assert "| A1.b[x] | **fails** | -0.3 [-0.4, -0.2] |" in md
    page = (res / "scorecard.html").read_text()
    assert page.count("data:image/png;base64,") == 1  # alpha's one figure, embedded as a thumbnail
    assert "alpha/smoke-0000aaaa/figures/curve.png" in page
    assert html_rows(page) == [("A1.a", "holds"), ("A1.b[x]", "fails"), ("A1.c", "inconclusive"), ("B1.a", "holds")]
    out = pd.read_csv(res / "claims_all.csv")
    assert list(out.study) == ["alpha"] * 3 + ["beta"]
    assert out.figures.fillna("").tolist() == ["alpha/smoke-0000aaaa/figures/curve.png"] * 3 + [""]


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
    assert "| A1.a | holds | 0.1 [0.05, 0.2] | inconclusive | 0.1 [-0.1, 0.3] | **yes** |" in md
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
