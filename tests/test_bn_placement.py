"""S4 (BN placement): headline ids, activation strata (mixed), claims not run on subsets of the norms, cross-key
config checks, and the pooled estimate on synthetic runs."""

from __future__ import annotations

import copy
import inspect

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import ROOT, snakemake

from normlab.config import ConfigError, load_schema, validate
from normlab.stats import finalize, mean_ci
from normlab.studies import bn_placement as bnp
from normlab.studies.bn_placement import claims as bnc


def full_config(**over) -> dict:
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    cfg["studies"]["bn_placement"].update(copy.deepcopy(over))
    return cfg


def study_cfg(**over) -> dict:
    cfg = full_config(**over)
    validate(cfg, load_schema())
    return cfg["studies"]["bn_placement"]


def synthetic(gap_acc, gap_steps: float, gap_none: float, seeds=range(5), noise=0.01, seed=0,
              norms=("bn_pre", "bn_post", "none"), acts=("relu", "tanh"), lrs=(0.1, 0.5)):
    """Metrics and summary as the engine writes them: bn_pre = bn_post + gap_acc (test accuracy, per cell a
    different base level; gap_acc a number or {activation: gap}), bn_pre reaches the target gap_steps steps after
    bn_post, none = bn_pre - gap_none. Only the variants of ``norms``."""
    rng = np.random.default_rng(seed)
    rows, summ = [], []
    cells = [(a, lr) for a in acts for lr in lrs]
    for ci, (act, lr) in enumerate(cells):
        base = 0.6 + 0.05 * ci
        gap = gap_acc[act] if isinstance(gap_acc, dict) else gap_acc
        for s in seeds:
            seed_effect = 0.02 * rng.standard_normal()  # shared by the variants of one seed: pairing helps
            for norm, acc, reach in [("bn_pre", base + gap, 500 + gap_steps), ("bn_post", base, 500),
                                     ("none", base + gap - gap_none, 900)]:
                if norm not in norms:
                    continue
                variant = f"{norm}-{act}-lr{lr:g}"
                a = acc + seed_effect + noise * rng.standard_normal()
                step = int(round(reach / 100.0)) * 100
                for t in range(0, 1001, 100):
                    rows.append({"step": t, "metric": "train_acc", "value": 0.9 if t >= step else 0.5,
                                 "variant": variant, "seed": s})
                summ.append({"variant": variant, "seed": s, "norm": norm, "act": act, "lr": lr, "status": "ok",
                             "final_test_acc": a})
    return pd.DataFrame(rows), pd.DataFrame(summ)


def cfg_small():
    return study_cfg(activations=["relu", "tanh"], lrs=[0.1, 0.5], train={"steps": 1000, "batch_size": 64,
                                                                          "eval_every": 100})


def test_headline_ids_match_declarations():
    m, s = synthetic(0.05, -200, 0.1)
    claims = finalize(bnp.analyze(m, s, cfg_small()))
    heads = claims[claims.kind == "headline"]
    assert list(heads.claim_id) == list(bnp.HEADLINES)
    assert set(claims.kind) == {"headline", "cell"}
    # per claim: the pooled row, one row per activation (its strata), one per (activation, lr) cell
    assert (claims[claims.kind == "cell"].claim_id.str.match(r"^S4\.[abc]\[(relu|tanh)(, lr=0\.[15])?\]$")).all()
    assert len(claims) == 3 * (1 + 2 + 4)
    assert set(claims.claim_id) >= {"S4.a[relu]", "S4.a[tanh]", "S4.b[relu]", "S4.c[tanh]"}
    for h in heads.itertuples():  # the headline text names the setup's departures
        assert "pooled over 4" in h.claim and "mnist1d" in h.claim and "ImageNet" in h.claim
    for v in bnp.HEADLINES.values():
        assert v["statement"] and v["departures"] and v["figures"]


def test_verdicts_follow_the_data():
    m, s = synthetic(0.05, -200, 0.1)
    c = finalize(bnp.analyze(m, s, cfg_small())).set_index("claim_id")
    assert c.loc["S4.a", "verdict"] == "holds" and c.loc["S4.a", "value"] == pytest.approx(0.05, abs=0.01)
    assert c.loc["S4.b", "verdict"] == "holds" and c.loc["S4.b", "value"] == pytest.approx(-200)
    assert c.loc["S4.c", "verdict"] == "holds" and c.loc["S4.c", "value"] == pytest.approx(0.1, abs=0.01)
    m, s = synthetic(-0.05, 300, -0.1)
    c = finalize(bnp.analyze(m, s, cfg_small())).set_index("claim_id")
    assert (c.loc[["S4.a", "S4.b", "S4.c"], "verdict"] == "fails").all()
    m, s = synthetic(0.0, 0, 0.0, noise=0.05)
    c = finalize(bnp.analyze(m, s, cfg_small())).set_index("claim_id")
    assert c.loc["S4.a", "verdict"] == "inconclusive"
    # undecided: what more seeds would buy, from the observed spread
    assert c.loc["S4.a", "seeds_needed"] > 5 and c.loc["S4.a", "detectable"] > 0
    assert "seeds would decide it" in c.loc["S4.a", "basis"] or "would not help" in c.loc["S4.a", "basis"]


def test_a_true_null_fails():
    """Every claim is directional with a smallest effect of interest (1 point of accuracy, 5% of the step budget):
    no difference at all, measured precisely, fails instead of staying inconclusive for ever. (Each claim's strata
    are one family: a stratum holds by chance with probability at most alpha, and the claim is then 'mixed'; this
    draw has none, the rate is simulated in test_stats.)"""
    m, s = synthetic(0.0, 0, 0.0, noise=0.002, seeds=range(10), seed=1)
    s["final_test_acc"] += np.random.default_rng(1).normal(0, 1e-3, len(s))  # the steps to target: all equal
    c = finalize(bnp.analyze(m, s, cfg_small())).set_index("claim_id")
    for cid in ("S4.a", "S4.c"):
        assert c.loc[cid, "verdict"] == "fails" and c.loc[cid, "fail_margin"] == 0.01, cid
        assert c.loc[cid, "ci_high"] < 0.01 and "smallest effect of interest 0.01" in c.loc[cid, "claim"]
        assert c.loc[cid, "strata"] == "fails: relu, tanh"
    # equal steps on every seed: a tie on the evaluation grid; with mean_ci's resolution= each value carries the
    # grid's rounding error (not an exact zero-variance value), and the interval still rules out the smallest
    # speed-up of interest: fails
    sesoi = bnc.smallest_effects(cfg_small())["S4.b"]
    assert c.loc["S4.b", "verdict"] == "fails" and c.loc["S4.b", "fail_margin"] == -sesoi
    if "resolution" in inspect.signature(mean_ci).parameters:
        assert "zero variance" not in c.loc["S4.b", "basis"] and np.isfinite(c.loc["S4.b", "p_adj"])
    else:
        assert "zero variance" in c.loc["S4.b", "basis"] and np.isnan(c.loc["S4.b", "p_adj"])


def test_steps_to_target_carry_the_evaluation_grid(monkeypatch):
    """S4.b's estimate passes resolution=eval_every (steps, the estimate's scale) to mean_ci where it accepts it;
    S4.a and S4.c (continuous accuracies) pass none."""
    import normlab.stats as st

    seen = []

    def fake(groups_a, groups_b=None, *, ci=0.95, paired=False, log=False, resolution=None):
        seen.append(resolution)
        return mean_ci(groups_a, groups_b, ci=ci, paired=paired, log=log)

    monkeypatch.setattr(st, "mean_ci", fake)
    m, s = synthetic(0.05, -200, 0.1)
    bnp.analyze(m, s, cfg_small())
    assert set(seen) == {None, 100}
    assert bnc.resolutions(cfg_small()) == {"S4.a": None, "S4.b": 100, "S4.c": None}


def test_pooled_estimate_is_the_stratified_paired_mean():
    m, s = synthetic(0.05, -200, 0.1, seed=3)
    runs = bnp.claims.run_table(m, s, cfg_small())
    cells = sorted({(r.act, r.lr) for r in runs.itertuples()})
    est = bnp.claims.pooled(runs, "bn_pre", "bn_post", "test_acc", cells)
    per_cell = []
    for act, lr in cells:
        a = runs[(runs.norm == "bn_pre") & (runs.act == act) & (runs.lr == lr)].sort_values("seed").test_acc.to_numpy()
        b = runs[(runs.norm == "bn_post") & (runs.act == act) & (runs.lr == lr)].sort_values("seed").test_acc.to_numpy()
        per_cell.append(a - b)
    assert est.value == pytest.approx(np.mean([d.mean() for d in per_cell]))
    se = np.sqrt(sum(d.var(ddof=1) / len(d) for d in per_cell)) / len(per_cell)
    assert est.se == pytest.approx(se)
    v = np.array([d.var(ddof=1) / len(d) for d in per_cell])  # Welch-Satterthwaite over the strata
    assert est.df == pytest.approx(v.sum() ** 2 / (v**2 / 4).sum())
    # pairing removes the shared per-seed effect: narrower than the unpaired interval
    ga, gb = bnp.claims.paired_groups(runs, "bn_pre", "bn_post", "test_acc", cells)
    assert est.high - est.low < mean_ci(ga, gb).high - mean_ci(ga, gb).low
    # an unmatched seed is dropped from the pair, not paired with another seed
    runs2 = runs[~((runs.norm == "bn_post") & (runs.seed == 4))]
    ga, gb = bnp.claims.paired_groups(runs2, "bn_pre", "bn_post", "test_acc", cells)
    assert all(len(x) == 4 for x in ga + gb)


def test_diverged_runs_count_as_chance_and_never_reach():
    m, s = synthetic(0.05, -200, 0.1)
    s.loc[0, "status"] = "diverged"
    runs = bnp.claims.run_table(m, s.assign(final_test_acc=s.final_test_acc.where(s.status == "ok")), cfg_small())
    r = runs.iloc[0]
    assert r.test_acc == 0.1


def test_steps_to_target_censored_at_budget():
    m, s = synthetic(0.05, -200, 0.1)
    m = m[~((m.variant == "none-relu-lr0.1") & (m.value > 0.8))]
    runs = bnp.claims.run_table(m, s, cfg_small())
    assert (runs[runs.variant == "none-relu-lr0.1"].steps_to_target == 1001).all()


BAD = [
    ({"norms": ["none", "bn_post"]}, ["'norms'", "no claim of S4 could run", "bn_pre"]),
    ({"train": {"steps": 100, "batch_size": 128, "eval_every": 200}}, ["'train.eval_every' 200", "'train.steps' 100"]),
    ({"seeds": 1}, ["'seeds' 1", "'claims'"]),
    ({"claims": {"acc_target": 1.0}}, ["studies.bn_placement.claims.acc_target"]),
]


@pytest.mark.parametrize("over, words", BAD)
def test_bad_cross_reference_names_both_keys(over, words):
    with pytest.raises(ConfigError) as e:
        validate(full_config(**over), load_schema())
    for w in words:
        assert w in str(e.value)


def test_check_config_clean_on_shipped_configs():
    assert bnp.check_config(study_cfg()) == []
    for name in ["smoke", "paper"]:
        cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
        over = yaml.safe_load((ROOT / "config" / f"{name}.yaml").read_text())["studies"]["bn_placement"]
        for k, v in over.items():
            cfg["studies"]["bn_placement"][k] = {**cfg["studies"]["bn_placement"][k], **v} if isinstance(v, dict) else v
        validate(cfg, load_schema())
        assert bnp.check_config(cfg["studies"]["bn_placement"]) == []


def test_snakemake_reports_the_cross_key_error_in_one_line(workdir):
    (workdir / "bad.yaml").write_text("studies:\n  bn_placement:\n    norms: [none, bn_post]\n")
    p = snakemake(workdir, "-n", "bn_placement", "--configfile", "bad.yaml", check=False)
    assert p.returncode != 0
    lines = [x for x in p.stderr.splitlines() if x.startswith("Config error:")]
    assert len(lines) == 1 and "'norms'" in lines[0] and "no claim" in lines[0]
    assert "Traceback" not in p.stderr and "Traceback" not in p.stdout


def test_activations_are_strata_and_opposite_verdicts_are_mixed():
    """'Holds for tanh, not for ReLU': the pooled S4.a is mixed, its strata column names each side, and each
    activation is its own cell row (pooled over its lrs)."""
    m, s = synthetic({"tanh": 0.08, "relu": 0.0}, -200, 0.1, noise=0.002, seeds=range(8))
    c = finalize(bnp.analyze(m, s, cfg_small())).set_index("claim_id")
    assert c.loc["S4.a[tanh]", "verdict"] == "holds" and c.loc["S4.a[relu]", "verdict"] == "fails"
    assert c.loc["S4.a", "verdict"] == "mixed"
    assert "holds: tanh" in c.loc["S4.a", "strata"] and "fails: relu" in c.loc["S4.a", "strata"]
    assert "Welch" in c.loc["S4.a", "basis"]
    assert c.loc["S4.a[tanh]", "value"] == pytest.approx(0.08, abs=0.01)
    assert c.loc["S4.a[tanh]", "kind"] == "cell" and c.loc["S4.a[tanh]", "fail_margin"] == 0.01
    assert "strata: activation" in c.loc["S4.a", "claim"]
    # strata that agree keep the pooled verdict
    assert c.loc["S4.c", "verdict"] == "holds" and c.loc["S4.c", "strata"] == "holds: relu, tanh"
    assert c.loc["S4.b", "verdict"] == "holds"


def test_one_lr_per_activation_has_no_duplicate_cells_and_one_activation_no_strata():
    cfg = study_cfg(activations=["relu", "tanh"], lrs=[0.1])
    m, s = synthetic(0.05, -200, 0.1, lrs=(0.1,))
    ids = list(finalize(bnp.analyze(m, s, cfg)).claim_id)
    assert ids == [f"S4.{x}{y}" for x in "abc" for y in ("", "[relu]", "[tanh]")]
    cfg = study_cfg(activations=["tanh"], lrs=[0.1, 0.5])
    m, s = synthetic(0.05, -200, 0.1, acts=("tanh",))
    c = finalize(bnp.analyze(m, s, cfg))
    assert list(c.claim_id) == [f"S4.{x}{y}" for x in "abc" for y in ("", "[tanh, lr=0.1]", "[tanh, lr=0.5]")]
    assert (c.strata.fillna("") == "").all()


@pytest.mark.parametrize("norms, ran", [
    (["none", "bn_pre"], {"S4.c"}),
    (["bn_pre", "bn_post"], {"S4.a", "S4.b"}),
    (["bn_post", "bn_pre"], {"S4.a", "S4.b"}),
    (["none", "bn_pre", "bn_post"], {"S4.a", "S4.b", "S4.c"}),
])
def test_subsets_of_the_norms_run_and_the_rest_is_not_run(norms, ran):
    """A config without none, or with only one of bn_pre / bn_post, is accepted; the claims whose two variants
    it lacks are 'not run' rows naming what they need; the others are judged as usual."""
    cfg = study_cfg(norms=norms, activations=["relu", "tanh"], lrs=[0.1, 0.5])
    assert bnp.check_config(cfg) == []
    assert {v["keys"]["norm"] for v in bnp.variants(cfg).values()} == set(norms)
    m, s = synthetic(0.05, -200, 0.1, norms=norms)
    c = finalize(bnp.analyze(m, s, cfg))
    heads = c[c.kind == "headline"].set_index("claim_id")
    assert list(heads.index) == list(bnp.HEADLINES)
    for cid, r in heads.iterrows():
        if cid in ran:
            assert r.verdict == "holds", cid
        else:
            need = "bn_post" if cid != "S4.c" else "none"
            assert r.verdict == "not run" and np.isnan(r.value) and f"needs norms bn_pre and {need}" in r.basis, cid
            assert not c.claim_id.str.startswith(f"{cid}[").any()  # no cells of a claim not run
    assert list(c.columns) == list(finalize(bnp.analyze(*synthetic(0.05, -200, 0.1), cfg_small())).columns)


def test_every_figure_is_written_for_a_subset(tmp_path):
    """Without bn_post, S4.a-b are not run: the forest plot says so in their panels; every figure is written."""
    cfg = study_cfg(norms=["none", "bn_pre"], activations=["relu", "tanh"], lrs=[0.1, 0.5])
    m, s = synthetic(0.05, -200, 0.1, norms=["none", "bn_pre"])
    m = m.merge(s[["variant", "seed", "norm", "act", "lr"]], on=["variant", "seed"])  # the run's keys, as the engine
    m = pd.concat([m, m[m.metric == "train_acc"].assign(metric="test_acc")])
    claims = finalize(bnp.analyze(m, s, cfg))
    written = bnp.figures(m, s, claims, cfg, tmp_path)
    assert {p.name for p in written} == {f"{f.stem}.{e}" for f in bnp.FIGURES for e in ("png", "pdf")}


@pytest.mark.parametrize("norms", [["none", "bn_pre"], ["bn_pre", "bn_post"]])
def test_subsets_pass_the_config_validation(norms):
    validate(full_config(norms=norms), load_schema())  # no ConfigError


def test_speed_sesoi_is_never_finer_than_the_evaluation_grid():
    """S4.b's smallest speed-up of interest is at least one evaluation interval (steps to target are read on that
    grid: a smaller speed-up cannot be seen); the default is 10% of the budget, 100 of 1,000 steps = eval_every."""
    assert study_cfg()["claims"]["speed_min"] == 0.1
    cfg = cfg_small()
    assert bnc.smallest_effects(cfg)["S4.b"] == 100 and "raised to the evaluation grid" not in bnc.speed_why(cfg)
    cfg["claims"]["speed_min"] = 0.05
    assert bnc.smallest_effects(cfg)["S4.b"] == 100 and "raised to the evaluation grid" in bnc.speed_why(cfg)
    cfg["claims"]["speed_min"] = 0.2
    assert bnc.smallest_effects(cfg)["S4.b"] == 200
