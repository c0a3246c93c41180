"""CIFAR-100 from its python version (``cifar-100-python/``: pickled ``train`` and ``test``), 20 superclasses.

The one-class literature uses the 20 coarse superclasses of CIFAR-100 as its classes.
Root rule: the first of ``<data-root>/cifar-100-python`` (also torchvision's layout),
``<data-root>/cifar100/cifar-100-python`` and ``<data-root>`` that holds ``train`` and ``test``.
"""

from __future__ import annotations

from torch import Tensor

from bench.data._files import data_root, find_data_dir
from bench.data.base import Dataset, one_class_by_label, register_dataset
from bench.data.cifar10 import cifar_candidates, read_cifar_batches

#: The coarse label names of CIFAR-100's ``meta`` file, in label order.
CIFAR100_SUPERCLASSES = (
    "aquatic_mammals",
    "fish",
    "flowers",
    "food_containers",
    "fruit_and_vegetables",
    "household_electrical_devices",
    "household_furniture",
    "insects",
    "large_carnivores",
    "large_man-made_outdoor_things",
    "large_natural_outdoor_scenes",
    "large_omnivores_and_herbivores",
    "medium_mammals",
    "non-insect_invertebrates",
    "people",
    "reptiles",
    "small_mammals",
    "trees",
    "vehicles_1",
    "vehicles_2",
)
CIFAR100_HOW_TO_GET = (
    "download cifar-100-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html and extract it into <data-root>"
)


@register_dataset("cifar100")
class CIFAR100(Dataset):
    """CIFAR-100 (32x32 RGB), 20 superclasses: superclass c of the train set normal; full test set, others anomalous."""

    low_res = True

    def classes(self) -> list[str]:
        return list(CIFAR100_SUPERCLASSES)

    def load_arrays(self, normal_class: int, seed: int) -> tuple[Tensor, Tensor, Tensor]:
        folder = find_data_dir(
            self.name,
            cifar_candidates(data_root(self.root), "cifar-100-python", "cifar100"),
            lambda path: (path / "train").is_file() and (path / "test").is_file(),
            f"it needs cifar-100-python/{{train,test}}; {CIFAR100_HOW_TO_GET}",
        )
        train_x, train_y = read_cifar_batches([folder / "train"], "coarse_labels")
        test_x, test_y = read_cifar_batches([folder / "test"], "coarse_labels")
        return one_class_by_label(train_x, train_y, test_x, test_y, normal_class)
