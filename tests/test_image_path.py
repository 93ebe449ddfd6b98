"""The CPU's path for image models (normlab/ensemble.py, ``conv_path="members"``): each member runs the model
on its own tensors in channels-last memory, instead of the members folded into grouped convolutions (the
old path, ``conv_path="grouped"``, kept for CUDA and for the benchmark).

What is exact and what is not: a seed trained with other seeds gives bitwise the metrics it gets alone (the
member path runs each member's own ops); a rerun is bitwise the same; against the old path and a plain
nn.Module the outputs and gradients agree to float32 rounding (channels-last convolutions sum in another order).
"""

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from normlab.engine import run
from normlab.ensemble import StackedModel, channels_last
from normlab.models import build_model

torch.set_num_threads(1)

VGG = {"arch": "vgg", "channels": [4, 4, 8, 8], "norm": "noisy_bn", "act": "relu"}
RESNET = {"arch": "preresnet", "depth": 8, "channels": [4, 8, 8], "norm": "bn_pre", "act": "relu"}


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """A tiny image set (1 channel, 12 x 12), in the layout normlab.data.prepare writes."""
    g = torch.Generator().manual_seed(0)
    path = tmp_path_factory.mktemp("data") / "img.pt"
    torch.save({"x_train": torch.randn(96, 1, 12, 12, generator=g), "y_train": torch.randint(3, (96,), generator=g),
                "x_test": torch.randn(40, 1, 12, 12, generator=g), "y_test": torch.randint(3, (40,), generator=g),
                "n_classes": 3, "name": "img", "params": {}, "key": {}}, path)
    return path


def spec(data, model, seeds=(0, 1, 2)):
    return {"study": "t", "key": "a/s0-0-00000000", "variant": "a", "keys": {}, "seeds": list(seeds),
            "data": str(data), "device": "cpu", "model": model, "optimizer": {"name": "sgd", "momentum": 0.9},
            "lr": 0.05, "schedule": {"name": "constant"}, "probes": [], "wandb": {"mode": "disabled", "save_weights": False},
            "train": {"steps": 12, "batch_size": 16, "eval_every": 6, "log_every": 2, "ckpt_every": 100}}


def metrics(out, seed):
    return pd.read_parquet(out / f"seed{seed}" / "metrics.parquet")[["step", "metric", "value"]]


@pytest.mark.parametrize("model", [VGG, RESNET], ids=["vgg-noisy_bn", "preresnet"])
def test_a_member_trains_bitwise_as_a_one_seed_job_and_reruns_bitwise(images, tmp_path, model):
    summ = run(spec(images, model), tmp_path / "three")
    assert {s["ensemble"]["path"] for s in summ} == {"members"}
    run(spec(images, model, seeds=[1]), tmp_path / "one")
    run(spec(images, model), tmp_path / "again")
    pd.testing.assert_frame_equal(metrics(tmp_path / "three", 1), metrics(tmp_path / "one", 1))
    for seed in (0, 1, 2):
        pd.testing.assert_frame_equal(metrics(tmp_path / "three", seed), metrics(tmp_path / "again", seed))


@pytest.mark.parametrize("model", [VGG, RESNET], ids=["vgg-noisy_bn", "preresnet"])
def test_member_path_agrees_with_grouped_path_and_plain_modules_to_rounding(images, model):
    blob = torch.load(images, weights_only=False)
    x = blob["x_train"][:48].view(3, 16, 1, 12, 12)
    y = blob["y_train"][:48].view(3, 16)

    def models():
        out = []
        for seed in (0, 1, 2):
            torch.manual_seed(seed)
            out.append(build_model(model, (1, 12, 12), 3))
        return out

    def step(path):
        ens = StackedModel(models(), [torch.Generator().manual_seed(10 + e) for e in range(3)], conv_path=path)
        assert ens.path == ("members" if path == "members" else ("layers" if model is VGG else "vmap"))
        out = ens.forward(x)
        F.cross_entropy(out.flatten(0, 1), y.flatten(), reduction="none").view(3, -1).mean(1).sum().backward()
        return out.detach(), {k: v.grad for k, v in ens.params.items()}, {k: v.clone() for k, v in ens.buffers.items()}

    out_m, grads_m, bufs_m = step("members")
    if model is VGG:  # the vmap path (the old path of models that are not a Sequential) draws noise otherwise
        out_g, grads_g, bufs_g = step("grouped")
        torch.testing.assert_close(out_m, out_g, rtol=1e-5, atol=1e-5)
        for k in grads_m:
            torch.testing.assert_close(grads_m[k], grads_g[k], rtol=1e-4, atol=1e-5)
        for k in bufs_m:
            torch.testing.assert_close(bufs_m[k], bufs_g[k], rtol=1e-5, atol=1e-6)
    else:  # against plain modules, one after another (a plain PyTorch loop's step)
        for e, m in enumerate(models()):
            o = m(x[e])
            torch.testing.assert_close(out_m[e], o.detach(), rtol=1e-5, atol=1e-5)
            F.cross_entropy(o, y[e]).backward()
            for k, p in m.named_parameters():
                torch.testing.assert_close(grads_m[k][e], p.grad, rtol=1e-4, atol=1e-5)
            for k, b in m.named_buffers():
                torch.testing.assert_close(bufs_m[k][e], b, rtol=1e-5, atol=1e-6)


def test_channels_last_holds_for_one_channel_images():
    """A 1-channel batch made channels-last keeps strides a convolution reads as channels-last, so its output
    (and everything after it) stays channels-last; the values are the input's."""
    x = torch.randn(4, 1, 6, 6)
    cl = channels_last(x)
    assert torch.equal(cl, x)
    out = F.conv2d(cl, torch.randn(3, 1, 3, 3), padding=1)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert not F.conv2d(x.contiguous(memory_format=torch.channels_last), torch.randn(3, 1, 3, 3),
                        padding=1).is_contiguous(memory_format=torch.channels_last)
