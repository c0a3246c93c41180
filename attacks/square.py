"""Square Attack (Andriushchenko et al., ECCV 2020), written from the paper, on the signed anomaly score.

A score-based random search: each query changes one square window of the current best perturbation and keeps
the change when the signed score improves. L-inf windows get a random +-eps colour per channel (after a
vertical-stripe start); L2 windows receive a centred pseudo-Gaussian bump with the mass of a second window
moved into it, renormalised to the L2 budget. The window area is ``p * H * W`` with ``p`` halved on the paper's
schedule (iterations 10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000 of 10000), rescaled to ``queries``.

Unlike the reference, which stops on a sample once it is misclassified, every sample keeps improving for the
whole budget (a score has no success threshold), windows are drawn per sample, and the clean input competes
with the initialisation so the result is never worse than the clean input.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from attacks.base import Attack, AttackConfig, BestIterate
from attacks.common import per_sample, rand
from attacks.registry import register_attack

SCHEDULE = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)  # halving points of p for a 10000-query budget


@dataclass
class SquareConfig(AttackConfig):
    """Square Attack budget: ``queries`` score evaluations per sample and restart."""

    queries: int = 5000
    p_init: float = 0.8
    restarts: int = 1


def window_fraction(p_init: float, query: int, queries: int) -> float:
    """Fraction of the image a window covers at ``query`` (the paper's schedule rescaled to ``queries``)."""
    progress = int(query / max(queries, 1) * 10000)
    return p_init / 2 ** sum(progress > point for point in SCHEDULE)


def random_signs(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> Tensor:
    """Uniform +-1 draws."""
    return torch.where(rand(shape, generator, device) < 0.5, -1.0, 1.0)


def random_corner(n: int, limit: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
    """Per-sample integer offsets in [0, limit]."""
    return (rand((n,), generator, device) * (limit + 1)).long().clamp(max=limit)


def window_index(top: Tensor, left: Tensor, size: int, channels: int) -> tuple[Tensor, ...]:
    """Advanced-indexing tuple selecting the ``size`` x ``size`` window at (top, left) of each sample: [N, C, s, s]."""
    n, device = top.shape[0], top.device
    offsets = torch.arange(size, device=device)
    return (
        torch.arange(n, device=device).view(n, 1, 1, 1),
        torch.arange(channels, device=device).view(1, channels, 1, 1),
        (top.view(n, 1) + offsets).view(n, 1, size, 1),
        (left.view(n, 1) + offsets).view(n, 1, 1, size),
    )


def rings(height: int, width: int) -> Tensor:
    """Concentric rectangles around the centre, ring r weighted by sum_{k >= r} 1/(k+1)^2 (peaked, smooth)."""
    rows = (torch.arange(height) - height // 2).abs().view(-1, 1)
    cols = (torch.arange(width) - width // 2).abs().view(1, -1)
    ring = torch.maximum(rows, cols)
    weights = 1.0 / (torch.arange(max(height, width) + 1, dtype=torch.float32) + 1) ** 2
    tail = weights.flip(0).cumsum(0).flip(0)
    return tail[ring]


def pseudo_gaussian(size: int) -> Tensor:
    """The L2 window pattern: a positive bump on the top half, a negative one below, unit L2 norm."""
    top = size // 2
    pattern = torch.cat([rings(top, size), -rings(size - top, size)]) if top else rings(size, size)
    return pattern / pattern.norm()


@register_attack("square")
class Square(Attack):
    """Square Attack (score-based random search), L-inf and L2, improving every sample for all queries."""

    Config = SquareConfig
    tiny_config: ClassVar[dict[str, Any]] = {"queries": 30}
    white_box = False

    def attack_batch(self, detector: Any, x: Tensor, sign: Tensor, generator: torch.Generator | None) -> BestIterate:
        best = BestIterate(x, self.evaluate(detector, x, sign))
        for _ in range(max(self.config.restarts, 1)):
            best.merge(self.search(detector, x, sign, generator))
        return best

    def search(self, detector: Any, x: Tensor, sign: Tensor, generator: torch.Generator | None) -> BestIterate:
        """One random search of ``queries`` evaluations (the first is the initialisation)."""
        linf = self.config.norm == "linf"
        start = self.init_linf(x, generator) if linf else self.init_l2(x, generator)
        best = BestIterate(start, self.evaluate(detector, start, sign))
        propose = self.propose_linf if linf else self.propose_l2
        for query in range(1, self.config.queries):
            candidate = propose(x, best.x, window_fraction(self.config.p_init, query, self.config.queries), generator)
            best.update(candidate, self.evaluate(detector, candidate, sign))
        return best

    def init_linf(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        """Vertical stripes of +-eps."""
        n, c, _, w = x.shape
        return (x + self.config.eps * random_signs((n, c, 1, w), generator, x.device)).clamp(0, 1)

    def propose_linf(self, x: Tensor, current: Tensor, fraction: float, generator) -> Tensor:
        """Set one window per sample to a random +-eps colour per channel (flipped when that changes nothing)."""
        n, c, h, w = x.shape
        eps = self.config.eps
        size = min(max(round(math.sqrt(fraction * h * w)), 1), min(h, w) - 1) if min(h, w) > 1 else 1
        index = window_index(
            random_corner(n, h - size, generator, x.device), random_corner(n, w - size, generator, x.device), size, c
        )
        colours = eps * random_signs((n, c, 1, 1), generator, x.device)
        proposal = (x[index] + colours).clamp(0, 1)
        unchanged = (proposal == current[index]).flatten(1).all(dim=1)
        colours = torch.where(per_sample(unchanged, colours), -colours, colours)
        candidate = current.clone()
        candidate[index] = (x[index] + colours).clamp(0, 1)
        return candidate

    def init_l2(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        """A grid of pseudo-Gaussian bumps with random signs, scaled to the L2 budget."""
        n, c, h, w = x.shape
        size = max(min(h, w) // 5, 1)
        delta = torch.zeros_like(x)
        bump = pseudo_gaussian(size).to(x.device)
        top0, left0 = (h - size * (h // size)) // 2, (w - size * (w // size)) // 2
        for top in range(top0, h - size + 1, size):
            for left in range(left0, w - size + 1, size):
                signs = random_signs((n, c, 1, 1), generator, x.device)
                delta[:, :, top : top + size, left : left + size] += bump * signs
        return self.to_l2_budget(x, delta)

    def propose_l2(self, x: Tensor, current: Tensor, fraction: float, generator) -> Tensor:
        """Move the mass of a second window into a new bump on the first, then renormalise to the L2 budget."""
        n, c, h, w = x.shape
        eps = self.config.eps
        size = max(round(math.sqrt(fraction * h * w)), 3)
        size = min(size + (size % 2 == 0), min(h, w) - 1)
        if size < 1:
            return current
        delta = current - x
        first = window_index(
            random_corner(n, h - size, generator, x.device), random_corner(n, w - size, generator, x.device), size, c
        )
        second = window_index(
            random_corner(n, h - size, generator, x.device), random_corner(n, w - size, generator, x.device), size, c
        )
        union = torch.zeros_like(x)
        union[first], union[second] = 1.0, 1.0
        union_norm = (delta * union).flatten(1).norm(dim=1)
        free = (eps**2 - delta.flatten(1).norm(dim=1) ** 2).clamp_min(0)
        target = per_sample(torch.sqrt(free / c + union_norm**2), x)
        old = delta[first]
        old = old / old.flatten(2).norm(dim=2).view(n, c, 1, 1).clamp_min(1e-12)
        bump = pseudo_gaussian(size).to(x.device)
        flip = per_sample(rand((n,), generator, x.device) < 0.5, x)
        bump = torch.where(flip, bump.t().expand(n, c, size, size), bump.expand(n, c, size, size))
        window = bump * random_signs((n, c, 1, 1), generator, x.device) + old
        window = window / window.flatten(2).norm(dim=2).view(n, c, 1, 1).clamp_min(1e-12) * target
        new_delta = delta.clone()
        new_delta[second] = 0.0
        new_delta[first] = window
        return self.to_l2_budget(x, new_delta)

    def to_l2_budget(self, x: Tensor, delta: Tensor) -> Tensor:
        """``x + eps * delta / ||delta||`` clipped to [0, 1] (clipping only shrinks the perturbation)."""
        norms = per_sample(delta.flatten(1).norm(dim=1).clamp_min(1e-12), x)
        return (x + self.config.eps * delta / norms).clamp(0, 1)
