"""APAE: autoencoder scored after an approximate projection of the input onto the learned normal manifold."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from detectors.ae import AEConfig, Autoencoder
from detectors.base import register_detector
from detectors.papers import Citation, PaperResult, cobra_results


@dataclass
class APAEConfig(AEConfig):
    """APAE options: gradient steps and step size of the latent-space projection at test time."""

    projection_steps: int = 5
    projection_lr: float = 0.1


@register_detector("apae")
class APAE(Autoencoder):
    """APAE (adversarially robust AE with approximate projection): reconstruction error after latent descent.

    No public code exists; implemented from the description. A convolutional AE is trained on normal images.
    At test time the input is approximately projected onto the decoder's manifold: starting from z0 = E(x),
    ``projection_steps`` gradient steps on z minimise ||D(z) - x||^2 (step ``projection_lr``, gradient
    normalised per sample). Score = mean squared error between x and D(z*). The inner steps are kept in the
    autograd graph (double backprop) whenever the caller tracks gradients, so attacks see the full,
    unmasked gradient of the projected score.
    """

    Config = APAEConfig
    tiny_config: ClassVar[dict[str, Any]] = {"epochs": 20, "widths": (8, 16), "rep_dim": 16, "projection_steps": 3}
    citation: ClassVar[Citation | None] = Citation(
        title="Robustness of Autoencoders for Anomaly Detection Under Adversarial Impact",
        venue="IJCAI",
        year=2020,
        link="https://doi.org/10.24963/ijcai.2020/173",
        authors="Goodge, Hooi, Ng & Ng",
    )
    adversarially_trained: ClassVar[bool] = True  # a * (robust) method in COBRA's tables
    paper_results: ClassVar[dict[str, PaperResult]] = cobra_results(
        cifar10=(56.3, 2.2),
        cifar100=(53.1, 4.1),
        mnist=(93.4, 34.7),
        fmnist=(88.3, 19.5),
        svhn=(52.6, 1.4),
        visa=(67.2, 9.1),
    )

    def features(self, x: Tensor) -> Tensor:
        return self.project(x)

    def project(self, x: Tensor) -> Tensor:
        """Latent z* after the projection steps (differentiable w.r.t. x when gradients are enabled)."""
        track = torch.is_grad_enabled()
        z = self.encoder(x)
        with torch.enable_grad():
            if not z.requires_grad:
                z = z.detach().requires_grad_(True)
            for _ in range(self.config.projection_steps):
                error = (self.decoder(z) - x).pow(2).flatten(1).sum(1)
                (grad,) = torch.autograd.grad(error.sum(), z, create_graph=track)
                direction = grad / grad.norm(dim=1, keepdim=True).clamp_min(1e-12)
                z = z - self.config.projection_lr * direction
                if not track:
                    z = z.detach().requires_grad_(True)
        return z if track else z.detach()

    def score(self, x: Tensor) -> Tensor:
        return self.reconstruction_error(x, self.decoder(self.project(x)))
