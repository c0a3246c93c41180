"""Adaptive attack on memory-bank (k-NN) detectors: a soft-min surrogate with BPDA for the hard neighbour search.

The surrogate's forward value is the hard k-NN distance of ``features(x')`` to the ``feature_bank`` (what such
detectors score with); its gradient is that of a soft-min over the whole bank, sum_j softmax(-d_j / T) d_j, so
the step sees every nearby training feature instead of the single arg-min (BPDA: hard forward, smooth backward).
The temperature is relative: T = ``temperature`` x the median clean k-NN distance of the batch. The returned
point of each sample is the iterate with the best signed detector score.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from attacks.base import register_attack
from attacks.common import METRICS, GradFn, feature_distances
from attacks.feature import detector_features, feature_bank
from attacks.pgd import PGD, PGDConfig
from bench.errors import UsageError


@dataclass
class KNNAttackConfig(PGDConfig):
    """PGD budget plus the neighbourhood (``k``), relative soft-min ``temperature`` and feature ``metric``."""

    k: int = 1
    temperature: float = 0.1
    metric: str = "l2"


def knn_distance(distances: Tensor, k: int) -> Tensor:
    """Mean distance to the k nearest bank entries, per row of [N, M]."""
    return distances.topk(min(k, distances.shape[1]), dim=1, largest=False).values.mean(dim=1)


def soft_min(distances: Tensor, temperature: Tensor) -> Tensor:
    """sum_j softmax(-d_j / T) d_j: a smooth stand-in for the nearest distance."""
    return (torch.softmax(-distances / temperature, dim=1) * distances).sum(dim=1)


@register_attack("knn")
class KNNAttack(PGD):
    """Memory-bank attack: soft-min surrogate over the feature bank, BPDA for the hard nearest neighbour."""

    Config = KNNAttackConfig

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        if self.config.metric not in METRICS:
            raise UsageError(f"unknown metric {self.config.metric!r}; choose from: {', '.join(METRICS)}")
        if self.config.k < 1 or not self.config.temperature > 0:
            raise UsageError("knn attack needs k >= 1 and temperature > 0")

    def check_applicable(self, detector: Any) -> None:
        feature_bank(detector, self.name)

    def gradient_fn(self, detector: Any, x: Tensor, sign: Tensor) -> GradFn:
        cfg = self.config
        bank = feature_bank(detector, self.name).to(x.device).flatten(1)
        with torch.no_grad():
            clean = knn_distance(
                feature_distances(detector_features(detector, x, self.name, bank), bank, cfg.metric), cfg.k
            )
            temperature = (cfg.temperature * clean.median()).clamp_min(1e-12)

        def surrogate(xc: Tensor) -> Tensor:
            distances = feature_distances(detector_features(detector, xc, self.name, bank), bank, cfg.metric)
            smooth = soft_min(distances, temperature)
            return knn_distance(distances, cfg.k).detach() + smooth - smooth.detach()

        return lambda xc: (None, self.objective_and_grad(detector, xc, sign, score_fn=surrogate)[1])
