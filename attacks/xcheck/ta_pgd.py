"""Cross-check backend: torchattacks' PGD (L-inf) / PGDL2 on the two-logit wrapper (last iterate, as the library)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from attacks.base import AttackConfig
from attacks.registry import register_attack
from attacks.xcheck.common import CrossCheckAttack, TwoLogitModel, class_zero, import_library, library_rng


@dataclass
class TorchattacksPGDConfig(AttackConfig):
    """Same budget fields as ``pgd``: step ``step_scale * eps / steps``, random start."""

    steps: int = 10
    step_scale: float = 2.5
    random_start: bool = True


@register_attack("ta-pgd")
class TorchattacksPGD(CrossCheckAttack):
    """torchattacks PGD/PGDL2 on the signed score (cross-check; needs the xcheck extra)."""

    Config = TorchattacksPGDConfig

    def attack_batch(self, detector: Any, x: Tensor, sign: Tensor, generator: torch.Generator | None) -> Tensor:
        torchattacks = import_library("torchattacks")
        cfg = self.config
        if cfg.eps == 0:  # PGDL2 rescales its random start by eps / ||delta||: 0/0 at eps=0
            return x.clone()
        model = TwoLogitModel(self, detector, x, sign)
        cls = torchattacks.PGD if cfg.norm == "linf" else torchattacks.PGDL2
        alpha = cfg.step_scale * cfg.eps / max(cfg.steps, 1)
        library_attack = cls(model, eps=cfg.eps, alpha=alpha, steps=cfg.steps, random_start=cfg.random_start)
        with library_rng(generator, x.device):
            return library_attack(x, class_zero(x)).detach()
