"""Datasets as prepared tensors.

``prepare`` turns a dataset (generated or read through torchvision) into one ``.pt`` file of
float32 inputs and int64 labels, standardized with the training set's statistics; ``load``
brings it back as tensors on a device. There is no DataLoader: the small datasets here fit in
memory and batches are index slices. Nothing falls back to fake data: a missing source is an
error that says where the files must go.

CLI (used by the ``prepare_data`` rule):
    python -m normlab.data --name mnist1d --params '{"num_samples": 5000}' --out resources/data/x.pt
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from .io import atomic_torch_save


class DatasetUnavailable(RuntimeError):
    """The source files of a dataset are missing and cannot be fetched."""


@dataclass
class Data:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    n_classes: int
    name: str

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def to(self, device, dtype=torch.float32) -> "Data":
        return Data(
            self.x_train.to(device, dtype),
            self.y_train.to(device),
            self.x_test.to(device, dtype),
            self.y_test.to(device),
            self.n_classes,
            self.name,
        )


def _mnist1d(num_samples: int = 5000, train_split: float = 0.8, seed: int = 42):
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples, args.train_split, args.seed = num_samples, train_split, seed
    d = make_dataset(args)
    # (N, 40) signals as (N, 1, 40) so that 1-D convs and MLPs (which flatten) both take them.
    x = torch.as_tensor(d["x"], dtype=torch.float32).unsqueeze(1)
    xt = torch.as_tensor(d["x_test"], dtype=torch.float32).unsqueeze(1)
    return x, torch.as_tensor(d["y"]).long(), xt, torch.as_tensor(d["y_test"]).long(), 10


def _fashion_mnist(root: str, n_train=None, n_test=None, cache: str = "resources/downloads"):
    """Read the original IDX files (gzipped or not) from ``root`` through torchvision."""
    import gzip
    import shutil

    from torchvision.datasets import FashionMNIST

    root = Path(root)
    raw = Path(cache) / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name in ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]:
        if (raw / name).exists():
            continue
        if (root / name).exists():
            shutil.copyfile(root / name, raw / name)
        elif (root / f"{name}.gz").exists():
            with gzip.open(root / f"{name}.gz") as f_in, open(raw / f"{name}.tmp", "wb") as f_out:
                shutil.copyfileobj(f_in, f_out)
            os.replace(raw / f"{name}.tmp", raw / name)
        else:
            raise DatasetUnavailable(
                f"Fashion-MNIST file {name}(.gz) not found in {root}: install Debian's package "
                "dataset-fashion-mnist (it puts the files in /usr/share/datasets/fashion-mnist) or "
                "point datasets.fashion_mnist.root at a folder holding them"
            )
    tr = FashionMNIST(str(cache), train=True, download=False)
    te = FashionMNIST(str(cache), train=False, download=False)
    x, y = tr.data[:n_train].float().div(255).unsqueeze(1), tr.targets[:n_train].long()
    xt, yt = te.data[:n_test].float().div(255).unsqueeze(1), te.targets[:n_test].long()
    return x, y, xt, yt, 10


def _cifar10(root: str, n_train=None, n_test=None, download: bool = True):
    from torchvision.datasets import CIFAR10

    root = Path(root)
    archive = root / "cifar-10-python.tar.gz"
    folder = root / "cifar-10-batches-py"
    try:
        if archive.exists() and not folder.exists():
            import tarfile

            with tarfile.open(archive) as tar:
                tar.extractall(root, filter="data")
        tr = CIFAR10(str(root), train=True, download=download and not folder.exists())
        te = CIFAR10(str(root), train=False, download=False)
    except Exception as e:  # torchvision raises URLError/RuntimeError offline
        raise DatasetUnavailable(
            f"CIFAR-10 is not available offline: put cifar-10-python.tar.gz (from "
            f"https://www.cs.toronto.edu/~kriz/cifar.html) in {root}/ or set datasets.cifar10.root "
            f"({type(e).__name__}: {e})"
        ) from None
    x = torch.as_tensor(tr.data[:n_train]).permute(0, 3, 1, 2).float().div(255)
    xt = torch.as_tensor(te.data[:n_test]).permute(0, 3, 1, 2).float().div(255)
    y = torch.as_tensor(tr.targets[:n_train]).long()
    yt = torch.as_tensor(te.targets[:n_test]).long()
    return x, y, xt, yt, 10


SOURCES = {"mnist1d": _mnist1d, "fashion_mnist": _fashion_mnist, "cifar10": _cifar10}


def prepare(name: str, params: dict, out: str | Path) -> None:
    """Build the dataset and save standardized tensors to ``out`` (atomically)."""
    if name not in SOURCES:
        raise ValueError(f"unknown dataset {name!r} (known: {', '.join(SOURCES)})")
    x, y, xt, yt, n_classes = SOURCES[name](**params)
    # Per-channel standardization with training-set statistics.
    dims = [0] + list(range(2, x.dim()))
    mean, std = x.mean(dim=dims, keepdim=True), x.std(dim=dims, keepdim=True).clamp_min(1e-8)
    blob = {
        "x_train": ((x - mean) / std).contiguous(),
        "y_train": y,
        "x_test": ((xt - mean) / std).contiguous(),
        "y_test": yt,
        "n_classes": n_classes,
        "name": name,
        "params": params,
    }
    atomic_torch_save(blob, out)


def load(path: str | Path, device="cpu", dtype=torch.float32) -> Data:
    blob = torch.load(path, map_location="cpu", weights_only=False)
    d = Data(blob["x_train"], blob["y_train"], blob["x_test"], blob["y_test"], blob["n_classes"], blob["name"])
    return d.to(device, dtype)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--name", required=True)
    ap.add_argument("--params", default="{}")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    try:
        prepare(a.name, json.loads(a.params), a.out)
    except DatasetUnavailable as e:
        raise SystemExit(f"error: {e}")


if __name__ == "__main__":
    main()
