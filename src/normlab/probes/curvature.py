"""Curvature probe: top eigenvalues of the loss Hessian and Gauss-Newton matrix (normlab.curvature).

``curvature`` (before the step, every ``every`` steps): on a fixed curvature batch (the first
``n_samples`` training examples, the same at every step so values are comparable over time), in
training mode, in ``dtype`` (float64 by default). Parameters:

- ``layers`` (list of weight-layer indices, negative from the end): per layer i, the ``k`` top
  eigenvalues of its Hessian block and GGN block, K-FAC's factors and the lecture's prediction;
- ``network`` (bool): also the ``k_network`` top eigenvalues of the whole network's Hessian and GGN;
- ``kinds``: subset of [hessian, ggn] for the layer blocks; ``network_kinds`` for the whole network
  (default: ``kinds``); ``tol``: the relative residual tolerance of eigsh's criterion, which every
  returned Ritz pair meets (||A u - theta u|| <= tol |theta|, checked in ``dtype``);
- ``krylov_dtype`` ("float32" by default, None for off): blocks of at least ``KRYLOV_MIN_N``
  parameters build their Krylov space with products in this dtype, then the Ritz pairs are refined
  (Rayleigh-Ritz) and checked in ``dtype`` (``CurvatureOperator.top_eigen``): the same criterion,
  about half the cost (tests/test_probe_speed_paths.py checks it against dense float64).

Cost: one forward pass of the curvature batch (in ``dtype``, and one in ``krylov_dtype``) serves
every block, the network and K-FAC; each product is one or two backward passes through the kept
graphs; Lanczos with full reorthogonalization in torch (``normlab.curvature.lanczos_top``). The
probe keeps its member's model copies between calls and refreshes them in place.

Metrics (i = the layer's non-negative index, j = 1..k, descending):
``curv/L<i>/hessian/eig<j>``, ``curv/L<i>/ggn/eig<j>``, ``curv/L<i>/ggn/overlap<j>`` (share of
the j-th GGN eigenvector in m_bar (x) R^M), ``curv/L<i>/kfac_pred/eig<j>`` (nu * lambda_j(S)),
``curv/L<i>/kfac/eig<j>`` (eigenvalues of A (x) S), ``curv/L<i>/nu``, ``curv/L<i>/m_norm2``,
``curv/L<i>/a_top`` (top eigenvalue of A), ``curv/net/<kind>/eig<j>``. Cross-entropy loss only
for the K-FAC part.
"""

from __future__ import annotations

import torch

from . import Probe, register

KRYLOV_MIN_N = 2048  # blocks at least this large use ``krylov_dtype`` for their Lanczos products


@register("curvature")
class CurvatureProbe(Probe):
    read_only = True  # it measures private copies of the model (no snapshot, no member copy around it)

    def __init__(self, every: int, layers=(-1,), k: int = 10, n_samples: int = 512, network: bool = True,
                 k_network: int = 5, kinds=("hessian", "ggn"), network_kinds=None, dtype: str = "float64",
                 tol: float = 1e-6, krylov_dtype: str | None = "float32"):
        super().__init__(every)
        self.layers, self.k, self.n_samples = list(layers), k, n_samples
        self.network, self.k_network, self.kinds = network, k_network, list(kinds)
        self.network_kinds = list(kinds if network_kinds is None else network_kinds)
        for kd in self.kinds + self.network_kinds:
            if kd not in ("hessian", "ggn"):
                raise ValueError(f"curvature probe: unknown kind {kd!r} (known: hessian, ggn)")
        self.dtype = {"float64": torch.float64, "float32": torch.float32}[dtype]
        self.tol = tol
        self._copies: dict = {}  # this member's model copies (per dtype), refreshed at every call
        self.krylov_dtype = None if krylov_dtype is None else {"float64": torch.float64, "float32": torch.float32}[krylov_dtype]

    def _krylov(self, op):
        """Lower-precision Krylov space for large blocks only (small ones: products cost little)."""
        return self.krylov_dtype if op.n >= KRYLOV_MIN_N else None

    def before_step(self, ctx):
        from ..curvature_ops import CurvatureOperator, outlier_overlap
        from ..models import weight_layers

        x, y = ctx.data.x_train[:self.n_samples], ctx.data.y_train[:self.n_samples]
        wl = weight_layers(ctx.model)
        out = {}
        # one forward pass of the curvature batch; every block's and the network's products use its graph
        net = CurvatureOperator(ctx.model, x, y, loss_fn=ctx.loss_fn, dtype=self.dtype, copies=self._copies)
        for layer in self.layers:
            i = layer % len(wl)
            pre = f"curv/L{i}"
            op = net.block(i)
            k = min(self.k, op.n - 1)
            vecs = None
            for kind in self.kinds:
                w, v = op.top_eigen(kind, k, tol=self.tol, vectors=True, krylov_dtype=self._krylov(op))
                out.update({f"{pre}/{kind}/eig{j + 1}": float(e) for j, e in enumerate(w)})
                if kind == "ggn":
                    vecs = v
            if ctx.spec.get("loss", "cross_entropy") == "cross_entropy" and isinstance(wl[i], torch.nn.Linear):
                f = net.kfac(i)
                out[f"{pre}/nu"] = f.nu
                out[f"{pre}/m_norm2"] = float(f.m.pow(2).sum())
                out[f"{pre}/a_top"] = f.a_top()
                out.update({f"{pre}/kfac_pred/eig{j + 1}": float(e) for j, e in enumerate(f.predicted(k))})
                out.update({f"{pre}/kfac/eig{j + 1}": float(e) for j, e in enumerate(f.kron_top(k))})
                if vecs is not None:
                    ov = outlier_overlap(vecs, wl[i], f.m_bar)
                    out.update({f"{pre}/ggn/overlap{j + 1}": float(o) for j, o in enumerate(ov)})
        if self.network:
            for kind in self.network_kinds:
                w = net.top_eigen(kind, min(self.k_network, net.n - 1), tol=self.tol, krylov_dtype=self._krylov(net))
                out.update({f"curv/net/{kind}/eig{j + 1}": float(e) for j, e in enumerate(w)})
        return out
