"""One-class splits, the dataset contract and the dataset registry."""

from __future__ import annotations

import functools
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

    @functools.cached_property
    def identity(self) -> str:
        """A hash of what defines this split (dataset, class, seed, options and the pixels themselves); computed
        once per split (hashing a full 32 px RGB class split reads ~200 MB)."""
        digest = hashlib.sha256(json.dumps(self.meta, sort_keys=True, default=str).encode())
        for tensor in (self.train, self.test, self.test_is_anomaly):
            digest.update(tensor.contiguous().numpy().tobytes())
        return digest.hexdigest()[:16]


class Dataset(ABC):
    """A source of one-class splits; ``classes`` names the classes that can be the normal class."""

    name: ClassVar[str] = ""
    #: Low-resolution sets (rotation pseudo-anomalies, 4/255) vs industrial/high-resolution (cut-paste, 2/255).
    low_res: ClassVar[bool] = True

    def __init__(self, root: str | None = None, *, image_size: int | None = None) -> None:
        self.root = root
        #: Requested square size; high-resolution loaders resize each image to it as it is read.
        self.image_size = image_size

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


def kind_meta(name: str) -> dict[str, Any]:
    """What dataset ``name`` declares about its kind (``low_res``), as it appears in its splits' metadata.

    The grid reads it without loading data (to pick each cell's eps and the detectors' dataset-kind options).
    """
    return {"low_res": DATASETS.get(name).low_res}


def stratified_subsample(labels: Tensor, limit: int | None, seed: int) -> Tensor:
    """Sorted indices of at most ``limit`` samples keeping each label's share (seeded); all indices if no limit.

    Shares are apportioned by largest remainder, and every label keeps at least one sample when ``limit`` allows.
    """
    n = labels.shape[0]
    if limit is None or limit >= n:
        return torch.arange(n)
    if limit < 1:
        raise UsageError(f"invalid subsample size {limit}: use a positive integer")
    values, counts = labels.unique(return_counts=True)
    takes = _apportion(counts, limit)
    generator = torch.Generator().manual_seed(seed)
    keep = []
    for value, take in zip(values.tolist(), takes.tolist(), strict=True):
        idx = torch.nonzero(labels == value).flatten()
        keep.append(idx[torch.randperm(idx.numel(), generator=generator)[:take]])
    return torch.cat(keep).sort().values


def _apportion(counts: Tensor, limit: int) -> Tensor:
    """Split ``limit`` over groups in proportion to ``counts`` (largest remainder), at least 1 each if possible."""
    quota = counts.double() * limit / counts.sum()
    takes = quota.floor().long()
    order = torch.argsort(quota - takes, descending=True, stable=True)
    takes[order[: limit - int(takes.sum())]] += 1
    for group in torch.nonzero(takes == 0).flatten().tolist():
        donor = int(torch.argmax(takes))
        if takes[donor] <= 1:
            break
        takes[donor] -= 1
        takes[group] = 1
    return takes


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


def one_class_by_label(
    train_images: np.ndarray,
    train_labels: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    normal_class: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """The one-class protocol on a labelled set: class ``normal_class`` of the train set, all of the test set.

    Images are uint8 arrays ([N, H, W] or [N, H, W, C]); only the selected ones are converted to floats.
    """
    for images, labels in ((train_images, train_labels), (test_images, test_labels)):
        if len(images) != len(labels):
            raise UsageError(f"{len(images)} images but {len(labels)} labels: the data files do not match")
    train = to_tensor_images(train_images[np.asarray(train_labels) == normal_class])
    is_anomaly = torch.as_tensor(np.asarray(test_labels) != normal_class)
    return train, to_tensor_images(test_images), is_anomaly


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
    if channels not in (None, 1, 3):
        raise UsageError(f"invalid channels {channels!r}: use 1 (grey) or 3 (RGB)")
    if image_size is not None and image_size < 1:
        raise UsageError(f"invalid image_size {image_size!r}: use a positive number of pixels")
    dataset = DATASETS.get(name)(root, image_size=image_size)
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
        **kind_meta(name),
    }
    return OneClassSplit(train.float(), test.float(), is_anomaly.bool(), meta)


def list_datasets() -> dict[str, str]:
    """Registered dataset names with one-line descriptions."""
    return DATASETS.describe()
