"""Batched seeds (normlab/ensemble.py, normlab/engine.py): one loop, E members.

What is exact and what is not: a seed trained alone (E = 1) and with other seeds gives bitwise the
same metrics (MLPs; convolutions agree to rounding). Against separate nn.Module models (a plain PyTorch loop): initial weights, batches,
labels and noise draws are identical; the first step's outputs and losses are bitwise equal;
gradients agree to float32 rounding (a batched matmul may sum in another order), so short runs agree
to ~1e-5. Resume after a kill is exact (bitwise).
"""

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from normlab import data as data_mod
from normlab.engine import batch_indices, run
from normlab.ensemble import StackedModel
from normlab.models import build_model
from normlab.probes import Probe, register


@pytest.fixture(scope="module")
def mnist1d(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "mnist1d.pt"
    data_mod.prepare("mnist1d", {"num_samples": 1000}, path)
    return path


def spec(data, model=None, train=None, seeds=(0, 1, 2), **over):
    s = {"study": "t", "key": "a/s0-0-00000000", "variant": "a", "keys": {}, "seeds": list(seeds),
         "data": str(data), "device": "cpu",
         "model": model or {"arch": "mlp", "depth": 2, "width": 32, "norm": "bn_pre", "act": "relu"},
         "optimizer": {"name": "sgd", "momentum": 0.9}, "lr": 0.1, "schedule": {"name": "constant"},
         "train": {"steps": 60, "batch_size": 32, "eval_every": 30, "log_every": 10, "ckpt_every": 20,
                   **(train or {})},
         "probes": []}
    s.update(over)
    return s


def read(out, seed):
    return pd.read_parquet(out / f"seed{seed}" / "metrics.parquet")


def reference_run(data_path, sp, seed):
    """A plain PyTorch loop for one seed (nn.Module, torch.optim.SGD), with the engine's batches: per step
    (batch_loss); and the final test loss. What the stacked engine must reproduce to float32 rounding."""
    torch.manual_seed(seed)
    d = data_mod.load(data_path)
    model = build_model(sp["model"], d.input_shape, d.n_classes)
    opt = torch.optim.SGD(model.parameters(), lr=sp["lr"], momentum=sp["optimizer"]["momentum"])
    losses = {}
    for t in range(sp["train"]["steps"]):
        idx = batch_indices(seed, t, len(d.x_train), sp["train"]["batch_size"], "cpu")
        opt.zero_grad()
        loss = F.cross_entropy(model(d.x_train[idx]), d.y_train[idx])
        loss.backward()
        opt.step()
        losses[t] = loss.item()
    model.eval()
    with torch.no_grad():
        test_loss = F.cross_entropy(model(d.x_test), d.y_test).item()
    return losses, test_loss


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
    {"arch": "shifted_mlp", "depth": 2, "width": 16, "norm": "bn_pre", "act": "tanh", "shift": 2.0,
     "center_acts": True},
], ids=["mlp-noisy_bn", "cnn1d-bn", "mlp-center", "shifted_mlp-bn-centered"])
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


@pytest.mark.parametrize("k,length", [(2, 40), (2, 41), (3, 30), (3, 32), (1, 9)])
def test_window_max_is_max_pool1d_bitwise(k, length):
    """The stacked path's 1-D max pool (WindowMax): F.max_pool1d's values and gradient, bitwise, with
    ties (ReLU zeros: the first maximum gets the gradient) and NaNs (the last NaN of a window wins)."""
    from normlab.ensemble import WindowMax, window_max_kernel

    torch.manual_seed(0)
    x = torch.randint(-2, 3, (6, 5, length)).float().relu()
    x[0, 0, :4] = float("nan")
    x[0, 1, 3:9] = float("nan")
    x.requires_grad_()
    ref, out = F.max_pool1d(x, k), WindowMax.apply(x, k)
    g = torch.randn_like(ref)
    assert torch.equal(ref.nan_to_num(7.0), out.nan_to_num(7.0))
    assert torch.equal(torch.autograd.grad(ref, x, g)[0], torch.autograd.grad(out, x, g)[0])
    assert window_max_kernel(torch.nn.MaxPool1d(k)) == k and window_max_kernel(torch.nn.MaxPool1d(3, 2)) is None
    assert window_max_kernel(torch.nn.MaxPool2d(2)) is None and window_max_kernel(torch.nn.MaxPool1d(2, padding=1)) is None


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


CASES = {
    "bn_pre": {},
    "noisy_bn-random_labels": {"model": {"arch": "mlp", "depth": 2, "width": 32, "norm": "noisy_bn", "act": "relu"},
                               "random_labels": True},
    "fresh_labels": {"random_labels": "fresh"},
    "cnn1d-bn_post": {"model": {"arch": "cnn1d", "channels": [8, 8], "norm": "bn_post", "act": "relu"}},
    "center": {"model": {"arch": "mlp", "depth": 2, "width": 16, "norm": "center", "act": "relu"}},
    "scale_invariant-unit_norm-probes": {
        "model": {"arch": "mlp", "depth": 2, "width": 32, "norm": "bn_pre", "act": "relu", "scale_invariant": True},
        "constraints": ["unit_norm"],
        "probes": [{"name": "weight_norms", "every": 20}, {"name": "units", "every": 20, "track": 2}]},
    "shifted_mlp-bn-centered": {"model": {"arch": "shifted_mlp", "depth": 2, "width": 16, "norm": "bn_pre",
                                          "act": "tanh", "shift": 2.0, "center_acts": True}},
}


@pytest.mark.parametrize("case", list(CASES))
def test_seed_alone_equals_seed_in_a_batch(mnist1d, tmp_path, case):
    """One seed is the same loop with one member: seed 1 trained alone and with seeds 0 and 2 gives
    bitwise the same metrics for MLPs (every op acts on each member separately), and the seeds differ.
    Convolutions are one grouped convolution whose kernel choice depends on the number of groups: there
    the metrics agree to float32 rounding over a short run."""
    torch.set_num_threads(1)
    kw = dict(CASES[case])
    run(spec(mnist1d, **kw), tmp_path / "three")
    run(spec(mnist1d, seeds=[1], **kw), tmp_path / "one")
    if kw.get("model", {}).get("arch") == "cnn1d":
        a, b = read(tmp_path / "three", 1), read(tmp_path / "one", 1)
        assert a[["step", "metric"]].equals(b[["step", "metric"]])
        early = (a.step <= 30).to_numpy()
        np.testing.assert_allclose(a.value[early], b.value[early], rtol=1e-3, atol=1e-4)
    else:
        pd.testing.assert_frame_equal(read(tmp_path / "three", 1), read(tmp_path / "one", 1))
    finals = [read(tmp_path / "three", s).query("metric == 'test_loss' and step == 60").value.item() for s in (0, 1, 2)]
    assert len(set(finals)) == 3
    if kw.get("probes"):
        metrics = read(tmp_path / "one", 1).metric
        assert metrics.str.startswith("weight_norm/").any() and metrics.str.startswith("units/bn0/angle_").any()


def test_float64_runs_in_float64(mnist1d, tmp_path):
    (s,) = run(spec(mnist1d, seeds=[0], train={"dtype": "float64", "steps": 20}), tmp_path / "o")
    assert s["dtype"] == "float64" and s["status"] == "ok"


def test_engine_matches_a_plain_pytorch_loop(mnist1d, tmp_path):
    """60 steps per seed: the stacked engine's batch losses and final test loss agree with a plain
    one-seed PyTorch loop to float32 rounding (a batched matmul may sum in another order)."""
    torch.set_num_threads(1)
    sp = spec(mnist1d, train={"log_every": 1})
    run(sp, tmp_path / "ens")
    for seed in sp["seeds"]:
        losses, test_loss = reference_run(mnist1d, sp, seed)
        m = read(tmp_path / "ens", seed)
        got = m[m.metric == "batch_loss"].set_index("step").value
        np.testing.assert_allclose(got.to_numpy(), [losses[t] for t in got.index], rtol=1e-4, atol=1e-5)
        final = m.query("metric == 'test_loss' and step == 60").value.item()
        assert final == pytest.approx(test_loss, rel=1e-4, abs=1e-5)


def test_divergence_per_member(mnist1d, tmp_path):
    """A huge rate: each member diverges at the step it does alone; every member's outputs are written."""
    model = {"arch": "mlp", "depth": 2, "width": 32, "norm": "none", "act": "relu"}
    s = run(spec(mnist1d, lr=1e6, model=model), tmp_path / "ens")
    assert [x["status"] for x in s] == ["diverged"] * 3
    for x in s:
        (alone,) = run(spec(mnist1d, seeds=[x["seed"]], lr=1e6, model=model), tmp_path / f"s{x['seed']}")
        assert alone["diverged_step"] == x["diverged_step"]
        assert (read(tmp_path / "ens", x["seed"]).metric == "diverged").sum() == 1


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
    sp = spec(mnist1d, model=model, probes=[{"name": "kill_at", "every": 1}])
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


def test_every_probe_leaves_training_bit_identical(mnist1d, tmp_path):
    """The engine's snapshot/restore around each probe (model, optimizer, RNG) and the member copies:
    training with every study probe due on many steps is bitwise the training without them."""
    torch.set_num_threads(1)
    model = {"arch": "mlp", "depth": 2, "width": 16, "norm": "noisy_bn", "act": "relu", "scale_invariant": True}
    probes = [{"name": "weight_norms", "every": 5}, {"name": "units", "every": 5, "track": 2},
              {"name": "ics", "every": 10, "layers": [0, 1]},
              {"name": "landscape", "every": 10, "scales": [0.5, 2.0], "n": 3},
              {"name": "curvature", "every": 15, "n_samples": 32, "layers": [0], "k": 2, "kinds": ["ggn"],
               "network": False}]
    base = spec(mnist1d, model=model, seeds=[0, 1], train={"steps": 30, "eval_every": 15},
                optimizer={"name": "sgd", "momentum": 0.9, "weight_decay": 1e-3})
    run(base, tmp_path / "plain")
    run({**base, "probes": probes}, tmp_path / "probed")
    for seed in (0, 1):
        a, b = read(tmp_path / "plain", seed), read(tmp_path / "probed", seed)
        assert set(b.metric) > set(a.metric)
        pd.testing.assert_frame_equal(a, b[b.metric.isin(set(a.metric))].reset_index(drop=True))
