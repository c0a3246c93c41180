"""One-class splits, the dataset contract and the dataset registry."""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from bench.errors import UsageError
from bench.registry import Registry

DATASETS: Registry[type[Dataset]] = Registry("dataset")


def register_dataset(name: str, description: str | None = None):
    """Class decorator: register a Dataset subclass under ``name``."""

    def decorator(cls: type[Dataset]) -> type[Dataset]:
        cls.name = name
        return DATASETS.register(name, description)(cls)

    return decorator


@dataclass
class OneClassSplit:
    """Normal-only training images and a labelled test set; images are float [N, C, H, W] in [0, 1]."""

    train: Tensor
    test: Tensor
    test_is_anomaly: Tensor
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def identity(self) -> str:
        """A hash of what defines this split (dataset, class, seed, options and the pixels themselves)."""
        digest = hashlib.sha256(json.dumps(self.meta, sort_keys=True, default=str).encode())
        for tensor in (self.train, self.test, self.test_is_anomaly):
            digest.update(tensor.contiguous().numpy().tobytes())
        return digest.hexdigest()[:16]


class Dataset(ABC):
    """A source of one-class splits; ``classes`` names the classes that can be the normal class."""

    name: ClassVar[str] = ""
    #: Low-resolution sets (rotation pseudo-anomalies, 4/255) vs industrial/high-resolution (cut-paste, 2/255).
    low_res: ClassVar[bool] = True

    def __init__(self, root: str | None = None) -> None:
        self.root = root

    @abstractmethod
    def classes(self) -> list[str]:
        """Names of the classes, in label order."""

    @abstractmethod
    def load_arrays(self, normal_class: int, seed: int) -> tuple[Tensor, Tensor, Tensor]:
        """(train normals, test images, test_is_anomaly) at native resolution, floats in [0, 1]."""

    def resolve_class(self, spec: int | str) -> int:
        """Class index from an index or a name; an unknown class raises UsageError naming the valid ones."""
        names = self.classes()
        if isinstance(spec, str) and not spec.lstrip("-").isdigit():
            if spec in names:
                return names.index(spec)
        else:
            index = int(spec)
            if 0 <= index < len(names):
                return index
        choices = ", ".join(f"{i} ({n})" if n != str(i) else n for i, n in enumerate(names))
        raise UsageError(f"{self.name} has no class {spec!r}; choose from: {choices}")


def stratified_subsample(labels: Tensor, limit: int | None, seed: int) -> Tensor:
    """Indices of at most ``limit`` samples keeping each label's share (seeded); all indices if no limit."""
    n = labels.shape[0]
    if limit is None or limit >= n:
        return torch.arange(n)
    generator = torch.Generator().manual_seed(seed)
    keep = []
    values = labels.unique()
    for value in values:
        idx = torch.nonzero(labels == value).flatten()
        take = max(1, round(limit * idx.numel() / n))
        keep.append(idx[torch.randperm(idx.numel(), generator=generator)[:take]])
    return torch.cat(keep).sort().values


def resize(images: Tensor, size: int | None) -> Tensor:
    """Bilinear resize to ``size`` x ``size`` (antialiased when shrinking); unchanged when size is None."""
    if size is None or (images.shape[-1] == size and images.shape[-2] == size):
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)


def to_tensor_images(array: np.ndarray, scale: float = 255.0) -> Tensor:
    """[N, H, W] or [N, H, W, C] uint8/float array -> float [N, C, H, W] in [0, 1]."""
    tensor = torch.as_tensor(np.ascontiguousarray(array)).float() / scale
    if tensor.dim() == 3:
        tensor = tensor.unsqueeze(1)
    elif tensor.dim() == 4 and tensor.shape[-1] in (1, 3):
        tensor = tensor.permute(0, 3, 1, 2)
    return tensor.clamp(0, 1).contiguous()


def load_split(
    name: str,
    normal_class: int | str = 0,
    root: str | None = None,
    seed: int = 0,
    *,
    image_size: int | None = None,
    max_train: int | None = None,
    max_test: int | None = None,
    channels: int | None = None,
) -> OneClassSplit:
    """The one-class split of dataset ``name`` with ``normal_class`` normal.

    Args:
        image_size: resize to a square of this size (None keeps the native size).
        max_train / max_test: seeded, stratified subsampling (test stratified by normal/anomaly).
        channels: 1 or 3 to convert grey <-> RGB (None keeps the native channels).
    """
    dataset = DATASETS.get(name)(root)
    index = dataset.resolve_class(normal_class)
    train, test, is_anomaly = dataset.load_arrays(index, seed)
    train = train[stratified_subsample(torch.zeros(train.shape[0]), max_train, seed)]
    keep = stratified_subsample(is_anomaly.long(), max_test, seed + 1)
    test, is_anomaly = test[keep], is_anomaly[keep]
    if channels is not None and train.shape[1] != channels:
        convert = (lambda t: t.expand(-1, 3, -1, -1)) if channels == 3 else (lambda t: t.mean(1, keepdim=True))
        train, test = convert(train), convert(test)
    train, test = resize(train, image_size).contiguous(), resize(test, image_size).contiguous()
    meta = {
        "dataset": name,
        "normal_class": index,
        "class_name": dataset.classes()[index],
        "seed": seed,
        "image_size": image_size,
        "max_train": max_train,
        "max_test": max_test,
        "channels": channels,
        "low_res": dataset.low_res,
    }
    return OneClassSplit(train.float(), test.float(), is_anomaly.bool(), meta)


def list_datasets() -> dict[str, str]:
    """Registered dataset names with one-line descriptions."""
    return DATASETS.describe()
