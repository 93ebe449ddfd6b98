"""S3 norm growth: the per-unit probe, the law fit, the equilibrium formula, and the smoke outputs."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import ROOT, snakemake

from normlab.config import ConfigError, load_schema, validate
from normlab.models import build_model
from normlab.probes import ProbeContext, build_probe
from normlab.studies import norm_growth as ng
from normlab.studies.norm_growth import claims as ngc

MODEL = {"arch": "mlp", "depth": 2, "width": 16, "norm": "bn_pre", "act": "relu", "bn_eps": 1e-20,
         "scale_invariant": True}


def _step(model, opt, probe, lr, seed=0):
    torch.manual_seed(seed)
    x, y = torch.randn(64, 1, 40, dtype=torch.float64), torch.randint(10, (64,))
    opt.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    ctx = ProbeContext(0, model, opt, torch.nn.functional.cross_entropy, x, y, lr, None, {})
    before = probe.before_step(ctx)
    opt.step()
    return before, probe.after_step(ctx)


def test_units_probe_pythagoras_plain_sgd_vs_momentum():
    torch.manual_seed(0)
    model = build_model(MODEL, (1, 40), 10, dtype=torch.float64)
    probe = build_probe({"name": "units", "every": 1})
    params = [p for p in model.parameters() if p.requires_grad]
    b, a = _step(model, torch.optim.SGD(params, lr=0.5), probe, 0.5)
    assert {"units/bn0/w2_mean", "units/bn1/G2_mean", "units/out/w2_mean"} <= set(b)
    assert "units/out/G2_mean" not in b  # output layer is fixed (scale_invariant): no gradient
    assert b["units/bn0/cos_wg_max"] < 1e-10
    assert a["units/bn0/pyth_rel_w_max"] < 1e-12  # exact in float64 without momentum/WD
    assert all(f"units/bn0/unit{i}_w2" in b for i in range(4))
    # with weight decay the recursion must be off (a test that can fail: residual is large)
    model2 = build_model(MODEL, (1, 40), 10, dtype=torch.float64)
    params2 = [p for p in model2.parameters() if p.requires_grad]
    _, a2 = _step(model2, torch.optim.SGD(params2, lr=0.5, weight_decay=0.05), build_probe({"name": "units", "every": 1}), 0.5)
    assert a2["units/bn0/pyth_rel_inc_med"] > 0.1


def test_units_probe_angle_and_efflr_exact():
    torch.manual_seed(1)
    model = build_model(MODEL, (1, 40), 10, dtype=torch.float64)
    w = model[1].weight.detach().clone()
    probe = build_probe({"name": "units", "every": 1, "track": 2})
    params = [p for p in model.parameters() if p.requires_grad]
    b, a = _step(model, torch.optim.SGD(params, lr=0.3), probe, 0.3)
    w2 = (w * w).sum(1)
    assert b["units/bn0/w2_mean"] == pytest.approx(w2.mean().item(), rel=1e-12)
    assert b["units/bn0/efflr_mean"] == pytest.approx((0.3 / w2).mean().item(), rel=1e-12)
    w1 = model[1].weight.detach()
    cos = (w * w1).sum(1) / (w.norm(dim=1) * w1.norm(dim=1))
    assert a["units/bn0/angle_mean"] == pytest.approx(torch.arccos(cos.clamp(-1, 1)).mean().item(), rel=1e-5)


def test_units_probe_relative_update_size_every_layer():
    """relupd_rms = sqrt(mean_j ||w_j' - w_j||^2 / ||w_j||^2), for the BN-fed layers and the trained output layer
    alike (the S3.f measure); only with relative=True (the default spec's metrics are unchanged)."""
    torch.manual_seed(2)
    model = build_model({**MODEL, "scale_invariant": False}, (1, 40), 10, dtype=torch.float64)
    w_bn, w_out = model[1].weight.detach().clone(), model[-1].weight.detach().clone()
    probe = build_probe({"name": "units", "every": 1, "relative": True})
    params = [p for p in model.parameters() if p.requires_grad]
    _, a = _step(model, torch.optim.SGD(params, lr=0.3), probe, 0.3)
    for name, w0, w1 in (("bn0", w_bn, model[1].weight.detach()), ("out", w_out, model[-1].weight.detach())):
        want = (((w1 - w0) ** 2).sum(1) / (w0 ** 2).sum(1)).mean().sqrt().item()
        assert a[f"units/{name}/relupd_rms"] == pytest.approx(want, rel=1e-10)
    _, a = _step(model, torch.optim.SGD(params, lr=0.3), build_probe({"name": "units", "every": 1}), 0.3)
    assert not [k for k in a if "relupd" in k]


def _recursion(s0, eta, G2_of_k, K):
    """Exact per-step recursion ||w||^2_{k+1} = ||w||^2_k + eta^2 G_k^2 / ||w||^2_k (one unit)."""
    w2 = [s0]
    for t in range(K):
        w2.append(w2[-1] + eta ** 2 * G2_of_k(t) / w2[-1])
    return np.array(w2)


def test_law_fit_recovers_k0_rebased_and_local_slopes():
    eta, G2, s0, k_a = 0.5, 0.02, 0.4, 2000
    k = np.arange(0, 6001, 20, dtype=float)
    w2 = _recursion(s0, eta, lambda t: G2, 6000)[k.astype(int)]
    r = ngc.law_fit(k, w2, np.full_like(k, G2), eta, k_a)
    sa = w2[k == k_a][0]
    assert r["k0_pred"] == pytest.approx(sa ** 2 / (2 * eta ** 2 * G2))
    assert r["k0_ratio"] == pytest.approx(1.0, abs=0.01)
    assert r["slope_misfit"] < 1.01
    # re-based, the local slope is k / (2 (k0 + k - k_a)), not 0.5
    assert r["slope_meas_last"] == pytest.approx(6000 / (2 * (r["k0_fit"] + 6000 - k_a)), rel=0.05)


def test_law_fit_fails_where_G_drifts():
    eta, s0 = 0.5, 0.4
    k = np.arange(0, 6001, 20, dtype=float)
    G2 = lambda t: 0.02 * (1 + 2 * t / 6000)  # noqa: E731 (G^2 triples over the run)
    w2 = _recursion(s0, eta, G2, 6000)[k.astype(int)]
    r = ngc.law_fit(k, w2, np.array([G2(t) for t in k]), eta, 0.0)
    assert r["slope_misfit"] > 1.1  # the shape misses: a test that can fail


def test_steady_window_detection():
    rng = np.random.default_rng(0)
    k = np.arange(0, 6000, 20, dtype=float)
    flat = 1e-4 * np.where(k < 1000, 3 - 2 * k / 1000, 1.0)  # falls 3x, then steady
    g2 = flat * np.exp(rng.normal(0, 0.2, len(k)))  # per-probe noise
    assert ngc.steady_window(k, g2, 1000, 0.1, 3000, 6000) == 1000
    drift = 1e-4 * (1 + 2 * k / 6000) * np.exp(rng.normal(0, 0.2, len(k)))
    assert np.isnan(ngc.steady_window(k, drift, 1000, 0.1, 3000, 6000))
    starts, means = ngc.window_means(k, flat, 1000, 6000)
    assert list(starts) == [0, 1000, 2000, 3000, 4000, 5000] and means[-1] == pytest.approx(1e-4)


def test_wd_equilibrium_formula_matches_simulated_momentum_walk():
    """A scale-invariant random walk: gradients random, orthogonal to w, ||g|| = G/||w||."""
    rng = np.random.default_rng(0)
    eta, lam, gam, G, d = 0.1, 5e-3, 0.9, 1.0, 400
    w, v = rng.normal(size=d) * 0.1, np.zeros(d)
    norms, angles = [], []
    for t in range(20000):
        g = rng.normal(size=d)
        g -= (g @ w) / (w @ w) * w
        g *= G / np.linalg.norm(w) / np.linalg.norm(g)
        v = gam * v + g + lam * w
        w_new = w - eta * v
        if t > 10000:
            norms.append(w_new @ w_new)
            angles.append(np.arccos(np.clip(w @ w_new / np.linalg.norm(w) / np.linalg.norm(w_new), -1, 1)))
        w = w_new
    assert np.mean(norms) == pytest.approx(np.sqrt(eta / (2 * lam * (1 - gam))) * G, rel=0.05)
    assert np.sqrt(np.mean(np.square(angles))) == pytest.approx(np.sqrt(2 * eta * lam / (1 + gam)), rel=0.05)


def test_variants_keys():
    cfg = {"variants": {"a": {"optimizer": {"name": "sgd", "momentum": 0.9}, "labels": "random"},
                        "b": {"constraints": ["unit_norm"], "model": {"scale_invariant": False}}},
           "lr": 1.0, "model": MODEL, "train": {"steps": 10}, "probe_every": 2, "track_units": 1}
    cfg["variants"]["c"] = {"labels": "fresh", "steps": 20}
    v = ng.variants(cfg)
    assert v["c"]["random_labels"] == "fresh" and v["c"]["train"]["steps"] == 20 and v["c"]["keys"]["steps"] == 20
    assert v["a"]["train"]["steps"] == 10
    assert v["a"]["random_labels"] is True and v["a"]["keys"]["momentum"] == 0.9 and not v["a"]["keys"]["trained_out"]
    assert v["b"]["constraints"] == ["unit_norm"] and v["b"]["keys"]["trained_out"]


def test_smoke_outputs(smoke_workdir):
    vdirs = [p for p in (smoke_workdir / "results" / "norm_growth").glob("smoke-*") if p.is_dir()]
    assert len(vdirs) == 1
    c = pd.read_csv(vdirs[0] / "claims.csv")
    assert set(c.verdict) <= {"holds", "fails", "inconclusive", "mixed"}  # the default smoke runs every claim
    assert set(c.kind) <= {"headline", "identity", "cell", "check"}
    heads = c[c.kind.isin(["headline", "identity"])]
    assert list(heads.claim_id) == list(ng.HEADLINES), "one headline row per claim id, in order"
    # the invariance identities and the Pythagorean recursion hold by construction: identities, counted apart
    assert c[c.kind == "identity"].claim_id.tolist() == ["S3.a", "S3.b"] == [
        cid for cid, h in ng.HEADLINES.items() if h.get("kind") == "identity"]
    assert not c.claim_id.duplicated().any()
    exact_ids = ["S3.a", "S3.a[bn_identity, mlp]", "S3.a[loss_invariance, mlp]", "S3.a[grad_homogeneity, mlp]",
                 "S3.a[orthogonality, mlp]", "S3.b"]
    inv = c[c.claim_id.isin(exact_ids)]
    assert len(inv) == len(exact_ids) and (inv.verdict == "holds").all()
    for f in ["norm_growth", "g2_steady", "effective_lr", "wd_equilibrium", "unit_spread", "invariance"]:
        assert (vdirs[0] / "figures" / f"{f}.png").stat().st_size > 0


# ------------------------------------------------------------------------------ cross-key config checks

def _config(**over):
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    for k, v in over.items():
        sec = cfg["studies"]["norm_growth"]
        *path, last = k.split(".")
        for p in path:
            sec = sec.setdefault(p, {})
        sec[last] = v
    return cfg


BAD = [
    ({"track_units": 100}, ["'track_units'", "'model.width'"]),
    ({"probe_every": 5000}, ["'probe_every'", "'train.steps'"]),
    ({"train.eval_every": 4000}, ["'train.eval_every'", "'train.steps'"]),
    ({"model.scale_invariant": False}, ["'model.scale_invariant'", "'model.norm'"]),
    ({"steady.min_steps": 7000}, ["'steady.min_steps'", "'variants.sgd_fresh.steps'"]),
    ({"steady.window": 10}, ["'steady.window'", "'probe_every'"]),
    ({"claims.early": 0.9}, ["'claims.early'", "'claims.window'"]),
]


@pytest.mark.parametrize("over, words", BAD)
def test_bad_cross_reference_names_both_keys(over, words):
    with pytest.raises(ConfigError) as e:
        validate(_config(**over), load_schema())
    for w in words:
        assert w in str(e.value), (w, str(e.value))


def test_check_config_clean_on_shipped_configs():
    for name in [None, "smoke", "paper", "fashion"]:
        cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
        if name:
            over = yaml.safe_load((ROOT / "config" / f"{name}.yaml").read_text())["studies"]["norm_growth"]
            sec = cfg["studies"]["norm_growth"]
            for k, v in over.items():
                if k == "variants":
                    sec[k] = {n: {**sec[k].get(n, {}), **x} for n, x in {**sec[k], **v}.items()}
                else:
                    sec[k] = {**sec[k], **v} if isinstance(v, dict) and isinstance(sec.get(k), dict) else v
        validate(cfg, load_schema())
        assert ng.check_config(cfg["studies"]["norm_growth"]) == [], name


def test_study_package_is_light_at_import():
    """The Snakefile imports every study at parse time: the package and its modules import no numpy, pandas,
    torch or plotting library at module level."""
    code = ("import sys; import normlab.studies.norm_growth as m; from normlab.studies.norm_growth import claims, "
            "figures, variants; heavy = [x for x in ('torch', 'numpy', 'pandas', 'scipy', 'matplotlib', 'seaborn') "
            "if x in sys.modules]; assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_snakemake_reports_the_cross_key_error_in_one_line(workdir):
    (workdir / "bad.yaml").write_text("studies:\n  norm_growth:\n    track_units: 1000\n")
    p = snakemake(workdir, "-n", "norm_growth", "--configfile", "bad.yaml", check=False)
    assert p.returncode != 0
    lines = [x for x in p.stderr.splitlines() if x.startswith("Config error:")]
    assert len(lines) == 1 and "'track_units'" in lines[0] and "'model.width'" in lines[0]
    assert "Traceback" not in p.stderr and "Traceback" not in p.stdout


# ------------------------------------------------------------------------------ subsets, not run, S3.f

def _section(enabled: list[str] | None = None) -> dict:
    """The validated default section, shortened like the smoke config, with only the variants ``enabled``."""
    cfg = _config(**{"train.steps": 400, "train.eval_every": 100, "probe_every": 10, "steady.window": 50,
                     "steady.min_steps": 150, "steady.band": 0.5})
    sec = cfg["studies"]["norm_growth"]
    sec["variants"]["sgd_fresh"]["steps"] = 400
    for name in sec["variants"]:
        if enabled is not None and name not in enabled:
            sec["variants"][name]["enabled"] = False
    validate(cfg, load_schema())
    return cfg["studies"]["norm_growth"]


def _synthetic_units(sec: dict, out_growth: dict, seeds: int = 3, out_rel: dict | None = None):
    """metrics and summary as the units probe would write them: BN-fed layers follow the exact recursion
    ||w||^2 += eta^2 G^2 / ||w||^2 with G^2 steady; a trained output layer's ||w||^2 grows by out_growth[labels]
    over the run (1: flat). Relative update size per step (relupd_rms): eta G / ||w||^2 for the BN-fed layers; for a
    trained output layer out_rel[labels]: "bn" (it decays as a BN-fed layer's does) or the factor by which it
    changes over the run (1: flat, the default)."""
    rows, summ = [], []
    rng = np.random.default_rng(0)
    for v, spec in ng.variants(sec).items():
        k = spec["keys"]
        eta, K = float(k["lr"]), k["steps"]
        for seed in range(seeds):
            summ.append({"variant": v, "seed": seed, "status": "ok", **k})
            G2 = 0.05 * (1 + 0.1 * rng.normal())
            for layer in ("bn0", "bn1", "out"):
                w2 = wb = 1.0
                rel = (out_rel or {}).get(k["labels"], 1.0)
                for step in range(K + 1):
                    if layer == "out":
                        w2 = out_growth.get(k["labels"], 1.0) ** (step / K) if k["trained_out"] else 1.0
                    if step % sec["probe_every"] == 0:
                        st = {"w4_mean": w2 ** 2, "G2_mean": G2, "angle_rms": eta * G2 ** 0.5 / w2,
                              "efflr_mean": eta / w2, "efflr_q10": eta / w2, "efflr_q90": eta / w2,
                              "pyth_rel_w_max": 1e-9, "pyth_rel_inc_med": 0.5}
                        if k["trained_out"]:
                            st["relupd_rms"] = (eta * G2 ** 0.5 / (wb if layer == "out" and rel == "bn" else w2)
                                                if layer != "out" or rel == "bn" else 0.1 * rel ** (step / K))
                        rows += [{"variant": v, "seed": seed, "step": step, "metric": f"units/{layer}/{s}", "value": x}
                                 for s, x in st.items()]
                    if layer != "out":
                        w2 = w2 + eta ** 2 * G2 / w2
                    wb = wb + eta ** 2 * G2 / wb
    return pd.DataFrame(rows), pd.DataFrame(summ)


@pytest.mark.parametrize("enabled", [["sgd_fresh"], ["sgd_wd"], ["unit_norm"], ["sgd_trained_out_real"],
                                     ["sgd_real", "sgd_momentum_wd"]])
def test_subsets_of_variants_are_accepted(enabled):
    sec = _section(enabled)
    assert ng.check_config(sec) == []
    assert set(ng.variants(sec)) == set(enabled)


def test_no_variant_is_refused():
    with pytest.raises(ConfigError, match="every variant has 'enabled' false"):
        _section([])


def test_subset_reports_not_run_with_what_it_needs():
    from normlab.stats import finalize

    sec = _section(["sgd_fresh"])
    m, s = _synthetic_units(sec, {})
    c = finalize(ng.analyze(m, s, sec, None)).set_index("claim_id")
    assert c.loc["S3.c", "verdict"] == "holds", c.loc["S3.c"].to_dict()  # the exact recursion: the law holds
    # the law is judged per layer too (strata of the pooled claim), each a cell
    assert c.loc["S3.c", "strata"] == "holds: bn0, bn1" and c.loc["S3.c[bn1]", "kind"] == "cell"
    for cid in ("S3.d", "S3.e", "S3.f"):
        assert c.loc[cid, "verdict"] == "not run" and c.loc[cid, "kind"] == "headline", cid
        assert c.loc[cid, "basis"] == f"not run: needs {ngc.NEEDS[cid]}"
    assert "unit_norm" in c.loc["S3.e", "basis"] and "sgd_trained_out_real" in c.loc["S3.f", "basis"]
    assert not c.index.duplicated().any()


def test_s3f_is_scored_on_real_labels_and_can_fail():
    """The headline is the real-label run; the fresh-label run is a cell. S3.f compares like with like: the relative
    update size per step of the output layer against the BN-fed layers'. An output layer slowed exactly as the
    BN-fed layers are (real labels) fails the headline; a flat one (fresh labels) holds as a cell. eta/||w_out||^2
    (a 20x norm growth on real labels) is a cell of its own, no longer the headline's measure."""
    from normlab.stats import finalize

    sec = _section(["sgd_trained_out", "sgd_trained_out_real"])
    m, s = _synthetic_units(sec, {"real": 20.0, "fresh": 1.0}, out_rel={"real": "bn", "fresh": 1.0})
    c = finalize(ng.analyze(m, s, sec, None)).set_index("claim_id")
    assert c.loc["S3.f", "kind"] == "headline" and "sgd_trained_out_real" in c.loc["S3.f", "claim"]
    assert "real labels" in c.loc["S3.f", "claim"] and "||w' - w|| / ||w||" in c.loc["S3.f", "claim"]
    assert c.loc["S3.f", "verdict"] == "fails" and c.loc["S3.f", "value"] == pytest.approx(1.0, rel=0.05)
    assert c.loc["S3.f", "fail_margin"] == pytest.approx(1.1)
    assert c.loc["S3.f[sgd_trained_out_real, BN-fed]", "verdict"] == "holds"  # the BN-fed layers are slowed
    assert c.loc["S3.f[sgd_trained_out_real, eta/||w||^2]", "value"] == pytest.approx(1 / 20, rel=0.01)
    assert c.loc["S3.f[sgd_trained_out]", "kind"] == "cell"
    assert c.loc["S3.f[sgd_trained_out]", "verdict"] == "holds"
    assert c.loc["S3.f[sgd_trained_out, output]", "verdict"] == "holds"  # flat: not slowed at all
    # without the real-label run the headline is not run; the fresh-label run stays a cell
    sec = _section(["sgd_trained_out"])
    m, s = _synthetic_units(sec, {"fresh": 1.0})
    c = finalize(ng.analyze(m, s, sec, None)).set_index("claim_id")
    assert c.loc["S3.f", "verdict"] == "not run" and c.loc["S3.f[sgd_trained_out]", "kind"] == "cell"


def test_directional_claims_declare_a_smallest_effect():
    """Every directional row (above/below) shows the margin at which it fails (sesoi column)."""
    from normlab.stats import finalize

    sec = _section(None)
    m, s = _synthetic_units(sec, {"real": 20.0})
    c = finalize(ng.analyze(m, s, sec, None))
    assert {"S3.c", "S3.d", "S3.e", "S3.f"} <= set(c[c.kind == "headline"].claim_id)
    directional = c[c.threshold.str.startswith((">", "<")) & (c.verdict != "not run")]
    assert len(directional) > 10 and directional.fail_margin.notna().all(), directional[["claim_id", "fail_margin"]]
