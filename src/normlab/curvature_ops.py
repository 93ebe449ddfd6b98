"""Curvature of the training loss: top eigenvalues of the Hessian and of the Gauss-Newton matrix
(whole network or one layer's block), and K-FAC's factors of a layer with the lecture's prediction.

Both matrices are never formed: Lanczos (``lanczos_top``, torch, full reorthogonalization;
scipy's ``eigsh`` as the reference method) runs on products computed by autograd from one forward
pass whose graphs are kept (``retain_graph``):

- Hessian:     H v = d/dtheta <grad L(theta), v>                          (reverse-over-reverse)
- Gauss-Newton G v = J^T H_z J v, with J^T u = vjp(f)(u), J v = d/du <J^T u, v> (the vjp is
  linear in u: its backward is the jvp), H_z the Hessian of the loss in the network's outputs
  (again a double backward, so any loss works).

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


def private_copy(model: nn.Module, dtype, into: nn.Module | None = None) -> nn.Module:
    """A copy of ``model`` in ``dtype``, in ``model``'s mode: ``into`` (an earlier copy of the same
    architecture) refreshed in place when given (cheap), else a deep copy."""
    if into is None:
        net = copy.deepcopy(model).to(dtype)
    else:
        net = into
        with torch.no_grad():
            for dst, src in zip(list(net.parameters()) + list(net.buffers()),
                                list(model.parameters()) + list(model.buffers())):
                dst.copy_(src)
    net.train(model.training)
    return net


class CurvatureOperator:
    """Hessian- and GGN-vector products of ``loss_fn(model(x), y)`` in the parameters ``theta``.

    ``layer``: None for every trainable parameter, else a weight-layer index (or module): its block.
    One forward pass builds the graphs (lazily, per kind); every product is then one or two
    backward passes through them (``retain_graph``), in C++, no forward recomputed.
    ``block(layer)`` gives the operator of one layer's block on the same forward pass.
    """

    def __init__(self, model: nn.Module, x, y, *, loss_fn=F.cross_entropy, layer=None, dtype=torch.float64,
                 copies: dict | None = None, _shared=None):
        if _shared is None:
            # ``copies``: {dtype: a private copy of the model in that dtype} to reuse (values refreshed
            # here from ``model``) instead of deep copies; filled in when given empty
            copies = {} if copies is None else copies
            net = private_copy(model, dtype, copies.get(dtype))
            copies[dtype] = net
            for p in net.parameters():
                p.requires_grad_(False)
            xx = x.to(dtype) if x.is_floating_point() else x
            _shared = {"net": net, "x": xx, "y": y, "loss_fn": loss_fn, "dtype": dtype, "device": x.device,
                       "trainable": {n for n, p in model.named_parameters() if p.requires_grad},
                       "model": model, "x_in": x, "twins": {}, "copies": copies}
        net = _shared["net"]
        self._shared, self.net, self.loss_fn = _shared, net, loss_fn
        self.x, self.y = _shared["x"], y
        self.layer = None if layer is None else _weight_layer(net, layer)[0]  # the block's module name
        if layer is None:
            names = [n for n, _ in net.named_parameters() if n in _shared["trainable"]]
        else:
            prefix, mod = _weight_layer(net, layer)
            names = [f"{prefix}.{n}" if prefix else n for n, p in mod.named_parameters()]
        all_params = dict(net.named_parameters())
        self.names = names
        self.params = [all_params[n] for n in names]
        self.theta = {n: all_params[n].detach() for n in names}
        self.shapes = [p.shape for p in self.params]
        self.sizes = [p.numel() for p in self.params]
        self.n = sum(self.sizes)
        self.dtype, self.device = _shared["dtype"], _shared["device"]
        self._graphs: dict = {}
        self.n_matvec = 0

    def block(self, layer) -> "CurvatureOperator":
        """The operator of weight layer ``layer``'s block, sharing this operator's forward pass."""
        return CurvatureOperator(self.net, self.x, self.y, loss_fn=self.loss_fn, layer=layer, _shared=self._shared)

    def twin(self, dtype) -> "CurvatureOperator":
        """The same operator (block) on a copy of the model in ``dtype`` (one copy and forward per dtype)."""
        sh = self._shared
        if dtype == self.dtype:
            return self
        if dtype not in sh["twins"]:
            sh["twins"][dtype] = CurvatureOperator(sh["model"], sh["x_in"], self.y, loss_fn=self.loss_fn, dtype=dtype,
                                                   copies=sh["copies"])
        net = sh["twins"][dtype]
        if self.layer is None:
            return net
        from .models import WEIGHT_LAYERS

        return net.block([n for n, m in self.net.named_modules() if isinstance(m, WEIGHT_LAYERS)].index(self.layer))

    # graphs ------------------------------------------------------------------------------------
    def _forward(self):
        """z = net(x) with a graph to every parameter any operator on this forward pass uses."""
        sh = self._shared
        need = set(sh.get("grad_names", ())) | set(self.names)
        if "z" not in sh or not need <= sh["grad_names"]:
            for n, p in self.net.named_parameters():
                p.requires_grad_(n in need)
            acts = {}

            def hook(m, inp, out):
                acts[m] = (inp[0].detach(), out)

            from .models import weight_layers

            hs = [m.register_forward_hook(hook) for m in weight_layers(self.net)]
            try:
                with torch.enable_grad():
                    sh["z"] = self.net(sh["x"])
            finally:
                for h in hs:
                    h.remove()
            sh["acts"] = acts
            sh["grad_names"] = need
            sh.pop("lossgraph", None)
        return sh["z"]

    def _graph(self, kind: str):
        if kind in self._graphs:
            return self._graphs[kind]
        z = self._forward()
        with torch.enable_grad():
            if kind == "hessian":
                loss = self.loss_fn(z, self.y)
                g = torch.autograd.grad(loss, self.params, create_graph=True)
                self._graphs[kind] = torch.cat([t.reshape(-1) for t in g])
            else:
                u = torch.zeros_like(z, requires_grad=True)
                jtu = torch.autograd.grad(vdot(z, u), self.params, create_graph=True)
                sh = self._shared
                if "lossgraph" not in sh:  # gradient of the loss in the outputs, differentiable in z
                    zz = z.detach().requires_grad_(True)
                    (gz,) = torch.autograd.grad(self.loss_fn(zz, self.y), zz, create_graph=True)
                    sh["lossgraph"] = (zz, gz)
                self._graphs[kind] = (u, torch.cat([t.reshape(-1) for t in jtu]), z, *sh["lossgraph"])
        return self._graphs[kind]

    def kfac(self, layer) -> "KFAC":
        """K-FAC factors of weight layer ``layer`` (a Linear) on this forward pass (``kfac_factors``)."""
        _, mod = _weight_layer(self.net, layer)
        if not isinstance(mod, nn.Linear):
            raise ValueError("kfac_factors supports Linear layers only")
        blk = self.block(layer)
        z = blk._forward()  # the layer's parameters require grad: its output s is in the graph
        a, s_out = self._shared["acts"][mod]
        n = a.shape[0]
        p = torch.softmax(z.detach(), dim=1)
        sp = p.sqrt()
        # Q[n, i, k] = delta_ik sqrt(p_k) - p_i sqrt(p_k): per-sample H_z = Q Q^T
        q = torch.diag_embed(sp) - p.unsqueeze(2) * sp.unsqueeze(1)
        S = torch.zeros(s_out.shape[1], s_out.shape[1], dtype=a.dtype, device=a.device)
        for k in range(z.shape[1]):
            (g,) = torch.autograd.grad(vdot(z, q[:, :, k]), s_out, retain_graph=True)
            S += g.T @ g
        S /= n
        bias = mod.bias is not None
        ab = torch.cat([a, a.new_ones(n, 1)], 1) if bias else a
        return KFAC(A=ab.T @ ab / n, S=S, m=a.mean(0), bias=bias)

    # flat <-> dict ---------------------------------------------------------------------------
    def unflatten(self, v: torch.Tensor) -> dict:
        out, i = {}, 0
        for n, shape, size in zip(self.names, self.shapes, self.sizes):
            out[n] = v[i:i + size].view(shape)
            i += size
        return out

    def flatten(self, d: dict) -> torch.Tensor:
        return torch.cat([d[n].reshape(-1) for n in self.names])

    def _flat(self, ts, batched: bool) -> torch.Tensor:
        return torch.cat([t.reshape(t.shape[0], -1) if batched else t.reshape(-1) for t in ts], -1)

    # products ---------------------------------------------------------------------------------
    def hvp(self, v: torch.Tensor) -> torch.Tensor:
        """H v; ``v`` of shape (n,) or a batch (b, n) of vectors (rows)."""
        batched = v.dim() == 2
        self.n_matvec += v.shape[0] if batched else 1
        g = self._graph("hessian")
        if batched:
            hv = torch.autograd.grad(g, self.params, v.to(self.dtype), retain_graph=True, is_grads_batched=True)
        else:
            hv = torch.autograd.grad(vdot(g, v.to(self.dtype)), self.params, retain_graph=True)
        return self._flat(hv, batched).detach()

    def ggn_vp(self, v: torch.Tensor) -> torch.Tensor:
        """G v = J^T H_z J v; ``v`` of shape (n,) or (b, n)."""
        batched = v.dim() == 2
        self.n_matvec += v.shape[0] if batched else 1
        u, jtu, z, zz, gz = self._graph("ggn")
        if batched:
            kw = {"retain_graph": True, "is_grads_batched": True}
            (jv,) = torch.autograd.grad(jtu, u, v.to(self.dtype), **kw)
            (hjv,) = torch.autograd.grad(gz, zz, jv, **kw)
            gv = torch.autograd.grad(z, self.params, hjv, **kw)
        else:  # (one vector: through vdot)
            (jv,) = torch.autograd.grad(vdot(jtu, v.to(self.dtype)), u, retain_graph=True)
            (hjv,) = torch.autograd.grad(vdot(gz, jv), zz, retain_graph=True)
            gv = torch.autograd.grad(vdot(z, hjv), self.params, retain_graph=True)
        return self._flat(gv, batched).detach()

    def product(self, kind: str):
        if kind not in ("hessian", "ggn"):
            raise ValueError(f"unknown curvature kind {kind!r} (known: hessian, ggn)")
        return self.hvp if kind == "hessian" else self.ggn_vp

    def linear_operator(self, kind: str):
        from scipy.sparse.linalg import LinearOperator

        mv = self.product(kind)

        def matvec(v):
            t = torch.as_tensor(np.ascontiguousarray(v).reshape(-1), dtype=self.dtype, device=self.device)
            return mv(t).double().cpu().numpy()

        return LinearOperator((self.n, self.n), matvec=matvec, rmatvec=matvec, dtype=np.float64)

    def dense(self, kind: str, chunk: int = 64) -> np.ndarray:
        """The whole matrix by n products, ``chunk`` at a time (small blocks only)."""
        mv = self.product(kind)
        eye = torch.eye(self.n, dtype=self.dtype, device=self.device)
        cols = [mv(eye[i:i + chunk]).double() for i in range(0, self.n, chunk)]
        m = torch.cat(cols, 0).cpu().numpy()
        return (m + m.T) / 2

    def top_eigen(self, kind: str = "hessian", k: int = 10, *, method: str = "auto", tol: float = 1e-8,
                  seed: int = 0, vectors: bool = False, v0=None, max_steps: int | None = None,
                  krylov_dtype=None):
        """The k largest (algebraic) eigenvalues, descending (and eigenvectors as columns if asked).

        method: "lanczos" (``lanczos_top``: torch, full reorthogonalization, stops when every one of
        the k Ritz pairs has ||A u - theta u|| <= tol |theta|, the criterion of ARPACK's eigsh),
        "eigsh" (scipy's ARPACK, the reference), "dense" (n products + eigh) or "auto" (dense when
        n <= 2k + 2, else lanczos). ``v0``: a start vector (e.g. the previous call's eigenvectors summed).

        ``krylov_dtype`` (lanczos only, e.g. torch.float32 when this operator is float64): build the
        Krylov space with products of the model copied to that dtype (about half the cost), then
        refine the k Ritz vectors by Rayleigh-Ritz with k products in this operator's dtype and
        check the same criterion, ||A u - theta u|| <= tol |theta|, in this dtype; if it fails,
        Lanczos in this dtype continues from those vectors. The result meets the criterion in this
        dtype either way (eigenvalue errors ~ residual^2 / gap). The low-dtype stage stops at
        max(tol, 100 eps of krylov_dtype).
        """
        k = min(k, self.n)
        mv = self.product(kind)
        if method == "auto":
            method = "dense" if self.n <= 2 * k + 2 else "lanczos"
        if method == "dense" or k >= self.n:
            w, v = np.linalg.eigh(self.dense(kind))
            w, v = w[::-1][:k], v[:, ::-1][:, :k]
        elif method == "lanczos":
            g = torch.Generator(device="cpu").manual_seed(seed)
            start = torch.randn(self.n, generator=g, dtype=torch.float64).to(self.device)
            if v0 is not None:
                v0 = torch.as_tensor(v0, dtype=torch.float64, device=self.device).reshape(-1)
                start = v0 / v0.norm().clamp_min(1e-300) + 1e-2 * start / start.norm()
            with torch.no_grad():
                w = None
                if krylov_dtype is not None and krylov_dtype != self.dtype:
                    low = self.twin(krylov_dtype)
                    # no tighter than the low dtype can resolve (else its Lanczos would run on to n steps)
                    tol_low = max(tol, 100 * torch.finfo(krylov_dtype).eps)
                    _, u = lanczos_top(low.product(kind), start.to(krylov_dtype), k, tol=tol_low, max_steps=max_steps)
                    self.n_matvec += low.n_matvec
                    w, v, ok = self.rayleigh_ritz(kind, u.to(self.dtype), tol)
                    if not ok:
                        start, w = v.sum(1) + 1e-3 * start.to(self.dtype) / start.norm(), None
                if w is None:
                    w, v = lanczos_top(mv, start.to(self.dtype), k, tol=tol, max_steps=max_steps)
            w, v = w.double().cpu().numpy(), v.double().cpu().numpy()
        elif method == "eigsh":
            from scipy.sparse.linalg import eigsh

            v0 = np.random.default_rng(seed).standard_normal(self.n)
            w, v = eigsh(self.linear_operator(kind), k=k, which="LA", v0=v0, tol=tol,
                         ncv=min(self.n, max(2 * k + 1, 20)))
            order = np.argsort(w)[::-1]
            w, v = w[order], v[:, order]
        else:
            raise ValueError(f"unknown eigen method {method!r} (known: auto, lanczos, eigsh, dense)")
        return (w, v) if vectors else w

    def rayleigh_ritz(self, kind: str, u: torch.Tensor, tol: float):
        """Rayleigh-Ritz on span(u) (columns) with this operator's products: (theta descending,
        Ritz vectors, whether every pair has ||A x - theta x|| <= tol max(|theta|, eps^(2/3) |theta_1|))."""
        mv = self.product(kind)
        V, _ = torch.linalg.qr(u)
        AV = torch.stack([mv(V[:, i]) for i in range(V.shape[1])], 1)
        Hs = V.T @ AV
        theta, S = torch.linalg.eigh((Hs + Hs.T) / 2)
        theta, S = theta.flip(0), S.flip(1)
        X, AX = V @ S, AV @ S
        res = (AX - X * theta).norm(dim=0)
        eps = torch.finfo(self.dtype).eps
        top = theta.abs()
        ok = bool((res <= tol * torch.clamp(top, min=eps ** (2 / 3) * float(top.max()))).all())
        return theta, X, ok


def vdot(out: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """<out, v>, a scalar whose gradient is bitwise ``torch.autograd.grad(out, inputs, grad_outputs=v)`` (its
    backward feeds 1.0 * v into ``out``), built under no_grad too. Passing grad_outputs to torch.autograd.grad
    imports torch.fx's symbolic shapes and sympy (about 0.5 s at a process's first product: a third of a
    default curvature job's probe time)."""
    with torch.enable_grad():
        return (out * v).sum()


def lanczos_top(matvec, v0: torch.Tensor, k: int, *, tol: float = 1e-8, max_steps: int | None = None):
    """The k largest eigenpairs (descending; vectors as columns) of the symmetric operator ``matvec``.

    Lanczos without restarts, with full reorthogonalization (classical Gram-Schmidt against the
    whole basis, repeated when it removed more than half the norm): the Krylov space grows by one
    product per step until each of the k largest Ritz pairs (theta, u) has the residual
    ||A u - theta u|| = beta_m |e_m^T s| <= tol * max(|theta|, eps^(2/3) |theta_1|) (eigsh's
    criterion), or until it spans the whole space (then the result is exact). On an invariant
    subspace (beta ~ 0) it continues from a random vector orthogonal to the basis.
    """
    n = v0.numel()
    m_max = n if max_steps is None else min(n, max(max_steps, k))
    dt, dev = v0.dtype, v0.device
    eps = torch.finfo(dt).eps
    Q = torch.empty(min(m_max + 1, max(2 * k + 2, 32)), n, dtype=dt, device=dev)  # grown by doubling
    alpha, beta = [], []
    T = torch.zeros(0, 0, dtype=torch.float64)  # the tridiagonal matrix (first ``filled`` rows), grown by doubling
    filled = 0
    gen = torch.Generator(device="cpu").manual_seed(12345)
    Q[0] = v0 / v0.norm()
    scale = 0.0
    theta = s = None
    m = 0

    def orth(w, j):
        for _ in range(2):
            before = w.norm()
            w = w - Q[:j + 1].T @ (Q[:j + 1] @ w)
            after = w.norm()
            if after > 0.5 * before:
                break
        return w, float(after)

    for j in range(m_max):
        w = matvec(Q[j])
        a = float(torch.dot(Q[j], w))
        w = w - a * Q[j]
        if j > 0:
            w = w - beta[j - 1] * Q[j - 1]
        w, b = orth(w, j)
        alpha.append(a)
        m = j + 1
        scale = max(scale, abs(a) + b)
        breakdown = b <= 1e3 * eps * max(scale, 1e-300)
        if m >= k:
            # torch's eigh (numpy's may start BLAS threads, slow for these tiny matrices on busy cores)
            if m > T.shape[0]:
                old, T = T, torch.zeros(2 * m, 2 * m, dtype=torch.float64)
                T[:old.shape[0], :old.shape[0]] = old
            T[m - 1, m - 1] = a  # entries of steps before k are filled here too
            for i in range(max(filled, 1), m):
                T[i, i - 1] = T[i - 1, i] = beta[i - 1]
                T[i - 1, i - 1] = alpha[i - 1]
            filled = m
            theta, s = torch.linalg.eigh(T[:m, :m])
            theta, s = theta.numpy(), s.numpy()
            top = np.abs(theta[::-1][:k])
            res = b * np.abs(s[-1, ::-1][:k])
            if m == m_max or np.all(res <= tol * np.maximum(top, eps ** (2 / 3) * top.max())):
                break
        if j + 1 >= Q.shape[0]:
            Q = torch.cat([Q, torch.empty(min(Q.shape[0], m_max + 1 - Q.shape[0]), n, dtype=dt, device=dev)])
        if breakdown:  # invariant subspace: continue from a random vector orthogonal to it
            beta.append(0.0)
            r, _ = orth(torch.randn(n, generator=gen, dtype=torch.float64).to(dt).to(dev), j)
            Q[j + 1] = r / r.norm()
        else:
            beta.append(b)
            Q[j + 1] = w / b
    idx = np.arange(m - 1, m - 1 - k, -1)
    vals = torch.as_tensor(theta[idx].copy())
    vecs = Q[:m].T @ torch.as_tensor(s[:, idx].copy(), dtype=dt, device=dev)
    return vals, vecs


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
    return CurvatureOperator(model, x, y, layer=layer, dtype=dtype).kfac(layer)


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
