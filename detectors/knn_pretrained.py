"""kNN on ImageNet-pretrained features (DN2 / MSAD family): score = mean squared distance to the k nearest."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from bench.progress import NULL_PROGRESS, Progress
from detectors.base import Detector, register_detector
from detectors.common import PretrainedConfig, check_backbone_available, embed, knn_distance, load_backbone
from detectors.papers import Citation


@dataclass
class KNNPretrainedConfig(PretrainedConfig):
    """kNN options: k nearest training features (k=2 as in MSAD/ZARND), bank scanned in chunks."""

    k: int = 2
    bank_chunk: int = 4096


@register_detector("knn-pretrained")
class KNNPretrained(Detector):
    """kNN (k=2) on frozen ImageNet-pretrained features (Bergman et al. 2020 DN2; Reiss & Hoshen 2023 MSAD).

    The bank holds the pooled last-stage features of every training image; the score is the mean squared L2
    distance to the k nearest bank features (differentiable through the selected distances). Images are
    resized to ``backbone_size``, grey images repeated to RGB and normalised inside the backbone. MSAD's
    mean-shifted contrastive fine-tuning is not applied: this is the frozen-feature (DN2) variant.
    """

    Config = KNNPretrainedConfig
    tiny_config: ClassVar[dict[str, Any]] = {"backbone_size": 32}
    # kNN on frozen ImageNet features as in DN2 (cited); COBRA's MSAD column fine-tunes the features first, so it
    # is not this detector's and no results are declared.
    citation: ClassVar[Citation | None] = Citation(
        title="Deep Nearest Neighbor Anomaly Detection",
        venue="arXiv",
        year=2020,
        link="https://arxiv.org/abs/2002.10445",
        authors="Bergman, Cohen & Hoshen",
    )

    def check_requirements(self) -> None:
        check_backbone_available(self.config)

    def build(self, input_shape: tuple[int, int, int]) -> None:
        self.backbone = load_backbone(self.config)
        self.register_buffer("feature_bank", torch.zeros(0, 0))

    def features(self, x: Tensor) -> Tensor:
        return self.backbone.pooled(x)

    def score(self, x: Tensor) -> Tensor:
        return knn_distance(self.features(x), self.feature_bank, self.config.k, self.config.bank_chunk)

    def fit(
        self,
        train: Tensor,
        *,
        device: str | torch.device = "cpu",
        generator: torch.Generator | None = None,
        progress: Progress = NULL_PROGRESS,
    ) -> KNNPretrained:
        self.setup(tuple(train.shape[1:]))
        self.to(device).eval()
        chunks = list(train.split(self.config.batch_size))
        bank = [
            embed(self.features, chunk, self.config.batch_size, device)
            for chunk in progress.track(chunks, f"fit {self.name}")
        ]
        self.feature_bank = torch.cat(bank)
        return self
