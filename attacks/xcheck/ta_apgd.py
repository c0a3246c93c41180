"""Cross-check backend: torchattacks' APGD (ce loss) on the two-logit wrapper, best-loss iterate per sample."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from attacks.base import AttackConfig
from attacks.registry import register_attack
from attacks.xcheck.common import CrossCheckAttack, TwoLogitModel, class_zero, import_library, library_rng

NORMS = {"linf": "Linf", "l2": "L2"}


@dataclass
class LibraryAPGDConfig(AttackConfig):
    """Same budget fields as ``apgd``."""

    steps: int = 100
    restarts: int = 1
    rho: float = 0.75


@register_attack("ta-apgd")
class TorchattacksAPGD(CrossCheckAttack):
    """torchattacks APGD-ce, perturb(best_loss=True) (cross-check; needs the xcheck extra)."""

    Config = LibraryAPGDConfig
    tiny_config: ClassVar[dict[str, Any]] = {"steps": 10}

    def attack_batch(self, detector: Any, x: Tensor, sign: Tensor, generator: torch.Generator | None) -> Tensor:
        torchattacks = import_library("torchattacks")
        cfg = self.config
        model = TwoLogitModel(self, detector, x, sign)
        with library_rng(generator, x.device) as seed:
            library_attack = torchattacks.APGD(
                model,
                norm=NORMS[cfg.norm],
                eps=cfg.eps,
                steps=cfg.steps,
                n_restarts=cfg.restarts,
                seed=seed,
                loss="ce",
                eot_iter=self.eot_draws(detector),
                rho=cfg.rho,
            )
            library_attack.set_device(x.device)
            _, x_adv = library_attack.perturb(x, class_zero(x), best_loss=True)
        return x_adv.detach()
