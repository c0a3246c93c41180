"""MNIST from its IDX files (``train-images-idx3-ubyte.gz`` and the three others; uncompressed files work too).

Root rule: the first of ``<data-root>/mnist``, ``<data-root>/MNIST/raw`` (torchvision's layout) and ``<data-root>``
that holds the four files.
"""

from __future__ import annotations

import gzip
import math
import struct
from pathlib import Path

import numpy as np
from torch import Tensor

from bench.data._files import data_root, file_variant, find_data_dir
from bench.data.base import Dataset, one_class_by_label, register_dataset
from bench.errors import UsageError

#: train images, train labels, test images, test labels (each also found with a .gz suffix).
IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
IDX_UNSIGNED_BYTE = 0x08


def read_idx(path: Path) -> np.ndarray:
    """An IDX file of unsigned bytes (gzip'd when its name ends in .gz) as a uint8 array of its stored shape."""
    with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as fh:
        data = bytearray(fh.read())
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] != IDX_UNSIGNED_BYTE:
        raise UsageError(f"{path.absolute()} is not an IDX file of unsigned bytes")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = struct.unpack(f">{ndim}I", data[4:header])
    if len(data) - header != math.prod(shape):
        raise UsageError(f"{path.absolute()} is truncated: its header promises shape {shape}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def has_idx_files(folder: Path) -> bool:
    """Whether ``folder`` holds the four IDX files (compressed or not)."""
    return all(file_variant(folder, name) is not None for name in IDX_NAMES)


@register_dataset("mnist")
class MNIST(Dataset):
    """MNIST (28x28 grey digits): class c of the train set normal; full test set, the other classes anomalous."""

    low_res = True
    how_to_get = (
        "download the four IDX .gz files from https://yann.lecun.com/exdb/mnist/ (or a mirror such as "
        "https://ossci-datasets.s3.amazonaws.com/mnist/) into <data-root>/mnist"
    )

    def classes(self) -> list[str]:
        return [str(i) for i in range(10)]

    def candidate_dirs(self) -> list[Path]:
        """Folders to look in, in order."""
        root = data_root(self.root)
        return [root / "mnist", root / "MNIST" / "raw", root]

    def load_arrays(self, normal_class: int, seed: int) -> tuple[Tensor, Tensor, Tensor]:
        needs = f"it needs {', '.join(f'{name}.gz' for name in IDX_NAMES)}; {self.how_to_get}"
        folder = find_data_dir(self.name, self.candidate_dirs(), has_idx_files, needs)
        train_x, train_y, test_x, test_y = (read_idx(file_variant(folder, name)) for name in IDX_NAMES)
        return one_class_by_label(train_x, train_y, test_x, test_y, normal_class)
