"""MNIST and Fashion-MNIST loaders on tiny IDX files written byte for byte in the IDX format."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

import bench.data.fmnist as fmnist_module
from bench.data import load_split
from bench.data.mnist import IDX_NAMES, read_idx
from bench.errors import UsageError


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX encoding of a uint8 array: 0, 0, type 0x08, ndim, big-endian int32 dims, then the bytes."""
    return struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def labelled_images(n_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """28x28 images whose brightness encodes the label (label * 20 + small noise), in shuffled order."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.repeat(np.arange(10, dtype=np.uint8), n_per_class))
    images = (labels[:, None, None] * 20 + rng.integers(0, 5, size=(labels.size, 28, 28))).astype(np.uint8)
    return images, labels


def write_idx_set(folder: Path, compress: bool = True) -> None:
    """The four files, named as distributed (``train-images-idx3-ubyte.gz`` ...)."""
    folder.mkdir(parents=True, exist_ok=True)
    train_x, train_y = labelled_images(3, seed=0)
    test_x, test_y = labelled_images(2, seed=1)
    for name, array in zip(IDX_NAMES, (train_x, train_y, test_x, test_y), strict=True):
        if compress:
            with gzip.open(folder / f"{name}.gz", "wb") as fh:
                fh.write(idx_bytes(array))
        else:
            (folder / name).write_bytes(idx_bytes(array))


def decoded_labels(images: torch.Tensor) -> torch.Tensor:
    return torch.round(images.flatten(1).mean(1) * 255 / 20).long().clamp(max=9)


def test_read_idx_roundtrip_and_rejects_other_files(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a").write_bytes(idx_bytes(array))
    assert np.array_equal(read_idx(tmp_path / "a"), array)
    (tmp_path / "b").write_bytes(b"\x00\x00\x0d\x01" + struct.pack(">I", 1) + b"\x00" * 4)
    with pytest.raises(UsageError, match="IDX"):
        read_idx(tmp_path / "b")
    (tmp_path / "c").write_bytes(idx_bytes(array)[:-3])
    with pytest.raises(UsageError, match="truncated"):
        read_idx(tmp_path / "c")


@pytest.mark.parametrize(("name", "subfolder"), [("mnist", "mnist"), ("mnist", "."), ("fmnist", "fashion-mnist")])
def test_one_class_split_from_idx(tmp_path, name, subfolder):
    write_idx_set(tmp_path / subfolder)
    split = load_split(name, 7, root=str(tmp_path))
    assert split.train.shape == (3, 1, 28, 28)
    assert split.test.shape == (20, 1, 28, 28)
    assert (decoded_labels(split.train) == 7).all()
    assert torch.equal(split.test_is_anomaly, decoded_labels(split.test) != 7)
    assert int((~split.test_is_anomaly).sum()) == 2
    assert split.meta["low_res"] is True


def test_uncompressed_files_in_torchvision_layout(tmp_path):
    write_idx_set(tmp_path / "FashionMNIST" / "raw", compress=False)
    split = load_split("fmnist", "Sneaker", root=str(tmp_path), image_size=32, channels=3)
    assert split.train.shape == (3, 3, 32, 32)
    assert split.meta["class_name"] == "Sneaker" and split.meta["normal_class"] == 7


def test_fmnist_falls_back_to_the_debian_package_folder(tmp_path, monkeypatch):
    debian = tmp_path / "usr-share-datasets-fashion-mnist"
    write_idx_set(debian)
    monkeypatch.setattr(fmnist_module, "DEBIAN_FASHION_MNIST", debian)
    split = load_split("fmnist", 2, root=str(tmp_path / "nothing-here"))
    assert (decoded_labels(split.train) == 2).all()


@pytest.mark.skipif(not fmnist_module.DEBIAN_FASHION_MNIST.is_dir(), reason="dataset-fashion-mnist not installed")
def test_debian_fashion_mnist_package_loads():
    split = load_split("fmnist", 0, root="/nonexistent", max_test=500)
    assert split.train.shape == (6000, 1, 28, 28)
    assert split.test.shape[0] == 500
    assert 0.85 < split.test_is_anomaly.float().mean() < 0.95
