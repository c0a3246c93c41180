"""Shared file handling for the on-disk loaders: data-root resolution and image reading with resizing."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from bench.data.base import to_tensor_images
from bench.errors import DataNotFoundError

#: Where the loaders look when no --data-root is given (relative to the working directory).
DEFAULT_DATA_ROOT = "data"


def data_root(root: str | os.PathLike | None) -> Path:
    """The user's data root, or ``./data`` when none is given."""
    return Path(root if root is not None else DEFAULT_DATA_ROOT).expanduser()


def find_data_dir(dataset: str, candidates: Sequence[Path], has_data: Callable[[Path], bool], needs: str) -> Path:
    """The first candidate folder holding the data (``has_data``); else a one-line DataNotFoundError.

    Args:
        dataset: the dataset's name, for the message.
        candidates: folders to try, in order.
        has_data: whether a folder holds the data.
        needs: what the folder must hold and how to obtain it (ends the message).
    """
    for folder in candidates:
        if has_data(folder):
            return folder
    looked = ", ".join(str(folder.absolute()) for folder in dict.fromkeys(candidates))
    raise DataNotFoundError(f"{dataset} data not found (looked in {looked}): {needs}")


def file_variant(folder: Path, name: str) -> Path | None:
    """``folder/name.gz`` or ``folder/name``, whichever exists first; None if neither does."""
    for path in (folder / f"{name}.gz", folder / name):
        if path.is_file():
            return path
    return None


def image_format(path: Path, image_size: int | None) -> tuple[str, tuple[int, int]]:
    """(PIL mode, (width, height)) to read a set of images like ``path``: grey stays grey, anything else RGB."""
    with Image.open(path) as image:
        mode = "L" if image.mode in ("L", "LA", "1") else "RGB"
        size = (image_size, image_size) if image_size is not None else image.size
    return mode, size


def read_images(paths: Sequence[Path], mode: str, size: tuple[int, int]) -> Tensor:
    """Images as float [N, C, H, W] in [0, 1]; each is converted and resized (bilinear) as it is read.

    Only the resized uint8 pixels are kept, so full-resolution copies never accumulate.
    """
    channels = 1 if mode == "L" else 3
    pixels = np.empty((len(paths), size[1], size[0], channels), dtype=np.uint8)
    for i, path in enumerate(paths):
        with Image.open(path) as image:
            image.draft(mode, size)  # JPEG only: decode directly at a reduced scale that is still >= size
            converted = image.convert(mode)
            if converted.size != size:
                converted = converted.resize(size, Image.Resampling.BILINEAR)
            pixels[i] = np.asarray(converted).reshape(size[1], size[0], channels)
    return to_tensor_images(pixels)


def read_one_class_images(
    train_paths: Sequence[Path], normal_paths: Sequence[Path], anomaly_paths: Sequence[Path], image_size: int | None
) -> tuple[Tensor, Tensor, Tensor]:
    """(train images, test images, test_is_anomaly) from image files: test = the normal files, then the anomalies.

    Every image is read in the mode of the first training image (grey or RGB) and resized to ``image_size``
    (or to the first training image's size) as it is read.
    """
    mode, size = image_format(train_paths[0], image_size)
    train = read_images(train_paths, mode, size)
    test = read_images([*normal_paths, *anomaly_paths], mode, size)
    is_anomaly = torch.arange(len(normal_paths) + len(anomaly_paths)) >= len(normal_paths)
    return train, test, is_anomaly
