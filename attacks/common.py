"""Geometry shared by the attacks: the signed objective, eps-ball projection and checks, seeded draws, steepest
ascent directions, score scales and feature distances. Imports nothing else from attacks."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


class OutOfBall(RuntimeError):
    """An adversarial input left [0, 1] or the eps-ball, or is not finite (a bug in the attack)."""


def objective_sign(is_anomaly: Tensor, side: str = "both") -> Tensor:
    """+1 for attacked normals, -1 for attacked anomalies, 0 for samples the side leaves alone."""
    sign = torch.where(is_anomaly.bool(), -1.0, 1.0)
    if side == "in":
        sign = torch.where(is_anomaly.bool(), 0.0, sign)
    elif side == "out":
        sign = torch.where(is_anomaly.bool(), sign, 0.0)
    return sign


def project(x_adv: Tensor, x: Tensor, eps: float, norm: str) -> Tensor:
    """Project ``x_adv`` onto the eps-ball around ``x`` (L-inf or L2) intersected with [0, 1]."""
    delta = x_adv - x
    if norm == "linf":
        delta = delta.clamp(-eps, eps)
    else:
        norms = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
        delta = delta * (eps / norms).clamp(max=1.0).view(-1, *[1] * (x.dim() - 1))
    return (x + delta).clamp(0.0, 1.0)


def rand(shape: tuple[int, ...] | torch.Size, generator: torch.Generator | None, device: torch.device) -> Tensor:
    """Uniform [0, 1) draws from ``generator`` (on the generator's device), moved to ``device``."""
    source = generator.device if generator is not None else device
    return torch.rand(tuple(shape), generator=generator, device=source).to(device)


def randn(shape: tuple[int, ...] | torch.Size, generator: torch.Generator | None, device: torch.device) -> Tensor:
    """Standard normal draws from ``generator`` (on the generator's device), moved to ``device``."""
    source = generator.device if generator is not None else device
    return torch.randn(tuple(shape), generator=generator, device=source).to(device)


def random_start(x: Tensor, eps: float, norm: str, generator: torch.Generator | None) -> Tensor:
    """A uniform draw from the eps-ball around ``x`` (clipped to [0, 1])."""
    if norm == "linf":
        noise = (rand(x.shape, generator, x.device) * 2 - 1) * eps
    else:
        direction = randn(x.shape, generator, x.device)
        direction = direction / direction.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (x.dim() - 1))
        radius = rand((x.shape[0],), generator, x.device) ** (1.0 / x[0].numel())
        noise = direction * (eps * radius).view(-1, *[1] * (x.dim() - 1))
    return (x + noise).clamp(0.0, 1.0)


def check_in_ball(x_adv: Tensor, x: Tensor, eps: float, norm: str, tol: float = 1e-5) -> None:
    """Raise if any adversarial input leaves [0, 1] or the eps-ball (a hard error, never a flag)."""
    if x_adv.numel() == 0:
        return
    if not torch.isfinite(x_adv).all():
        raise OutOfBall("attack produced non-finite inputs")
    if x_adv.min() < -tol or x_adv.max() > 1 + tol:
        raise OutOfBall(f"attack left [0, 1]: range [{x_adv.min():.4g}, {x_adv.max():.4g}]")
    delta = (x_adv - x).flatten(1)
    dist = delta.abs().amax(dim=1) if norm == "linf" else delta.norm(dim=1)
    if dist.numel() and dist.max() > eps + tol:
        raise OutOfBall(f"attack left the {norm} ball: distance {dist.max():.6g} > eps {eps:.6g}")


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
