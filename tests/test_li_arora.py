"""S2 (Li & Arora): exactness of the equivalences, scale-invariant models, the study's plug-in pieces."""


import math

import pandas as pd
import pytest
import torch
import yaml
from conftest import ROOT, snakemake

from normlab import data as data_mod
from normlab.config import ConfigError, validate
from normlab.models import build_model
from normlab.stats import finalize
from normlab.studies import li_arora
from normlab.studies.li_arora import claims as la_claims
from normlab.studies.li_arora.exactness import batch_stat_outputs, check_scale_invariant, run_pair

TINY = {"arch": "mlp", "depth": 2, "width": 16, "norm": "bn_pre", "act": "relu", "scale_invariant": True, "bn_eps": 1e-30}


@pytest.fixture(scope="module")
def mnist1d(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "mnist1d.pt"
    data_mod.prepare("mnist1d", {"num_samples": 1000}, path)
    return path


def max_gap(rows, metric="weight_gap"):
    vals = [v for _, m, v in rows if m == metric]
    assert vals and all(math.isfinite(v) for v in vals), "no values, NaN or inf"
    return max(vals)


@pytest.mark.parametrize("pair,setting,steps", [
    ("exp", {"lr": 0.1, "weight_decay": 5e-4, "momentum": 0.9}, 2000),
    ("texp", {"lr": 0.3, "weight_decay": 2e-3, "momentum": 0.5}, 2000),
    ("exp", {"lr": 0.5, "weight_decay": 5e-3, "momentum": 0.0}, 500),
    ("texp", {"lr": 0.05, "weight_decay": 1e-3, "momentum": 0.95}, 500),
])
def test_float64_pair_is_exact(mnist1d, pair, setting, steps):
    """The theorem, end to end: gap < 1e-9 at every logged step from step 0 (2,000 steps for two settings)."""
    torch.set_num_threads(1)
    d = data_mod.load(mnist1d, dtype=torch.float64)
    rows = run_pair(TINY, d, setting=setting, pair=pair, dtype=torch.float64, steps=steps, batch_size=64, seed=1,
                    milestones=[steps * 7 // 20, steps * 7 // 10], factor=10.0, probe_x=d.x_test[:64], log_every=25)
    assert max(s for s, _, _ in rows) == steps
    for metric in ("weight_gap", "softmax_gap", "norm_ratio_err"):
        assert max_gap(rows, metric) < 1e-9, metric
    # and the runs really are different: B's weights grew by the predicted scalar c_t
    scale = next(v for s, m, v in rows if m == "scale" and s == steps)
    assert scale > 1.02


def test_zero_initial_buffer_breaks_exactness(mnist1d):
    """The initial momentum state is part of the equivalence: PyTorch's default zero buffer is not exact."""
    d = data_mod.load(mnist1d, dtype=torch.float64)
    rows = run_pair(TINY, d, setting={"lr": 0.1, "weight_decay": 5e-4, "momentum": 0.9}, pair="exp_zero_buffer",
                    dtype=torch.float64, steps=200, batch_size=64, seed=0, milestones=[], factor=10.0,
                    probe_x=d.x_test[:64], log_every=20)
    assert max_gap(rows) > 1e-4


def test_float32_pair_drifts_but_stays_close(mnist1d):
    d = data_mod.load(mnist1d, dtype=torch.float32)
    rows = run_pair(TINY, d, setting={"lr": 0.1, "weight_decay": 5e-4, "momentum": 0.9}, pair="exp",
                    dtype=torch.float32, steps=300, batch_size=64, seed=0, milestones=[], factor=10.0,
                    probe_x=d.x_test[:64], log_every=10)
    assert 1e-9 < max_gap(rows) < 1e-2


@pytest.mark.parametrize("spec,shape", [
    ({"arch": "mlp", "depth": 3, "width": 32}, (1, 40)),
    ({"arch": "cnn1d", "channels": [8, 8, 16, 16]}, (1, 40)),
    ({"arch": "vgg", "channels": [8, 8, 16, 16]}, (3, 16, 16)),
    ({"arch": "preresnet", "depth": 8}, (3, 16, 16)),
    ({"arch": "preresnet", "depth": 14}, (1, 40)),
])
def test_scale_invariant_models(spec, shape):
    """Every trained parameter is scale invariant: scaling all of them by c leaves the outputs unchanged,
    no trained bias or BN affine parameter exists, the output layer is fixed."""
    torch.manual_seed(0)
    m = build_model({**spec, "norm": "bn_pre", "act": "relu", "scale_invariant": True, "bn_eps": 1e-30}, shape, 10,
                    dtype=torch.float64)
    x = torch.randn(32, *shape, dtype=torch.float64)
    assert check_scale_invariant(m, x, c=5.3) < 1e-12
    trained = [n for n, p in m.named_parameters() if p.requires_grad]
    assert trained and all(n.endswith("weight") and p.dim() >= 2 for n, p in m.named_parameters() if p.requires_grad)
    out = [mod for mod in m.modules() if isinstance(mod, torch.nn.Linear)][-1]
    assert not any(p.requires_grad for p in out.parameters())
    assert not any(isinstance(mod, torch.nn.modules.batchnorm._BatchNorm) and mod.affine for mod in m.modules())
    # per-unit invariance where the architecture has it (every BN-fed layer)
    from normlab.models import bn_fed_layers

    y0 = batch_stat_outputs(m, x)
    with torch.no_grad():
        for layer in bn_fed_layers(m):
            layer.weight.mul_(torch.rand(layer.weight.shape[0], *[1] * (layer.weight.dim() - 1), dtype=torch.float64) + 0.5)
    assert (batch_stat_outputs(m, x) - y0).abs().max().item() < 1e-12


def test_not_scale_invariant_is_detected():
    m = build_model({"arch": "mlp", "depth": 2, "width": 16, "norm": "bn_post", "act": "tanh", "scale_invariant": True},
                    (1, 40), 10, dtype=torch.float64)
    with pytest.raises(ValueError, match="not scale invariant"):
        check_scale_invariant(m, torch.randn(16, 1, 40, dtype=torch.float64))


def test_preresnet32():
    torch.manual_seed(0)
    m = build_model({"arch": "preresnet", "depth": 32, "norm": "bn_pre", "act": "relu"}, (3, 32, 32), 10)
    convs = [mod for mod in m.modules() if isinstance(mod, torch.nn.Conv2d)]
    assert len(convs) == 1 + 2 * 15 + 2  # stem, 15 blocks of two, two projection shortcuts
    assert 0.45e6 < sum(p.numel() for p in m.parameters()) < 0.48e6
    assert m(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(ValueError, match="model.depth"):
        build_model({"arch": "preresnet", "depth": 30, "norm": "bn_pre", "act": "relu"}, (3, 32, 32), 10)


def study_cfg(**over):
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    cfg["studies"] = {"li_arora": {**cfg["studies"]["li_arora"], **over}}
    validate(cfg)
    return cfg["studies"]["li_arora"]


def test_variants_five_schedules_with_and_without_weight_decay():
    cfg = study_cfg(schedules=["step_wd", "texp_practical", "texp", "const_wd", "exponential"])
    v = li_arora.variants(cfg)
    assert set(v) == {"step_wd", "texp_practical", "texp", "const_wd", "exponential"}
    assert v["step_wd"]["optimizer"]["weight_decay"] == 5e-4 and v["const_wd"]["optimizer"]["weight_decay"] == 2e-3
    assert all(v[k]["optimizer"]["weight_decay"] == 0 for k in ("texp", "texp_practical", "exponential"))
    assert v["texp"]["schedule"]["weight_decay"] == v["texp_practical"]["schedule"]["weight_decay"] == 5e-4
    assert v["exponential"]["schedule"]["weight_decay"] == 2e-3
    assert v["step_wd"]["schedule"]["milestones"] == v["texp_practical"]["schedule"]["milestones"] == [750, 1125]
    # S2.c is stressed: eta grows by orders of magnitude within the run
    from normlab.schedules import build_schedule

    e = build_schedule(v["exponential"]["schedule"], cfg["lr"], v["exponential"]["optimizer"])
    assert e(cfg["train"]["steps"] - 1) / e(0) > 100


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match=r"exactness.settings\[1\]"):
        study_cfg(exactness={"settings": [{"lr": 0.1, "weight_decay": 5e-4, "momentum": 0.9},
                                          {"lr": 0.02, "weight_decay": 1e-2, "momentum": 0.99}]})
    with pytest.raises(ConfigError, match="li_arora.model.scale_invariant"):
        study_cfg(model={"arch": "mlp", "norm": "bn_pre", "act": "relu"})
    with pytest.raises(ConfigError, match="li_arora.exactness.bn_eps"):
        study_cfg(exactness={"bn_eps": 0})
    with pytest.raises(ConfigError, match="n_boot"):
        study_cfg(claims={"n_boot": 2000})


@pytest.mark.parametrize("over,keys", [
    ({"step_decay": {"milestones": [0.75, 0.5]}}, ["'step_decay.milestones'", "'train.steps'"]),
    ({"step_decay": {"milestones": [0.5, 0.5001]}}, ["'step_decay.milestones'", "'train.steps'"]),
    ({"train": {"steps": 100, "batch_size": 32, "eval_every": 200}}, ["'train.eval_every'", "'train.steps'"]),
    ({"norm_every": 5000}, ["'norm_every'", "'train.steps'"]),
    ({"exactness": {"steps": 10, "log_every": 20}}, ["'exactness.log_every'", "'exactness.steps'"]),
    ({"exactness": {"pairs": ["texp"]}}, ["'exactness.pairs'", "'exactness.dtypes'", "float32"]),
    ({"schedules": ["texp"], "exactness": {"dtypes": ["float64"], "pairs": ["texp"]}},
     ["'schedules'", "'exactness.pairs'", "no claim could run", "S2.a needs", "S2.b needs", "S2.c needs", "S2.d needs"]),
    ({"growth": {"weight_decay": 0.05}}, ["'growth.weight_decay'", "'lr'"]),
])
def test_cross_key_errors_name_both_keys(over, keys):
    with pytest.raises(ConfigError) as e:
        study_cfg(**over)
    msg = str(e.value)
    assert msg.startswith("studies.li_arora: ") and "\n" not in msg
    for k in keys:
        assert k in msg, (k, msg)


def test_check_config_clean_on_shipped_configs():
    for name in ["config", "smoke", "paper", "fashion"]:
        cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
        if name != "config":
            over = yaml.safe_load((ROOT / "config" / f"{name}.yaml").read_text())["studies"]["li_arora"]
            for k, v in over.items():
                cur = cfg["studies"]["li_arora"].get(k)
                cfg["studies"]["li_arora"][k] = {**cur, **v} if isinstance(v, dict) and isinstance(cur, dict) else v
        cfg["studies"] = {"li_arora": cfg["studies"]["li_arora"]}
        validate(cfg)
        assert li_arora.check_config(cfg["studies"]["li_arora"]) == [], name


def test_snakemake_reports_the_cross_key_error_in_one_line(workdir):
    (workdir / "bad.yaml").write_text("studies:\n  li_arora:\n    exactness: {pairs: [texp]}\n")
    p = snakemake(workdir, "-n", "li_arora", "--configfile", "bad.yaml", check=False)
    assert p.returncode != 0
    lines = [x for x in p.stderr.splitlines() if x.startswith("Config error:")]
    assert len(lines) == 1 and "'exactness.pairs'" in lines[0] and "float32" in lines[0]
    assert "Traceback" not in p.stderr and "Traceback" not in p.stdout


def synthetic_exact(tmp_path, f64_gap=1e-13, texp_gap=1e-13, f32=lambda t, seed: 1e-7 * 10 ** (t / 200)):
    rows = []
    for dtype in ("float64", "float32"):
        for pair in ("exp", "texp"):
            for seed in ((0,) if dtype == "float64" else (0, 1, 2)):
                for setting in ("s1", "s2"):
                    for step in range(0, 2001, 10):
                        g = (f64_gap if pair == "exp" else texp_gap) if dtype == "float64" else min(f32(step, seed), 0.3)
                        rows += [{"step": step, "metric": m, "value": g, "setting": setting, "pair": pair, "dtype": dtype,
                                  "momentum": 0.9, "seed": seed} for m in ("weight_gap", "softmax_gap", "norm_ratio_err")]
    path = tmp_path / "e.parquet"
    pd.DataFrame(rows).to_parquet(path)
    return {"exact": path}


def synthetic_runs(cfg, acc=None, w2_exponent=1.0, seeds=5):
    """summary and metrics as the train rule writes them: final accuracies per variant and seed, and
    weight norms with ||w||^2 = eta_t^w2_exponent (times a per-seed constant) for the exponential run."""
    import numpy as np

    from normlab.schedules import build_schedule

    acc = {"step_wd": 0.80, "texp_practical": 0.80, "texp": 0.80, "const_wd": 0.75, "exponential": 0.75, **(acc or {})}
    rng = np.random.default_rng(0)
    summ, mets = [], []
    specs = li_arora.variants(cfg)
    for v, spec in specs.items():
        lr = build_schedule(spec["schedule"], spec["lr"], spec["optimizer"])
        for seed in range(seeds):
            summ.append({"variant": v, "seed": seed, "status": "ok", "final_test_acc": acc[v] + rng.normal(0, 0.003)})
            for step in range(0, cfg["train"]["steps"] + 1, cfg["norm_every"]):
                w2 = (1 + 0.1 * seed) * (lr(step) ** w2_exponent if v == "exponential" else 1.0)
                mets += [{"variant": v, "seed": seed, "step": step, "metric": f"weight_norm/{k}", "value": (w2 / 2) ** 0.5}
                         for k in (0, 1)] + [{"variant": v, "seed": seed, "step": step, "metric": "weight_norm/2", "value": 1.0}]
    return pd.DataFrame(mets), pd.DataFrame(summ)


def test_headline_rows_match_the_declared_headlines(tmp_path):
    cfg = study_cfg(schedules=["step_wd", "texp_practical", "texp", "const_wd", "exponential"])
    m, s = synthetic_runs(cfg)
    c = finalize(li_arora.analyze(m, s, cfg, synthetic_exact(tmp_path)))
    heads = c[c.kind.isin(["headline", "identity"])].claim_id.tolist()
    assert heads == list(li_arora.HEADLINES) == ["S2.a", "S2.b", "S2.c", "S2.d"]
    # S2.a is true by construction for a correct implementation: an identity, counted apart
    assert c[c.kind == "identity"].claim_id.tolist() == ["S2.a"] == [
        cid for cid, h in li_arora.HEADLINES.items() if h.get("kind") == "identity"]
    assert set(c.kind) <= {"headline", "identity", "cell", "check"}
    assert c.claim_id.is_unique
    assert {"S2.b[exact_trajectory]", "S2.b[exact_accuracy]", "S2.d[rounding]"} <= set(c[c.kind == "check"].claim_id)
    c = c.set_index("claim_id")
    for cid in heads:
        assert c.loc[cid, "verdict"] == "holds", (cid, c.loc[cid].to_dict())
    for cid in heads:  # every headline names the dataset it departs to
        assert "MNIST-1D" in c.loc[cid, "claim"], cid


def test_verdicts_follow_the_numbers(tmp_path):
    """Each headline can fail: an inexact float64 pair (S2.a), a TEXP 5 points worse (S2.b), norms growing like
    eta^0.5 (S2.c) or an unstable exponential run (S2.c), float32 runs that never drift (S2.d)."""
    cfg = study_cfg()
    m, s = synthetic_runs(cfg, acc={"texp_practical": 0.75})
    c = finalize(li_arora.analyze(m, s, cfg, synthetic_exact(tmp_path, f64_gap=1e-6, texp_gap=1e-6,
                                                              f32=lambda t, seed: 1e-7 * (1 + 0.01 * seed))))
    c = c.set_index("claim_id")
    assert c.loc["S2.a", "verdict"] == "fails" and c.loc["S2.b[exact_trajectory]", "verdict"] == "fails"
    assert c.loc["S2.b", "verdict"] == "fails"
    assert c.loc["S2.d", "verdict"] == "fails" and c.loc["S2.d", "value"] < 0.1
    m, s = synthetic_runs(cfg, w2_exponent=0.5)
    c = finalize(li_arora.analyze(m, s, cfg, synthetic_exact(tmp_path))).set_index("claim_id")
    assert c.loc["S2.c", "value"] == pytest.approx(0.5, abs=0.01) and c.loc["S2.c", "verdict"] == "fails"
    assert c.loc["S2.c[ratio_flat]", "verdict"] == "fails"
    assert "fails: slope's" in c.loc["S2.c", "basis"]  # the part that failed, with its interval
    m, s = synthetic_runs(cfg, acc={"exponential": 0.6})
    c = finalize(li_arora.analyze(m, s, cfg, synthetic_exact(tmp_path))).set_index("claim_id")
    assert c.loc["S2.c[slope]", "verdict"] == "holds" and c.loc["S2.c", "verdict"] == "fails"
    assert "fails: test accuracy" in c.loc["S2.c", "basis"]
    # a diverged exponential run fails S2.c's "well behaved" part outright, whatever the intervals
    m, s = synthetic_runs(cfg)
    s.loc[(s.variant == "exponential") & (s.seed == 0), "status"] = "diverged"
    c = finalize(li_arora.analyze(m, s, cfg, synthetic_exact(tmp_path))).set_index("claim_id")
    assert c.loc["S2.c", "verdict"] == "fails" and "diverged exponential runs (exact, 1)" in c.loc["S2.c", "basis"]


def test_drift_rate_measures_decades_per_1000_steps(tmp_path):
    ex = la_claims.load_exact(synthetic_exact(tmp_path, f32=lambda t, seed: 1e-7 * 10 ** (t / (200 + 100 * seed))))
    dr = la_claims.drift_rates(ex, 1e-2).set_index(["pair", "setting", "seed"]).sort_index()
    # 1e-7 -> 1e-2: 5 decades in 1000 / 1500 / 2000 steps (seed 0 / 1 / 2); the start level is the median of
    # the first five logged steps (10..50: the value at step 30), the clock starts at step 10
    expect = [(5 - 30 / P) / (5 * P - 10) * 1000 for P in (200, 300, 400)]
    assert dr.rate.to_numpy() == pytest.approx(expect * 4, rel=1e-6)
    assert expect[0] == pytest.approx(4.9, abs=0.01)
    assert dr.t_sep.to_numpy() == pytest.approx([1000, 1500, 2000] * 4)


def test_paper_config_plans(workdir):
    p = snakemake(workdir, "-n", "li_arora", "--configfile", "config/paper.yaml")
    assert "li_arora_exact_float64" in p.stdout and "train" in p.stdout


def test_smoke_run(smoke_workdir):
    vdir = next((smoke_workdir / "results" / "li_arora").glob("smoke-*"))
    claims = pd.read_csv(vdir / "claims.csv")
    assert claims[claims.kind.isin(["headline", "identity"])].claim_id.tolist() == list(li_arora.HEADLINES)
    assert set(claims.verdict) <= {"holds", "fails", "inconclusive", "mixed"}  # the default smoke runs every claim
    c = claims.set_index("claim_id")
    assert c.loc["S2.a", "verdict"] == "holds" and c.loc["S2.b[exact_trajectory]", "verdict"] == "holds"
    for f in ("exactness_gap", "drift", "lr_schedules", "norms", "test_accuracy"):
        assert (vdir / "figures" / f"{f}.png").stat().st_size > 10_000
    ex = pd.read_parquet(vdir / "exactness" / "float32.parquet")
    assert ex[ex.metric == "weight_gap"].value.max() > 1e-9  # float32 drift is measured, not hidden
    assert ex.seed.nunique() == 2


@pytest.mark.parametrize("over", [
    {"exactness": {"dtypes": ["float64"]}},
    {"exactness": {"dtypes": ["float32"], "pairs": ["exp"]}},
    {"schedules": ["step_wd", "texp_practical"]},
    {"schedules": ["const_wd"], "exactness": {"dtypes": ["float64"]}},
    {"schedules": ["exponential", "const_wd"], "exactness": {"pairs": ["exp"]}},
])
def test_subsets_are_accepted(over):
    """Part of the grid is a valid config: the claims it cannot test are reported `not run`, not refused."""
    cfg = study_cfg(**over)
    assert li_arora.check_config(cfg) == []
    assert set(li_arora.variants(cfg)) == set(cfg["schedules"])
    assert set(li_arora.side_jobs(cfg)) == {f"exact_{d}" for d in cfg["exactness"]["dtypes"]}


def test_subset_claims_not_run_name_what_they_need(tmp_path):
    """float64 only and two schedules: S2.a and S2.b run; S2.c and S2.d are `not run` rows naming their needs."""
    cfg = study_cfg(schedules=["step_wd", "texp_practical"], exactness={"dtypes": ["float64"]})
    m, s = synthetic_runs(cfg)
    ex = pd.read_parquet(synthetic_exact(tmp_path)["exact"])
    ex[ex.dtype == "float64"].to_parquet(tmp_path / "f64.parquet")
    c = finalize(li_arora.analyze(m, s, cfg, {"exact_float64": tmp_path / "f64.parquet"}))
    assert c[c.kind.isin(["headline", "identity"])].claim_id.tolist() == list(li_arora.HEADLINES)
    c = c.set_index("claim_id")
    assert c.loc["S2.a", "verdict"] == "holds" and c.loc["S2.b", "verdict"] == "holds"
    assert c.loc["S2.c", "verdict"] == "not run" and c.loc["S2.d", "verdict"] == "not run"
    assert "schedule const_wd" in c.loc["S2.c", "basis"] and "schedule exponential" in c.loc["S2.c", "basis"]
    assert "exactness dtype float32" in c.loc["S2.d", "basis"]
    assert not any(i.startswith(("S2.c[", "S2.d[")) for i in c.index)
    # the other way round: float32 and the S2.c schedules only
    cfg = study_cfg(schedules=["const_wd", "exponential"], exactness={"dtypes": ["float32"], "pairs": ["exp"]})
    m, s = synthetic_runs(cfg)
    ex[ex.dtype == "float32"].to_parquet(tmp_path / "f32.parquet")
    c = finalize(li_arora.analyze(m, s, cfg, {"exact_float32": tmp_path / "f32.parquet"})).set_index("claim_id")
    assert c.loc["S2.a", "verdict"] == "not run" and c.loc["S2.a", "kind"] == "identity"
    assert "exactness dtype float64" in c.loc["S2.a", "basis"]
    assert c.loc["S2.b", "verdict"] == "not run" and "schedule texp_practical" in c.loc["S2.b", "basis"]
    assert c.loc["S2.b[exact_trajectory]", "verdict"] == "not run"
    assert c.loc["S2.c", "verdict"] == "holds" and c.loc["S2.d", "verdict"] == "holds"


def test_directional_claims_declare_a_smallest_effect(tmp_path):
    """Every directional row (above/below) shows the margin at which it fails (sesoi column)."""
    cfg = study_cfg(schedules=["step_wd", "texp_practical", "texp", "const_wd", "exponential"])
    m, s = synthetic_runs(cfg)
    c = finalize(li_arora.analyze(m, s, cfg, synthetic_exact(tmp_path)))
    directional = c[c.threshold.str.startswith((">", "<")) & (c.verdict != "not run")]
    assert len(directional) and directional.fail_margin.notna().all(), directional[["claim_id", "threshold", "fail_margin"]]


def test_drift_strata_that_disagree_make_s2d_mixed(tmp_path):
    """S2.d pools the (lr, wd, momentum) settings: one that drifts and one that stays at rounding level give
    opposite stratum verdicts, so the pooled claim is `mixed` and names each side."""
    cfg = study_cfg()
    m, s = synthetic_runs(cfg)
    path = synthetic_exact(tmp_path)["exact"]
    ex = pd.read_parquet(path)
    flat = (ex.dtype == "float32") & (ex.setting == "s2")
    ex.loc[flat, "value"] = 1e-7 * (1 + 0.01 * ex.loc[flat, "seed"])
    ex.to_parquet(path)
    c = finalize(li_arora.analyze(m, s, cfg, {"exact": path})).set_index("claim_id")
    # (the synthetic float32 frame has two pairs, so the labels name the pair too)
    assert c.loc["S2.d[exp s1]", "verdict"] == "holds" and c.loc["S2.d[exp s2]", "verdict"] == "fails"
    assert c.loc["S2.d", "verdict"] == "mixed"
    assert c.loc["S2.d", "strata"] == "holds: exp s1, texp s1; fails: exp s2, texp s2"
