"""VisA from its release format: ``<category>/Data/Images/{Normal,Anomaly}/*.JPG`` plus ``split_csv/1cls.csv``.

Root rule: the category folder is ``<data-root>/visa/<category>`` if that exists, else ``<data-root>/<category>``;
the split file is ``split_csv/1cls.csv`` next to the category folders (columns object,split,label,image,mask, image
paths relative to that folder). Without it (or without rows for the category), a fixed seeded 1cls-like split is
used: all anomalies and 10% of the normal images are test images, the other normal images train.
Masks (``Data/Masks/Anomaly``) are not read: the one-class protocol needs image labels only.
"""

from __future__ import annotations

import csv
from pathlib import Path

import torch
from torch import Tensor

from bench.data._files import data_root, find_data_dir, read_one_class_images
from bench.data.base import Dataset, register_dataset
from bench.errors import DataNotFoundError, UsageError

VISA_CATEGORIES = (
    "candle",
    "capsules",
    "cashew",
    "chewinggum",
    "fryum",
    "macaroni1",
    "macaroni2",
    "pcb1",
    "pcb2",
    "pcb3",
    "pcb4",
    "pipe_fryum",
)
VISA_HOW_TO_GET = (
    "download VisA_20220922.tar from https://github.com/amazon-science/spot-diff, extract it into <data-root>/visa "
    "and put the repository's split_csv/1cls.csv there"
)
SPLIT_CSV = Path("split_csv") / "1cls.csv"
CSV_COLUMNS = ("object", "split", "label", "image")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
#: The fallback split is fixed (like the official csv), not drawn anew per run seed.
FALLBACK_SPLIT_SEED = 0
FALLBACK_TEST_NORMAL_SHARE = 0.1

#: (train normals, test normals, test anomalies) as image paths.
SplitPaths = tuple[list[Path], list[Path], list[Path]]


def is_visa_category(folder: Path) -> bool:
    """Whether ``folder`` looks like a VisA category (a Data/Images/Normal folder)."""
    return (folder / "Data" / "Images" / "Normal").is_dir()


def image_files(folder: Path) -> list[Path]:
    """The image files of ``folder`` (JPG/PNG, any case), sorted by name; empty if the folder is missing."""
    if not folder.is_dir():
        return []
    return sorted(path for path in folder.iterdir() if path.suffix.lower() in IMAGE_SUFFIXES)


def csv_split(visa_dir: Path, category: str) -> SplitPaths | None:
    """The category's split from ``split_csv/1cls.csv``; None when the file or its rows for the category are absent."""
    csv_path = visa_dir / SPLIT_CSV
    if not csv_path.is_file():
        return None
    with csv_path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        if not set(CSV_COLUMNS) <= set(reader.fieldnames or ()):
            raise UsageError(f"{csv_path.absolute()} needs the columns {','.join(CSV_COLUMNS)},mask")
        rows = [row for row in reader if row["object"] == category]
    if not rows:
        return None

    def paths(split: str, label: str) -> list[Path]:
        return [visa_dir / row["image"] for row in rows if row["split"] == split and row["label"] == label]

    split = (paths("train", "normal"), paths("test", "normal"), paths("test", "anomaly"))
    missing = [path for group in split for path in group if not path.is_file()]
    if missing:
        raise DataNotFoundError(
            f"{csv_path.absolute()} lists {len(missing)} images that are missing, e.g. {missing[0].absolute()}; "
            f"{VISA_HOW_TO_GET}"
        )
    return split


def fallback_split(category_dir: Path) -> SplitPaths:
    """A fixed seeded 1cls-like split: all anomalies and 10% of the normals to test, the other normals to train."""
    normals = image_files(category_dir / "Data" / "Images" / "Normal")
    anomalies = image_files(category_dir / "Data" / "Images" / "Anomaly")
    if len(normals) < 2 or not anomalies:
        raise DataNotFoundError(
            f"incomplete VisA category {category_dir.absolute()}: it needs images in Data/Images/Normal (2 or more) "
            f"and Data/Images/Anomaly; {VISA_HOW_TO_GET}"
        )
    order = torch.randperm(len(normals), generator=torch.Generator().manual_seed(FALLBACK_SPLIT_SEED)).tolist()
    n_test = max(1, round(FALLBACK_TEST_NORMAL_SHARE * len(normals)))
    test_normals = sorted(normals[i] for i in order[:n_test])
    train = sorted(normals[i] for i in order[n_test:])
    return train, test_normals, anomalies


@register_dataset("visa")
class VisA(Dataset):
    """VisA (12 categories), official 1cls split: train normals; test normals vs anomalies."""

    low_res = False

    def classes(self) -> list[str]:
        return list(VISA_CATEGORIES)

    def category_dir(self, category: str) -> Path:
        """The folder of ``category``: ``<data-root>/visa/<category>``, else ``<data-root>/<category>``."""
        root = data_root(self.root)
        needs = f"it needs {category}/Data/Images/Normal; {VISA_HOW_TO_GET}"
        return find_data_dir(self.name, [root / "visa" / category, root / category], is_visa_category, needs)

    def load_arrays(self, normal_class: int, seed: int) -> tuple[Tensor, Tensor, Tensor]:
        category = self.classes()[normal_class]
        category_dir = self.category_dir(category)
        split = csv_split(category_dir.parent, category) or fallback_split(category_dir)
        train_paths, normal_paths, anomaly_paths = split
        if not (train_paths and normal_paths and anomaly_paths):
            raise DataNotFoundError(
                f"the VisA split of {category} in {(category_dir.parent / SPLIT_CSV).absolute()} needs train normal, "
                "test normal and test anomaly rows"
            )
        return read_one_class_images(train_paths, normal_paths, anomaly_paths, self.image_size)
