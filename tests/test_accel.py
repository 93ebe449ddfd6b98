"""The GPU data path (normlab/accel.py): on-device augmentation, bf16 autocast with float32
normalization, and a training loop without per-step host-device syncs (that last one needs CUDA)."""

from __future__ import annotations

import json

import pytest
import torch
from test_data import make_cifar10_archive
from torch import nn

from normlab import data as D
from normlab import engine as Eng
from normlab import engine as T
from normlab.accel import Precision, augment
from normlab.models.layers import BatchCenter, Noise


def test_flip_mirrors_exactly_the_drawn_images():
    x = torch.arange(4 * 2 * 3 * 5, dtype=torch.float32).reshape(4, 2, 3, 5)
    out = augment(x, seed=0, step=7, flip=True)
    flipped = [bool(torch.equal(o, xi.flip(-1))) for o, xi in zip(out, x)]
    kept = [bool(torch.equal(o, xi)) for o, xi in zip(out, x)]
    assert all(f != k for f, k in zip(flipped, kept))  # each image is either mirrored or untouched
    many = augment(x.repeat(64, 1, 1, 1), seed=0, step=8, flip=True)
    share = sum(bool(torch.equal(o, xi.flip(-1))) for o, xi in zip(many, x.repeat(64, 1, 1, 1))) / len(many)
    assert 0.3 < share < 0.7
    assert torch.equal(augment(x, 0, 7, flip=True), out)  # same (seed, step): same draw
    assert not all(torch.equal(augment(x, s, 7, flip=True), out) for s in range(1, 6))


def test_crop_is_a_shift_with_zero_padding():
    n, c, h, w, pad = 32, 3, 6, 6, 2
    x = torch.rand(n, c, h, w) + 1  # no zeros in the images: zeros in the output are padding
    out = augment(x, seed=1, step=0, crop=pad)
    assert out.shape == x.shape
    padded = nn.functional.pad(x, (pad,) * 4)
    shifts = set()
    for i in range(n):  # every output is one (dy, dx) window of the zero-padded image
        hits = [(dy, dx) for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)
                if torch.equal(out[i], padded[i, :, dy:dy + h, dx:dx + w])]
        assert len(hits) == 1, i
        shifts.add(hits[0])
    assert len(shifts) > 5  # the offsets vary across the batch
    both = augment(x, seed=1, step=0, crop=pad, flip=True)
    for i in range(n):
        windows = [padded[i, :, dy:dy + h, dx:dx + w] for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)]
        assert any(torch.equal(both[i], wdw) or torch.equal(both[i], wdw.flip(-1)) for wdw in windows)


def test_augment_refuses_non_images():
    with pytest.raises(ValueError, match="train.augment needs image batches"):
        augment(torch.zeros(4, 1, 40), 0, 0, flip=True)


def test_amp_keeps_normalization_in_float32():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), Noise(), nn.ReLU(), nn.Conv2d(4, 4, 3),
                          BatchCenter(4), nn.Flatten(), nn.LazyLinear(2))
    model(torch.zeros(2, 3, 8, 8))
    assert not Precision(True, "cpu").amp  # bf16 autocast is for CUDA only
    prec = Precision(False, "cpu")
    prec.amp = True  # force the CUDA set-up, checked here with CPU autocast
    prec.prepare(model, (3, 8, 8))
    seen = {}

    def record(mod, args, out):  # (input dtype, output dtype) of the first module of each type
        seen.setdefault(type(mod).__name__, (args[0].dtype, out.dtype))

    for m in model:
        m.register_forward_hook(record)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(prec.batch(torch.randn(5, 3, 8, 8)))
    assert seen["Conv2d"][1] == torch.bfloat16  # the convolutions do run in bf16 ...
    for name in ("BatchNorm2d", "Noise", "BatchCenter"):  # ... the normalization layers in float32
        assert seen[name] == (torch.float32, torch.float32), (name, seen[name])
    assert model[1].running_mean.dtype == torch.float32 and model[1].running_var.dtype == torch.float32
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)


def test_stacked_amp_keeps_normalization_in_float32():
    """The engine's stacked model under bf16 autocast (``fp32_norm``, set when train.amp is on): the
    convolutions run in bf16, BN / noise / centering get float32 inputs and keep float32 statistics."""
    from normlab.ensemble import StackedModel

    def build(seed, norm):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Conv2d(3, 4, 3), *( [nn.BatchNorm2d(4), Noise()] if norm == "bn" else [BatchCenter(4)]),
                             nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))

    x = torch.randn(2, 5, 3, 8, 8)
    for norm in ("bn", "center"):
        ens = StackedModel([build(s, norm) for s in (0, 1)], [torch.Generator().manual_seed(s) for s in (0, 1)],
                           fp32_norm=True, conv_path="grouped")  # CUDA's path (amp is CUDA only)
        assert ens.path == "layers"
        seen = []
        ops = ens.ops
        ens.ops = [(lambda f: (lambda h: (seen.append(h.dtype), f(h))[1]))(f) for f in ops]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = ens.forward(x)
        assert seen[1] == torch.bfloat16  # the convolution's output is bf16 ...
        assert seen[2] == torch.float32  # ... the normalization's output float32 (it computed in float32)
        assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()
        for b in ens.buffers.values():  # ... and the statistics stay float32
            assert b.dtype in (torch.float32, torch.int64)
        assert ens.buffers[next(k for k in ens.buffers if "running_mean" in k)].abs().sum() > 0
        # the CPU's member path: the same hooks on the module it runs
        ens = StackedModel([build(s, norm) for s in (0, 1)], [torch.Generator().manual_seed(s) for s in (0, 1)],
                           fp32_norm=True, conv_path="members")
        assert ens.path == "members"
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = ens.forward(x)
        assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()
        assert all(b.dtype in (torch.float32, torch.int64) for b in ens.buffers.values())
        assert ens.buffers[next(k for k in ens.buffers if "running_mean" in k)].abs().sum() > 0


def _image_spec(tmp_path, **train):
    root = tmp_path / "cifar10"
    root.mkdir()
    make_cifar10_archive(root, n_per_batch=8, n_test=8)
    D.prepare("cifar10", {"root": str(root), "download": False}, tmp_path / "c.pt")
    return {"study": "t", "key": "v/s0-0-00000000", "variant": "v", "keys": {}, "seeds": [0],
            "data": str(tmp_path / "c.pt"), "device": "cpu", "wandb": {"mode": "disabled"},
            "model": {"arch": "vgg", "channels": [4, 4], "norm": "bn_pre", "act": "relu"}, "lr": 0.05,
            "optimizer": {"name": "sgd", "momentum": 0.9}, "schedule": {"name": "constant"}, "probes": [],
            "train": {"steps": 6, "batch_size": 8, "eval_every": 3, "log_every": 2, "ckpt_every": 3, **train}}


def test_training_with_augmentation_is_deterministic_and_resumes(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    spec = _image_spec(tmp_path, augment={"flip": True, "crop": 4})
    T.run(spec, tmp_path / "a")
    T.run(spec, tmp_path / "b")
    a = json.loads((tmp_path / "a/seed0/summary.json").read_text())
    b = json.loads((tmp_path / "b/seed0/summary.json").read_text())
    assert a["augment"] == {"flip": True, "crop": 4} and a["amp"] is False
    assert a["final"] == b["final"]
    plain = T.run({**spec, "train": {**spec["train"], "augment": {}}}, tmp_path / "p")[0]
    assert plain["augment"] is None and plain["final"] != a["final"]  # augmentation did change the batches
    # a run killed right after its step-3 checkpoint resumes to the same numbers (augmentation draws too)
    save = Eng.atomic_torch_save

    def save_then_die(obj, path):
        save(obj, path)
        if obj.get("step") == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(Eng, "atomic_torch_save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        T.run(spec, tmp_path / "killed", tmp_path / "ck")
    monkeypatch.setattr(Eng, "atomic_torch_save", save)
    resumed = T.run(spec, tmp_path / "resumed", tmp_path / "ck")[0]
    assert resumed["resumed_from"] == 3 and resumed["final"] == a["final"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none on this machine)")
def test_cuda_loop_syncs_only_at_log_and_eval_steps(tmp_path):
    import warnings

    spec = {**_image_spec(tmp_path, augment={"flip": True, "crop": 4}, amp=True), "device": "cuda"}

    def n_syncs(steps):
        s = {**spec, "train": {**spec["train"], "steps": steps, "log_every": 1000, "eval_every": 1000,
                                "ckpt_every": 1000}}
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as w:
                warnings.simplefilter("always")
                T.run(s, tmp_path / f"s{steps}")
        finally:
            torch.cuda.set_sync_debug_mode("default")
        return sum("synchroniz" in str(x.message) for x in w)

    assert n_syncs(5) == n_syncs(25)  # syncs do not grow with the number of steps
