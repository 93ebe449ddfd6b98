"""The training engine: determinism, resume after a kill, divergence, probes leave no trace, W&B rows,
start-up without heavy imports."""

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch

from normlab import data as data_mod
from normlab.engine import batch_indices, run
from normlab.schedules import build_schedule


@pytest.fixture(scope="module")
def mnist1d(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "mnist1d.pt"
    data_mod.prepare("mnist1d", {"num_samples": 1000}, path)
    return path


def spec(data, **over):
    s = {"study": "t", "key": "a/s0-0-00000000", "variant": "a", "keys": {"norm": "bn_pre"}, "seeds": [0],
         "data": str(data), "device": "cpu",
         "model": {"arch": "mlp", "depth": 2, "width": 32, "norm": "bn_pre", "act": "relu"},
         "optimizer": {"name": "sgd", "momentum": 0.9}, "lr": 0.1, "schedule": {"name": "constant"},
         "train": {"steps": 300, "batch_size": 32, "eval_every": 50, "log_every": 10, "ckpt_every": 50},
         "probes": []}
    s.update(over)
    return s


def metrics(out, seed=0):
    return pd.read_parquet(out / f"seed{seed}" / "metrics.parquet")


def test_prepared_data_is_standardized(mnist1d):
    d = data_mod.load(mnist1d)
    assert d.x_train.shape[1:] == (1, 40) and d.n_classes == 10
    assert abs(d.x_train.mean().item()) < 1e-4 and abs(d.x_train.std().item() - 1) < 1e-2
    assert len(d.x_train) == 800 and len(d.x_test) == 200


def test_same_seed_same_numbers_different_seed_different(mnist1d, tmp_path):
    torch.set_num_threads(1)
    run(spec(mnist1d), tmp_path / "a")
    run(spec(mnist1d), tmp_path / "b")
    run(spec(mnist1d, seeds=[1]), tmp_path / "c")
    pd.testing.assert_frame_equal(metrics(tmp_path / "a"), metrics(tmp_path / "b"))
    a, c = metrics(tmp_path / "a"), metrics(tmp_path / "c", 1)
    assert not a[a.metric == "test_loss"].value.equals(c[c.metric == "test_loss"].value)


def test_probe_leaves_training_bit_identical(mnist1d, tmp_path):
    torch.set_num_threads(1)
    run(spec(mnist1d), tmp_path / "plain")
    run(spec(mnist1d, probes=[{"name": "weight_norms", "every": 7}]), tmp_path / "probed")
    a, b = metrics(tmp_path / "plain"), metrics(tmp_path / "probed")
    b = b[~b.metric.str.startswith(("weight_norm", "grad_norm"))].reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
    assert (metrics(tmp_path / "probed").metric == "weight_norm/0").sum() == 43


def test_divergence_is_recorded_not_raised(mnist1d, tmp_path):
    s = spec(mnist1d, lr=1e6, model={"arch": "mlp", "depth": 2, "width": 32, "norm": "none", "act": "relu"})
    (summary,) = run(s, tmp_path / "d")
    assert summary["status"] == "diverged" and 0 <= summary["diverged_step"] < 300
    saved = json.loads((tmp_path / "d" / "seed0" / "summary.json").read_text())
    assert saved["status"] == "diverged" and saved["final"] == {}
    m = metrics(tmp_path / "d")
    assert (m.metric == "diverged").sum() == 1


def test_resume_after_kill_gives_identical_metrics(mnist1d, tmp_path):
    s = spec(mnist1d, seeds=[0, 1])
    s["train"] = {**s["train"], "steps": 800, "ckpt_every": 50}
    sj = tmp_path / "spec.json"
    sj.write_text(json.dumps(s))
    cmd = [sys.executable, "-m", "normlab.train", "--spec", str(sj), "--threads", "1"]
    subprocess.run(cmd + ["--out", str(tmp_path / "ref")], check=True, capture_output=True)

    ck = tmp_path / "ck"
    p = subprocess.Popen(cmd + ["--out", str(tmp_path / "killed"), "--ckpt-dir", str(ck)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (ck / "ensemble.pt").exists() and time.time() < deadline:  # killed after the first checkpoint
        time.sleep(0.01)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert (ck / "ensemble.pt").exists(), "the run finished before it could be killed"
    assert not (tmp_path / "killed" / "seed1" / "metrics.parquet").exists()
    out = subprocess.run(cmd + ["--out", str(tmp_path / "killed"), "--ckpt-dir", str(ck)], check=True,
                         capture_output=True, text=True)
    assert "resumed from step" in out.stderr
    for seed in (0, 1):
        pd.testing.assert_frame_equal(metrics(tmp_path / "ref", seed), metrics(tmp_path / "killed", seed))
    assert not ck.exists()


def test_batches_are_epoch_permutations():
    idx = torch.cat([batch_indices(3, t, 100, 10, "cpu") for t in range(10)])
    assert sorted(idx.tolist()) == list(range(100))
    assert torch.equal(batch_indices(3, 12, 100, 10, "cpu"), batch_indices(3, 12, 100, 10, "cpu"))
    assert not torch.equal(batch_indices(3, 0, 100, 10, "cpu"), batch_indices(4, 0, 100, 10, "cpu"))


def test_step_schedule_divides_at_milestones():
    lr = build_schedule({"name": "step", "milestones": [10, 20], "factor": 10}, 0.5, {"name": "sgd"})
    assert [lr(0), lr(9), lr(10), lr(19), lr(20), lr(100)] == pytest.approx([0.5, 0.5, 0.05, 0.05, 0.005, 0.005])


def test_missing_cifar_says_where_to_put_the_archive(tmp_path):
    with pytest.raises(data_mod.DatasetUnavailable) as e:
        data_mod.prepare("cifar10", {"root": str(tmp_path), "download": False}, tmp_path / "c.pt")
    assert "cifar-10-python.tar.gz" in str(e.value) and str(tmp_path) in str(e.value)
    assert not (tmp_path / "c.pt").exists()


def test_tracker_gets_batch_acc_and_probe_metrics_per_seed(mnist1d, tmp_path, monkeypatch):
    """W&B (one run per seed) receives every row the metrics file gets: batch_acc and probe metrics too."""
    from normlab import engine

    logged = {}

    class FakeTracker:
        def __init__(self, *, name, mode, **kw):
            self.mode, self.run, self.run_dir = "offline", object(), None
            self.rows = logged.setdefault(name, {})

        def log(self, metrics, step=None):
            for k, v in metrics.items():
                self.rows[(step, k)] = v

        def summary(self, values):
            pass

        def finish(self):
            pass

    monkeypatch.setattr(engine, "tracker", lambda w, **kw: FakeTracker(mode=w.get("mode"), **kw))
    s = spec(mnist1d, seeds=[0, 1], probes=[{"name": "weight_norms", "every": 7}])
    s["train"] = {**s["train"], "steps": 30}
    run(s, tmp_path / "o")
    for seed in (0, 1):
        m = metrics(tmp_path / "o", seed)
        rows = logged[f"a/seed{seed}"]
        assert {(int(r.step), r.metric): r.value for r in m.itertuples()} == rows
        assert any(k == "batch_acc" for _, k in rows) and any(k == "grad_norm" for _, k in rows)


def test_job_start_up_imports_nothing_heavy(mnist1d, tmp_path):
    """A whole training job (W&B disabled): no torch._dynamo / torch._inductor, wandb, seaborn,
    matplotlib or torchvision imported, and deterministic algorithms on."""
    s = spec(mnist1d, seeds=[0, 1], wandb={"mode": "disabled"})
    s["train"] = {**s["train"], "steps": 3}
    (tmp_path / "spec.json").write_text(json.dumps(s))
    code = ("import sys, torch; from normlab.train import main; "
            f"main(['--spec', {str(tmp_path / 'spec.json')!r}, '--out', {str(tmp_path / 'o')!r}, '--threads', '1']); "
            "assert torch.are_deterministic_algorithms_enabled(); "
            "print(sorted(m for m in ('torch._dynamo', 'torch._inductor', 'wandb', 'seaborn', 'matplotlib', "
            "'torchvision') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                         env={**os.environ, "WANDB_MODE": "disabled"})
    assert out.stdout.strip().splitlines()[-1] == "[]"
    summary = json.loads((tmp_path / "o" / "seed1" / "summary.json").read_text())
    assert summary["status"] == "ok" and summary["startup_s"] > 0


def test_engine_hash_is_the_config_hash():
    """The engine's checkpoint key uses its own copy of config_hash (no validator import at start-up)."""
    from normlab import config, engine

    obj = {"model": {"arch": "mlp", "width": 8}, "lr": 0.1, "seeds": [0, 1]}
    assert engine.config_hash(obj) == config.config_hash(obj)
    assert engine.config_hash(obj) != engine.config_hash({**obj, "lr": 0.2})


@pytest.mark.parametrize("opt", [{"name": "sgd", "momentum": 0.9, "nesterov": True, "weight_decay": 1e-3},
                                 {"name": "sgd"}, {"name": "adam", "weight_decay": 1e-4}, {"name": "adamw"}])
def test_optimizer_step_is_bitwise_the_public_step(opt):
    """The engine's optimizer_step (no torch._dynamo import) makes exactly optimizer.step()'s update."""
    from normlab.optim import build_optimizer
    from normlab.startup import optimizer_step

    torch.manual_seed(0)
    w = [torch.randn(3, 4, 5, requires_grad=True), torch.randn(3, 7, requires_grad=True)]
    v = [t.detach().clone().requires_grad_(True) for t in w]
    oa, ob = build_optimizer(w, opt, 0.1), build_optimizer(v, opt, 0.1)
    for step in range(3):
        for a, b in zip(w, v):
            g = torch.randn(a.shape, generator=torch.Generator().manual_seed(step))
            a.grad, b.grad = g.clone(), g.clone()
        oa.step()
        optimizer_step(ob, lean=True)
        for a, b in zip(w, v):
            assert torch.equal(a, b)
