"""DeepSVDD: one-class hypersphere around the centre of a bias-free convolutional encoder's features."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from bench.progress import NULL_PROGRESS, Progress
from detectors.base import Detector, DetectorConfig, register_detector
from detectors.common import embed, fit_minibatches, setup_seeded
from detectors.nets import ConvEncoder
from detectors.papers import Citation, PaperResult, cobra_results


@dataclass
class DeepSVDDConfig(DetectorConfig):
    """DeepSVDD options (Ruff et al. 2018 use rep_dim 32, Adam, weight decay 1e-6)."""

    rep_dim: int = 32
    widths: tuple[int, ...] = (16, 32)
    weight_decay: float = 1e-6
    #: Centre coordinates closer to 0 than this are moved to +-center_eps (avoids trivially matched zero units).
    center_eps: float = 0.1

    def __post_init__(self) -> None:
        self.widths = tuple(self.widths)


def fix_near_zero(center: Tensor, eps: float) -> Tensor:
    """Move coordinates with |c_i| < eps to +-eps (sign kept; 0 goes to +eps), as in Ruff et al.'s code."""
    small = center.abs() < eps
    return torch.where(small & (center < 0), -eps, torch.where(small, eps, center))


@register_detector("deepsvdd")
class DeepSVDD(Detector):
    """DeepSVDD (Ruff et al., ICML 2018): squared distance of bias-free encoder features to a fixed centre.

    One-class objective: minimise the mean ||phi(x) - c||^2 over normal images, with c the mean of the
    initial network's features (near-zero coordinates moved to +-eps) and no bias terms anywhere in phi (a
    bias would let phi collapse to the constant c). Score = ||phi(x) - c||^2. The optional autoencoder
    pretraining of the paper is not used.
    """

    Config = DeepSVDDConfig
    tiny_config: ClassVar[dict[str, Any]] = {"epochs": 10, "widths": (8, 16), "rep_dim": 16}
    citation: ClassVar[Citation | None] = Citation(
        title="Deep One-Class Classification",
        venue="ICML",
        year=2018,
        link="https://proceedings.mlr.press/v80/ruff18a.html",
        authors="Ruff et al.",
    )
    paper_results: ClassVar[dict[str, PaperResult]] = cobra_results(
        cifar10=(64.8, 8.7),
        cifar100=(67.0, 3.6),
        mnist=(94.8, 8.2),
        fmnist=(94.5, 7.9),
        svhn=(60.3, 1.5),
        visa=(53.6, 1.8),
    )

    def build(self, input_shape: tuple[int, int, int]) -> None:
        channels, size, _ = input_shape
        cfg = self.config
        self.encoder = ConvEncoder(channels, size, rep_dim=cfg.rep_dim, widths=cfg.widths, bias=False)
        self.register_buffer("center", torch.zeros(cfg.rep_dim))

    def features(self, x: Tensor) -> Tensor:
        return self.encoder(x)

    def score(self, x: Tensor) -> Tensor:
        return (self.features(x) - self.center).pow(2).sum(1)

    @torch.no_grad()
    def init_center(self, train: Tensor, device: str | torch.device) -> None:
        """c = mean initial feature of the training images (batch statistics, as during training)."""
        self.encoder.train()
        center = embed(self.encoder, train, self.config.batch_size, device).mean(0)
        self.center.copy_(fix_near_zero(center, self.config.center_eps))

    def training_loss(self, batch: Tensor, generator: torch.Generator) -> Tensor:
        """Mean squared distance of the batch's features to the centre (what the encoder minimises)."""
        return self.score(batch).mean()

    def fit(
        self,
        train: Tensor,
        *,
        device: str | torch.device = "cpu",
        generator: torch.Generator | None = None,
        progress: Progress = NULL_PROGRESS,
    ) -> DeepSVDD:
        generator = setup_seeded(self, train, device, generator)
        self.init_center(train, device)
        self.train()
        fit_minibatches(
            lambda batch: self.training_loss(batch, generator),
            self.encoder.parameters(),
            train,
            config=self.config,
            device=device,
            generator=generator,
            progress=progress,
            description=f"fit {self.name}",
            weight_decay=self.config.weight_decay,
        )
        return self.eval()
