"""PGD (Madry et al. 2018) on the signed anomaly score, L-inf or L2, with random starts and restarts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from attacks.base import Attack, AttackConfig, BestIterate
from attacks.common import EvalFn, GradFn, project, start_point, steepest_direction
from attacks.registry import register_attack


def pgd_run(
    x: Tensor,
    *,
    eps: float,
    norm: str,
    steps: int,
    step_size: float,
    start: Tensor,
    grad_fn: GradFn,
    eval_fn: EvalFn,
) -> BestIterate:
    """Projected steepest ascent from ``start``; tracks the best objective over all iterates, last one included.

    ``grad_fn`` returns the tracked objective at its input with its gradient (one forward+backward), so the loop
    costs one forward+backward per step plus one ``eval_fn`` forward for the last iterate.
    """
    best = BestIterate(start)
    x_cur = start.detach()
    for _ in range(steps):
        objective, grad = grad_fn(x_cur)
        best.update(x_cur, objective)
        x_cur = project(x_cur + step_size * steepest_direction(grad, norm), x, eps, norm)
    best.update(x_cur, eval_fn(x_cur))
    return best


@dataclass
class PGDConfig(AttackConfig):
    """PGD budget: ``steps`` iterations of size ``step_size`` (default ``step_scale * eps / steps``)."""

    steps: int = 10
    restarts: int = 1
    step_size: float | None = None
    step_scale: float = 2.5
    random_start: bool = True


@register_attack("pgd")
class PGD(Attack):
    """PGD on the signed score: best iterate per sample over steps and restarts."""

    Config = PGDConfig

    def step(self) -> float:
        """The step size: ``step_size`` or ``step_scale * eps / steps``."""
        cfg = self.config
        return cfg.step_size if cfg.step_size is not None else cfg.step_scale * cfg.eps / max(cfg.steps, 1)

    def attack_batch(self, detector: Any, x: Tensor, sign: Tensor, generator: torch.Generator | None) -> BestIterate:
        """PGD restarts on the signed score (each step's forward doubles as bookkeeping); the clean input competes
        with the iterates (a random start alone can end less harmful than no attack)."""
        cfg = self.config
        best = BestIterate(x, self.evaluate(detector, x, sign) if cfg.random_start else None)
        for _ in range(max(cfg.restarts, 1)):
            run = pgd_run(
                x,
                eps=cfg.eps,
                norm=cfg.norm,
                steps=cfg.steps,
                step_size=self.step(),
                start=start_point(x, cfg.eps, cfg.norm, cfg.random_start, generator),
                grad_fn=lambda xc: self.objective_and_grad(detector, xc, sign),
                eval_fn=lambda xc: self.evaluate(detector, xc, sign),
            )
            best.merge(run)
        return best
