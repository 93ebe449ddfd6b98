"""Curvature of the training loss: top eigenvalues of the Hessian and of the Gauss-Newton matrix
(whole network or one layer's block), and K-FAC's factors of a layer with the lecture's prediction.

Both matrices are never formed: ``scipy.sparse.linalg.eigsh`` (Lanczos) runs on a
``LinearOperator`` whose product is

- Hessian:     H v = jvp(grad(L), theta; v)                            (forward-over-reverse)
- Gauss-Newton G v = J^T H_z J v, with J v = jvp(f, theta; v), H_z the Hessian of the loss in
  the network's outputs (again forward-over-reverse, so any loss works) and J^T u = vjp(f, theta)(u).

``theta`` is every trainable parameter, or only those of one weight layer (its weight and
bias: the layer's diagonal block). The loss is that of one fixed batch, in the mode the model is
in when passed (train mode: batch statistics, the loss the optimizer sees). A copy of the model is
used, converted to ``dtype`` (float64 by default); running statistics of the original are untouched.

K-FAC (Martens & Grosse 2015): the layer's Gauss-Newton block G_ll ~ A (x) S with
A = E[a a^T] (a: the layer's input, with a 1 appended when the layer has a bias) and
S = E[J_s^T H_z J_s] (J_s: outputs w.r.t. the layer's pre-activations s; per-sample H_z of the
loss). For cross-entropy H_z = Q Q^T with Q = diag(sqrt p) - p sqrt(p)^T, so S is exact from M
backward passes. The lecture's prediction (ICS conditioning hypothesis): with m = E[a] far from 0,
G_ll has up to M (= out features) large eigenvalues nu * lambda_i(S), nu = ||m||^2 + 1, with
eigenvectors m_bar (x) v (m_bar = [m; 1]). Without a bias the "+1" is absent (nu = ||m||^2).

Nothing here imports scipy at module level; torch is needed.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def _weight_layer(model: nn.Module, layer) -> tuple[str, nn.Module]:
    """(qualified name, module) of weight layer ``layer`` (an index into ``weight_layers``, or the module)."""
    from .models import WEIGHT_LAYERS

    named = [(n, m) for n, m in model.named_modules() if isinstance(m, WEIGHT_LAYERS)]
    if isinstance(layer, nn.Module):
        for n, m in named:
            if m is layer:
                return n, m
        raise ValueError("layer is not a weight layer of the model")
    try:
        return named[layer]
    except IndexError:
        raise ValueError(f"layer index {layer} out of range: the model has {len(named)} weight layers") from None


class CurvatureOperator:
    """Hessian- and GGN-vector products of ``loss_fn(model(x), y)`` in the parameters ``theta``.

    ``layer``: None for every trainable parameter, else a weight-layer index (or module): its block.
    """

    def __init__(self, model: nn.Module, x, y, *, loss_fn=F.cross_entropy, layer=None, dtype=torch.float64):
        from torch.func import functional_call, grad, jvp, vjp

        self._jvp, self._grad = jvp, grad
        net = copy.deepcopy(model).to(dtype)
        net.train(model.training)
        self.net, self.loss_fn = net, loss_fn
        self.x = x.to(dtype) if x.is_floating_point() else x
        self.y = y
        if layer is None:
            names = [n for n, p in net.named_parameters() if p.requires_grad]
        else:
            prefix, mod = _weight_layer(net, layer)
            names = [f"{prefix}.{n}" if prefix else n for n, p in mod.named_parameters()]
        all_params = {n: p.detach() for n, p in net.named_parameters()}
        self.names = names
        self.theta = {n: all_params[n] for n in names}
        self.fixed = {n: p for n, p in all_params.items() if n not in self.theta}
        self.buffers = {n: b.detach() for n, b in net.named_buffers()}
        self.shapes = [self.theta[n].shape for n in names]
        self.sizes = [self.theta[n].numel() for n in names]
        self.n = sum(self.sizes)
        self.dtype, self.device = dtype, x.device

        def f_out(theta):
            # buffers cloned inside: BN/centering may update running statistics in place
            bufs = {k: v.clone() for k, v in self.buffers.items()}
            return functional_call(net, ({**self.fixed, **theta}, bufs), (self.x,))

        self.f_out = f_out
        self.f_loss = lambda theta: loss_fn(f_out(theta), y)
        self.z0, self._vjp_fn = vjp(f_out, self.theta)
        z0 = self.z0.detach()
        self._loss_grad_z = grad(lambda z: loss_fn(z, y))
        self._z0 = z0
        self.n_matvec = 0

    # flat <-> dict ---------------------------------------------------------------------------
    def unflatten(self, v: torch.Tensor) -> dict:
        out, i = {}, 0
        for n, shape, size in zip(self.names, self.shapes, self.sizes):
            out[n] = v[i:i + size].view(shape)
            i += size
        return out

    def flatten(self, d: dict) -> torch.Tensor:
        return torch.cat([d[n].reshape(-1) for n in self.names])

    # products ---------------------------------------------------------------------------------
    def hvp(self, v: torch.Tensor) -> torch.Tensor:
        self.n_matvec += 1
        _, hv = self._jvp(self._grad(self.f_loss), (self.theta,), (self.unflatten(v),))
        return self.flatten(hv)

    def ggn_vp(self, v: torch.Tensor) -> torch.Tensor:
        self.n_matvec += 1
        _, jv = self._jvp(self.f_out, (self.theta,), (self.unflatten(v),))
        _, hjv = self._jvp(self._loss_grad_z, (self._z0,), (jv,))
        (gv,) = self._vjp_fn(hjv)
        return self.flatten(gv)

    def product(self, kind: str):
        if kind not in ("hessian", "ggn"):
            raise ValueError(f"unknown curvature kind {kind!r} (known: hessian, ggn)")
        return self.hvp if kind == "hessian" else self.ggn_vp

    def linear_operator(self, kind: str):
        from scipy.sparse.linalg import LinearOperator

        mv = self.product(kind)

        def matvec(v):
            t = torch.as_tensor(np.ascontiguousarray(v).reshape(-1), dtype=self.dtype, device=self.device)
            with torch.no_grad():
                return mv(t).detach().double().cpu().numpy()

        return LinearOperator((self.n, self.n), matvec=matvec, rmatvec=matvec, dtype=np.float64)

    def dense(self, kind: str) -> np.ndarray:
        """The whole matrix by n products (small blocks only)."""
        mv = self.product(kind)
        eye = torch.eye(self.n, dtype=self.dtype, device=self.device)
        with torch.no_grad():
            cols = [mv(eye[i]).double() for i in range(self.n)]
        m = torch.stack(cols, 1).cpu().numpy()
        return (m + m.T) / 2

    def top_eigen(self, kind: str = "hessian", k: int = 10, *, method: str = "auto", tol: float = 1e-8,
                  seed: int = 0, vectors: bool = False):
        """The k largest (algebraic) eigenvalues, descending (and eigenvectors as columns if asked).

        method: "lanczos" (eigsh), "dense" (n products + numpy eigh) or "auto" (dense when n <= 2k + 2).
        """
        k = min(k, self.n)
        if method == "auto":
            method = "dense" if self.n <= 2 * k + 2 else "lanczos"
        if method == "dense" or k >= self.n:
            w, v = np.linalg.eigh(self.dense(kind))
            w, v = w[::-1][:k], v[:, ::-1][:, :k]
        elif method == "lanczos":
            from scipy.sparse.linalg import eigsh

            v0 = np.random.default_rng(seed).standard_normal(self.n)
            w, v = eigsh(self.linear_operator(kind), k=k, which="LA", v0=v0, tol=tol,
                         ncv=min(self.n, max(2 * k + 1, 20)))
            order = np.argsort(w)[::-1]
            w, v = w[order], v[:, order]
        else:
            raise ValueError(f"unknown eigen method {method!r} (known: auto, lanczos, dense)")
        return (w, v) if vectors else w


def top_eigenvalues(model, x, y, *, kind="hessian", layer=None, k=10, loss_fn=F.cross_entropy,
                    dtype=torch.float64, method="auto", seed=0) -> np.ndarray:
    """Convenience: the k largest eigenvalues of the Hessian or GGN (whole network or a layer block)."""
    op = CurvatureOperator(model, x, y, loss_fn=loss_fn, layer=layer, dtype=dtype)
    return op.top_eigen(kind, k, method=method, seed=seed)


# K-FAC -------------------------------------------------------------------------------------------

@dataclass
class KFAC:
    A: torch.Tensor  # (in [+1]) x (in [+1]) second moments of the layer's (homogeneous) input
    S: torch.Tensor  # out x out: E[J_s^T H_z J_s]
    m: torch.Tensor  # E[a], the input mean (without the appended 1)
    bias: bool

    @property
    def nu(self) -> float:
        """||m||^2 + 1 (the lecture's nu); ||m||^2 for a layer without bias."""
        return float(self.m.pow(2).sum()) + (1.0 if self.bias else 0.0)

    @property
    def m_bar(self) -> torch.Tensor:
        return torch.cat([self.m, self.m.new_ones(1)]) if self.bias else self.m

    def predicted(self, k: int) -> np.ndarray:
        """The lecture's prediction: nu * lambda_i(S), i = 1..k (descending)."""
        return self.nu * np.sort(torch.linalg.eigvalsh(self.S).double().cpu().numpy())[::-1][:k]

    def kron_top(self, k: int) -> np.ndarray:
        """The k largest eigenvalues of A (x) S itself: products lambda_i(A) lambda_j(S)."""
        la = torch.linalg.eigvalsh(self.A).double().cpu().numpy()
        ls = torch.linalg.eigvalsh(self.S).double().cpu().numpy()
        return np.sort(np.outer(la, ls).ravel())[::-1][:k]

    def a_top(self) -> float:
        return float(torch.linalg.eigvalsh(self.A)[-1])


def kfac_factors(model: nn.Module, x, y, layer, *, dtype=torch.float64) -> KFAC:
    """K-FAC factors of one Linear layer for the cross-entropy loss, on the batch (x, y).

    S is exact for networks whose samples do not interact; with batch normalization after the
    layer the outputs of one sample depend on the others and S is the batch analogue
    (1/N) sum_k G_k^T G_k, with G_k the gradient w.r.t. s of sum_n <Q_n[:, k], z_n>.
    """
    net = copy.deepcopy(model).to(dtype)
    net.train(model.training)
    _, mod = _weight_layer(net, layer)
    if not isinstance(mod, nn.Linear):
        raise ValueError("kfac_factors supports Linear layers only")
    x = x.to(dtype)
    store = {}

    def hook(m, inp, out):
        store["a"] = inp[0].detach()
        delta = torch.zeros_like(out, requires_grad=True)
        store["delta"] = delta
        return out + delta

    h = mod.register_forward_hook(hook)
    try:
        z = net(x)
    finally:
        h.remove()
    a, delta = store["a"], store["delta"]
    n = a.shape[0]
    p = torch.softmax(z.detach(), dim=1)
    sp = p.sqrt()
    # Q[n, i, k] = delta_ik sqrt(p_k) - p_i sqrt(p_k): per-sample H_z = Q Q^T
    q = torch.diag_embed(sp) - p.unsqueeze(2) * sp.unsqueeze(1)
    S = torch.zeros(delta.shape[1], delta.shape[1], dtype=dtype, device=x.device)
    for k in range(z.shape[1]):
        (g,) = torch.autograd.grad(z, delta, grad_outputs=q[:, :, k], retain_graph=True)
        S += g.T @ g
    S /= n
    bias = mod.bias is not None
    ab = torch.cat([a, a.new_ones(n, 1)], 1) if bias else a
    return KFAC(A=ab.T @ ab / n, S=S, m=a.mean(0), bias=bias)


def outlier_overlap(vecs: np.ndarray, layer_module: nn.Module, m_bar: torch.Tensor) -> np.ndarray:
    """For each eigenvector (column) of a Linear layer's block: the fraction of its squared norm in
    the subspace {v (x) m_bar}, i.e. ||U m_bar||^2 / (||m_bar||^2 ||U||^2) with U = [W-part | b-part]."""
    out_f, in_f = layer_module.weight.shape
    mb = m_bar.double().cpu().numpy()
    res = []
    for u in vecs.T:
        W = u[:out_f * in_f].reshape(out_f, in_f)
        U = np.concatenate([W, u[out_f * in_f:].reshape(out_f, 1)], 1) if layer_module.bias is not None else W
        res.append(float(np.sum((U @ mb) ** 2) / (mb @ mb) / np.sum(U ** 2)))
    return np.array(res)
