"""MVTec AD from its folder format: ``<category>/train/good``, ``test/good`` and ``test/<defect>`` (PNG images).

Root rule: the category folder is ``<data-root>/mvtec/<category>`` if that exists, else ``<data-root>/<category>``.
Ground-truth masks (``ground_truth/<defect>/*_mask.png``) are not read: the one-class protocol needs image labels only.
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor

from bench.data._files import data_root, find_data_dir, read_one_class_images
from bench.data.base import Dataset, register_dataset
from bench.errors import DataNotFoundError

MVTEC_CATEGORIES = (
    "bottle",
    "cable",
    "capsule",
    "carpet",
    "grid",
    "hazelnut",
    "leather",
    "metal_nut",
    "pill",
    "screw",
    "tile",
    "toothbrush",
    "transistor",
    "wood",
    "zipper",
)
MVTEC_HOW_TO_GET = (
    "download MVTec AD from https://www.mvtec.com/company/research/datasets/mvtec-ad and extract it "
    "into <data-root>/mvtec"
)


def is_mvtec_category(folder: Path) -> bool:
    """Whether ``folder`` looks like an MVTec category (train/good and test/good folders)."""
    return (folder / "train" / "good").is_dir() and (folder / "test" / "good").is_dir()


def png_files(folder: Path) -> list[Path]:
    """The PNG files of ``folder``, sorted by name."""
    return sorted(path for path in folder.iterdir() if path.suffix.lower() == ".png")


def read_mvtec_category(category_dir: Path, image_size: int | None) -> tuple[Tensor, Tensor, Tensor]:
    """(train/good, test/good + test/<defect> images, test_is_anomaly) of one MVTec-format category.

    Images are resized to ``image_size`` as they are read (see ``read_one_class_images``).
    """
    test_dir = category_dir / "test"
    train_paths = png_files(category_dir / "train" / "good")
    normal_paths = png_files(test_dir / "good")
    defect_dirs = sorted(path for path in test_dir.iterdir() if path.is_dir() and path.name != "good")
    defect_paths = [path for folder in defect_dirs for path in png_files(folder)]
    if not (train_paths and normal_paths and defect_paths):
        raise DataNotFoundError(
            f"incomplete MVTec-format category {category_dir.absolute()}: it needs PNG images in train/good, "
            "test/good and at least one test/<defect> folder"
        )
    return read_one_class_images(train_paths, normal_paths, defect_paths, image_size)


@register_dataset("mvtec")
class MVTecAD(Dataset):
    """MVTec AD (15 categories): train/good normal; test/good normal vs every defect folder anomalous."""

    low_res = False

    def classes(self) -> list[str]:
        return list(MVTEC_CATEGORIES)

    def category_dir(self, category: str) -> Path:
        """The folder of ``category``: ``<data-root>/mvtec/<category>``, else ``<data-root>/<category>``."""
        root = data_root(self.root)
        needs = f"it needs {category}/train/good and {category}/test/; {MVTEC_HOW_TO_GET}"
        return find_data_dir(self.name, [root / "mvtec" / category, root / category], is_mvtec_category, needs)

    def load_arrays(self, normal_class: int, seed: int) -> tuple[Tensor, Tensor, Tensor]:
        return read_mvtec_category(self.category_dir(self.classes()[normal_class]), self.image_size)
