"""Convolutional autoencoder: anomaly score = mean squared reconstruction error."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from bench.progress import NULL_PROGRESS, Progress
from detectors.base import Detector, DetectorConfig, register_detector
from detectors.common import fit_minibatches, setup_seeded
from detectors.nets import ConvDecoder, ConvEncoder
from detectors.papers import Citation


@dataclass
class AEConfig(DetectorConfig):
    """Autoencoder options: bottleneck size and conv widths."""

    rep_dim: int = 32
    widths: tuple[int, ...] = (16, 32)
    weight_decay: float = 1e-6

    def __post_init__(self) -> None:
        self.widths = tuple(self.widths)


class ConvAutoencoderMixin:
    """Encoder/decoder construction and reconstruction error shared by autoencoder detectors."""

    config: AEConfig

    def build_autoencoder(self, input_shape: tuple[int, int, int]) -> None:
        """Create ``self.encoder`` and ``self.decoder`` for images of shape (C, H, W)."""
        channels, size, _ = input_shape
        cfg = self.config
        self.encoder = ConvEncoder(channels, size, rep_dim=cfg.rep_dim, widths=cfg.widths)
        self.decoder = ConvDecoder(self.encoder, channels, size, widths=cfg.widths, rep_dim=cfg.rep_dim)

    @staticmethod
    def reconstruction_error(x: Tensor, recon: Tensor) -> Tensor:
        """Per-image mean squared error [N]."""
        return (recon - x).pow(2).flatten(1).mean(1)

    def fit_autoencoder(
        self, train: Tensor, device: str | torch.device, generator: torch.Generator | None, progress: Progress
    ) -> torch.Generator:
        """Build the autoencoder and train it to reconstruct ``train``; returns the generator the fit draws from."""
        generator = setup_seeded(self, train, device, generator)
        self.train()
        fit_minibatches(
            lambda batch: self.reconstruction_error(batch, self.decoder(self.encoder(batch))).mean(),
            self.parameters(),
            train,
            config=self.config,
            device=device,
            generator=generator,
            progress=progress,
            description=f"fit {self.name}",
            weight_decay=self.config.weight_decay,
        )
        return generator


@register_detector("ae")
class Autoencoder(ConvAutoencoderMixin, Detector):
    """Convolutional autoencoder (e.g. Ruff et al. 2018's baseline): score = mean squared reconstruction error."""

    Config = AEConfig
    tiny_config: ClassVar[dict[str, Any]] = {"epochs": 20, "widths": (8, 16), "rep_dim": 16}
    # The plain reconstruction-error baseline: cites the deep autoencoder itself (not a COBRA baseline, no results).
    citation: ClassVar[Citation | None] = Citation(
        title="Reducing the Dimensionality of Data with Neural Networks",
        venue="Science",
        year=2006,
        link="https://doi.org/10.1126/science.1127647",
        authors="Hinton & Salakhutdinov",
    )

    def build(self, input_shape: tuple[int, int, int]) -> None:
        self.build_autoencoder(input_shape)

    def features(self, x: Tensor) -> Tensor:
        return self.encoder(x)

    def reconstruct(self, x: Tensor) -> Tensor:
        """Decoder(encoder(x)), in [0, 1]."""
        return self.decoder(self.encoder(x))

    def score(self, x: Tensor) -> Tensor:
        return self.reconstruction_error(x, self.reconstruct(x))

    def fit(
        self,
        train: Tensor,
        *,
        device: str | torch.device = "cpu",
        generator: torch.Generator | None = None,
        progress: Progress = NULL_PROGRESS,
    ) -> Autoencoder:
        self.fit_autoencoder(train, device, generator, progress)
        return self.eval()
