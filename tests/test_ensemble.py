"""Batched seeds (normlab/ensemble.py) against separate one-seed runs.

What is exact and what is not: initial weights, batches, labels and noise draws are identical; the
first step's outputs and losses are bitwise equal; gradients agree to float32 rounding (a batched
matmul may sum in another order). Over a short run the per-seed metrics therefore agree to ~1e-5
(tight tolerance); over longer runs rounding is amplified and runs agree only in distribution
(checked on the final test accuracy). Resume after a kill is exact (bitwise).
"""

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from normlab import data as data_mod
from normlab.ensemble import StackedModel
from normlab.models import build_model
from normlab.probes import Probe, register
from normlab.train import run


@pytest.fixture(scope="module")
def mnist1d(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "mnist1d.pt"
    data_mod.prepare("mnist1d", {"num_samples": 1000}, path)
    return path


def spec(data, ensemble, model=None, train=None, **over):
    s = {"study": "t", "version": "v-00000000", "variant": "a", "keys": {}, "seeds": [0, 1, 2],
         "data": str(data), "device": "cpu",
         "model": model or {"arch": "mlp", "depth": 2, "width": 32, "norm": "bn_pre", "act": "relu"},
         "optimizer": {"name": "sgd", "momentum": 0.9}, "lr": 0.1, "schedule": {"name": "constant"},
         "train": {"steps": 60, "batch_size": 32, "eval_every": 30, "log_every": 10, "ckpt_every": 20,
                   "ensemble": ensemble, **(train or {})},
         "probes": []}
    s.update(over)
    return s


def both(tmp_path, mnist1d, **kw):
    """Metrics per seed of the one-seed path and of the ensemble, merged on (step, metric)."""
    torch.set_num_threads(1)
    run(spec(mnist1d, False, **kw), tmp_path / "single")
    run(spec(mnist1d, True, **kw), tmp_path / "ens")
    out = {}
    for seed in (0, 1, 2):
        a = pd.read_parquet(tmp_path / "single" / f"seed{seed}" / "metrics.parquet")
        b = pd.read_parquet(tmp_path / "ens" / f"seed{seed}" / "metrics.parquet")
        assert len(a) == len(b) and set(a.metric) == set(b.metric)
        out[seed] = a.merge(b, on=["step", "metric"], suffixes=("_single", "_ens"))
    return out


def models(spec_model, seeds, data):
    ms = []
    for s in seeds:
        torch.manual_seed(s)
        ms.append(build_model(spec_model, data.input_shape, data.n_classes))
    return ms


@pytest.mark.parametrize("model", [
    {"arch": "mlp", "depth": 2, "width": 32, "norm": "noisy_bn", "act": "relu"},
    {"arch": "cnn1d", "channels": [8, 16], "norm": "bn_pre", "act": "tanh"},
    {"arch": "mlp", "depth": 2, "width": 16, "norm": "center", "act": "relu"},
], ids=["mlp-noisy_bn", "cnn1d-bn", "mlp-center"])
def test_first_step_matches_separate_models(mnist1d, model):
    """Same init, same batch, same noise -> the same outputs and losses (bitwise), grads to rounding."""
    torch.set_num_threads(1)
    d = data_mod.load(mnist1d)
    seeds = [0, 1, 2]
    single, stacked = models(model, seeds, d), models(model, seeds, d)
    gens = []
    for s in seeds:  # the RNG state each one-seed run continues from after building its model
        torch.manual_seed(s)
        build_model(model, d.input_shape, d.n_classes)
        gens.append(torch.Generator().set_state(torch.get_rng_state()))
    ens = StackedModel(stacked, gens)
    assert ens.path == "layers"
    idx = torch.stack([torch.arange(32) + 40 * s for s in seeds])
    out = ens.forward(d.x_train[idx])
    losses = torch.stack([F.cross_entropy(out[e], d.y_train[idx[e]]) for e in range(3)])
    losses.sum().backward()
    for e, (s, m) in enumerate(zip(seeds, single)):
        torch.manual_seed(s)
        build_model(model, d.input_shape, d.n_classes)  # same global RNG state as the one-seed path
        o = m(d.x_train[idx[e]])
        loss = F.cross_entropy(o, d.y_train[idx[e]])
        loss.backward()
        assert torch.equal(o, out[e]) and torch.equal(loss, losses[e])
        for n, p in m.named_parameters():
            torch.testing.assert_close(ens.params[n].grad[e], p.grad, rtol=1e-5, atol=1e-6)
        for n, b in m.named_buffers():  # per-member BN / centering statistics
            torch.testing.assert_close(ens.buffers[n][e], b, rtol=1e-6, atol=1e-7)
    assert not torch.equal(out[0], out[1])  # members differ (different seeds)


def test_vmap_fallback_matches_layer_path(mnist1d):
    torch.set_num_threads(1)
    d = data_mod.load(mnist1d)
    model = {"arch": "cnn1d", "channels": [8, 8], "norm": "bn_post", "act": "relu"}
    a = StackedModel(models(model, [0, 1], d), [torch.Generator()] * 2)
    b = StackedModel(models(model, [0, 1], d), [torch.Generator()] * 2, force_vmap=True)
    assert b.path == "vmap"
    x = d.x_train[:64].view(2, 32, 1, 40)
    torch.testing.assert_close(a.forward(x), b.forward(x), rtol=1e-5, atol=1e-6)
    for n in a.buffers:
        torch.testing.assert_close(a.buffers[n], b.buffers[n])
    a.training = b.training = False
    torch.testing.assert_close(a.forward(d.x_test, shared=True), b.forward(d.x_test, shared=True),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", ["bn_pre", "noisy_bn-random_labels", "scale_invariant-unit_norm-probes"])
def test_short_run_matches_separate_runs(mnist1d, tmp_path, case):
    """60 steps: every logged metric (losses, accuracies, probe values) agrees per seed to ~1e-5."""
    kw = {}
    if case == "noisy_bn-random_labels":
        kw = {"model": {"arch": "mlp", "depth": 2, "width": 32, "norm": "noisy_bn", "act": "relu"},
              "random_labels": True}
    if case == "scale_invariant-unit_norm-probes":
        kw = {"model": {"arch": "mlp", "depth": 2, "width": 32, "norm": "bn_pre", "act": "relu",
                        "scale_invariant": True},
              "constraints": ["unit_norm"], "probes": [{"name": "weight_norms", "every": 20}]}
    merged = both(tmp_path, mnist1d, **kw)
    for m in merged.values():
        np.testing.assert_allclose(m.value_ens.to_numpy(), m.value_single.to_numpy(), rtol=1e-4, atol=1e-5)
    finals = [m[(m.metric == "test_loss") & (m.step == 60)].value_ens.item() for m in merged.values()]
    assert len(set(finals)) == 3  # seeds differ
    if kw.get("probes"):
        assert any(m.metric.str.startswith("weight_norm/").any() for m in merged.values())


def test_long_run_same_distribution(mnist1d, tmp_path):
    """600 steps of a conv net: rounding differences grow, final accuracies agree in distribution."""
    model = {"arch": "cnn1d", "channels": [8, 16], "norm": "bn_pre", "act": "relu"}
    merged = both(tmp_path, mnist1d, model=model, train={"steps": 600, "eval_every": 300, "ckpt_every": 1000})
    fin = pd.DataFrame([m[(m.metric == "test_acc") & (m.step == 600)].iloc[0] for m in merged.values()])
    assert (fin.value_single > 0.3).all()  # both learned (chance is 0.1)
    assert abs(fin.value_ens.mean() - fin.value_single.mean()) < 0.05
    assert (fin.value_ens - fin.value_single).abs().max() < 0.1


def test_divergence_per_member(mnist1d, tmp_path):
    """A huge rate: each member diverges at the step the one-seed run does; others' outputs still written."""
    s = run(spec(mnist1d, True, lr=1e6, model={"arch": "mlp", "depth": 2, "width": 32, "norm": "none", "act": "relu"}),
            tmp_path / "ens")
    s1 = run(spec(mnist1d, False, lr=1e6, model={"arch": "mlp", "depth": 2, "width": 32, "norm": "none",
                                                   "act": "relu"}), tmp_path / "single")
    assert [x["status"] for x in s] == ["diverged"] * 3
    assert [x["diverged_step"] for x in s] == [x["diverged_step"] for x in s1]


_KILL = {"at": None}


@register("kill_at")
class _KillAt(Probe):
    """Test-only probe: raises once at a chosen step (a simulated kill); records nothing."""

    def before_step(self, ctx):
        if _KILL["at"] == ctx.step:
            _KILL["at"] = None
            raise KeyboardInterrupt
        return {}


def test_resume_after_kill_is_exact(mnist1d, tmp_path):
    torch.set_num_threads(1)
    model = {"arch": "mlp", "depth": 2, "width": 32, "norm": "noisy_bn", "act": "relu"}
    sp = spec(mnist1d, True, model=model, probes=[{"name": "kill_at", "every": 1}])
    run(sp, tmp_path / "whole", tmp_path / "ck_whole")
    _KILL["at"] = 47
    with pytest.raises(KeyboardInterrupt):
        run(sp, tmp_path / "killed", tmp_path / "ck")
    assert (tmp_path / "ck" / "ensemble.pt").exists()
    s = run(sp, tmp_path / "killed", tmp_path / "ck")
    assert s[0]["resumed_from"] == 40
    for seed in (0, 1, 2):
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "whole" / f"seed{seed}" / "metrics.parquet"),
                                      pd.read_parquet(tmp_path / "killed" / f"seed{seed}" / "metrics.parquet"))
