"""PrincipaLS: autoencoder whose latent is projected onto the principal components of the training latents."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar

import torch
from torch import Tensor

from bench.progress import NULL_PROGRESS, Progress
from detectors.ae import AEConfig, ConvAutoencoderMixin
from detectors.base import Detector, register_detector
from detectors.common import embed, fit_minibatches
from detectors.papers import Citation, PaperResult, cobra_results


@dataclass
class PrincipaLSConfig(AEConfig):
    """PrincipaLS options: kept-variance ratio of the latent PCA and decoder fine-tuning epochs on projected
    latents."""

    kept_variance: float = 0.9
    finetune_epochs: int = 5


def principal_components(latents: Tensor, kept_variance: float) -> tuple[Tensor, Tensor]:
    """(mean [D], components [D, R]): the fewest leading principal directions explaining ``kept_variance``."""
    mean = latents.mean(0)
    _, singular, vh = torch.linalg.svd(latents - mean, full_matrices=False)
    explained = singular.pow(2).cumsum(0) / singular.pow(2).sum().clamp_min(1e-12)
    rank = int(torch.searchsorted(explained, torch.tensor(kept_variance, dtype=explained.dtype)).item()) + 1
    return mean, vh[: min(rank, vh.shape[0])].T.contiguous()


@register_detector("principals")
class PrincipaLS(ConvAutoencoderMixin, Detector):
    """PrincipaLS (Lo et al., 2022): AE reconstruction error through a PCA projection of the latent.

    After training a convolutional AE, the training latents' principal components keeping ``kept_variance``
    of the variance are computed; at test time the latent is projected, z -> mu + U U^T (z - mu), before
    decoding, which removes adversarial latent directions outside the normal principal subspace. The decoder
    is then fine-tuned on projected latents. Score = mean squared reconstruction error. (The paper's
    vector-quantisation stage and spatial cascade PCA are simplified into this single latent PCA.)
    """

    Config = PrincipaLSConfig
    tiny_config: ClassVar[dict[str, Any]] = {"epochs": 10, "widths": (8, 16), "rep_dim": 16}
    citation: ClassVar[Citation | None] = Citation(
        title="Adversarially Robust One-class Novelty Detection",
        venue="IEEE TPAMI",
        year=2022,
        link="https://arxiv.org/abs/2108.11168",
        authors="Lo, Oza & Patel",
    )
    adversarially_trained: ClassVar[bool] = True  # a * (robust) method in COBRA's tables
    paper_results: ClassVar[dict[str, PaperResult]] = cobra_results(
        cifar10=(58.3, 33.2),
        cifar100=(51.9, 26.2),
        mnist=(97.8, 83.1),
        fmnist=(92.5, 69.2),
        svhn=(63.0, 11.2),
        visa=(57.3, 16.1),
        mvtec=(63.6, 24.4),
    )

    def build(self, input_shape: tuple[int, int, int]) -> None:
        self.build_autoencoder(input_shape)
        self.register_buffer("latent_mean", torch.zeros(self.config.rep_dim))
        self.register_buffer("components", torch.eye(self.config.rep_dim))

    def features(self, x: Tensor) -> Tensor:
        return self.project(self.encoder(x))

    def project(self, z: Tensor) -> Tensor:
        """Orthogonal projection of latents onto the principal affine subspace."""
        centred = z - self.latent_mean
        return self.latent_mean + (centred @ self.components) @ self.components.T

    def score(self, x: Tensor) -> Tensor:
        return self.reconstruction_error(x, self.decoder(self.features(x)))

    def fit(
        self,
        train: Tensor,
        *,
        device: str | torch.device = "cpu",
        generator: torch.Generator | None = None,
        progress: Progress = NULL_PROGRESS,
    ) -> PrincipaLS:
        generator = self.fit_autoencoder(train, device, generator, progress)
        common = {"device": device, "generator": generator, "progress": progress}
        self.eval()
        mean, components = principal_components(
            embed(self.encoder, train, self.config.batch_size, device), self.config.kept_variance
        )
        self.latent_mean, self.components = mean, components
        self.decoder.train()
        finetune = replace(self.config, epochs=self.config.finetune_epochs)
        fit_minibatches(
            lambda batch: self.score(batch).mean(),
            self.decoder.parameters(),
            train,
            config=finetune,
            description=f"fine-tune {self.name}",
            **common,
        )
        return self.eval()
