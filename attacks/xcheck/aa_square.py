"""Cross-check backend: the reference Square Attack (``autoattack``, else ``pyautoattack``), run per sample for all
queries through ``attack_single_run`` on a wrapper whose margin never reaches 0 (see attacks/xcheck/common.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from attacks.base import AttackConfig
from attacks.registry import register_attack
from attacks.xcheck.common import (
    SQUARE_OFFSET,
    CrossCheckAttack,
    TwoLogitModel,
    autoattack_module,
    class_zero,
    library_rng,
)
from attacks.xcheck.ta_apgd import NORMS


@dataclass
class LibrarySquareConfig(AttackConfig):
    """Same budget fields as ``square``."""

    queries: int = 5000
    p_init: float = 0.8


@register_attack("aa-square")
class AutoAttackSquare(CrossCheckAttack):
    """Reference Square Attack, margin loss with a label offset (cross-check; needs the xcheck extra)."""

    Config = LibrarySquareConfig
    tiny_config: ClassVar[dict[str, Any]] = {"queries": 30}
    white_box = False

    def attack_batch(self, detector: Any, x: Tensor, sign: Tensor, generator: torch.Generator | None) -> Tensor:
        library = autoattack_module("square")
        cfg = self.config
        model = TwoLogitModel(self, detector, x, sign, offset=SQUARE_OFFSET)
        with library_rng(generator, x.device) as seed:
            library_attack = library.SquareAttack(
                model,
                norm=NORMS[cfg.norm],
                n_queries=cfg.queries,
                eps=cfg.eps,
                p_init=cfg.p_init,
                seed=seed,
                loss="margin",
                resc_schedule=True,
                device=x.device,
            )
            library_attack.init_hyperparam(x)
            _, x_adv = library_attack.attack_single_run(x, class_zero(x))
        return x_adv.detach()
