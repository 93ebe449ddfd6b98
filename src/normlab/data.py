"""Datasets as prepared tensors.

``prepare`` turns a dataset (generated or read through torchvision) into one ``.pt`` file of
float32 inputs and int64 labels, standardized with the training set's statistics; ``load``
brings it back as tensors on a device. The file is named by the hash of ``datakey.data_key`` (the
parameters and, for MNIST-1D, the mnist1d version), which it also records under ``key``. There is
no DataLoader: the small datasets here fit in memory and batches are index slices. Nothing falls
back to fake data: a missing source is an error that says where the files must go.

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

from .datakey import data_key
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

    def to(self, device, dtype=torch.float32) -> Data:
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


CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
_CIFAR10_BATCHES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def _cifar10_batch(path: Path):
    """One batch file of CIFAR-10's python version: a pickled dict with 'data' (N, 3072) uint8 rows
    (1024 red, 1024 green, 1024 blue values, row-major) and 'labels'."""
    import pickle

    import numpy as np

    with open(path, "rb") as f:
        d = pickle.load(f, encoding="latin1")
    d = {k.decode() if isinstance(k, bytes) else k: v for k, v in d.items()}
    x = torch.from_numpy(np.asarray(d["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
    return x, torch.as_tensor(d["labels"], dtype=torch.long)


def _cifar10(root: str, n_train=None, n_test=None, download: bool = True):
    """Read CIFAR-10's python version from ``root``: the folder cifar-10-batches-py, else the
    archive cifar-10-python.tar.gz (unpacked there), else (``download``) the archive fetched by
    torchvision with its checksum."""
    import shutil
    import tarfile
    import tempfile

    root = Path(root)
    archive, folder = root / "cifar-10-python.tar.gz", root / "cifar-10-batches-py"
    where = (f"put cifar-10-python.tar.gz (from {CIFAR10_URL}) in {root}/, or set datasets.cifar10.root "
             f"to a folder holding it")
    if not all((folder / b).exists() for b in _CIFAR10_BATCHES):
        if not archive.exists():
            if not download:
                raise DatasetUnavailable(f"CIFAR-10 not found and datasets.cifar10.download is false: {where}")
            try:
                from torchvision.datasets.utils import download_url

                root.mkdir(parents=True, exist_ok=True)
                with tempfile.TemporaryDirectory(dir=root) as tmp:  # no half-downloaded archive left
                    download_url(CIFAR10_URL, tmp, archive.name, md5=CIFAR10_MD5)
                    os.replace(Path(tmp) / archive.name, archive)
            except (OSError, RuntimeError) as e:  # offline: URLError, timeouts; RuntimeError: bad checksum
                raise DatasetUnavailable(
                    f"CIFAR-10 is not available offline: {where} ({type(e).__name__}: {e})") from None
        with tempfile.TemporaryDirectory(dir=root) as tmp:
            with tarfile.open(archive) as tar:
                tar.extractall(tmp, filter="data")
            if not (Path(tmp) / folder.name).is_dir():
                raise DatasetUnavailable(f"{archive} holds no {folder.name}/ folder: not CIFAR-10's python version")
            shutil.rmtree(folder, ignore_errors=True)
            os.replace(Path(tmp) / folder.name, folder)
    missing = [b for b in _CIFAR10_BATCHES if not (folder / b).exists()]
    if missing:
        raise DatasetUnavailable(f"CIFAR-10 batches {missing} missing in {folder}: {where}")
    train = [_cifar10_batch(folder / b) for b in _CIFAR10_BATCHES[:-1]]
    x, y = torch.cat([b[0] for b in train]), torch.cat([b[1] for b in train])
    xt, yt = _cifar10_batch(folder / "test_batch")
    return x[:n_train].float().div(255), y[:n_train], xt[:n_test].float().div(255), yt[:n_test], 10


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
        "key": data_key(name, params),  # what the file's name is the hash of (generator version included)
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
        raise SystemExit(f"error: {e}") from None
    params = json.loads(a.params)
    log_dataset(a.out, {"name": a.name, "params": params, "key": data_key(a.name, params)})


def log_dataset(path: str | Path, config: dict) -> None:
    """Log the prepared dataset file as a W&B artifact (type ``dataset``, named after the file: the
    root of the lineage graph; training runs use it). W&B settings: NORMLAB_WANDB (the Snakefile's);
    runs go under ``resources/wandb/`` (next to the data folder). A no-op when W&B is disabled."""
    from .tracking import run_id, settings
    from .tracking import tracker as make_tracker

    path = Path(path)
    name = path.stem  # <dataset>-<hash of its parameters>
    tracker = make_tracker(settings(), group="datasets", name=f"prepare_data/{name}", job_type="prepare_data",
                           config=config, dir=path.resolve().parent.parent, tags=["dataset"],
                           id=run_id("prepare_data", name))
    tracker.log_artifact(name, "dataset", {path.name: path}, metadata=config)
    tracker.finish()


if __name__ == "__main__":
    main()
