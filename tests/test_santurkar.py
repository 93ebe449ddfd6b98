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
    """For L(w) = mean((Xw - y)^2)/2 the gradient is Lipschitz along g with beta = ||Hg|| / ||g||; under plain
    SGD the actual update is -eta g, so the grid is the paper's [0.5, 4] x eta along the gradient."""
    torch.manual_seed(0)
    x, y = torch.randn(50, 6, dtype=torch.float64), torch.randn(50, 1, dtype=torch.float64)
    model = nn.Sequential(nn.Linear(6, 1, bias=False)).double()
    loss_fn = lambda out, t: 0.5 * ((out - t) ** 2).mean()
    opt = torch.optim.SGD(model.parameters(), lr=0.2)
    loss_fn(model(x), y).backward()  # the step's gradient in .grad, as the engine leaves it
    ctx = ProbeContext(0, model, opt, loss_fn, x, y, 0.2, None, {}, None)
    out = build_probe({"name": "landscape", "every": 1, "scales": [0.5, 4.0], "n": 5}).before_step(ctx)
    assert out["landscape/step_norm"] == pytest.approx(0.2 * model[0].weight.grad.norm().item(), rel=1e-12)
    w = model[0].weight.detach().flatten()
    H = x.T @ x / len(x)
    g = H @ w - x.T @ y.flatten() / len(x)
    assert out["landscape/beta"] == pytest.approx(((H @ g).norm() / g.norm()).item(), rel=1e-9)
    losses = [loss_fn(x @ (w - a * 0.2 * g)[:, None], y).item() for a in np.linspace(0.5, 4.0, 5)]
    assert out["landscape/loss_range"] == pytest.approx(max(losses) - min(losses), rel=1e-9)
    assert out["landscape/grad_diff_max"] == pytest.approx((4.0 * 0.2 * H @ g).norm().item(), rel=1e-9)
    assert out["landscape/grad_diff_min"] == pytest.approx((0.5 * 0.2 * H @ g).norm().item(), rel=1e-9)
    assert torch.equal(model[0].weight.detach().flatten(), w)


def _batched_and_point_by_point(norm, entry, points, model=None):
    """(ctx, the batched probe, its metrics, the metrics point by point) of one call on an MLP; the
    batched probe must have stacked ``points`` copies."""
    torch.set_num_threads(1)
    model = _mlp(norm) if model is None else model
    ctx = _ctx(model, lr=0.1, momentum=0.9)
    batched = build_probe(entry)
    out = batched.before_step(ctx)
    assert batched.stacked.stacked_model is not None and batched.stacked.stacked_model.size == points
    alone = build_probe(entry)
    alone.stacked.point_by_point(model)
    return ctx, batched, out, alone.before_step(ctx)


@pytest.mark.parametrize("norm", ["none", "bn_pre", "noisy_bn"])
def test_landscape_grid_in_one_batched_pass_equals_point_by_point(norm):
    """The n + 1 points as stacked copies (one pass, each copy drawing the probe's fixed noise stream)
    give the losses of the model evaluated point by point bitwise, the gradients to rounding."""
    entry = {"name": "landscape", "every": 1, "scales": [0.5, 4.0], "n": 4}
    ctx, batched, out, ref = _batched_and_point_by_point(norm, entry, points=5)
    for k in ("landscape/loss", "landscape/loss_min", "landscape/loss_max", "landscape/loss_range"):
        assert out[k] == ref[k], k
    for k in ("landscape/grad_diff_min", "landscape/grad_diff_max", "landscape/beta", "landscape/grad_norm",
              "landscape/step_norm"):
        assert out[k] == pytest.approx(ref[k], rel=1e-5), k
    assert out == batched.before_step(ctx)  # the kept copies are refreshed: the same numbers again


@pytest.mark.parametrize("norm", ["none", "bn_pre", "noisy_bn"])
def test_ics_in_one_batched_pass_equals_point_by_point(norm):
    entry = {"name": "ics", "every": 1, "layers": [0, 2, -1]}
    model = _mlp(norm)
    w0 = [p.detach().clone() for p in model.parameters()]
    _, _, out, ref = _batched_and_point_by_point(norm, entry, points=4, model=model)
    assert set(out) == set(ref)
    for k in ref:
        assert out[k] == pytest.approx(ref[k], rel=1e-5, abs=1e-7), k
    assert all(torch.equal(p, w) for p, w in zip(model.parameters(), w0))


def _data_file(tmp_path):
    g = torch.Generator().manual_seed(0)
    blob = {"x_train": torch.randn(256, 1, 12, generator=g), "y_train": torch.randint(4, (256,), generator=g),
            "x_test": torch.randn(64, 1, 12, generator=g), "y_test": torch.randint(4, (64,), generator=g),
            "n_classes": 4, "name": "synthetic"}
    path = tmp_path / "data.pt"
    torch.save(blob, path)
    return path


def test_probes_leave_training_bit_identical(tmp_path):
    from normlab.engine import run

    base = {"study": "t", "key": "x/s0-0-00000000", "variant": "x", "seeds": [0], "data": str(_data_file(tmp_path)),
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


def test_landscape_steps_are_multiples_of_the_actual_update():
    """Under momentum the grid follows w_{t+1} - w_t (not eta * g): step_norm is the real update's length,
    and the first grid point's loss is the loss at w_t + a_min (w_{t+1} - w_t)."""
    model = _mlp("bn_pre")
    ctx = _ctx(model, lr=0.1, momentum=0.9)
    ctx.optimizer.step()  # fill the momentum buffer, then take a fresh gradient
    ctx.optimizer.zero_grad()
    F.cross_entropy(model(ctx.x), ctx.y).backward()
    w0 = [p.detach().clone() for p in model.parameters()]
    probe_opt = copy.deepcopy(ctx.optimizer.state_dict())
    out = build_probe({"name": "landscape", "every": 1, "scales": [0.5, 0.5], "n": 2}).before_step(ctx)
    # the probe changed neither weights nor optimizer state
    assert all(torch.equal(p, w) for p, w in zip(model.parameters(), w0))
    assert torch.equal(ctx.optimizer.state_dict()["state"][0]["momentum_buffer"], probe_opt["state"][0]["momentum_buffer"])
    twin = copy.deepcopy(model)
    opt = torch.optim.SGD(twin.parameters(), lr=0.1, momentum=0.9)
    opt.load_state_dict(probe_opt)
    for p, q in zip(twin.parameters(), model.parameters()):
        p.grad = q.grad.clone()
    opt.step()
    d = [p.detach() - w for p, w in zip(twin.parameters(), w0)]
    assert out["landscape/step_norm"] == pytest.approx(torch.cat([x.flatten() for x in d]).norm().item(), rel=1e-6)
    sgd = 0.1 * torch.cat([p.grad.flatten() for p in model.parameters()]).norm().item()
    assert abs(out["landscape/step_norm"] - sgd) > 1e-3 * sgd  # momentum makes it differ from eta * ||g||


def test_bn_clean_eval_recomputes_noise_free_statistics():
    from types import SimpleNamespace

    from normlab.probes.ics import BNCleanEval  # noqa: F401  (registers bn_clean_eval)

    g = torch.Generator().manual_seed(1)
    data = SimpleNamespace(x_train=torch.randn(96, 1, 12, generator=g), y_train=torch.randint(4, (96,), generator=g),
                           x_test=torch.randn(40, 1, 12, generator=g), y_test=torch.randint(4, (40,), generator=g))
    model = _mlp("noisy_bn", depth=2)
    ctx = _ctx(model)
    ctx.data = data
    with torch.no_grad():  # running statistics far from the truth, as after noisy training
        for m in model.modules():
            if isinstance(m, nn.BatchNorm1d):
                m.running_mean.fill_(3.0)
                m.running_var.fill_(9.0)
    out = build_probe({"name": "bn_clean_eval", "every": 1, "at": [0], "batch_size": 32}).after_step(ctx)
    # by hand: noise off, running stats = mean over the 3 batches of the batch mean / unbiased variance
    ref = copy.deepcopy(model).train()
    for m in ref.modules():
        if isinstance(m, Noise):
            m.eval()
    bns = [m for m in ref.modules() if isinstance(m, nn.BatchNorm1d)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    with torch.no_grad():
        for k in range(3):
            ref(data.x_train[32 * k:32 * (k + 1)])
    ref.eval()
    with torch.no_grad():
        acc = (ref(data.x_test).argmax(1) == data.y_test).double().mean().item()
    assert out["bn_clean/test_acc"] == pytest.approx(acc)
    assert [m.momentum for m in model.modules() if isinstance(m, nn.BatchNorm1d)] == [0.1] * len(bns)
    assert model.training and all(m.training for m in model.modules() if isinstance(m, Noise))
    assert {"bn_clean/train_acc", "bn_clean/test_loss"} <= set(out)


# ------------------------------------------------------------------------------------------------
# The study: variants, claims logic, config checks, DLN, and the smoke run through Snakemake


def _cfg(**over):
    from normlab.config import validate

    sec = {"seeds": 3, "lrs": [0.1, 0.5], "claims": {"measure_lrs": [0.1], "regime_lrs": [0.5]}, **over}
    return validate({"studies": {"santurkar": sec}})["studies"]["santurkar"]


def test_variants_grid_and_probes():
    from normlab.studies.santurkar import variants

    cfg = _cfg()
    v = variants(cfg)
    # every norm at every rate of lrs; the probed norms (none, bn_pre) also at probes.lrs (0.01: the paper's Fig. 3)
    assert len(v) == len(cfg["nets"]) * (4 * 2 + 2)
    assert {"mlp-none-lr0.01", "mlp-bn_pre-lr0.01"} <= set(v) and "mlp-noisy_bn-lr0.01" not in v
    assert [p["name"] for p in v["mlp-bn_pre-lr0.01"]["probes"]][2:] == ["ics", "landscape"]
    assert len(variants(_cfg(probes={"lrs": [0.1]}))) == 8  # a rate already in lrs adds nothing
    spec = v["mlp-noisy_bn-lr0.5"]
    assert spec["model"]["norm"] == "noisy_bn" and spec["model"]["noise"] == P and spec["lr"] == 0.5
    assert spec["optimizer"]["momentum"] == 0.0 and spec["train"]["steps"] >= 4000
    assert [p["name"] for p in v["mlp-none-lr0.1"]["probes"]] == ["unit_activations", "bn_clean_eval", "ics",
                                                                   "landscape"]
    assert [p["name"] for p in spec["probes"]] == ["unit_activations", "bn_clean_eval"]
    assert spec["probes"][1]["at"] == [spec["train"]["steps"] - 1]
    json.dumps(v)  # a run spec is JSON


CLEAN = {"none": (0.99, 0.1), "bn_pre": (0.99, 0.99), "noisy_bn": (0.98, 0.975), "noise_only": (0.1, 0.1)}


def _fake_runs(bn_ics=10.0, none_ics=1.0, bn_beta=1.0, none_beta=100.0, seeds=3, accs=None, clean=None,
               clean_loss=None, norms=None, lrs=(0.1, 0.5), probe_lrs=(0.1,), beta_at_0=None, late_ics=None):
    """Cells lr 0.1 (the standard net trains) and 0.5 (it fails), or ``lrs``; train-mode batch accuracy per step;
    the noise-free accuracy (``clean``, default ``accs``) and loss (``clean_loss``: 0.05, the standard net's 2.3 at
    lr 0.5) at the last
    step; ICS (layer 1, and layer 9 with ``late_ics`` = (bn, none)) and landscape probes at steps 0, 10, 20 of
    none and bn_pre at ``probe_lrs`` (``beta_at_0``: the (bn, none) landscape values at step 0)."""
    rng = np.random.default_rng(0)
    metrics, summary = [], []
    accs = accs or {"none": (0.99, 0.1), "bn_pre": (0.99, 0.99), "noisy_bn": (0.98, 0.975), "noise_only": (0.1, 0.1)}
    clean = clean or accs
    for norm, per_lr in accs.items():
        if norms is not None and norm not in norms:
            continue
        for k, (lr, acc) in enumerate(zip(lrs, per_lr)):
            variant = f"mlp-{norm}-lr{lr:g}"
            for seed in range(seeds):
                base = {"net": "mlp", "norm": norm, "lr": lr, "seed": seed, "variant": variant}
                summary.append({**base, "status": "ok", "final_train_acc": acc - 0.1, "final_test_acc": acc - 0.2})
                for step in range(0, 100, 10):
                    metrics.append({**base, "step": step, "metric": "batch_acc",
                                    "value": (0.1 if step < 90 else acc) + rng.normal(0, 0.003)})
                    metrics.append({**base, "step": step, "metric": "batch_loss", "value": 1.0})
                c_acc = clean[norm][k] + rng.normal(0, 0.003)
                losses = {"none": (0.05, 2.3)} if clean_loss is None else clean_loss
                loss = losses.get(norm, (0.05, 0.05))[k] * np.exp(rng.normal(0, 0.05))
                for name, val in [("test_acc", c_acc - 0.1), ("train_acc", c_acc), ("train_loss", loss)]:
                    metrics.append({**base, "step": 99, "metric": f"bn_clean/{name}", "value": val})
                if norm in ("none", "bn_pre") and any(np.isclose(lr, probe_lrs)):
                    metrics += _fake_probes(base, norm, bn_ics, none_ics, bn_beta, none_beta, beta_at_0, late_ics, rng)
    return pd.DataFrame(metrics), pd.DataFrame(summary)


def _fake_probes(base, norm, bn_ics, none_ics, bn_beta, none_beta, beta_at_0, late_ics, rng):
    bn = norm == "bn_pre"
    rows = []
    for step in (0, 10, 20):
        ics, beta = (bn_ics, bn_beta) if bn else (none_ics, none_beta)
        if step == 0 and beta_at_0 is not None:
            beta = beta_at_0[0 if bn else 1]
        vals = [("ics/l2/1", ics), ("ics/rel/1", ics), ("ics/cos/1", 0.5 if bn else 0.9),
                ("landscape/loss_range", beta), ("landscape/grad_diff_max", beta), ("landscape/beta", beta)]
        if late_ics is not None:
            late = late_ics[0 if bn else 1]
            vals += [("ics/l2/9", late), ("ics/rel/9", late), ("ics/cos/9", 0.5 if bn else 0.9)]
        rows += [{**base, "step": step, "metric": name, "value": val * np.exp(rng.normal(0, 0.05))}
                 for name, val in vals]
    return rows


def test_claims_follow_the_data():
    from normlab.stats import CLAIM_COLUMNS, finalize
    from normlab.studies.santurkar import HEADLINES, analyze

    cfg = _cfg()
    c = analyze(*_fake_runs(), cfg, None)
    assert list(c.kind[c.kind == "headline"].index.map(c.claim_id)) == list(HEADLINES)  # one row each, in order
    assert c.loc[c.claim_id == "S1.b", "kind"].item() == "check"
    assert set(c.kind) == {"headline", "cell", "check"}
    c = finalize(c).set_index("claim_id")
    assert list(c.reset_index().columns) == CLAIM_COLUMNS
    assert c.loc[["S1.a", "S1.b", "S1.c", "S1.d"], "verdict"].eq("holds").all()
    # the regime matters: S1.a pools lr 0.5 only, where the standard net fails
    assert c.loc["S1.a[bn_pre > none, pooled]", "value"] == pytest.approx(0.89, abs=0.02)
    # BN's ICS a tenth of the standard net's: S1.c's norm strata fail while its cosine stratum holds (mixed), the
    # three-part pooled claim fails; a rougher landscape with BN: S1.d fails
    c = finalize(analyze(*_fake_runs(bn_ics=0.1, bn_beta=1000.0), cfg, None)).set_index("claim_id")
    assert c.loc["S1.c", "verdict"] == "mixed" and c.loc["S1.d", "verdict"] == "fails"
    assert c.loc["S1.c", "strata"] == "holds: layer 1 cos; fails: layer 1 l2, layer 1 rel"
    assert c.loc["S1.c", "value"] == pytest.approx(-1.0, abs=0.05)
    assert c.loc["S1.c[l2, pooled]", "verdict"] == "fails" and c.loc["S1.c[cos, pooled]", "verdict"] == "holds"
    # the same landscape with and without BN (a true null): S1.d fails, since its interval rules out the
    # smallest effect of interest (a factor 10, stated against the paper's two orders of magnitude)
    c = finalize(analyze(*_fake_runs(bn_beta=100.0), cfg, None)).set_index("claim_id")
    assert c.loc["S1.d", "verdict"] == "fails" and c.loc["S1.d", "fail_margin"] == pytest.approx(-1.0)
    assert "two orders of magnitude" in c.loc["S1.d", "claim"] and "smallest effect" in c.loc["S1.d", "basis"]
    # noisy BN 10 points below BN in accuracy, its noise-free loss as BN's: "about as well" fails in train mode (the
    # row's own test) and holds for the noise-free loss (a stratum); the noise without BN training: S1.b fails
    accs = {"none": (0.99, 0.1), "bn_pre": (0.99, 0.99), "noisy_bn": (0.9, 0.89), "noise_only": (0.9, 0.9)}
    c = finalize(analyze(*_fake_runs(accs=accs), cfg, None)).set_index("claim_id")
    assert c.loc["S1.a[noise-free train loss]", "verdict"] == "holds"
    # the paper's metric (the row's own test) fails while a noise-free reading holds: mixed
    assert c.loc["S1.a", "verdict"] == "mixed" and "holds: noise-free train loss" in c.loc["S1.a", "strata"]
    assert c.loc["S1.b", "verdict"] == "fails"
    # the standard net as good as BN in the regime: "clearly better" fails, so S1.a fails
    accs = {"none": (0.99, 0.99), "bn_pre": (0.99, 0.99), "noisy_bn": (0.98, 0.98), "noise_only": (0.1, 0.1)}
    c = finalize(analyze(*_fake_runs(accs=accs, clean_loss={}), cfg, None)).set_index("claim_id")
    assert c.loc["S1.a", "verdict"] == "fails" and c.loc["S1.a[noisy_bn ~ bn_pre, pooled]", "verdict"] == "holds"


def test_s1a_metric_strata_separate_the_noise_from_the_weights():
    """Noisy BN 12 points below BN in train mode (the noise in the forward pass scored) but within 1 point with
    the noise off: S1.a's own test (the train mode, the paper's metric) fails and its noise-free strata hold, so
    S1.a is mixed (its basis names both sides); the train mode is not also a stratum (the same estimate would be
    tested twice); a noise-free loss 10x BN's fails the loss stratum (a factor 2 allowed), and S1.a stays mixed."""
    from normlab.stats import finalize
    from normlab.studies.santurkar import analyze

    cfg = _cfg(seeds=6)
    accs = {"none": (0.99, 0.1), "bn_pre": (0.99, 0.97), "noisy_bn": (0.98, 0.85), "noise_only": (0.1, 0.1)}
    clean = {**accs, "noisy_bn": (0.98, 0.968)}
    c = finalize(analyze(*_fake_runs(accs=accs, clean=clean, seeds=6), cfg, None)).set_index("claim_id")
    assert c.loc["S1.a", "verdict"] == "mixed" and "S1.a[train mode]" not in c.index
    assert "fails for its own test" in c.loc["S1.a", "basis"] and "The claim's own test: it fails" in \
        c.loc["S1.a", "basis"]
    assert c.loc[["S1.a[noise-free train acc]", "S1.a[noise-free test acc]", "S1.a[noise-free train loss]"],
                 "verdict"].eq("holds").all()
    assert c.loc["S1.a", "strata"] == "holds: noise-free train acc, noise-free train loss, noise-free test acc"
    assert "same estimate tested twice" in c.loc["S1.a", "claim"]
    assert c.loc["S1.a", "value"] == pytest.approx(-0.12, abs=0.01)  # the paper's metric: train mode
    assert "the paper's" in c.loc["S1.a", "claim"] and "noise off" in c.loc["S1.a", "claim"]
    loss = {"none": (0.05, 2.3), "bn_pre": (0.05, 0.02), "noisy_bn": (0.05, 0.2)}
    c = finalize(analyze(*_fake_runs(accs=accs, clean=clean, clean_loss=loss, seeds=6), cfg, None)).set_index("claim_id")
    assert c.loc["S1.a[noise-free train loss]", "verdict"] == "fails"
    assert c.loc["S1.a[noise-free train loss]", "value"] == pytest.approx(1.0, abs=0.05)  # log10 of 10x
    assert c.loc["S1.a", "verdict"] == "mixed"


def test_s1c_layer_strata_and_the_second_rate():
    """A late layer where BN's ICS is a tenth of the standard net's, an early one where it is larger: S1.c is
    mixed by layer x measure; lr 0.01 (the paper's Fig. 3) is a row of its own, and 'not run' when not trained."""
    from normlab.stats import finalize
    from normlab.studies.santurkar import analyze

    cfg = _cfg()
    m, s = _fake_runs(late_ics=(0.1, 1.0))
    m2, s2 = _fake_runs(lrs=(0.01,), probe_lrs=(0.01,), norms=("none", "bn_pre"), late_ics=(0.1, 1.0),
                        accs={"none": (0.9,), "bn_pre": (0.9,)})
    c = finalize(analyze(pd.concat([m, m2]), pd.concat([s, s2]), cfg, None)).set_index("claim_id")
    assert c.loc["S1.c", "verdict"] == "mixed"
    assert set(c.loc["S1.c", "strata"].split("; fails: ")[1].split(", ")) == {"layer 9 l2", "layer 9 rel"}
    assert c.loc["S1.c[layer 1 l2]", "verdict"] == "holds" and c.loc["S1.c[layer 9 l2]", "verdict"] == "fails"
    assert c.loc["S1.c[layer 9 l2]", "kind"] == "cell" and "lr in [0.1, 0.01]" in c.loc["S1.c", "claim"]
    assert {"S1.c[lr=0.1]", "S1.c[lr=0.01]", "S1.c[mlp lr=0.01 layer 9 l2]"} <= set(c.index)
    # a config that does not train lr 0.01: that rate is 'not run', naming what it needs; S1.c pools lr 0.1
    cfg = _cfg(probes={"lrs": []})
    c = finalize(analyze(m, s, cfg, None)).set_index("claim_id")
    assert c.loc["S1.c[lr=0.01]", "verdict"] == "not run" and "'probes.lrs'" in c.loc["S1.c[lr=0.01]", "basis"]
    assert c.loc["S1.c", "verdict"] == "mixed" and "rate 0.01 not trained" in c.loc["S1.c", "claim"]


def test_s1d_early_window_leaves_out_step_0():
    """At step 0 BN's landscape is 100x smoother, later the same as without BN: S1.d (the early window, after
    step 0) fails against its smallest effect of interest; every probe step from step 0 (S1.d[all steps]) would
    credit BN with the initialization's gap."""
    from normlab.stats import finalize
    from normlab.studies.santurkar import analyze

    c = finalize(analyze(*_fake_runs(bn_beta=100.0, beta_at_0=(1.0, 100.0)), _cfg(), None)).set_index("claim_id")
    assert c.loc["S1.d", "verdict"] == "fails" and c.loc["S1.d", "value"] == pytest.approx(0.0, abs=0.05)
    assert c.loc["S1.d[all steps]", "value"] == pytest.approx(-2 / 3, abs=0.05)
    assert "after step 0" in c.loc["S1.d", "claim"] and "probe steps 200, 400, 600, 800" in c.loc["S1.d", "claim"]
    assert set(c.loc["S1.d", "strata"].removeprefix("fails: ").split(", ")) == {"loss_range", "grad_diff_max", "beta"}


@pytest.mark.parametrize("norms, ran", [
    (["none", "bn_pre"], {"S1.c", "S1.d"}),
    (["none", "bn_pre", "noisy_bn"], {"S1.a", "S1.c", "S1.d"}),
    (["noisy_bn", "noise_only"], {"S1.b"}),
    (["none", "bn_pre", "noisy_bn", "noise_only"], {"S1.a", "S1.b", "S1.c", "S1.d"}),
])
def test_subsets_of_the_norms_run_and_the_rest_is_not_run(norms, ran):
    """A config with some of the norms is accepted; the claims whose variants it lacks are 'not run' rows naming
    what they need, with no cells; the others are judged as usual."""
    from normlab.stats import finalize
    from normlab.studies.santurkar import HEADLINES, analyze, check_config, variants

    cfg = _cfg(norms=norms)
    assert check_config(cfg) == []
    assert {v["keys"]["norm"] for v in variants(cfg).values()} == set(norms)
    c = finalize(analyze(*_fake_runs(norms=norms), cfg, None))
    assert [x for x in c[c.kind == "headline"].claim_id] == list(HEADLINES)
    rows = c.set_index("claim_id")
    for cid in ("S1.a", "S1.b", "S1.c", "S1.d"):
        if cid in ran:
            assert rows.loc[cid, "verdict"] == "holds", cid
        else:
            assert rows.loc[cid, "verdict"] == "not run" and rows.loc[cid, "basis"].startswith("not run: needs norms")
            assert not c.claim_id.str.startswith(f"{cid}[").any(), cid


@pytest.mark.parametrize("norms", [["none", "bn_pre"], ["noisy_bn", "noise_only"]])
def test_every_figure_is_written_for_a_subset(norms, tmp_path):
    """Without the probed norms, or without noisy BN and the noise control, every declared figure is written
    (empty panels say what is missing; the claims forest shows the rows not run)."""
    from normlab.stats import finalize
    from normlab.studies.santurkar import FIGURES, analyze, figures

    cfg = _cfg(norms=norms)
    m, s = _fake_runs(norms=norms)
    m = pd.concat([m, m[m.metric == "batch_acc"].assign(metric="test_acc")])
    written = figures(m, s, finalize(analyze(m, s, cfg, None)), cfg, tmp_path)
    assert {p.name for p in written} == {f"{f.stem}.{e}" for f in FIGURES for e in ("png", "pdf")}


def test_subsets_of_the_rates_run():
    """lrs [0.1] only (the default regime_lrs 0.5 and 1.0 not trained): S1.a is 'not run' naming the key;
    regime_lrs [0.5, 0.8] with 0.8 not trained: S1.a pools 0.5 and says so."""
    from normlab.stats import finalize
    from normlab.studies.santurkar import analyze, check_config

    cfg = _cfg(lrs=[0.1], claims={"measure_lrs": [0.1], "regime_lrs": [0.5, 1.0]})
    assert check_config(cfg) == []
    m, s = _fake_runs(lrs=(0.1,))
    c = finalize(analyze(m, s, cfg, None)).set_index("claim_id")
    assert c.loc["S1.a", "verdict"] == "not run" and "'claims.regime_lrs' [0.5, 1]" in c.loc["S1.a", "basis"]
    assert c.loc[["S1.b", "S1.c", "S1.d"], "verdict"].ne("not run").all()
    cfg = _cfg(claims={"measure_lrs": [0.1], "regime_lrs": [0.5, 0.8]})
    c = finalize(analyze(*_fake_runs(), cfg, None)).set_index("claim_id")
    assert c.loc["S1.a", "verdict"] == "holds" and "'claims.regime_lrs' rate 0.8 not trained" in c.loc["S1.a", "claim"]


@pytest.mark.parametrize("over, keys", [
    # no claim could run: every rate a claim pools is absent, or every norm pair a claim compares
    ({"lrs": [0.05, 0.8], "probes": {"lrs": []}}, ["no S1 claim could run", "'claims.measure_lrs'", "'lrs'"]),
    ({"norms": ["bn_pre", "noisy_bn"]}, ["no S1 claim could run", "norms none", "'norms'"]),
    ({"norms": ["none", "bn_pre"], "probes": {"norms": ["noisy_bn"]}}, ["'probes.norms'", "'norms'"]),
    ({"probes": {"ics_layers": [1, 40]}}, ["'probes.ics_layers'", "'models.mlp'"]),
    ({"nets": ["mlp", "vgg"]}, ["'nets'", "'models'"]),
    ({"train": {"eval_every": 99999}}, ["'train.eval_every'", "'models.mlp'"]),
    ({"dln": {"depth": 10, "ics_layers": [8, 16]}}, ["'dln.ics_layers'", "'dln.depth'"]),
])
def test_check_config_names_both_keys(over, keys):
    from normlab.config import ConfigError, validate

    sec = {"lrs": [0.1, 0.5], "claims": {"measure_lrs": [0.1], "regime_lrs": [0.5]}}
    for k, v in over.items():
        sec[k] = {**sec.get(k, {}), **v} if isinstance(v, dict) else v
    with pytest.raises(ConfigError) as e:
        validate({"studies": {"santurkar": sec}})
    msg = str(e.value)
    assert msg.startswith("studies.santurkar:") and all(k in msg for k in keys), msg


def test_check_config_clean_on_shipped_configs():
    from pathlib import Path

    import yaml

    from normlab.config import validate
    from normlab.studies.santurkar import check_config

    root = Path(__file__).resolve().parents[1]
    base = yaml.safe_load((root / "config" / "config.yaml").read_text())["studies"]["santurkar"]
    for name in ["config", "smoke", "paper"]:
        sec = copy.deepcopy(base)
        over = yaml.safe_load((root / "config" / f"{name}.yaml").read_text())["studies"]["santurkar"]
        for k, v in over.items():
            sec[k] = {**sec[k], **v} if isinstance(v, dict) and k in sec and k != "models" else v
        cfg = validate({"studies": {"santurkar": sec}})["studies"]["santurkar"]
        assert check_config(cfg) == [], name


def test_snakemake_reports_the_cross_key_error_in_one_line(workdir):
    from conftest import snakemake

    # no claim could run: no rate of claims.regime_lrs, measure_lrs or ics_lrs is trained
    (workdir / "bad.yaml").write_text("studies:\n  santurkar:\n    lrs: [0.05, 0.8]\n    probes: {lrs: []}\n")
    p = snakemake(workdir, "-n", "santurkar", "--configfile", "bad.yaml", check=False)
    assert p.returncode != 0
    lines = [x for x in p.stderr.splitlines() if x.startswith("Config error:")]
    assert len(lines) == 1 and "'claims.measure_lrs'" in lines[0] and "'lrs'" in lines[0], p.stderr[-2000:]
    assert "Traceback" not in p.stderr and "Traceback" not in p.stdout


def test_dln_shapes_and_determinism():
    from normlab.studies.santurkar.dln import build_dln, problem, run_one

    m = build_dln(25, 10, bn=True)
    assert len(weight_layers(m)) == 25 and sum(isinstance(x, nn.BatchNorm1d) for x in m) == 24
    assert torch.equal(problem(0, 20, 10)[1], problem(0, 20, 10)[1])
    cfg = {"n_samples": 50, "width": 4, "depth": 5, "steps": 12, "probe_every": 5, "ics_layers": [1, 3],
           "landscape_scales": [0.01, 30.0], "landscape_n": 3, "log_every": 2}
    a, b = run_one(cfg, True, 0, 1e-3), run_one(cfg, True, 0, 1e-3)
    assert a == b and a != run_one(cfg, True, 0, 1e-4)
    names = {r[1] for r in a}
    assert {"ics/l2/3", "ics/rel/3", "landscape/beta", "landscape/step_norm", "train_loss"} <= names


def test_dln_stacked_matches_plain_loop():
    """The stacked feature-major training pass gives each member what the plain nn.Sequential loop
    (autograd, torch.optim.SGD) gives, to rounding; a member's rows do not depend on its group."""
    from normlab.engine import call_probes
    from normlab.probes import ProbeContext, build_probe
    from normlab.studies.santurkar.dln import build_dln, problem, run_group, run_one, sum_squared

    cfg = {"n_samples": 60, "width": 4, "depth": 6, "steps": 25, "probe_every": 10, "ics_layers": [1, 3],
           "landscape_scales": [0.01, 30.0], "landscape_n": 3, "log_every": 5}
    for bn in (False, True):
        x, y = problem(1, cfg["n_samples"], cfg["width"])
        torch.manual_seed(1)
        model = build_dln(cfg["depth"], cfg["width"], bn)
        opt = torch.optim.SGD(model.parameters(), lr=1e-5)
        probes = [build_probe({"name": "ics", "every": 10, "layers": [1, 3]}),
                  build_probe({"name": "landscape", "every": 10, "scales": [0.01, 30.0], "n": 3, "spacing": "log"})]
        ref = []
        for t in range(cfg["steps"]):
            opt.zero_grad(set_to_none=True)
            loss = sum_squared(model(x), y)
            assert torch.isfinite(loss)
            loss.backward()
            call_probes(probes, "before_step", ProbeContext(t, model, opt, sum_squared, x, y, 1e-5, None,
                                                            {"constraints": []}, loss.detach()), ref)
            opt.step()
            if t % 5 == 0:
                ref.append((t, "train_loss", loss.item() / len(x)))
        got = run_one(cfg, bn, 1, 1e-5)
        assert [r[:2] for r in got] == [r[:2] for r in ref]
        assert np.allclose([r[2] for r in got], [r[2] for r in ref], rtol=1e-6, atol=1e-9)
        assert run_group(cfg, bn, [(0, 1e-6), (1, 1e-5), (2, 1e-5)])[1] == got


def test_smoke_run_outputs(smoke_workdir):
    from normlab.stats import CLAIM_COLUMNS, VERDICTS

    vdirs = sorted((smoke_workdir / "results" / "santurkar").glob("smoke-*"))
    assert vdirs
    v = vdirs[-1]
    claims = pd.read_csv(v / "claims.csv")
    assert list(claims.columns) == CLAIM_COLUMNS
    assert {"S1.a", "S1.b", "S1.c", "S1.d"} <= set(claims.claim_id)
    assert claims[claims.kind == "headline"].claim_id.tolist() == ["S1.a", "S1.c", "S1.d"]
    assert set(claims.verdict) <= set(VERDICTS)
    for f in ["train_accuracy", "lr_sweep", "activation_histograms", "ics", "landscape", "dln", "claims"]:
        assert (v / "figures" / f"{f}.png").stat().st_size > 0
    dln = pd.read_parquet(v / "dln" / "metrics.parquet")
    assert set(dln.norm) == {"none", "bn"} and dln.metric.str.startswith("ics/").any()
