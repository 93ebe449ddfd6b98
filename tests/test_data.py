"""The data layer: CIFAR-10 from its own archive format, Fashion-MNIST from Debian's package,
MNIST-1D generated; a missing source is a clear error, never fake data. A prepared file is named by
its parameters and, for MNIST-1D, the generator's version (``datakey.data_key``)."""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
import tarfile
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import torch

from normlab import data as D
from normlab import datakey
from normlab.config import config_hash
from normlab.datakey import data_key

FASHION = Path("/usr/share/datasets/fashion-mnist")
ROOT = Path(__file__).resolve().parents[1]


def _standardized(x: torch.Tensor, x_train: torch.Tensor) -> torch.Tensor:
    dims = [0] + list(range(2, x.dim()))
    mean, std = x_train.mean(dim=dims, keepdim=True), x_train.std(dim=dims, keepdim=True)
    return (x - mean) / std


def make_cifar10_archive(root: Path, n_per_batch=4, n_test=3, seed=0) -> tuple[np.ndarray, ...]:
    """A tiny cifar-10-python.tar.gz in CIFAR-10's own layout: cifar-10-batches-py/ holding
    data_batch_1..5, test_batch (pickled dicts: 'data' (N, 3072) uint8 rows of 1024 red, 1024 green,
    1024 blue values; 'labels'; 'batch_label'; 'filenames') and batches.meta."""
    rng = np.random.default_rng(seed)
    src = root / "src" / "cifar-10-batches-py"
    src.mkdir(parents=True)
    xs, ys = [], []
    for name, n in [(f"data_batch_{i}", n_per_batch) for i in range(1, 6)] + [("test_batch", n_test)]:
        x = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        y = rng.integers(0, 10, size=n).tolist()
        blob = {b"batch_label": name.encode(), b"labels": y, b"data": x,
                b"filenames": [f"{name}_{i}.png".encode() for i in range(n)]}
        (src / name).write_bytes(pickle.dumps(blob, protocol=2))
        xs.append(x)
        ys.append(np.asarray(y))
    meta = {b"label_names": [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse",
                              b"ship", b"truck"], b"num_cases_per_batch": n_per_batch, b"num_vis": 3072}
    (src / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    with tarfile.open(root / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(src, arcname="cifar-10-batches-py")
    shutil.rmtree(root / "src")
    return np.concatenate(xs[:5]), np.concatenate(ys[:5]), xs[5], ys[5]


def test_cifar10_reads_its_own_archive_format(tmp_path):
    root = tmp_path / "cifar10"
    root.mkdir()
    x_raw, y_raw, xt_raw, yt_raw = make_cifar10_archive(root)
    out = tmp_path / "c.pt"
    D.prepare("cifar10", {"root": str(root), "download": False}, out)
    d = D.load(out)
    assert d.input_shape == (3, 32, 32) and d.n_classes == 10 and d.name == "cifar10"
    assert len(d.x_train) == 20 and len(d.x_test) == 3
    assert torch.equal(d.y_train, torch.as_tensor(y_raw)) and torch.equal(d.y_test, torch.as_tensor(yt_raw))
    # pixel (i, c, h, w) is byte c*1024 + h*32 + w of row i, standardized per channel with train statistics
    x = torch.as_tensor(x_raw).reshape(-1, 3, 32, 32).float() / 255
    xt = torch.as_tensor(xt_raw).reshape(-1, 3, 32, 32).float() / 255
    torch.testing.assert_close(d.x_train, _standardized(x, x))
    torch.testing.assert_close(d.x_test, _standardized(xt, x))
    assert (root / "cifar-10-batches-py" / "test_batch").exists()  # unpacked once, read from there later
    (root / "cifar-10-python.tar.gz").unlink()
    D.prepare("cifar10", {"root": str(root), "download": False, "n_train": 7, "n_test": 2}, tmp_path / "s.pt")
    s = D.load(tmp_path / "s.pt")
    assert len(s.x_train) == 7 and len(s.x_test) == 2
    assert torch.equal(s.y_train, d.y_train[:7])


def test_cifar10_offline_error_says_where_to_put_the_archive(tmp_path, monkeypatch):
    root = tmp_path / "nowhere"
    with pytest.raises(D.DatasetUnavailable, match="cifar-10-python.tar.gz") as e:
        D.prepare("cifar10", {"root": str(root), "download": False}, tmp_path / "c.pt")
    assert str(root) in str(e.value) and "datasets.cifar10.root" in str(e.value)

    from urllib.error import URLError

    import torchvision.datasets.utils as tvu

    def offline(*args, **kwargs):
        raise URLError("no network")

    monkeypatch.setattr(tvu, "download_url", offline)
    with pytest.raises(D.DatasetUnavailable, match="not available offline") as e:
        D.prepare("cifar10", {"root": str(root)}, tmp_path / "c.pt")
    assert f"{root}/" in str(e.value) and "cifar-10-python.tar.gz" in str(e.value)
    assert not (tmp_path / "c.pt").exists() and not list(root.glob("*.tar.gz"))  # nothing fake, nothing half
    # the CLI (prepare_data rule) ends with that one line, no traceback
    with pytest.raises(SystemExit, match="^error: CIFAR-10 is not available offline"):
        D.main(["--name", "cifar10", "--params", f'{{"root": "{root}"}}', "--out", str(tmp_path / "c.pt")])


def test_cifar10_rejects_an_archive_of_another_layout(tmp_path):
    root = tmp_path / "c"
    root.mkdir()
    (tmp_path / "junk.txt").write_text("not cifar")
    with tarfile.open(root / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "junk.txt", arcname="junk.txt")
    with pytest.raises(D.DatasetUnavailable, match="cifar-10-batches-py"):
        D.prepare("cifar10", {"root": str(root), "download": False}, tmp_path / "c.pt")


def test_fashion_mnist_from_the_debian_package(tmp_path):
    if not (FASHION / "train-images-idx3-ubyte.gz").exists():
        if shutil.which("apt-get") is None or os.geteuid() != 0:
            pytest.skip(f"{FASHION} missing and apt is unavailable here (Debian package dataset-fashion-mnist)")
        pytest.fail(f"{FASHION} missing: `make datasets` (run by `make test`) installs Debian's dataset-fashion-mnist")
    out = tmp_path / "f.pt"
    D.prepare("fashion_mnist", {"root": str(FASHION), "n_train": 500, "n_test": 200,
                                "cache": str(tmp_path / "cache")}, out)
    d = D.load(out)
    assert d.input_shape == (1, 28, 28) and d.n_classes == 10
    assert len(d.x_train) == 500 and len(d.x_test) == 200
    assert set(d.y_train.tolist()) == set(range(10))  # real labels, every class present
    assert abs(float(d.x_train.mean())) < 1e-4 and abs(float(d.x_train.std()) - 1) < 1e-3
    # the first training image of Fashion-MNIST is an ankle boot (class 9); the second a T-shirt (0)
    assert d.y_train[:2].tolist() == [9, 0]


def test_fashion_mnist_missing_files_name_the_package(tmp_path):
    with pytest.raises(D.DatasetUnavailable, match="dataset-fashion-mnist"):
        D.prepare("fashion_mnist", {"root": str(tmp_path), "cache": str(tmp_path / "cache")}, tmp_path / "f.pt")


def test_mnist1d_is_generated_deterministically(tmp_path):
    params = {"num_samples": 200, "train_split": 0.8, "seed": 3}
    D.prepare("mnist1d", params, tmp_path / "a.pt")
    D.prepare("mnist1d", params, tmp_path / "b.pt")
    a, b = D.load(tmp_path / "a.pt"), D.load(tmp_path / "b.pt")
    assert a.input_shape == (1, 40) and a.n_classes == 10
    assert len(a.x_train) == 160 and len(a.x_test) == 40
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    D.prepare("mnist1d", {**params, "seed": 4}, tmp_path / "c.pt")
    assert not torch.equal(D.load(tmp_path / "c.pt").x_train, a.x_train)
    # the file records what its name is the hash of: the parameters and the generator's version
    blob = torch.load(tmp_path / "a.pt", weights_only=False)
    assert blob["params"] == params and blob["key"] == {**params, "mnist1d_version": metadata.version("mnist1d")}


def test_data_key_adds_the_generators_version(monkeypatch):
    params = {"num_samples": 200, "seed": 3}
    key = data_key("mnist1d", params)
    assert key == {"num_samples": 200, "seed": 3, "mnist1d_version": metadata.version("mnist1d")}
    assert params == {"num_samples": 200, "seed": 3}  # not modified
    # datasets read from disk: their parameters alone (the names of their prepared files do not change)
    for ds in ("fashion_mnist", "cifar10"):
        assert data_key(ds, {"root": "x", "n_train": 5}) == {"root": "x", "n_train": 5}
    # another mnist1d release: another key, hence another file (and runs), never the old name over new data
    monkeypatch.setattr(datakey.metadata, "version", lambda name: "0.0.3")
    assert data_key("mnist1d", params)["mnist1d_version"] == "0.0.3"
    assert config_hash(data_key("mnist1d", params)) != config_hash(key)


def test_data_key_is_light_to_import():
    """The plan calls it at DAG parse time: no torch, no mnist1d (its version comes from its metadata)."""
    code = ("import sys; from normlab.datakey import data_key; k = data_key('mnist1d', {}); "
            "heavy = [m for m in ('torch', 'mnist1d', 'numpy', 'normlab.data') if m in sys.modules]; "
            "assert not heavy, heavy; print(k['mnist1d_version'])")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == metadata.version("mnist1d")


def test_the_plan_names_dataset_files_by_their_key():
    """resources/data/<dataset>-<hash of data_key>.pt, in the plan (the prepare_data rule's output)."""
    import yaml

    from normlab import plan
    from normlab.config import validate

    c = validate(yaml.safe_load((ROOT / "config" / "config.yaml").read_text()))
    for study in plan.enabled(c):
        ds = c["studies"][study]["dataset"]
        key = data_key(ds, c["datasets"].get(ds, {}))
        assert plan.data_file(c, study) == f"resources/data/{ds}-{config_hash(key)}.pt", study


def test_unknown_dataset_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'"):
        D.prepare("imagenet", {}, tmp_path / "x.pt")
