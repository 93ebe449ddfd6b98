"""S1 (Santurkar et al. 2018): noisy BN's distribution, the ICS and landscape probes, the study."""

from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from scipy import stats
from torch import nn

from normlab.models import build_model, weight_layers
from normlab.models.layers import Noise
from normlab.probes import ProbeContext, build_probe
from normlab.probes.ics import params_before

torch.set_num_threads(1)
P = dict(n_mu=0.5, n_sigma=1.25, r_mu=0.1, r_sigma=0.1)


# ------------------------------------------------------------------------------------------------
# Noisy BN (Algorithm 1)


def _unit_view(t):
    """(N, C, ...) -> (C, N * positions): every value of one unit, samples and positions pooled."""
    return t.transpose(0, 1).reshape(t.shape[1], -1)


@pytest.mark.parametrize("shape", [(4000, 300), (500, 300, 8), (100, 300, 6, 6)])
def test_noise_moments_per_step_and_per_sample(shape):
    """mu_j ~ U(-n_mu, n_mu), sigma_j ~ U(1, n_sigma) per unit and step; m_ij ~ U(mu_j +- r_mu),
    s_ij ~ N(sigma_j, r_sigma) per sample (and per position for convolutions)."""
    g = torch.Generator().manual_seed(0)
    s, m = Noise(**P).sample(shape, "cpu", torch.float64, generator=g)
    s, m = _unit_view(s), _unit_view(m)
    n = s.shape[1]
    # per unit: m is uniform of half-width r_mu around mu_j (midrange estimates mu_j)
    mu_hat = (m.max(1).values + m.min(1).values) / 2
    width = m.max(1).values - m.min(1).values
    assert width.max() <= 2 * P["r_mu"] + 1e-12 and width.min() > 2 * P["r_mu"] * 0.95
    assert torch.allclose(m.std(1), torch.full_like(mu_hat, P["r_mu"] / 3 ** 0.5), rtol=0.15)
    # per unit: s is normal with std r_sigma around sigma_j
    sigma_hat = s.mean(1)
    assert torch.allclose(s.std(1), torch.full_like(sigma_hat, P["r_sigma"]), rtol=0.15)
    z = ((s - sigma_hat[:, None]) / P["r_sigma"]).flatten()[:20000].numpy()
    assert stats.kstest(z, "norm").pvalue > 1e-3
    # across units: mu_j and sigma_j uniform on their ranges (up to the estimation error)
    assert mu_hat.abs().max() <= P["n_mu"] + 0.01
    assert stats.kstest(mu_hat.numpy(), "uniform", args=(-P["n_mu"], 2 * P["n_mu"])).pvalue > 1e-3
    tol = 5 * P["r_sigma"] / n ** 0.5
    assert sigma_hat.min() >= 1 - tol and sigma_hat.max() <= P["n_sigma"] + tol
    assert stats.kstest(sigma_hat.numpy(), "uniform", args=(1, P["n_sigma"] - 1)).pvalue > 1e-3
    # per sample: values vary within a unit (not one draw per unit), and positions are separate draws
    if len(shape) > 2:
        full = Noise(**P).sample(shape, "cpu", torch.float64, generator=g)[1]
        assert (full[:, 0, 0] != full[:, 0, 1]).all()


def test_noise_fresh_every_step_and_off_at_eval():
    noise = Noise(**P)
    x = torch.randn(64, 16)
    a, b = noise(x), noise(x)
    mu_a = (_unit_view(a - x).mean(1))
    assert not torch.allclose(a, b) and not torch.allclose(mu_a, _unit_view(b - x).mean(1), atol=0.05)
    torch.manual_seed(3)
    out = noise(x)
    torch.manual_seed(3)
    s, m = noise.sample(x.shape, x.device, x.dtype)
    assert torch.equal(out, s * x + m)  # a_ij <- s_ij * a_ij + m_ij
    noise.eval()
    assert torch.equal(noise(x), x)


@pytest.mark.parametrize("arch", [{"arch": "mlp", "depth": 2, "width": 8}, {"arch": "cnn1d", "channels": [4, 4]}])
def test_noisy_bn_placement_and_eval(arch):
    """noisy_bn = BN, then noise, then the activation; noise_only has no BN; no noise at evaluation."""
    nb = build_model({**arch, "norm": "noisy_bn", "act": "relu"}, (1, 12), 3)
    no = build_model({**arch, "norm": "noise_only", "act": "relu"}, (1, 12), 3)
    mods = [type(m).__name__ for m in nb.modules() if not list(m.children())]
    i = mods.index("Noise")
    assert mods[i - 1].startswith("BatchNorm") and mods[i + 1] == "ReLU"
    assert not any(m.startswith("BatchNorm") for m in (type(x).__name__ for x in no.modules()))
    bn = build_model({**arch, "norm": "bn_pre", "act": "relu"}, (1, 12), 3)
    with torch.no_grad():  # same weights (Noise holds none, so parameters and buffers line up)
        for a, b in zip(list(bn.parameters()) + list(bn.buffers()), list(nb.parameters()) + list(nb.buffers())):
            a.copy_(b)
    x = torch.randn(10, 1, 12)
    nb.eval(), bn.eval()
    assert torch.equal(nb(x), bn(x))


# ------------------------------------------------------------------------------------------------
# ICS probe (Definition 2.1)


def _ctx(model, lr=0.1, momentum=0.0, seed=0, n=32, d=12, classes=4):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(n, 1, d, generator=g), torch.randint(classes, (n,), generator=g)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    model.train()
    opt.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    return ProbeContext(0, model, opt, F.cross_entropy, x, y, lr, None, {"constraints": []}, loss.detach())


def _mlp(norm, depth=4, seed=0):
    torch.manual_seed(seed)
    return build_model({"arch": "mlp", "depth": depth, "width": 16, "norm": norm, "act": "relu"}, (1, 12), 4)


@pytest.mark.parametrize("norm", ["none", "bn_pre", "noisy_bn"])
def test_ics_zero_when_earlier_update_is_zero(norm):
    model = _mlp(norm)
    probe = build_probe({"name": "ics", "every": 1, "layers": [0, 2, -1]})
    out = probe.before_step(_ctx(model, lr=0.0))
    for i in (0, 2, 4):
        assert out[f"ics/l2/{i}"] == 0.0
        assert out[f"ics/cos/{i}"] == pytest.approx(1.0, abs=1e-12)
    # lr > 0 but the earlier layers' gradient (hence update) zeroed: G' = G exactly, though later layers move
    model = _mlp(norm)
    ctx = _ctx(model, lr=0.5)
    for p in params_before(model, weight_layers(model)[2]):
        p.grad.zero_()
    out = probe.before_step(ctx)
    assert out["ics/l2/2"] == 0.0 and out["ics/l2/4"] > 0 and out["ics/l2/0"] == 0.0


def test_ics_matches_definition_by_hand():
    """G' = grad of W_i on the same batch after layers 1..i-1 take their SGD (momentum) step."""
    model = _mlp("bn_pre", seed=1)
    ctx = _ctx(model, lr=0.3, momentum=0.9, seed=1)
    # give the optimizer a momentum history so its step is not just -lr * grad
    ctx.optimizer.state_dict()
    for p in model.parameters():
        ctx.optimizer.state[p]["momentum_buffer"] = torch.randn_like(p) * 0.1
    ref = copy.deepcopy(model)
    wl, wl_ref = weight_layers(model), weight_layers(ref)
    i = 3
    out = build_probe({"name": "ics", "every": 1, "layers": [i]}).before_step(ctx)
    # by hand
    g = torch.autograd.grad(F.cross_entropy(ref(ctx.x), ctx.y), wl_ref[i].weight)[0]
    with torch.no_grad():
        for p, p_ref in zip(params_before(model, wl[i]), params_before(ref, wl_ref[i])):
            buf = 0.9 * ctx.optimizer.state[p]["momentum_buffer"] + p.grad
            p_ref.sub_(0.3 * buf)
    g2 = torch.autograd.grad(F.cross_entropy(ref(ctx.x), ctx.y), wl_ref[i].weight)[0]
    assert out[f"ics/l2/{i}"] == pytest.approx((g - g2).norm().item(), rel=1e-4)
    assert out[f"ics/cos/{i}"] == pytest.approx(F.cosine_similarity(g.flatten(), g2.flatten(), 0).item(), abs=1e-5)
    assert out[f"ics/l2/{i}"] > 0


# ------------------------------------------------------------------------------------------------
# Landscape probe


def test_landscape_on_a_quadratic():
    """For L(w) = mean((Xw - y)^2)/2 the gradient is Lipschitz along g with beta = ||Hg|| / ||g||."""
    torch.manual_seed(0)
    x, y = torch.randn(50, 6, dtype=torch.float64), torch.randn(50, 1, dtype=torch.float64)
    model = nn.Sequential(nn.Linear(6, 1, bias=False)).double()
    loss_fn = lambda out, t: 0.5 * ((out - t) ** 2).mean()
    opt = torch.optim.SGD(model.parameters(), lr=0.2)
    ctx = ProbeContext(0, model, opt, loss_fn, x, y, 0.2, None, {}, None)
    out = build_probe({"name": "landscape", "every": 1, "scales": [0.5, 4.0], "n": 5}).before_step(ctx)
    w = model[0].weight.detach().flatten()
    H = x.T @ x / len(x)
    g = H @ w - x.T @ y.flatten() / len(x)
    assert out["landscape/beta"] == pytest.approx(((H @ g).norm() / g.norm()).item(), rel=1e-9)
    losses = [loss_fn(x @ (w - a * 0.2 * g)[:, None], y).item() for a in np.linspace(0.5, 4.0, 5)]
    assert out["landscape/loss_range"] == pytest.approx(max(losses) - min(losses), rel=1e-9)
    assert out["landscape/grad_diff_max"] == pytest.approx((4.0 * 0.2 * H @ g).norm().item(), rel=1e-9)
    assert out["landscape/grad_diff_min"] == pytest.approx((0.5 * 0.2 * H @ g).norm().item(), rel=1e-9)
    assert torch.equal(model[0].weight.detach().flatten(), w)


def _data_file(tmp_path):
    g = torch.Generator().manual_seed(0)
    blob = {"x_train": torch.randn(256, 1, 12, generator=g), "y_train": torch.randint(4, (256,), generator=g),
            "x_test": torch.randn(64, 1, 12, generator=g), "y_test": torch.randint(4, (64,), generator=g),
            "n_classes": 4, "name": "synthetic"}
    path = tmp_path / "data.pt"
    torch.save(blob, path)
    return path


def test_probes_leave_training_bit_identical(tmp_path):
    from normlab.train import run

    base = {"study": "t", "version": "v", "variant": "x", "seeds": [0], "data": str(_data_file(tmp_path)),
            "model": {"arch": "mlp", "depth": 3, "width": 16, "norm": "noisy_bn", "act": "relu"},
            "optimizer": {"name": "sgd", "momentum": 0.9}, "lr": 0.1, "device": "cpu",
            "train": {"steps": 30, "batch_size": 32, "eval_every": 10, "log_every": 1},
            "wandb": {"mode": "disabled"}}
    probes = [{"name": "landscape", "every": 3, "n": 3}, {"name": "ics", "every": 4, "layers": [1, 2]},
              {"name": "unit_activations", "every": 1, "at": [0, 7], "layer": 1}]
    run({**base, "probes": []}, tmp_path / "plain")
    run({**base, "probes": probes}, tmp_path / "probed")
    a = pd.read_parquet(tmp_path / "plain/seed0/metrics.parquet")
    b = pd.read_parquet(tmp_path / "probed/seed0/metrics.parquet")
    assert b.metric.str.startswith("landscape/").any() and b.metric.str.startswith("unit_act/").any()
    b = b[~b.metric.str.startswith(("landscape/", "ics/", "unit_act/"))]
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True), check_exact=True)


# ------------------------------------------------------------------------------------------------
# The study: variants, claims logic, DLN, and the smoke run through Snakemake


def _cfg():
    from normlab.config import validate

    c = {"studies": {"santurkar": {"seeds": 3, "lrs": [0.1, 0.5], "claims": {"n_boot": 200}}}}
    return validate(c)["studies"]["santurkar"]


def test_variants_grid_and_probes():
    from normlab.studies.santurkar import variants

    cfg = _cfg()
    v = variants(cfg)
    assert len(v) == len(cfg["nets"]) * 4 * 2
    spec = v["mlp-noisy_bn-lr0.5"]
    assert spec["model"]["norm"] == "noisy_bn" and spec["model"]["noise"] == P and spec["lr"] == 0.5
    assert {p["name"] for p in v["mlp-none-lr0.1"]["probes"]} == {"ics", "landscape", "unit_activations"}
    assert {p["name"] for p in spec["probes"]} == {"unit_activations"}
    json.dumps(v)  # a run spec is JSON


def _fake_runs(bn_ics=10.0, none_ics=1.0, bn_beta=1.0, none_beta=100.0, seeds=3):
    rng = np.random.default_rng(0)
    metrics, summary = [], []
    finals = {"none": 0.5, "bn_pre": 0.97, "noisy_bn": 0.96, "noise_only": 0.1}
    for norm, acc in finals.items():
        for seed in range(seeds):
            summary.append({"variant": f"mlp-{norm}-lr0.1", "seed": seed, "net": "mlp", "norm": norm, "lr": 0.1,
                            "status": "ok", "final_train_acc": acc + rng.normal(0, 0.003),
                            "final_test_acc": acc})
            if norm in ("none", "bn_pre"):
                ics, beta = (bn_ics, bn_beta) if norm == "bn_pre" else (none_ics, none_beta)
                for step in (0, 10, 20):
                    for name, val in [("ics/l2/1", ics), ("ics/cos/1", 0.5 if norm == "bn_pre" else 0.9),
                                      ("landscape/loss_range", beta), ("landscape/grad_diff_max", beta),
                                      ("landscape/beta", beta)]:
                        metrics.append({"step": step, "metric": name, "value": val * np.exp(rng.normal(0, 0.05)),
                                        "net": "mlp", "norm": norm, "lr": 0.1, "seed": seed,
                                        "variant": f"mlp-{norm}-lr0.1"})
    return pd.DataFrame(metrics), pd.DataFrame(summary)


def test_claims_follow_the_data():
    from normlab.stats import CLAIM_COLUMNS
    from normlab.studies.santurkar import analyze

    cfg = _cfg()
    c = analyze(*_fake_runs(), cfg, None).set_index("claim_id")
    assert list(c.reset_index().columns) == CLAIM_COLUMNS
    assert c.loc[["S1.a", "S1.a[pooled: bn_pre > none]", "S1.b", "S1.c", "S1.c[cos]", "S1.d"], "verdict"].eq(
        "holds").all()
    c = analyze(*_fake_runs(bn_ics=0.1, bn_beta=1000.0), cfg, None).set_index("claim_id")
    assert c.loc["S1.c", "verdict"] == "fails" and c.loc["S1.d", "verdict"] == "fails"
    assert c.loc["S1.c", "value"] == pytest.approx(-1.0, abs=0.05)


def test_dln_shapes_and_determinism():
    from normlab.studies.santurkar_dln import build_dln, problem, run_one

    m = build_dln(25, 10, bn=True)
    assert len(weight_layers(m)) == 25 and sum(isinstance(x, nn.BatchNorm1d) for x in m) == 24
    assert torch.equal(problem(0, 20, 10)[1], problem(0, 20, 10)[1])
    cfg = {"n_samples": 50, "width": 4, "depth": 5, "lr": 1e-3, "steps": 12, "probe_every": 5, "ics_layers": [1, 3],
           "landscape_scales": [0.01, 30.0], "landscape_n": 3, "log_every": 2}
    a, b = run_one(cfg, True, 0), run_one(cfg, True, 0)
    assert a == b
    names = {r[1] for r in a}
    assert {"ics/l2/3", "landscape/beta", "train_loss"} <= names


def test_smoke_run_outputs(smoke_workdir):
    from normlab.stats import CLAIM_COLUMNS

    vdirs = sorted((smoke_workdir / "results" / "santurkar").glob("smoke-*"))
    assert vdirs
    v = vdirs[-1]
    claims = pd.read_csv(v / "claims.csv")
    assert list(claims.columns) == CLAIM_COLUMNS
    assert {"S1.a", "S1.b", "S1.c", "S1.d"} <= set(claims.claim_id)
    assert set(claims.verdict) <= {"holds", "fails", "inconclusive"}
    for f in ["train_accuracy", "activation_histograms", "ics", "landscape", "dln", "claims"]:
        assert (v / "figures" / f"{f}.png").stat().st_size > 0
    dln = pd.read_parquet(v / "dln" / "metrics.parquet")
    assert set(dln.norm) == {"none", "bn"} and dln.metric.str.startswith("ics/").any()
