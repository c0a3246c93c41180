"""Feature-space adaptive attack for detectors that expose ``features(x)`` and a training ``feature_bank``.

An anomaly's features are pulled to the nearest normal training feature of its clean input; a normal's are
pushed away from it. Steps follow the feature distance (squared Euclidean or cosine); the returned point of
each sample is still the iterate with the best signed detector score, so a step costs one feature
forward+backward plus one score forward.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from attacks.base import AttackNotApplicable, register_attack
from attacks.common import METRICS, GradFn, feature_distances, paired_distance
from attacks.pgd import PGD, PGDConfig
from bench.errors import UsageError


@dataclass
class FeatureAttackConfig(PGDConfig):
    """PGD budget plus the feature distance (``l2`` or ``cosine``)."""

    metric: str = "l2"


def feature_bank(detector: Any, attack: str) -> Tensor:
    """The detector's training features [M, D]; AttackNotApplicable when it exposes none."""
    bank = getattr(detector, "feature_bank", None)
    if not isinstance(bank, Tensor) or bank.dim() != 2 or bank.shape[0] == 0:
        raise AttackNotApplicable(
            f"attack {attack!r} needs a detector exposing `features(x)` and a `feature_bank` [N, D] of training "
            f"features; {type(detector).__name__} has none"
        )
    return bank.detach()


def detector_features(detector: Any, x: Tensor, attack: str, bank: Tensor) -> Tensor:
    """``detector.features(x)`` as [N, D]; AttackNotApplicable when it is None or does not match the bank's D."""
    features = detector.features(x) if callable(getattr(detector, "features", None)) else None
    name = type(detector).__name__
    if features is None:
        raise AttackNotApplicable(f"attack {attack!r} needs `features(x)`; {name} returns None")
    features = features.flatten(1)
    if features.shape[1] != bank.shape[1]:
        raise AttackNotApplicable(
            f"attack {attack!r}: {name}.features(x) has {features.shape[1]} dimensions, "
            f"its feature_bank {bank.shape[1]}"
        )
    return features


@register_attack("feature")
class FeatureAttack(PGD):
    """Adaptive feature attack: anomalies to their nearest normal training feature, normals away from it."""

    Config = FeatureAttackConfig

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        if self.config.metric not in METRICS:
            raise UsageError(f"unknown metric {self.config.metric!r}; choose from: {', '.join(METRICS)}")

    def check_applicable(self, detector: Any) -> None:
        feature_bank(detector, self.name)

    def gradient_fn(self, detector: Any, x: Tensor, sign: Tensor) -> GradFn:
        bank = feature_bank(detector, self.name).to(x.device).flatten(1)
        with torch.no_grad():
            nearest = feature_distances(detector_features(detector, x, self.name, bank), bank, self.config.metric)
            target = bank[nearest.argmin(dim=1)]

        def distance_to_target(xc: Tensor) -> Tensor:
            features = detector_features(detector, xc, self.name, bank)
            return paired_distance(features, target, self.config.metric)

        return lambda xc: (None, self.objective_and_grad(detector, xc, sign, score_fn=distance_to_target)[1])
