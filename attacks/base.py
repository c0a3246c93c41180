"""The attack contract: perturb inputs within an eps-ball to make a detector's score wrong.

Objective per sample (the COBRA/ATD convention): maximise s(x') for normal samples and -s(x') for anomalies.
``sign`` below is +1 for attacked normals, -1 for attacked anomalies and 0 for samples left alone, so the
objective is always ``sign * s(x')``. A scalar score has no success threshold: attacks keep each sample's
best-objective iterate.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from bench.config import load_preset, parse_norm
from bench.errors import UsageError
from bench.registry import Registry

ATTACKS: Registry[type[Attack]] = Registry("attack")
SIDES = ("both", "in", "out")


def register_attack(name: str, description: str | None = None):
    """Class decorator: register an Attack subclass under ``name`` and set its ``name`` attribute."""

    def decorator(cls: type[Attack]) -> type[Attack]:
        cls.name = name
        return ATTACKS.register(name, description)(cls)

    return decorator


@dataclass
class AttackConfig:
    """Budget and bookkeeping shared by every attack."""

    eps: float = 4 / 255
    norm: str = "linf"
    side: str = "both"  # "in": attack normals only, "out": anomalies only
    batch_size: int = 256
    eot_iter: int = 1  # gradient draws averaged per step for stochastic detectors (EOT)


@dataclass
class PassCounter:
    """Score evaluations an attack spent, in images (forward and backward)."""

    forward: int = 0
    backward: int = 0


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


def random_start(x: Tensor, eps: float, norm: str, generator: torch.Generator | None) -> Tensor:
    """A uniform draw from the eps-ball around ``x`` (clipped to [0, 1])."""
    if norm == "linf":
        noise = (torch.rand(x.shape, generator=generator, device=x.device) * 2 - 1) * eps
    else:
        direction = torch.randn(x.shape, generator=generator, device=x.device)
        direction = direction / direction.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (x.dim() - 1))
        radius = torch.rand(x.shape[0], generator=generator, device=x.device) ** (1.0 / x[0].numel())
        noise = direction * (eps * radius).view(-1, *[1] * (x.dim() - 1))
    return (x + noise).clamp(0.0, 1.0)


def check_in_ball(x_adv: Tensor, x: Tensor, eps: float, norm: str, tol: float = 1e-5) -> None:
    """Raise if any adversarial input leaves [0, 1] or the eps-ball (a hard error, never a flag)."""
    if not torch.isfinite(x_adv).all():
        raise RuntimeError("attack produced non-finite inputs")
    if x_adv.min() < -tol or x_adv.max() > 1 + tol:
        raise RuntimeError(f"attack left [0, 1]: range [{x_adv.min():.4g}, {x_adv.max():.4g}]")
    delta = (x_adv - x).flatten(1)
    dist = delta.abs().amax(dim=1) if norm == "linf" else delta.norm(dim=1)
    if dist.numel() and dist.max() > eps + tol:
        raise RuntimeError(f"attack left the {norm} ball: distance {dist.max():.6g} > eps {eps:.6g}")


class Attack(ABC):
    """Base class of every attack: batching, side selection, pass accounting and the final ball check."""

    name: ClassVar[str] = ""
    Config: ClassVar[type] = AttackConfig
    #: True for attacks that need input gradients of the score.
    white_box: ClassVar[bool] = True

    def __init__(self, config: Any = None) -> None:
        self.config = config if config is not None else self.Config()
        parse_norm(self.config.norm)
        if self.config.side not in SIDES:
            raise UsageError(f"unknown attack side {self.config.side!r}; choose from: {', '.join(SIDES)}")
        self.passes = PassCounter()

    def perturb(
        self, detector: Any, x: Tensor, is_anomaly: Tensor, *, generator: torch.Generator | None = None
    ) -> Tensor:
        """Adversarial versions of ``x`` (same shape, in [0, 1], within eps), attacking per ``config.side``."""
        sign = objective_sign(is_anomaly, self.config.side)
        x_adv = x.clone()
        device = detector.device
        attacked = torch.nonzero(sign != 0).flatten()
        for idx in attacked.split(self.config.batch_size):
            xb = x[idx].to(device)
            if self.config.eps > 0:
                xb = self.attack_batch(detector, xb, sign[idx].to(device), generator).detach()
            x_adv[idx] = xb.to(x_adv.device)
        check_in_ball(x_adv, x, self.config.eps, self.config.norm)
        return x_adv

    @abstractmethod
    def attack_batch(self, detector: Any, x: Tensor, sign: Tensor, generator: torch.Generator | None) -> Tensor:
        """Attack one batch on the detector's device; ``sign`` is +-1 per sample (see module docstring)."""

    def objective(self, detector: Any, x: Tensor, sign: Tensor) -> Tensor:
        """Per-sample objective ``sign * s(x)`` (one forward, counted)."""
        self.passes.forward += x.shape[0]
        return sign * detector.score(x)

    def objective_and_grad(self, detector: Any, x: Tensor, sign: Tensor, loss_fn=None) -> tuple[Tensor, Tensor]:
        """Per-sample objective and its input gradient, averaged over ``eot_iter`` draws for stochastic detectors.

        ``loss_fn`` maps the signed objective to the quantity whose gradient is taken (identity by default).
        """
        draws = self.config.eot_iter if getattr(detector, "stochastic", False) else 1
        total_obj = torch.zeros(x.shape[0], device=x.device)
        total_grad = torch.zeros_like(x)
        for _ in range(draws):
            x_req = x.detach().requires_grad_(True)
            obj = self.objective(detector, x_req, sign)
            loss = obj if loss_fn is None else loss_fn(obj)
            (grad,) = torch.autograd.grad(loss.sum(), x_req)
            self.passes.backward += x.shape[0]
            total_obj += obj.detach()
            total_grad += grad
        return total_obj / draws, total_grad / draws


def config_from(cls: type[Attack], preset: str | None, overrides: dict[str, Any]) -> Any:
    """Build ``cls.Config`` from the preset's ``[attacks.<name>]`` section and explicit overrides."""
    values: dict[str, Any] = {}
    if preset is not None:
        values.update(load_preset(preset).get("attacks", {}).get(cls.name, {}))
    values.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in dataclasses.fields(cls.Config)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise UsageError(f"{cls.name} has no option {', '.join(unknown)}; options: {', '.join(sorted(known))}")
    return cls.Config(**values)


def create_attack(
    name: str, eps: float | None = None, norm: str | None = None, preset: str | None = None, **overrides: Any
) -> Attack:
    """Instantiate a registered attack with its budget, e.g. ``create_attack("apgd", eps=4/255, steps=100)``."""
    cls = ATTACKS.get(name)
    return cls(config_from(cls, preset, {"eps": eps, "norm": norm, **overrides}))


def list_attacks() -> dict[str, str]:
    """Registered attack names with one-line descriptions."""
    return ATTACKS.describe()
