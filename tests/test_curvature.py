"""The curvature engine (normlab.curvature_ops) against dense matrices built independently with
torch.autograd.functional (hessian / jacobian), on small float64 models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from normlab.curvature_ops import CurvatureOperator, kfac_factors, outlier_overlap
from normlab.models import build_model, weight_layers

torch.set_num_threads(1)


def small_model(norm="none", act="tanh", shift=0.0, center_acts=False, seed=0):
    torch.manual_seed(seed)
    spec = {"arch": "shifted_mlp", "depth": 2, "width": 6, "norm": norm, "act": act, "shift": shift,
            "center_acts": center_acts, "bn_eps": 1e-5}
    return build_model(spec, (5,), 3, dtype=torch.float64).train()


def batch(n=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 5, generator=g, dtype=torch.float64), torch.randint(3, (n,), generator=g)


def dense_matrices(model, x, y, names):
    """Hessian and GGN of the batch loss in the parameters ``names``, by autograd.functional."""
    params = dict(model.named_parameters())
    bufs = {k: v.clone() for k, v in model.named_buffers()}
    shapes = [params[n].shape for n in names]
    flat0 = torch.cat([params[n].detach().reshape(-1) for n in names])

    def out(flat):
        d, i = {}, 0
        for n, s in zip(names, shapes):
            d[n] = flat[i:i + s.numel()].view(s)
            i += s.numel()
        rest = {k: v.detach() for k, v in params.items() if k not in d}
        return functional_call(model, ({**rest, **d}, {k: v.clone() for k, v in bufs.items()}), (x,))

    H = torch.autograd.functional.hessian(lambda f: F.cross_entropy(out(f), y), flat0)
    z0 = out(flat0).detach()
    J = torch.autograd.functional.jacobian(out, flat0).reshape(-1, flat0.numel())  # (N*M, P)
    Hz = torch.autograd.functional.hessian(lambda z: F.cross_entropy(z.view_as(z0), y), z0.reshape(-1))
    return H.numpy(), (J.T @ Hz @ J).numpy()


def layer_names(model, idx):
    layer = weight_layers(model)[idx]
    return [n for n, p in model.named_parameters() if any(p is q for q in layer.parameters())]


@pytest.mark.parametrize("norm", ["none", "bn_pre", "center"])
@pytest.mark.parametrize("layer", [None, 1, -1])
def test_lanczos_matches_dense(norm, layer):
    model = small_model(norm=norm, shift=1.5)
    x, y = batch()
    names = [n for n, _ in model.named_parameters()] if layer is None else layer_names(model, layer)
    H, G = dense_matrices(model, x, y, names)
    op = CurvatureOperator(model, x, y, layer=layer)
    assert op.names == names
    k = 4
    for kind, M in [("hessian", H), ("ggn", G)]:
        want = np.sort(np.linalg.eigvalsh(M))[::-1][:k]
        got = op.top_eigen(kind, k, method="lanczos", tol=1e-12)
        np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-10 * abs(want[0]))
    # and the products themselves, on a random vector
    v = torch.randn(op.n, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    np.testing.assert_allclose(op.hvp(v).numpy(), H @ v.numpy(), rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(op.ggn_vp(v).numpy(), G @ v.numpy(), rtol=1e-8, atol=1e-12)


def test_ggn_is_psd_and_differs_from_hessian():
    model = small_model(act="logistic")
    x, y = batch()
    op = CurvatureOperator(model, x, y)
    G, H = op.dense("ggn"), op.dense("hessian")
    assert np.linalg.eigvalsh(G).min() > -1e-10 * np.abs(G).max()
    assert np.abs(G - H).max() > 1e-6  # a tanh/logistic net is not linear: the two must differ


def test_original_model_untouched():
    model = small_model(norm="bn_pre")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = batch()
    CurvatureOperator(model, x, y, layer=1).top_eigen("hessian", 3)
    kfac_factors(model, x, y, 1)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_kfac_exact_for_one_sample_readout():
    """For the read-out layer and one sample, G_ll = (a_bar a_bar^T) (x) H_z = A (x) S exactly."""
    model = small_model(shift=2.0)
    x, y = batch(n=1)
    f = kfac_factors(model, x, y, -1)
    G = CurvatureOperator(model, x, y, layer=-1).dense("ggn")
    # parameter order: weight (out x in, row-major) then bias -> reorder to [W | b] rows
    out_f, in_f = weight_layers(model)[-1].weight.shape
    perm = []
    for i in range(out_f):
        perm += [i * in_f + j for j in range(in_f)] + [out_f * in_f + i]
    np.testing.assert_allclose(G[np.ix_(perm, perm)], np.kron(f.S.numpy(), f.A.numpy()), atol=1e-12)
    assert f.nu == pytest.approx(float(f.m @ f.m) + 1)


def test_kfac_S_matches_ggn_trace_structure():
    """Sum over samples: the GGN block equals (1/N) sum_n a_n a_n^T (x) J^T H J; its trace equals
    (1/N) sum_n |a_n|^2 tr(J_n^T H_n J_n), while K-FAC's tr(A) tr(S) approximates it."""
    model = small_model(shift=1.0)
    x, y = batch(n=32)
    f = kfac_factors(model, x, y, 1)
    G = CurvatureOperator(model, x, y, layer=1).dense("ggn")
    assert f.A.shape == (7, 7) and f.S.shape == (6, 6)
    assert np.allclose(f.S.numpy(), f.S.numpy().T) and np.linalg.eigvalsh(f.S.numpy()).min() > -1e-12
    approx = float(torch.trace(f.A) * torch.trace(f.S))
    assert abs(np.trace(G) - approx) / np.trace(G) < 0.5  # an approximation, not an identity


def test_outlier_prediction_with_large_shift():
    """With a large shift the top GGN-block eigenvalues approach nu * lambda_i(S) and their
    eigenvectors lie in m_bar (x) R^M (the lecture's ICS conditioning hypothesis, small scale)."""
    model = small_model(shift=6.0)
    x, y = batch(n=64)
    f = kfac_factors(model, x, y, -1)
    op = CurvatureOperator(model, x, y, layer=-1)
    w, v = op.top_eigen("ggn", 2, method="lanczos", vectors=True)
    pred = f.predicted(2)
    assert f.nu > 100
    np.testing.assert_allclose(w, pred, rtol=0.1)
    assert outlier_overlap(v, weight_layers(model)[-1], f.m_bar).min() > 0.95


def test_bad_arguments():
    model = small_model()
    x, y = batch()
    with pytest.raises(ValueError, match="out of range"):
        CurvatureOperator(model, x, y, layer=7)
    with pytest.raises(ValueError, match="unknown curvature kind"):
        CurvatureOperator(model, x, y).top_eigen("fisher", 2)
    with pytest.raises(ValueError, match="shifted_mlp: norm"):
        build_model({"arch": "shifted_mlp", "depth": 1, "width": 3, "norm": "noisy_bn", "act": "tanh"}, (5,), 3)
    assert isinstance(weight_layers(small_model())[-1], nn.Linear)
