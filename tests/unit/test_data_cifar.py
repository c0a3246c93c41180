"""CIFAR-10 and CIFAR-100 loaders on tiny pickles in the layout of the python versions."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.data import load_split
from bench.errors import DataNotFoundError


def cifar_rows(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """[N, 3072] uint8 rows (R plane, G plane, B plane): red encodes the label, green is 255 - red, blue is noise."""
    red = np.repeat((labels.astype(np.int64) * 12)[:, None], 1024, axis=1)
    blue = rng.integers(0, 256, size=(labels.size, 1024))
    return np.concatenate([red, 255 - red, blue], axis=1).astype(np.uint8)


def dump(path: Path, content: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        pickle.dump(content, fh, protocol=2)


def write_cifar10(folder: Path) -> None:
    """data_batch_1..5, test_batch and batches.meta with the keys of the real files."""
    rng = np.random.default_rng(0)
    for i in range(1, 6):
        labels = rng.integers(0, 10, size=6)
        labels[:2] = [3, (i + 3) % 10]
        batch = {"batch_label": f"training batch {i} of 5", "labels": labels.tolist(), "data": cifar_rows(labels, rng)}
        dump(folder / f"data_batch_{i}", {**batch, "filenames": [f"img_{i}_{j}.png" for j in range(6)]})
    test_labels = np.repeat(np.arange(10), 2)
    test = {"batch_label": "testing batch 1 of 1", "labels": test_labels.tolist(), "data": cifar_rows(test_labels, rng)}
    dump(folder / "test_batch", {**test, "filenames": [f"t_{j}.png" for j in range(20)]})
    dump(folder / "batches.meta", {"label_names": ["airplane"] * 10, "num_cases_per_batch": 6, "num_vis": 3072})


def write_cifar100(folder: Path) -> None:
    """train, test and meta with fine and coarse labels, as in cifar-100-python."""
    rng = np.random.default_rng(1)
    for name, per_class in (("train", 3), ("test", 2)):
        coarse = np.repeat(np.arange(20), per_class)
        fine = coarse * 5 + rng.integers(0, 5, size=coarse.size)
        content = {"filenames": ["x.png"] * coarse.size, "batch_label": name, "fine_labels": fine.tolist()}
        dump(folder / name, {**content, "coarse_labels": coarse.tolist(), "data": cifar_rows(coarse, rng)})
    dump(folder / "meta", {"fine_label_names": ["f"] * 100, "coarse_label_names": ["c"] * 20})


def decoded_labels(images: torch.Tensor) -> torch.Tensor:
    return torch.round(images[:, 0].flatten(1).mean(1) * 255 / 12).long()


def test_cifar10_one_class_split(tmp_path):
    write_cifar10(tmp_path / "cifar-10-batches-py")
    split = load_split("cifar10", "cat", root=str(tmp_path))
    assert split.train.shape[1:] == (3, 32, 32) and split.train.shape[0] >= 5
    assert (decoded_labels(split.train) == 3).all()
    assert split.test.shape[0] == 20
    assert torch.equal(split.test_is_anomaly, decoded_labels(split.test) != 3)
    assert torch.allclose(split.test[:, 1], 1 - split.test[:, 0])
    assert split.meta["class_name"] == "cat"


def test_cifar10_accepts_the_batches_folder_as_root(tmp_path):
    write_cifar10(tmp_path / "batches")
    split = load_split("cifar10", 3, root=str(tmp_path / "batches"))
    assert (decoded_labels(split.train) == 3).all()


def test_cifar100_uses_the_20_superclasses(tmp_path):
    write_cifar100(tmp_path / "cifar100" / "cifar-100-python")
    split = load_split("cifar100", "insects", root=str(tmp_path))
    assert split.meta["normal_class"] == 7
    assert split.train.shape == (3, 3, 32, 32)
    assert (decoded_labels(split.train) == 7).all()
    assert split.test.shape[0] == 40
    assert torch.equal(split.test_is_anomaly, decoded_labels(split.test) != 7)


def test_cifar10_missing_batch_is_reported(tmp_path):
    write_cifar10(tmp_path / "cifar-10-batches-py")
    (tmp_path / "cifar-10-batches-py" / "data_batch_4").unlink()
    with pytest.raises(DataNotFoundError) as info:
        load_split("cifar10", 0, root=str(tmp_path))
    assert str(tmp_path / "cifar-10-batches-py") in str(info.value)
