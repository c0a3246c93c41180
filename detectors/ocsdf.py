"""OCSDF: one-class signed distance function learned by a 1-Lipschitz network with the hinge-Kantorovich loss."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from bench.progress import NULL_PROGRESS, Progress
from detectors.base import Detector, DetectorConfig, register_detector
from detectors.common import fit_minibatches, setup_seeded
from detectors.papers import Citation, PaperResult, cobra_results


@dataclass
class OCSDFConfig(DetectorConfig):
    """OCSDF options.

    hidden / depth: width and number of hidden layers of the 1-Lipschitz MLP.
    margin: hinge margin m (in L2 pixel units): normals are pushed to f >= m, sampled negatives to f <= -m.
    hinge_weight: lambda of the hinge term against the Kantorovich term.
    negative_steps / negative_noise: boundary sampling (see ``OCSDF.sample_negatives``).
    """

    hidden: int = 256
    depth: int = 3
    margin: float = 0.2
    hinge_weight: float = 10.0
    negative_steps: int = 4
    negative_noise: float = 0.3


class OrthoLinear(nn.Module):
    """Linear layer whose weight is the orthonormalised (QR) free parameter: spectral norm exactly 1, so the
    map is 1-Lipschitz in L2 (rows orthonormal when shrinking, columns when growing).

    In eval mode the orthonormal weight is computed once and reused until the parameter changes (attacks call
    the network many times); in training mode it is recomputed, with gradients, on every call.
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.raw = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features))
        nn.init.orthogonal_(self.raw)
        self._cache: tuple[tuple[int, int, torch.device], Tensor] | None = None

    def orthonormal_weight(self) -> Tensor:
        """The orthonormalised weight [out, in] (differentiable w.r.t. ``raw``)."""
        out_features, in_features = self.raw.shape
        if out_features <= in_features:
            return torch.linalg.qr(self.raw.T).Q.T
        return torch.linalg.qr(self.raw).Q

    def weight(self) -> Tensor:
        """The orthonormal weight; cached (detached) in eval mode."""
        if self.training:
            return self.orthonormal_weight()
        key = (self.raw._version, self.raw.data_ptr(), self.raw.device)
        if self._cache is None or self._cache[0] != key:
            with torch.no_grad():
                self._cache = (key, self.orthonormal_weight())
        return self._cache[1]

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.linear(x, self.weight(), self.bias)


class GroupSort2(nn.Module):
    """Sort consecutive pairs of units: 1-Lipschitz and gradient-norm preserving (Anil et al. 2019)."""

    def forward(self, x: Tensor) -> Tensor:
        pairs = x.view(*x.shape[:-1], -1, 2)
        return torch.stack([pairs.amin(-1), pairs.amax(-1)], dim=-1).flatten(-2)


def lipschitz_mlp(in_features: int, hidden: int, depth: int) -> nn.Sequential:
    """Flatten -> [OrthoLinear -> GroupSort2] x depth -> OrthoLinear(., 1): 1-Lipschitz from pixels to R."""
    hidden += hidden % 2
    layers: list[nn.Module] = [nn.Flatten()]
    width = in_features
    for _ in range(depth):
        layers += [OrthoLinear(width, hidden), GroupSort2()]
        width = hidden
    layers.append(OrthoLinear(width, 1))
    return nn.Sequential(*layers)


def hinge_kantorovich_loss(f_in: Tensor, f_out: Tensor, margin: float, hinge_weight: float) -> Tensor:
    """HKR loss: E[f(out)] - E[f(in)] + lambda * (E[(m - f(in))_+] + E[(m + f(out))_+])."""
    kantorovich = f_out.mean() - f_in.mean()
    hinge = torch.relu(margin - f_in).mean() + torch.relu(margin + f_out).mean()
    return kantorovich + hinge_weight * hinge


@register_detector("ocsdf")
class OCSDF(Detector):
    """OCSDF (Bethune et al., ICML 2023): score = minus the signed distance learned by a 1-Lipschitz network.

    f is an MLP of orthonormal (QR-parametrised) linear layers with GroupSort2 activations, hence exactly
    1-Lipschitz in L2 pixel space (an L2 budget eps moves the score by at most eps). f is trained with the
    hinge-Kantorovich-Rubinstein loss to be >= m on normal images and <= -m on negatives sampled outside the
    support. Negative sampling, simplified from the paper's boundary sampling: start from normal images plus
    Gaussian noise (half the batch) and uniform noise images (the other half), then take a few Newton steps
    z <- z - (f(z) + m) grad f / |grad f|^2 towards the level set f = -m, clipped to [0, 1].
    """

    Config = OCSDFConfig
    tiny_config: ClassVar[dict[str, Any]] = {"epochs": 10, "hidden": 64, "depth": 2}
    citation: ClassVar[Citation | None] = Citation(
        title="Robust One-Class Classification with Signed Distance Function using 1-Lipschitz Neural Networks",
        venue="ICML",
        year=2023,
        link="https://arxiv.org/abs/2303.01978",
        authors="Béthune et al.",
    )
    adversarially_trained: ClassVar[bool] = True  # a * (robust) method in COBRA's tables
    paper_results: ClassVar[dict[str, PaperResult]] = cobra_results(
        cifar10=(58.7, 31.3),
        cifar100=(50.2, 23.5),
        mnist=(96.1, 68.9),
        fmnist=(91.8, 64.9),
        svhn=(58.1, 9.7),
        visa=(53.0, 13.9),
        mvtec=(58.7, 7.0),
    )

    def build(self, input_shape: tuple[int, int, int]) -> None:
        channels, height, width = input_shape
        self.net = lipschitz_mlp(channels * height * width, self.config.hidden, self.config.depth)

    def signed_distance(self, x: Tensor) -> Tensor:
        """f(x) [N]: positive inside the normal support, negative outside."""
        return self.net(x - 0.5).squeeze(1)

    def score(self, x: Tensor) -> Tensor:
        return -self.signed_distance(x)

    def sample_negatives(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """Points outside the current support estimate (see class docstring), detached; runs in eval mode so
        the orthonormal weights are computed once for all steps."""
        was_training = self.training
        self.eval()
        half = x.shape[0] // 2
        noise = torch.randn(x.shape, generator=generator).to(x.device) * self.config.negative_noise
        uniform = torch.rand(x.shape, generator=generator).to(x.device)
        z = torch.cat([(x[:half] + noise[:half]).clamp(0, 1), uniform[half:]])
        for _ in range(self.config.negative_steps):
            z = z.detach().requires_grad_(True)
            f = self.signed_distance(z)
            (grad,) = torch.autograd.grad(f.sum(), z)
            step = (f + self.config.margin).detach() / grad.flatten(1).pow(2).sum(1).clamp_min(1e-12)
            z = (z - step.view(-1, 1, 1, 1) * grad).clamp(0, 1)
        self.train(was_training)
        return z.detach()

    def fit(
        self,
        train: Tensor,
        *,
        device: str | torch.device = "cpu",
        generator: torch.Generator | None = None,
        progress: Progress = NULL_PROGRESS,
    ) -> OCSDF:
        generator = setup_seeded(self, train, device, generator)
        self.train()
        cfg = self.config

        def loss(batch: Tensor) -> Tensor:
            negatives = self.sample_negatives(batch, generator)
            f_in, f_out = self.signed_distance(torch.cat([batch, negatives])).split(batch.shape[0])
            return hinge_kantorovich_loss(f_in, f_out, cfg.margin, cfg.hinge_weight)

        fit_minibatches(
            loss,
            self.parameters(),
            train,
            config=cfg,
            device=device,
            generator=generator,
            progress=progress,
            description=f"fit {self.name}",
        )
        return self.eval()
