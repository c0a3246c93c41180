"""CIFAR-10 from its python version (``cifar-10-batches-py/``: pickled ``data_batch_1..5`` and ``test_batch``).

Root rule: the first of ``<data-root>/cifar-10-batches-py`` (also torchvision's layout),
``<data-root>/cifar10/cifar-10-batches-py`` and ``<data-root>`` that holds the six batch files.
The batches are pickles, as distributed: only point --data-root at files you trust.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from bench.data._files import data_root, find_data_dir
from bench.data.base import Dataset, one_class_by_label, register_dataset

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST = ("test_batch",)
CIFAR10_HOW_TO_GET = (
    "download cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html and extract it into <data-root>"
)


def read_cifar_pickle(path: Path) -> dict[str, Any]:
    """One CIFAR pickle (written by Python 2) as a dict with str keys."""
    with path.open("rb") as fh:
        return pickle.load(fh, encoding="latin1")


def read_cifar_batches(paths: Sequence[Path], label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images [N, 32, 32, 3], labels [N]) from CIFAR pickles whose rows are 3,072 channel-major bytes."""
    batches = [read_cifar_pickle(path) for path in paths]
    images = np.concatenate([np.asarray(batch["data"], dtype=np.uint8) for batch in batches])
    labels = np.concatenate([np.asarray(batch[label_key], dtype=np.int64) for batch in batches])
    return images.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def cifar_candidates(root: Path, folder: str, short_name: str) -> list[Path]:
    """``<root>/<folder>``, ``<root>/<short_name>/<folder>`` and ``<root>``."""
    return [root / folder, root / short_name / folder, root]


@register_dataset("cifar10")
class CIFAR10(Dataset):
    """CIFAR-10 (32x32 RGB): class c of the train set normal; full test set, the other classes anomalous."""

    low_res = True

    def classes(self) -> list[str]:
        return list(CIFAR10_CLASSES)

    def load_arrays(self, normal_class: int, seed: int) -> tuple[Tensor, Tensor, Tensor]:
        names = CIFAR10_TRAIN + CIFAR10_TEST
        folder = find_data_dir(
            self.name,
            cifar_candidates(data_root(self.root), "cifar-10-batches-py", "cifar10"),
            lambda path: all((path / name).is_file() for name in names),
            f"it needs cifar-10-batches-py/{{{','.join(names)}}}; {CIFAR10_HOW_TO_GET}",
        )
        train_x, train_y = read_cifar_batches([folder / name for name in CIFAR10_TRAIN], "labels")
        test_x, test_y = read_cifar_batches([folder / name for name in CIFAR10_TEST], "labels")
        return one_class_by_label(train_x, train_y, test_x, test_y, normal_class)
