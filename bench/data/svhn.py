"""SVHN (cropped digits) from its MATLAB files ``train_32x32.mat`` and ``test_32x32.mat``.

Root rule: the first of ``<data-root>/svhn`` and ``<data-root>`` (torchvision's layout) that holds both files.
Labels run 1..10 in the files, 10 meaning the digit 0; classes here are the digits 0..9.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch import Tensor

from bench.data._files import data_root, find_data_dir
from bench.data.base import Dataset, one_class_by_label, register_dataset

SVHN_FILES = ("train_32x32.mat", "test_32x32.mat")
SVHN_HOW_TO_GET = "download both from http://ufldl.stanford.edu/housenumbers/ into <data-root>/svhn"


def read_svhn_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images [N, 32, 32, 3], digits [N]) from one SVHN .mat file (X is [32, 32, 3, N], y is 1..10)."""
    from scipy.io import loadmat

    content = loadmat(path)
    images = np.ascontiguousarray(np.asarray(content["X"], dtype=np.uint8).transpose(3, 0, 1, 2))
    return images, np.asarray(content["y"], dtype=np.int64).reshape(-1) % 10


@register_dataset("svhn")
class SVHN(Dataset):
    """SVHN (32x32 RGB house-number digits): digit c of the train set normal; full test set, other digits anomalous."""

    low_res = True

    def classes(self) -> list[str]:
        return [str(i) for i in range(10)]

    def load_arrays(self, normal_class: int, seed: int) -> tuple[Tensor, Tensor, Tensor]:
        root = data_root(self.root)
        folder = find_data_dir(
            self.name,
            [root / "svhn", root],
            lambda path: all((path / name).is_file() for name in SVHN_FILES),
            f"it needs {' and '.join(SVHN_FILES)}; {SVHN_HOW_TO_GET}",
        )
        train_x, train_y = read_svhn_mat(folder / SVHN_FILES[0])
        test_x, test_y = read_svhn_mat(folder / SVHN_FILES[1])
        return one_class_by_label(train_x, train_y, test_x, test_y, normal_class)
