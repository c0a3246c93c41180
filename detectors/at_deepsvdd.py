"""Adversarially trained DeepSVDD with rotation pseudo-anomalies (a simple robust one-class baseline)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from attacks.common import project, random_start
from detectors.base import register_detector
from detectors.deepsvdd import DeepSVDD, DeepSVDDConfig
from detectors.papers import Citation, PaperResult


@dataclass
class ATDeepSVDDConfig(DeepSVDDConfig):
    """Adversarial training options: L-inf budget, PGD steps, and the pseudo-anomaly term's weight."""

    train_eps: float = 4 / 255
    pgd_steps: int = 5
    pgd_step_factor: float = 2.5
    pseudo_weight: float = 1.0
    #: delta in the pseudo-anomaly term 1 / (||phi - c||^2 + delta).
    pseudo_delta: float = 1e-6


def rotate_pseudo_anomalies(x: Tensor, generator: torch.Generator) -> Tensor:
    """Each image rotated by a random multiple of 90 degrees (90, 180 or 270; drawn from ``generator``)."""
    turns = torch.randint(1, 4, (x.shape[0],), generator=generator)
    return torch.stack([torch.rot90(img, int(k), dims=(-2, -1)) for img, k in zip(x, turns, strict=True)])


@register_detector("at-deepsvdd")
class ATDeepSVDD(DeepSVDD):
    """Adversarially trained DeepSVDD: PGD on its own score, pulling normals in and pushing rotations out.

    Each step: normals x get an L-inf PGD perturbation (``pgd_steps`` steps of size 2.5 eps / steps from a
    uniform random start, network in eval mode) that MAXIMISES the score ||phi(x) - c||^2; rotated copies
    (pseudo-anomalies) get one that MINIMISES it. Loss (Deep SAD, Ruff et al. 2020, applied to the adversarial
    points): mean ||phi(x_adv) - c||^2 + pseudo_weight * mean 1 / (||phi(x~_adv) - c||^2 + delta).
    Centre and score as in DeepSVDD.
    """

    Config = ATDeepSVDDConfig
    tiny_config: ClassVar[dict[str, Any]] = {"epochs": 6, "widths": (8, 16), "rep_dim": 16, "pgd_steps": 2}
    # A project baseline with no paper of its own: DeepSVDD (cited) adversarially trained with PGD, with the
    # pseudo-anomaly term of Deep SAD (Ruff et al., ICLR 2020). COBRA's tables have no column for it, and
    # DeepSVDD's numbers are not this detector's, so it declares none.
    citation: ClassVar[Citation | None] = DeepSVDD.citation
    adversarially_trained: ClassVar[bool] = True
    paper_results: ClassVar[dict[str, PaperResult]] = {}

    def pgd(self, x: Tensor, sign: float, generator: torch.Generator) -> Tensor:
        """L-inf PGD maximising ``sign * score`` around ``x`` (eval mode; returns detached images)."""
        cfg = self.config
        was_training = self.training
        self.eval()
        alpha = cfg.pgd_step_factor * cfg.train_eps / max(cfg.pgd_steps, 1)
        x_adv = random_start(x.cpu(), cfg.train_eps, "linf", generator).to(x.device)
        for _ in range(cfg.pgd_steps):
            x_adv = x_adv.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad((sign * self.score(x_adv)).sum(), x_adv)
            x_adv = project(x_adv + alpha * grad.sign(), x, cfg.train_eps, "linf")
        self.train(was_training)
        return x_adv.detach()

    def training_loss(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """Deep SAD loss on adversarial normals and adversarial rotated pseudo-anomalies."""
        cfg = self.config
        pseudo = rotate_pseudo_anomalies(x.cpu(), generator).to(x.device)
        x_adv, pseudo_adv = self.pgd(x, 1.0, generator), self.pgd(pseudo, -1.0, generator)
        dist = self.score(torch.cat([x_adv, pseudo_adv]))
        normal_dist, pseudo_dist = dist.split(x.shape[0])
        return normal_dist.mean() + cfg.pseudo_weight * (1.0 / (pseudo_dist + cfg.pseudo_delta)).mean()
