"""ZARND: kNN (k=2) on features of an adversarially robust ImageNet ResNet-18 given as a local weights file."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from bench.errors import UsageError
from detectors.base import register_detector
from detectors.knn_pretrained import KNNPretrained, KNNPretrainedConfig
from detectors.papers import Citation, PaperResult, cobra_results


@dataclass
class ZARNDConfig(KNNPretrainedConfig):
    """ZARND options: ``weights_path`` (required) is a torchvision-format ResNet-18 state dict of an
    adversarially trained ImageNet model (e.g. Salman et al. 2020's L-inf or L2 robust ResNet-18; checkpoints
    of the ``robustness`` library are unwrapped: ``module.``/``model.`` prefixes stripped, attacker and
    normaliser entries dropped)."""

    backbone: str = "resnet18"


@register_detector("zarnd")
class ZARND(KNNPretrained):
    """ZARND (Mirzaei et al., ICASSP 2024): kNN (k=2) on robust ImageNet ResNet-18 features (weights_path needed).

    Zero-shot: no training on the normal class; the bank holds the pooled penultimate features of the training
    images and the score is the mean squared L2 distance to the 2 nearest. Without ``weights_path`` the
    detector raises a UsageError: no robust weights ship offline.
    """

    Config = ZARNDConfig
    tiny_config: ClassVar[dict[str, Any]] = {"backbone_size": 32}
    citation: ClassVar[Citation | None] = Citation(
        title="Killing it with Zero-Shot: Adversarially Robust Novelty Detection",
        venue="ICASSP",
        year=2024,
        link="https://arxiv.org/abs/2501.15271",
        authors="Mirzaei et al.",
    )
    # A * (robust) method in COBRA's tables: its features come from adversarially trained ImageNet weights.
    adversarially_trained: ClassVar[bool] = True
    paper_results: ClassVar[dict[str, PaperResult]] = cobra_results(
        cifar10=(89.7, 56.0),
        cifar100=(88.4, 47.6),
        mnist=(99.0, 91.2),
        fmnist=(95.0, 82.3),
        svhn=(53.5, 9.6),
        visa=(71.8, 24.9),
        mvtec=(71.6, 30.1),
    )

    def check_requirements(self) -> None:
        if self.config.weights_path is None:
            raise UsageError(
                "zarnd needs weights_path=<file>: a torchvision-format state dict of an adversarially robust "
                "ImageNet ResNet-18 (e.g. Salman et al. 2020, robustness library); none ships offline"
            )
        super().check_requirements()

    def build(self, input_shape: tuple[int, int, int]) -> None:
        self.check_requirements()
        super().build(input_shape)
