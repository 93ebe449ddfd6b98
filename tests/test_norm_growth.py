"""S3 norm growth: the per-unit probe, the law fit, the equilibrium formula, and the smoke outputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from normlab.models import build_model
from normlab.probes import ProbeContext, build_probe
from normlab.studies import norm_growth as ng

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


def test_law_fit_recovers_k0_and_slope():
    eta, G2, s0 = 0.5, 0.02, 0.4
    k = np.arange(0, 5001, 10, dtype=float)
    # exact recursion ||w||^2_{k+1} = ||w||^2_k + eta^2 G^2 / ||w||^2_k
    w2 = [s0]
    for _ in range(int(k[-1])):
        w2.append(w2[-1] + eta ** 2 * G2 / w2[-1])
    s = np.array(w2)[k.astype(int)]
    r = ng.law_fit(k, s, np.full_like(k, G2), eta, 0.5)
    assert r["k0_pred"] == pytest.approx(s0 ** 2 / (2 * eta ** 2 * G2))
    assert r["k0_ratio"] == pytest.approx(1.0, abs=0.05)
    assert r["integrated_ratio"] == pytest.approx(1.0, abs=0.01)
    assert 0.45 < r["slope"] < 0.5
    # a growing G breaks the law: the fit departs from the prediction
    r2 = ng.law_fit(k, s * (1 + k / k[-1]), np.full_like(k, G2), eta, 0.5)
    assert r2["slope"] > 0.6


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


def test_verdict_within():
    assert ng.verdict_within(0.9, 1.1, 0.8, 1.2) == "holds"
    assert ng.verdict_within(1.3, 1.4, 0.8, 1.2) == "fails"
    assert ng.verdict_within(1.1, 1.3, 0.8, 1.2) == "inconclusive"


def test_variants_keys():
    cfg = {"variants": {"a": {"optimizer": {"name": "sgd", "momentum": 0.9}, "labels": "random"},
                        "b": {"constraints": ["unit_norm"], "model": {"scale_invariant": False}}},
           "lr": 1.0, "model": MODEL, "train": {"steps": 10}, "probe_every": 2, "track_units": 1}
    v = ng.variants(cfg)
    assert v["a"]["random_labels"] and v["a"]["keys"]["momentum"] == 0.9 and not v["a"]["keys"]["trained_out"]
    assert v["b"]["constraints"] == ["unit_norm"] and v["b"]["keys"]["trained_out"]


def test_smoke_outputs(smoke_workdir):
    vdirs = [p for p in (smoke_workdir / "results" / "norm_growth").glob("smoke-*") if p.is_dir()]
    assert len(vdirs) == 1
    c = pd.read_csv(vdirs[0] / "claims.csv")
    assert set(c.verdict) <= {"holds", "fails", "inconclusive"}
    for prefix in ["S3.a", "S3.b", "S3.c", "S3.d", "S3.e", "S3.f"]:
        assert c.claim_id.str.startswith(prefix).any(), prefix
    inv = c[c.claim_id.isin(["S3.a[bn_identity]", "S3.a[loss_invariance]", "S3.a[grad_homogeneity]",
                             "S3.a[orthogonality]", "S3.b[float64]"])]
    assert len(inv) == 5 and (inv.verdict == "holds").all()
    for f in ["norm_growth", "effective_lr", "wd_equilibrium", "unit_spread", "invariance"]:
        assert (vdirs[0] / "figures" / f"{f}.png").stat().st_size > 0
