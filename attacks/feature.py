"""Targeted feature-space APGD for detectors that expose features and a training ``feature_bank``.

The analogue of APGD-T: for each of the ``targets`` nearest training features of a sample's clean input (one
APGD run per target, best kept), an anomaly's features are pulled toward that target and a normal's pushed
away from it; the distance is squared Euclidean or cosine. Detectors that score patches (``patch_features(x)``
[N, P, D], as PatchCore) get one target per patch and a smooth top-m surrogate: the mean distance of the
``top_patches`` patches farthest from their targets (the score is their maximum). Every iterate is judged by the
signed detector score, so a step costs one feature forward+backward plus one score forward.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from attacks.apgd import APGD, APGDConfig, Ascent
from attacks.base import AttackNotApplicable
from attacks.common import METRICS, feature_distances, paired_distance
from attacks.registry import register_attack
from bench.errors import UsageError


@dataclass
class FeatureAttackConfig(APGDConfig):
    """APGD budget, the feature distance (``l2`` or ``cosine``), how many nearest training features to target
    (one APGD run each) and, for patch detectors, how many patches the surrogate averages."""

    metric: str = "l2"
    targets: int = 1
    top_patches: int = 3


def feature_bank(detector: Any, attack: str) -> Tensor:
    """The detector's training features [M, D]; AttackNotApplicable when it exposes none."""
    bank = getattr(detector, "feature_bank", None)
    if not isinstance(bank, Tensor) or bank.dim() != 2 or bank.shape[0] == 0:
        raise AttackNotApplicable(
            f"attack {attack!r} needs a detector exposing `features(x)` (or `patch_features(x)`) and a "
            f"`feature_bank` [N, D] of training features; {type(detector).__name__} has none"
        )
    return bank.detach()


def detector_features(detector: Any, x: Tensor, attack: str, bank: Tensor) -> Tensor:
    """Features [N, P, D] of ``x`` in the bank's space: ``patch_features(x)`` (P patches) or ``features(x)``
    (P = 1); AttackNotApplicable when there are none or their D does not match the bank's."""
    name = type(detector).__name__
    if callable(getattr(detector, "patch_features", None)):
        features = detector.patch_features(x)
    else:
        flat = detector.features(x) if callable(getattr(detector, "features", None)) else None
        features = None if flat is None else flat.flatten(1).unsqueeze(1)
    if features is None:
        raise AttackNotApplicable(f"attack {attack!r} needs `features(x)`; {name} returns None")
    if features.shape[-1] != bank.shape[1]:
        raise AttackNotApplicable(
            f"attack {attack!r}: {name}'s features have {features.shape[-1]} dimensions, its feature_bank "
            f"{bank.shape[1]}"
        )
    return features


def top_mean(values: Tensor, m: int) -> Tensor:
    """Mean of the ``m`` largest entries of each row of [N, P] (the row itself when P = 1)."""
    return values.topk(min(m, values.shape[1]), dim=1).values.mean(dim=1)


@register_attack("feature")
class FeatureAttack(APGD):
    """Targeted feature-space APGD: anomalies toward, normals away from their nearest training features."""

    Config = FeatureAttackConfig
    tiny_config: ClassVar[dict[str, Any]] = {"steps": 10}

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        if self.config.metric not in METRICS:
            raise UsageError(f"unknown metric {self.config.metric!r}; choose from: {', '.join(METRICS)}")
        if self.config.targets < 1 or self.config.top_patches < 1:
            raise UsageError("feature attack needs targets >= 1 and top_patches >= 1")

    def check_applicable(self, detector: Any) -> None:
        feature_bank(detector, self.name)

    def ascents(self, detector: Any, x: Tensor, sign: Tensor, clean: Tensor) -> list[Ascent]:
        cfg = self.config
        bank = feature_bank(detector, self.name).to(x.device).flatten(1)
        with torch.no_grad():
            clean_features = detector_features(detector, x, self.name, bank)
            n, p, d = clean_features.shape
            nearest = feature_distances(clean_features.reshape(n * p, d), bank, cfg.metric)
            ranked = nearest.topk(min(cfg.targets, bank.shape[0]), dim=1, largest=False).indices
        targets = [bank[ranked[:, j]] for j in range(ranked.shape[1])]
        return [self.surrogate_ascent(detector, sign, self.pull(detector, bank, target)) for target in targets]

    def pull(self, detector: Any, bank: Tensor, target: Tensor):
        """The surrogate score for one target [N * P, D]: the (top-m patch) distance of the features to it."""

        def distance_to_target(xc: Tensor) -> Tensor:
            features = detector_features(detector, xc, self.name, bank)
            n, p, d = features.shape
            distances = paired_distance(features.reshape(n * p, d), target, self.config.metric).view(n, p)
            return top_mean(distances, self.config.top_patches)

        return distance_to_target
