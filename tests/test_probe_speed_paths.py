"""The fast paths of the curvature and units probes against direct computations on tiny models:
torch Lanczos (and its float32-Krylov / float64 Rayleigh-Ritz variant) against a dense
eigendecomposition, batched products against single ones, the probe's metrics against the
per-layer formulas, and the vectorized units probe against a plain per-layer loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from normlab.curvature_ops import CurvatureOperator, kfac_factors, lanczos_top, outlier_overlap
from normlab.models import build_model, weight_layers
from normlab.probes import ProbeContext, build_probe

torch.set_num_threads(1)


def small_model(norm="none", shift=1.5, width=6, depth=2, seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    spec = {"arch": "shifted_mlp", "depth": depth, "width": width, "norm": norm, "act": "tanh", "shift": shift,
            "center_acts": False, "bn_eps": 1e-5}
    return build_model(spec, (5,), 3, dtype=dtype).train()


def batch(n=24, seed=1, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 5, generator=g, dtype=dtype), torch.randint(3, (n,), generator=g)


def test_lanczos_top_on_explicit_matrices():
    """Exact on a matrix with a repeated eigenvalue and an invariant start vector (breakdown)."""
    g = torch.Generator().manual_seed(0)
    Q, _ = torch.linalg.qr(torch.randn(40, 40, generator=g, dtype=torch.float64))
    lam = torch.linspace(-3, 5, 40, dtype=torch.float64)
    lam[-2] = lam[-1]  # a double top eigenvalue
    A = Q @ torch.diag(lam) @ Q.T
    w, v = lanczos_top(lambda x: A @ x, torch.randn(40, generator=g, dtype=torch.float64), 4, tol=1e-12)
    want = np.sort(lam.numpy())[::-1][:4]
    np.testing.assert_allclose(w.numpy(), want, rtol=1e-10)
    np.testing.assert_allclose((A @ v - v * w).norm(dim=0).numpy(), 0, atol=1e-9)
    # start in an invariant subspace (one eigenvector): Lanczos must restart and still find the top 3
    w2, _ = lanczos_top(lambda x: A @ x, Q[:, 3].clone(), 3, tol=1e-12)
    np.testing.assert_allclose(w2.numpy(), want[:3], rtol=1e-10)


@pytest.mark.parametrize("norm", ["none", "bn_pre"])
@pytest.mark.parametrize("layer", [None, 1, -1])
@pytest.mark.parametrize("kind", ["hessian", "ggn"])
def test_batched_lanczos_and_mixed_precision_match_dense(norm, layer, kind):
    model = small_model(norm=norm)
    x, y = batch()
    net = CurvatureOperator(model, x, y)
    op = net if layer is None else net.block(layer)
    M = op.dense(kind)
    # batched products (rows) equal single products
    V = torch.randn(3, op.n, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    single = torch.stack([op.product(kind)(v) for v in V])
    np.testing.assert_allclose(op.product(kind)(V).numpy(), single.numpy(), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(single.numpy(), V.numpy() @ M, rtol=1e-8, atol=1e-12)
    k = 3
    want = np.sort(np.linalg.eigvalsh(M))[::-1][:k]
    got = op.top_eigen(kind, k, method="lanczos", tol=1e-10)
    np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-10 * abs(want[0]))
    # float32 Krylov space, float64 Rayleigh-Ritz and check: the probe's default for large blocks
    w, v = op.top_eigen(kind, k, method="lanczos", tol=1e-4, krylov_dtype=torch.float32, vectors=True)
    np.testing.assert_allclose(w, want, rtol=1e-7, atol=1e-9 * abs(want[0]))
    res = np.linalg.norm(M @ v - v * w, axis=0)
    assert np.all(res <= 1e-4 * np.abs(w) + 1e-12)
    # a tolerance float32 cannot meet: the float64 check fails and float64 Lanczos finishes from those vectors
    w = op.top_eigen(kind, k, method="lanczos", tol=1e-11, krylov_dtype=torch.float32)
    np.testing.assert_allclose(w, want, rtol=1e-9, atol=1e-11 * abs(want[0]))
    # and it agrees with scipy's ARPACK, the previous implementation
    np.testing.assert_allclose(op.top_eigen(kind, k, method="eigsh", tol=1e-10), want, rtol=1e-8,
                               atol=1e-10 * abs(want[0]))


def test_kfac_on_shared_forward_equals_standalone():
    model = small_model(norm="bn_pre", shift=2.0)
    x, y = batch(n=32)
    net = CurvatureOperator(model, x, y)
    net.top_eigen("hessian", 2)  # graphs built first: K-FAC must not depend on what ran before
    for layer in (1, -1):
        a, b = net.kfac(layer), kfac_factors(model, x, y, layer)
        for f in ("A", "S", "m"):
            torch.testing.assert_close(getattr(a, f), getattr(b, f), rtol=1e-12, atol=1e-14)


class _Data:
    def __init__(self, x, y):
        self.x_train, self.y_train = x, y


def test_curvature_probe_matches_direct_computation():
    """The probe's metrics (one shared forward, float32 Krylov for large blocks) equal dense float64 ones."""
    import normlab.probes.curvature as pc

    model = small_model(norm="bn_pre", shift=2.0, width=8, dtype=torch.float32)
    x, y = batch(n=48, dtype=torch.float32)
    old = pc.KRYLOV_MIN_N
    pc.KRYLOV_MIN_N = 1  # exercise the mixed-precision path on this tiny model
    try:
        probe = build_probe({"name": "curvature", "every": 1, "layers": [1, -1], "k": 4, "n_samples": 48,
                             "k_network": 2, "kinds": ["ggn"], "network_kinds": ["hessian"], "tol": 1e-4})
        ctx = ProbeContext(0, model, None, F.cross_entropy, x, y, 0.1, _Data(x, y), {"loss": "cross_entropy"})
        out = probe.before_step(ctx)
    finally:
        pc.KRYLOV_MIN_N = old
    wl = weight_layers(model)
    for layer in (1, -1):
        i = layer % len(wl)
        op = CurvatureOperator(model, x, y, layer=i)
        M = op.dense("ggn")
        w, v = np.linalg.eigh(M)
        w, v = w[::-1][:4], v[:, ::-1][:, :4]
        got = np.array([out[f"curv/L{i}/ggn/eig{j + 1}"] for j in range(4)])
        np.testing.assert_allclose(got, w, rtol=1e-7)
        f = kfac_factors(model, x, y, i)
        assert out[f"curv/L{i}/nu"] == pytest.approx(f.nu, rel=1e-12)
        pred = f.predicted(4)  # at most out-features values
        np.testing.assert_allclose([out[f"curv/L{i}/kfac_pred/eig{j + 1}"] for j in range(len(pred))], pred,
                                   rtol=1e-10)
        ov = outlier_overlap(v, wl[i], f.m_bar)
        # eigenvectors at tol 1e-4 are accurate to ~ residual / gap (eigenvalues to residual^2 / gap)
        np.testing.assert_allclose([out[f"curv/L{i}/ggn/overlap{j + 1}"] for j in range(4)], ov, atol=1e-3)
    H = CurvatureOperator(model, x, y).dense("hessian")
    want = np.sort(np.linalg.eigvalsh(H))[::-1][:2]
    np.testing.assert_allclose([out["curv/net/hessian/eig1"], out["curv/net/hessian/eig2"]], want, rtol=1e-7)


def test_curvature_products_equal_grad_outputs_and_skip_sympy():
    """The products' ``vdot`` route gives bitwise the gradient with grad_outputs, and a probe call imports no
    sympy (torch.autograd.grad with grad_outputs would: about 0.5 s at a job's first curvature call)."""
    import subprocess
    import sys

    from normlab.curvature_ops import vdot

    model = small_model(norm="bn_pre", width=8)
    x, y = batch()
    out = model(x)
    v = torch.randn(out.shape, dtype=out.dtype, generator=torch.Generator().manual_seed(3))
    a = torch.autograd.grad(out, list(model.parameters()), v, retain_graph=True)
    b = torch.autograd.grad(vdot(out, v), list(model.parameters()))
    assert all(torch.equal(p, q) for p, q in zip(a, b))
    code = ("import sys, torch; from tests.test_probe_speed_paths import small_model, batch, _Data;"
            "from normlab.probes import ProbeContext, build_probe; import torch.nn.functional as F;"
            "m = small_model(norm='bn_pre', width=8); x, y = batch(n=48);"
            "p = build_probe({'name': 'curvature', 'every': 1, 'layers': [1, -1], 'k': 3, 'n_samples': 48, 'k_network': 2});"
            "p.before_step(ProbeContext(0, m, None, F.cross_entropy, x, y, 0.1, _Data(x, y), {}));"
            "print('sympy' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "False", r.stdout + r.stderr


# units --------------------------------------------------------------------------------------------

def _units_reference(probe, model, lr, before_w, before_g):
    """The per-layer loop the vectorized probe replaced (one layer at a time, torch.quantile)."""
    from normlab.probes.units import QUANTILES, _angle, unit_layers

    def q(prefix, x):
        qs = torch.quantile(x, torch.tensor(QUANTILES, dtype=x.dtype)).tolist()
        return {f"{prefix}_q{int(p * 100)}": v for p, v in zip(QUANTILES, qs)}

    b, a = {}, {}
    for (name, layer), w, g in zip(unit_layers(model), before_w, before_g):
        p = f"units/{name}"
        w2 = (w * w).sum(1)
        eff = lr / w2
        b.update({f"{p}/w2_mean": w2.mean(), f"{p}/w4_mean": (w2 * w2).mean(), f"{p}/efflr_mean": eff.mean()})
        b.update(q(f"{p}/w2", w2))
        b.update(q(f"{p}/efflr", eff))
        for i in range(min(probe.track, len(w2))):
            b[f"{p}/unit{i}_w2"] = w2[i]
        w1 = layer.weight.detach().flatten(1).double()
        d = w1 - w
        dw2 = 2 * (w * d).sum(1) + (d * d).sum(1)
        ang = _angle(w, w1)
        a.update({f"{p}/angle_mean": ang.mean(), f"{p}/angle_rms": (ang * ang).mean().sqrt(),
                  f"{p}/dw2_mean": dw2.mean()})
        a.update(q(f"{p}/angle", ang))
        if g is None:
            continue
        g2 = (g * g).sum(1)
        G2 = w2 * g2
        cos = (w * g).sum(1) / (w2 * g2).sqrt().clamp_min(1e-300)
        b.update({f"{p}/g2_mean": g2.mean(), f"{p}/G2_mean": G2.mean(), f"{p}/cos_wg_max": cos.abs().max()})
        b.update(q(f"{p}/G", G2.sqrt()))
        inc = lr ** 2 * g2
        r = (dw2 - inc).abs()
        rel = r / inc.clamp_min(1e-300)
        a.update({f"{p}/inc_mean": inc.mean(), f"{p}/pyth_rel_w_max": (r / w2).max(),
                  f"{p}/pyth_rel_inc_med": rel.median(), f"{p}/pyth_rel_inc_max": rel.max()})
    return {k: float(v) for k, v in b.items()}, {k: float(v) for k, v in a.items()}


@pytest.mark.parametrize("track", [2, 40])
def test_units_probe_equals_per_layer_loop(track):
    """Layers of different widths and fan-ins (padding), an output layer without gradient, momentum."""
    torch.manual_seed(0)
    spec = {"arch": "mlp", "depth": 3, "width": 7, "norm": "bn_pre", "act": "relu", "bn_eps": 1e-5,
            "scale_invariant": True, "init": "default", "bias": True}
    model = build_model(spec, (1, 11), 4, dtype=torch.float32).train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.3, momentum=0.9)
    probe = build_probe({"name": "units", "every": 1, "track": track})
    from normlab.probes.units import unit_layers

    x, y = torch.randn(32, 1, 11), torch.randint(4, (32,))
    for step in range(3):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        ctx = ProbeContext(step, model, opt, F.cross_entropy, x, y, 0.3, None, {})
        ws = [m.weight.detach().flatten(1).double().clone() for _, m in unit_layers(model)]
        gs = [None if m.weight.grad is None else m.weight.grad.flatten(1).double() for _, m in unit_layers(model)]
        b = probe.before_step(ctx)
        opt.step()
        a = probe.after_step(ctx)
        rb, ra = _units_reference(probe, model, 0.3, ws, gs)
        assert set(b) == set(rb) and set(a) == set(ra)
        assert any(k.startswith("units/out/") for k in b) and "units/out/G2_mean" not in b
        for got, want in ((b, rb), (a, ra)):
            for k in want:
                assert got[k] == pytest.approx(want[k], rel=1e-12, abs=1e-300), k
