"""scikit-learn's bundled 8x8 handwritten digits (1,797 real images), always available offline."""

from __future__ import annotations

import torch
from torch import Tensor

from bench.data.base import Dataset, register_dataset


@register_dataset("digits")
class Digits(Dataset):
    """scikit-learn's 8x8 digits (bundled, real); class c normal, the other nine anomalous."""

    low_res = True

    def classes(self) -> list[str]:
        return [str(i) for i in range(10)]

    def load_arrays(self, normal_class: int, seed: int) -> tuple[Tensor, Tensor, Tensor]:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        images = torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
        labels = torch.as_tensor(bunch.target)
        # Fixed, seed-independent train/test partition: every third image of each class goes to the test set.
        order = torch.arange(labels.numel())
        rank = torch.zeros_like(labels)
        for c in range(10):
            idx = order[labels == c]
            rank[idx] = torch.arange(idx.numel())
        is_test = rank % 3 == 0
        train = images[(~is_test) & (labels == normal_class)]
        test = images[is_test]
        return train, test, labels[is_test] != normal_class
