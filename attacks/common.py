"""Building blocks shared by the attacks: steepest-ascent steps, best-iterate bookkeeping, the PGD loop."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from attacks.base import project, random_start

#: ``x -> (per-sample objective, its input gradient)``.
GradFn = Callable[[Tensor], tuple[Tensor, Tensor]]
#: ``x -> per-sample objective`` (no gradient).
EvalFn = Callable[[Tensor], Tensor]


def per_sample(values: Tensor, like: Tensor) -> Tensor:
    """Reshape a [N] tensor to broadcast against ``like`` [N, ...]."""
    return values.view(-1, *[1] * (like.dim() - 1))


def steepest_direction(grad: Tensor, norm: str) -> Tensor:
    """The unit-norm ascent direction of a gradient: its sign (L-inf) or its L2 direction (zero stays zero)."""
    if norm == "linf":
        return grad.sign()
    return grad / per_sample(grad.flatten(1).norm(dim=1).clamp_min(1e-12), grad)


class BestIterate:
    """Per-sample best objective and the input that reached it (the answer of a score attack)."""

    def __init__(self, x: Tensor) -> None:
        self.x = x.detach().clone()
        self.objective = torch.full((x.shape[0],), -torch.inf, device=x.device)

    def update(self, x: Tensor, objective: Tensor) -> Tensor:
        """Keep ``x`` where ``objective`` beats the best so far; returns the mask of improved samples."""
        improved = objective > self.objective
        self.objective = torch.where(improved, objective, self.objective)
        self.x = torch.where(per_sample(improved, self.x), x.detach(), self.x)
        return improved

    def merge(self, other: BestIterate) -> None:
        """Keep, per sample, the better of this and ``other`` (restarts, ensemble members)."""
        self.update(other.x, other.objective)


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


def start_point(x: Tensor, eps: float, norm: str, randomise: bool, generator: torch.Generator | None) -> Tensor:
    """``x`` itself or a uniform draw from its eps-ball."""
    return random_start(x, eps, norm, generator) if randomise else x.detach().clone()


def centre_and_spread(scores: Tensor) -> tuple[Tensor, Tensor]:
    """Median and a robust spread (IQR, else std, else |median| or 1) of a batch's clean scores.

    Losses that need a scale-free score (APGD's ``ce`` and ``margin``, the two-logit wrappers of the cross-check
    backends) divide the centred score by this spread, so their value does not depend on the detector's units.
    """
    scores = scores.detach().float()
    centre = scores.median()
    spread = torch.quantile(scores, 0.75) - torch.quantile(scores, 0.25)
    if not spread > 1e-12 and scores.numel() > 1:
        spread = scores.std()
    if not spread > 1e-12:
        spread = centre.abs().clamp_min(1.0)
    return centre, spread


METRICS = ("l2", "cosine")


def feature_distances(features: Tensor, bank: Tensor, metric: str) -> Tensor:
    """Distances [N, M] from features [N, D] to a bank [M, D]: Euclidean or cosine (1 - cosine similarity)."""
    if metric == "cosine":
        return 1 - torch.nn.functional.normalize(features, dim=1) @ torch.nn.functional.normalize(bank, dim=1).T
    return torch.cdist(features, bank)


def paired_distance(a: Tensor, b: Tensor, metric: str) -> Tensor:
    """Row-wise distance [N] between features a and b [N, D]: squared Euclidean or cosine distance."""
    if metric == "cosine":
        return 1 - torch.nn.functional.cosine_similarity(a, b, dim=1)
    return ((a - b) ** 2).sum(dim=1)
