"""APGD (Croce & Hein, ICML 2020), written from the paper, on the signed anomaly score or a surrogate of it.

Step size starts at 2*eps and is halved at checkpoints w_j = ceil(p_j * steps) (p_0 = 0, p_1 = 0.22,
p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)) when fewer than ``rho`` of the steps since the last checkpoint
raised the objective, or when the step was not halved at the last checkpoint and the best objective did not
improve since; a halving sample restarts from its best point. Steps use momentum ``alpha`` = 0.75.

What the steps climb (the schedule and restarts follow it) is an ``Ascent``; what is returned is always each
sample's iterate with the best *signed detector score*. On the score itself both are the same and every step
costs one forward+backward; a surrogate (feature distances, one score component, a smoothed k-NN) adds one score
forward per iterate to judge it. Losses on the score:
- ``ce``: softplus((sign * (s - c)) / spread), the cross-entropy of a two-logit classifier with logit (s - c)/spread,
  where c is the median and spread the IQR of the batch's clean scores (std or 1 when the IQR is 0).
- ``margin``: sign * (s - c) / spread, linear in the score. Both are monotone in the signed score, so under sign
  (L-inf) or normalised (L2) steps they give the same attack; ``margin`` is kept for the cross-checks.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from attacks.base import Attack, AttackConfig, BestIterate
from attacks.common import centre_and_spread, per_sample, project, start_point, steepest_direction
from attacks.registry import register_attack
from bench.errors import UsageError

LOSSES = ("ce", "margin")


@dataclass(frozen=True)
class Ascent:
    """What one APGD run climbs: ``climb(x) -> (objective [N], its input gradient)``; ``on_score`` when that
    objective is the signed detector score itself (then it also picks the answer, with no extra forward)."""

    climb: Callable[[Tensor], tuple[Tensor, Tensor]]
    on_score: bool


@dataclass
class APGDConfig(AttackConfig):
    """APGD budget: ``steps`` forward+backward passes per restart (and per surrogate target)."""

    steps: int = 100
    restarts: int = 1
    loss: str = "ce"
    rho: float = 0.75
    alpha: float = 0.75
    random_start: bool = True


def checkpoints(steps: int) -> list[int]:
    """Iterations at which APGD may halve its step (the paper's w_j, excluding 0)."""
    points, previous, current = [], 0.0, 0.22
    while current < 1.0:
        points.append(math.ceil(round(current * steps, 9)))
        previous, current = current, current + max(current - previous - 0.03, 0.06)
    return sorted({p for p in points if 0 < p < steps})


def signed_loss(name: str, centre: Tensor, spread: Tensor, sign: Tensor) -> Callable[[Tensor], Tensor]:
    """The loss applied to the signed objective ``sign * s`` (see the module docstring)."""

    def margin(objective: Tensor) -> Tensor:
        return (objective - sign * centre) / spread

    return margin if name == "margin" else (lambda objective: F.softplus(margin(objective)))


@register_attack("apgd")
class APGD(Attack):
    """APGD on the signed score (step-size schedule, momentum, best iterate, restarts)."""

    Config = APGDConfig
    tiny_config: ClassVar[dict[str, Any]] = {"steps": 10}

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        if self.config.loss not in LOSSES:
            raise UsageError(f"unknown APGD loss {self.config.loss!r}; choose from: {', '.join(LOSSES)}")

    def ascents(self, detector: Any, x: Tensor, sign: Tensor, clean: Tensor) -> list[Ascent]:
        """What to climb, one APGD run (per restart) each; by default the loss of the signed score.

        ``clean`` is the signed score at ``x`` (the loss is centred and scaled on it).
        """
        centre, spread = centre_and_spread(sign * clean)
        loss_fn = signed_loss(self.config.loss, centre, spread, sign)
        return [Ascent(lambda xc: self.objective_and_grad(detector, xc, sign, loss_fn), on_score=True)]

    def surrogate_ascent(self, detector: Any, sign: Tensor, surrogate: Callable[[Tensor], Tensor]) -> Ascent:
        """Climb ``sign * surrogate(x)`` (higher = more harmful), judging each iterate by the detector score."""
        return Ascent(lambda xc: self.objective_and_grad(detector, xc, sign, score_fn=surrogate), on_score=False)

    def attack_batch(self, detector: Any, x: Tensor, sign: Tensor, generator: torch.Generator | None) -> BestIterate:
        """The best iterate over every ascent and restart, the clean input included (never less harmful)."""
        clean = self.evaluate(detector, x, sign)
        best = BestIterate(x, clean)
        for ascent in self.ascents(detector, x, sign, clean):
            for _ in range(max(self.config.restarts, 1)):
                start = start_point(x, self.config.eps, self.config.norm, self.config.random_start, generator)
                best.merge(self.run_once(detector, x, sign, start, ascent))
        return best

    def run_once(self, detector: Any, x: Tensor, sign: Tensor, start: Tensor, ascent: Ascent) -> BestIterate:
        """One APGD run from ``start`` climbing ``ascent``; returns the best iterates by signed detector score."""
        cfg = self.config
        marks = set(checkpoints(cfg.steps))
        climbed = BestIterate(start)  # judged by the climbed objective: drives the schedule
        best = climbed if ascent.on_score else BestIterate(start)  # judged by the detector score: the answer
        best_grad = torch.zeros_like(x)
        eta = torch.full((x.shape[0],), 2.0 * cfg.eps, device=x.device)
        successes = torch.zeros(x.shape[0], device=x.device)
        reduced_last = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        best_last = climbed.objective.clone()
        x_prev, x_cur, obj_prev, last_mark = start, start, None, 0
        for k in range(cfg.steps):
            obj, grad = ascent.climb(x_cur)
            if not ascent.on_score:
                best.update(x_cur, self.evaluate(detector, x_cur, sign))
            if obj_prev is not None:
                successes += (obj > obj_prev).float()
            improved = climbed.update(x_cur, obj)
            best_grad[improved] = grad[improved]
            if k in marks:
                no_progress = successes < cfg.rho * (k - last_mark)
                stalled = ~reduced_last & (climbed.objective <= best_last)
                reduce = no_progress | stalled
                eta = torch.where(reduce, eta / 2, eta)
                x_cur, grad = x_cur.clone(), grad.clone()
                x_cur[reduce], grad[reduce] = climbed.x[reduce], best_grad[reduce]
                x_prev = torch.where(per_sample(reduce, x), x_cur, x_prev)
                obj = torch.where(reduce, climbed.objective, obj)
                successes.zero_()
                reduced_last, best_last, last_mark = reduce, climbed.objective.clone(), k
            momentum = 1.0 if k == 0 else cfg.alpha
            z = project(x_cur + per_sample(eta, x) * steepest_direction(grad, cfg.norm), x, cfg.eps, cfg.norm)
            x_next = project(x_cur + momentum * (z - x_cur) + (1 - momentum) * (x_cur - x_prev), x, cfg.eps, cfg.norm)
            x_prev, x_cur, obj_prev = x_cur, x_next, obj
        best.update(x_cur, self.evaluate(detector, x_cur, sign))
        return best
