"""Fashion-MNIST from its IDX files (same format and file names as MNIST).

Root rule: the first of ``<data-root>/fashion-mnist``, ``<data-root>/fmnist``, ``<data-root>/FashionMNIST/raw``
(torchvision's layout), ``<data-root>`` and ``/usr/share/datasets/fashion-mnist`` (Debian's dataset-fashion-mnist)
that holds the four files.
"""

from __future__ import annotations

from pathlib import Path

from bench.data._files import data_root
from bench.data.base import register_dataset
from bench.data.mnist import MNIST

#: Where Debian's ``dataset-fashion-mnist`` package installs the IDX files.
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


@register_dataset("fmnist")
class FashionMNIST(MNIST):
    """Fashion-MNIST (28x28 grey clothes): class c of the train set normal; full test set, the rest anomalous."""

    how_to_get = (
        "install it with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu) or download the four IDX .gz files "
        "from https://github.com/zalandoresearch/fashion-mnist into <data-root>/fashion-mnist"
    )

    def classes(self) -> list[str]:
        return list(FASHION_CLASSES)

    def candidate_dirs(self) -> list[Path]:
        root = data_root(self.root)
        return [root / "fashion-mnist", root / "fmnist", root / "FashionMNIST" / "raw", root, DEBIAN_FASHION_MNIST]
