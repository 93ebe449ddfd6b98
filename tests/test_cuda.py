"""CUDA (skipped without a GPU): every model config/paper.yaml trains, a few steps each, with bf16 autocast and
channels_last, to a finite and decreasing loss; the engine prints its throughput (images/s, peak GPU memory).

The models are read the way the pipeline reads them: config/config.yaml with config/paper.yaml merged over it,
validated (defaults filled), then each enabled study's run plan (``normlab.plan.run_specs``) plus the models
of the side jobs (S2's exactness pairs, S3's invariance checks). The data are synthetic images of the paper
config's dataset shape (CIFAR-10: 3 x 32 x 32, 10 classes), class prototypes plus noise, so the loss must fall
within a few steps and no download is needed.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none on this machine)")

ROOT = Path(__file__).resolve().parents[1]
SHAPES = {"cifar10": (3, 32, 32), "fashion_mnist": (1, 28, 28), "mnist1d": (1, 40)}


def paper_config() -> dict:
    from normlab.config import merge, validate

    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    return validate(merge(cfg, yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())))


def paper_models() -> dict[str, tuple[dict, str]]:
    """{label: (model spec, dataset)}: each distinct model of the paper config's jobs."""
    from normlab import plan

    cfg = paper_config()
    out: dict[str, tuple[dict, str]] = {}

    def add(label, spec, ds):
        key = json.dumps(spec, sort_keys=True)
        if key not in {json.dumps(s, sort_keys=True) for s, _ in out.values()}:
            out[label] = (spec, ds)

    for study in plan.enabled(cfg):
        sc = cfg["studies"][study]
        for spec in plan.run_specs(cfg, study).values():
            add(f"{study}/{spec['variant']}", spec["model"], sc["dataset"])
        if study == "li_arora":
            ex = sc["exactness"]
            add("li_arora/exactness", {**ex["model"], "bn_eps": ex["bn_eps"]}, sc["dataset"])
        if study == "norm_growth":
            for i, m in enumerate(sc["invariance"]["models"]):
                add(f"norm_growth/invariance{i}", {**sc["model"], **m, "norm": "bn_pre"}, sc["dataset"])
    return out


MODELS = paper_models() if torch.cuda.is_available() else {}


def synthetic(shape, n=512, n_classes=10, seed=0, device="cuda"):
    """Class prototypes plus noise: learnable within a few steps."""
    g = torch.Generator().manual_seed(seed)
    protos = torch.randn(n_classes, *shape, generator=g)
    y = torch.randint(n_classes, (n,), generator=g)
    x = protos[y] + 0.5 * torch.randn(n, *shape, generator=g)
    return x.to(device), y.to(device)


@pytest.mark.parametrize("label", sorted(MODELS))
def test_paper_model_trains_in_bf16_channels_last(label):
    from normlab.accel import Precision
    from normlab.models import build_model

    spec, ds = MODELS[label]
    shape = SHAPES[ds]
    torch.manual_seed(0)
    model = build_model(spec, shape, 10).cuda()
    prec = Precision(True, "cuda")
    assert prec.amp
    prec.prepare(model, shape)
    if len(shape) == 3:
        assert prec.channels_last
        convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
        assert all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in convs if m.weight.dim() == 4)
    x, y = synthetic(shape)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.02, momentum=0.9)
    losses = []
    model.train()
    for step in range(30):
        idx = torch.arange(step * 64, (step + 1) * 64, device="cuda") % len(x)
        opt.zero_grad(set_to_none=True)
        with prec.autocast():
            out = model(prec.batch(x[idx]))
            assert out.dtype == torch.bfloat16  # the matmuls/convolutions ran in bf16
            loss = torch.nn.functional.cross_entropy(out.float(), y[idx])
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses), f"{label}: non-finite loss {losses}"
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < first, f"{label}: loss did not decrease ({first:.4f} -> {last:.4f})"


def test_engine_prints_throughput_and_peak_gpu_memory(tmp_path, capsys):
    """The training loop's progress lines (the job's log) and summary carry images/s and the peak GPU memory."""
    from normlab.data import Data
    from normlab.engine import train

    x, y = synthetic((3, 32, 32))
    xt, yt = synthetic((3, 32, 32), n=128, seed=1)
    data = Data(x, y, xt, yt, 10, "synthetic")
    spec = {"study": "t", "key": "v/s0-0-00000000", "variant": "v", "keys": {}, "seeds": [0, 1],
            "wandb": {"mode": "disabled", "save_weights": False},
            "model": {"arch": "vgg", "channels": [16, 16, 32, 32], "norm": "bn_pre", "act": "relu"}, "lr": 0.02,
            "optimizer": {"name": "sgd", "momentum": 0.9}, "schedule": {"name": "constant"}, "probes": [],
            "train": {"steps": 20, "batch_size": 64, "eval_every": 10, "log_every": 5, "amp": True}}
    summaries = train(spec, data, torch.device("cuda"), tmp_path / "o")
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("[progress]")]
    assert lines and " img/s" in lines[-1] and " | GPU mem peak " in lines[-1] and lines[-1].endswith(" GiB")
    for s in summaries:
        assert s["amp"] is True and s["images_per_s"] > 0 and s["gpu_mem_peak_gib"] > 0
        assert s["status"] == "ok"
