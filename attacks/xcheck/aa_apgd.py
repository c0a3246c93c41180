"""Cross-check backend: the reference AutoAttack APGD-ce (``autoattack``, else ``pyautoattack``), best-loss iterate."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from attacks.registry import register_attack
from attacks.xcheck.common import CrossCheckAttack, TwoLogitModel, autoattack_module, class_zero, library_rng
from attacks.xcheck.ta_apgd import NORMS, LibraryAPGDConfig


@register_attack("aa-apgd")
class AutoAttackAPGD(CrossCheckAttack):
    """Reference APGD-ce, perturb(best_loss=True) (cross-check; needs the xcheck extra)."""

    Config = LibraryAPGDConfig
    tiny_config: ClassVar[dict[str, Any]] = {"steps": 10}

    def attack_batch(self, detector: Any, x: Tensor, sign: Tensor, generator: torch.Generator | None) -> Tensor:
        library = autoattack_module("autopgd_base")
        cfg = self.config
        model = TwoLogitModel(self, detector, x, sign)
        with library_rng(generator, x.device) as seed:
            library_attack = library.APGDAttack(
                model,
                n_iter=cfg.steps,
                norm=NORMS[cfg.norm],
                n_restarts=cfg.restarts,
                eps=cfg.eps,
                seed=seed,
                loss="ce",
                eot_iter=self.eot_draws(detector),
                rho=cfg.rho,
                device=x.device,
            )
            x_adv = library_attack.perturb(x, class_zero(x), best_loss=True)
        return x_adv.detach()
