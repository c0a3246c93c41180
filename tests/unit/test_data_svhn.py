"""The SVHN loader on tiny .mat files in the layout of train_32x32.mat / test_32x32.mat."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from scipy.io import savemat

from bench.data import load_split


def write_svhn(folder: Path) -> None:
    """X as [32, 32, 3, N] uint8 and y as [N, 1] with labels 1..10 (10 is the digit 0)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name, per_class in (("train_32x32.mat", 3), ("test_32x32.mat", 2)):
        digits = rng.permutation(np.repeat(np.arange(10), per_class))
        images = np.broadcast_to((digits * 20 + 10).astype(np.uint8), (32, 32, 3, digits.size)).copy()
        images[:, :, 2] = rng.integers(0, 256, size=(32, 32, digits.size))
        labels = np.where(digits == 0, 10, digits).astype(np.uint8).reshape(-1, 1)
        savemat(folder / name, {"X": images, "y": labels})


def decoded_digits(images: torch.Tensor) -> torch.Tensor:
    return torch.round((images[:, 0].flatten(1).mean(1) * 255 - 10) / 20).long()


def test_digit_zero_is_label_ten(tmp_path):
    write_svhn(tmp_path / "svhn")
    split = load_split("svhn", 0, root=str(tmp_path))
    assert split.train.shape == (3, 3, 32, 32)
    assert (decoded_digits(split.train) == 0).all()
    assert split.test.shape[0] == 20
    assert torch.equal(split.test_is_anomaly, decoded_digits(split.test) != 0)


def test_files_directly_under_root(tmp_path):
    write_svhn(tmp_path)
    split = load_split("svhn", "7", root=str(tmp_path), channels=1)
    assert split.train.shape == (3, 1, 32, 32)
    assert int((~split.test_is_anomaly).sum()) == 2
