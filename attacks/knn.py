"""Adaptive APGD on memory-bank (k-NN) detectors: a soft-min surrogate with BPDA for the hard neighbour search.

The surrogate's forward value is the hard k-NN distance of the features to the ``feature_bank`` (``k`` is the
detector's own ``config.k`` unless set); its gradient is that of a soft-min over the whole bank,
sum_j softmax(-d_j / T) d_j, so a step sees every nearby training feature instead of the k arg-mins (BPDA: hard
forward, smooth backward). The temperature is relative, T = ``temperature`` x the median clean k-NN distance of
the batch, and anneals geometrically over each run's steps to ``anneal`` times that, toward the hard minimum.
Patch detectors (PatchCore: score = max over patches) use a smooth top-m over patches: the mean soft-min
distance of the ``top_patches`` farthest patches. Every iterate is judged by the signed detector score.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from attacks.apgd import APGD, APGDConfig, Ascent
from attacks.common import METRICS, feature_distances
from attacks.feature import detector_features, feature_bank, top_mean
from attacks.registry import register_attack
from bench.errors import UsageError


@dataclass
class KNNAttackConfig(APGDConfig):
    """APGD budget plus the neighbourhood (``k``; None: the detector's), the relative soft-min ``temperature``,
    its final fraction ``anneal``, the feature ``metric`` and the patches averaged by the top-m surrogate."""

    k: int | None = None
    temperature: float = 0.1
    anneal: float = 0.05
    metric: str = "l2"
    top_patches: int = 3


def knn_distance(distances: Tensor, k: int) -> Tensor:
    """Mean distance to the k nearest bank entries, per row of [N, M]."""
    return distances.topk(min(k, distances.shape[1]), dim=1, largest=False).values.mean(dim=1)


def annealed(start: Tensor, anneal: float, step: int, steps: int) -> Tensor:
    """The soft-min temperature at ``step`` of ``steps``: ``start`` at the first, ``anneal * start`` at the last."""
    return start * anneal ** (step / max(steps - 1, 1))


def soft_min(distances: Tensor, temperature: Tensor) -> Tensor:
    """sum_j softmax(-d_j / T) d_j: a smooth stand-in for the nearest distance."""
    return (torch.softmax(-distances / temperature, dim=1) * distances).sum(dim=1)


@register_attack("knn")
class KNNAttack(APGD):
    """Memory-bank APGD: annealed soft-min surrogate over the feature bank, BPDA for the hard nearest neighbours."""

    Config = KNNAttackConfig
    tiny_config: ClassVar[dict[str, Any]] = {"steps": 10}

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        cfg = self.config
        if cfg.metric not in METRICS:
            raise UsageError(f"unknown metric {cfg.metric!r}; choose from: {', '.join(METRICS)}")
        if (cfg.k is not None and cfg.k < 1) or not cfg.temperature > 0 or not 0 < cfg.anneal <= 1:
            raise UsageError("knn attack needs k >= 1, temperature > 0 and 0 < anneal <= 1")

    def check_applicable(self, detector: Any) -> None:
        feature_bank(detector, self.name)

    def neighbours(self, detector: Any) -> int:
        """The k of the k-NN distance: the attack's own, else the detector's ``config.k``, else 1."""
        return self.config.k or int(getattr(getattr(detector, "config", None), "k", None) or 1)

    def ascents(self, detector: Any, x: Tensor, sign: Tensor, clean: Tensor) -> list[Ascent]:
        cfg, k = self.config, self.neighbours(detector)
        bank = feature_bank(detector, self.name).to(x.device).flatten(1)

        def patch_distances(xc: Tensor) -> Tensor:
            features = detector_features(detector, xc, self.name, bank)
            n, p, d = features.shape
            return feature_distances(features.reshape(n * p, d), bank, cfg.metric).view(n, p, -1)

        with torch.no_grad():
            clean_distances = knn_distance(patch_distances(x).flatten(0, 1), k)
            start_temperature = (cfg.temperature * clean_distances.median()).clamp_min(1e-12)
        step = [-1]

        def surrogate(xc: Tensor) -> Tensor:
            temperature = annealed(start_temperature, cfg.anneal, step[0] % max(cfg.steps, 1), cfg.steps)
            distances = patch_distances(xc)
            n, p, m = distances.shape
            hard = knn_distance(distances.view(n * p, m), k).view(n, p).amax(dim=1)
            smooth = top_mean(soft_min(distances.view(n * p, m), temperature).view(n, p), cfg.top_patches)
            return hard.detach() + smooth - smooth.detach()

        def annealing(xc: Tensor) -> tuple[Tensor, Tensor]:
            step[0] += 1  # once per APGD step, however many EOT draws evaluate the surrogate
            return self.objective_and_grad(detector, xc, sign, score_fn=surrogate)

        return [Ascent(annealing, on_score=False)]
