"""The inner L-inf PGD of adversarial training (COBRA's ATNT, ATPT and RTP problems)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def pgd_linf(
    loss_fn: Callable[[Tensor], Tensor],
    x: Tensor,
    *,
    eps: float,
    steps: int,
    step_size: float,
    generator: torch.Generator,
    maximise: bool = True,
) -> Tensor:
    """L-inf PGD with a uniform random start (released ``RepresentationAdv``); returns the last iterate."""
    noise = (torch.rand(x.shape, generator=generator) * 2 - 1).to(x.device, x.dtype) * eps
    x_adv = (x.detach() + noise).clamp(0, 1)
    sign = 1.0 if maximise else -1.0
    for _ in range(steps):
        x_adv.requires_grad_(True)
        (grad,) = torch.autograd.grad(loss_fn(x_adv), x_adv)
        x_adv = x_adv.detach() + sign * step_size * grad.sign()
        x_adv = torch.minimum(torch.maximum(x_adv.clamp(0, 1), x - eps), x + eps)
    return x_adv.detach()
